//! The resources fabrs manages, as plain data: what the environment wants
//! (`Spec`) and what the account has (`Observed`, which carries the same `Spec`
//! read back from the cloud, plus ids and runtime status).
//!
//! Cross-references are by fabrs's own names (a security group rule names a
//! group by its role, an ASG its load balancer by name); the cloud layer maps
//! them to cloud ids.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use fabrs_config::{Revision, RoleKind};
use serde::{Deserialize, Serialize};

pub type Tags = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    InstanceRole,
    Bucket,
    SsmParameter,
    SecurityGroup,
    LoadBalancer,
    DbSubnetGroup,
    DbParameterGroup,
    DbInstance,
    Instance,
    LaunchConfiguration,
    LaunchTemplate,
    AutoScalingGroup,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::InstanceRole => "instance_role",
            Kind::Bucket => "bucket",
            Kind::SsmParameter => "ssm_parameter",
            Kind::SecurityGroup => "security_group",
            Kind::LoadBalancer => "load_balancer",
            Kind::DbSubnetGroup => "db_subnet_group",
            Kind::DbParameterGroup => "db_parameter_group",
            Kind::DbInstance => "db_instance",
            Kind::Instance => "instance",
            Kind::LaunchConfiguration => "launch_configuration",
            Kind::LaunchTemplate => "launch_template",
            Kind::AutoScalingGroup => "autoscaling_group",
        }
    }
}

/// A resource's place in the environment: `security_group.web`,
/// `instance.cache[0]`, `db_instance.replica[1]`. Stable across runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Address {
    pub kind: Kind,
    pub name: String,
}

impl Address {
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Address {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.name)
    }
}

/// Where a VPC-bound resource lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VpcRef {
    Default,
    Id(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    Cidr(String),
    /// Another fabrs security group of the same environment, by its group
    /// key (`lb`, `web`, `worker`…), i.e. `security_group.<key>`.
    Group(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IngressRule {
    /// `tcp` or `udp`.
    pub protocol: String,
    pub from_port: u16,
    pub to_port: u16,
    pub source: RuleSource,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupSpec {
    /// The group key: `base`, `lb`, `web`, `worker`, `cache`, `queue`, `db`.
    pub key: String,
    pub name: String,
    pub description: String,
    pub vpc: VpcRef,
    pub ingress: BTreeSet<IngressRule>,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ListenerSpec {
    pub port: u16,
    /// HTTP, HTTPS, TCP, SSL.
    pub protocol: String,
    pub instance_port: u16,
    pub instance_protocol: String,
    pub certificate_arn: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckSpec {
    /// `HTTPS:443/healthcheck.html`.
    pub target: String,
    pub interval_secs: u32,
    pub timeout_secs: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerSpec {
    pub name: String,
    pub listeners: Vec<ListenerSpec>,
    pub health_check: HealthCheckSpec,
    /// Group keys (`lb`).
    pub security_groups: Vec<String>,
    /// Subnet ids; empty means the default VPC's availability zones.
    pub subnets: Vec<String>,
    pub cross_zone: bool,
    pub idle_timeout_secs: u32,
    /// Connection draining: `Some(timeout in seconds)` when on (always, in a
    /// desired spec: `load_balancer.draining_timeout`); `None` read back
    /// from a load balancer that has it off.
    pub connection_draining_secs: Option<u32>,
    /// Listener port → the AWS predefined security policy its SSL
    /// negotiation policy references (`Reference-Security-Policy`), for
    /// every HTTPS/SSL listener ([`TLS_SECURITY_POLICY`]: no TLS below 1.2).
    /// A listener without such a policy is absent.
    #[serde(with = "port_map")]
    pub tls_policies: BTreeMap<u16, String>,
    pub tags: Tags,
}

/// Port-keyed maps as JSON objects keyed by the port as text, both ways
/// (serde_json writes integer keys as strings but cannot read them back
/// through the buffer of `Spec`'s internally tagged enum: a saved plan).
mod port_map {
    use std::collections::BTreeMap;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<u16, String>, s: S) -> Result<S::Ok, S::Error> {
        m.iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<String, &String>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u16, String>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| {
                k.parse()
                    .map(|p| (p, v))
                    .map_err(|_| D::Error::custom(format!("`{k}` is not a port")))
            })
            .collect()
    }
}

/// The predefined classic-ELB security policy every HTTPS/SSL listener
/// references: TLS 1.2 only.
pub const TLS_SECURITY_POLICY: &str = "ELBSecurityPolicy-TLS-1-2-2017-01";

/// Instance metadata service as fabrs launches it: IMDSv2 only (a token is
/// required, so a server-side request forgery cannot read the role's
/// credentials with a plain GET), hop limit 1. One hop is enough: the app
/// and awscli run on the host itself, not in containers (a container's
/// extra network hop would need 2).
pub const IMDS_HTTP_TOKENS: &str = "required";
pub const IMDS_HOP_LIMIT: u32 = 1;

/// Root volumes: gp3, encrypted (with the account's default EBS key).
pub const ROOT_VOLUME_TYPE: &str = "gp3";

/// What an instance of a role is launched with: shared by launch
/// configurations, launch templates and fixed instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub role: RoleKind,
    pub image_id: String,
    pub instance_type: String,
    /// Group keys (`base`, `web`…).
    pub security_groups: Vec<String>,
    pub key_name: Option<String>,
    pub volume_gb: u32,
    /// The instance profile (by name) the servers run with: their role's
    /// `instance_role`. `None` only on what was made before fabrs made roles.
    pub instance_profile: Option<String>,
    /// The root volume's EBS type ([`ROOT_VOLUME_TYPE`]); empty where the
    /// cloud did not report one.
    pub volume_type: String,
    /// The root volume is encrypted.
    pub volume_encrypted: bool,
    /// Instance metadata `HttpTokens` ([`IMDS_HTTP_TOKENS`]: IMDSv2 only);
    /// empty where the cloud reported no metadata options (AWS's default,
    /// which allows IMDSv1).
    pub metadata_http_tokens: String,
    /// Instance metadata `HttpPutResponseHopLimit` ([`IMDS_HOP_LIMIT`]); 0
    /// where not reported.
    pub metadata_hop_limit: u32,
    /// SHA-256 of the role's user-data rendered with secret placeholders; the
    /// real user-data carries it in a `# fabrs:user-data-sha256=` line. `None`:
    /// known only after apply (it depends on addresses not yet known).
    pub user_data_sha256: Option<String>,
    /// The release revision the user-data installs (`None`: no release, as
    /// on the cache server; written `none`).
    #[serde(with = "fabrs_config::revision::serde_or_none")]
    pub revision: Option<Revision>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchConfigurationSpec {
    /// `<project>-<env>-<role>-<revision>-<hash8 of the launch spec>`: the same
    /// content always gets the same name, so a rerun never makes a duplicate.
    /// Empty while the launch spec is not fully known.
    pub name: String,
    pub launch: LaunchSpec,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateSpec {
    pub name: String,
    /// The version's content; its description carries the revision.
    pub launch: LaunchSpec,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchRef {
    /// By launch configuration name (as observed; empty in a desired spec
    /// until the configuration exists).
    Configuration(String),
    /// Launch template by name, at a version (observed) or `$Latest`-to-be (desired: None).
    Template { name: String, version: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoScalingGroupSpec {
    pub name: String,
    pub role: RoleKind,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    pub launch: LaunchRef,
    /// Classic load balancer names.
    pub load_balancers: Vec<String>,
    /// Subnet ids (VPCZoneIdentifier); empty: all of the default VPC's zones.
    pub subnets: Vec<String>,
    /// `desired::health_check_type`: `ELB` for web once it installs a
    /// release (the load balancer's health decides), `EC2` otherwise.
    pub health_check_type: String,
    pub health_check_grace_secs: u32,
    /// Propagated to instances at launch.
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub role: RoleKind,
    pub index: u32,
    pub launch: LaunchSpec,
    /// Registered with the load balancer (fixed web servers).
    pub load_balancer: Option<String>,
    pub subnet: Option<String>,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbSubnetGroupSpec {
    pub name: String,
    pub description: String,
    /// Empty: the default VPC's subnets.
    pub subnets: Vec<String>,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbParameterGroupSpec {
    pub name: String,
    /// e.g. `postgres16`.
    pub family: String,
    pub description: String,
    pub parameters: BTreeMap<String, String>,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInstanceSpec {
    pub identifier: String,
    /// `None` for the master; the master's identifier for a read replica.
    pub replica_of: Option<String>,
    pub instance_class: String,
    pub engine: String,
    /// A major version (`16`: RDS picks the minor) or a full one (`16.9`). An
    /// observed version satisfies a desired one of the same major that is not
    /// newer (`plan::engine_version_satisfied`): automatic minor upgrades are
    /// not changes.
    pub engine_version: String,
    pub storage_gb: u32,
    pub db_name: String,
    pub username: String,
    /// The secret holding the master password (its name, never its value).
    pub password_secret: String,
    pub multi_az: bool,
    pub publicly_accessible: bool,
    pub backup_retention_days: u32,
    /// Group keys (`db`).
    pub security_groups: Vec<String>,
    pub subnet_group: String,
    /// A read replica uses its master's group (RDS refuses one for a
    /// PostgreSQL replica in its create call): the same name here.
    pub parameter_group: String,
    /// RDS deletion protection (the file's `database.deletion_protection` on
    /// the master; off on replicas).
    #[serde(default)]
    pub deletion_protection: bool,
    pub tags: Tags,
}

/// One statement of an IAM policy: `Allow` these actions on these resources.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyStatement {
    pub sid: String,
    pub actions: BTreeSet<String>,
    pub resources: BTreeSet<String>,
}

/// A role's servers' identity: an IAM role (EC2 may assume it) with one
/// inline policy, and the instance profile of the same name that launch
/// templates, launch configurations and instances name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRoleSpec {
    pub role: RoleKind,
    /// The IAM role's name, also the instance profile's.
    pub name: String,
    /// `/fabrs/<project>/<environment>/`.
    pub path: String,
    /// The inline policy `fabrs` (least privilege: see `iam::role_policy`).
    pub policy: Vec<PolicyStatement>,
    /// The instance profile holding the role (its name; empty when the
    /// profile is missing or does not hold the role: repaired in place).
    pub profile: String,
    pub tags: Tags,
}

/// An S3 bucket fabrs owns (the environment's photo bucket, the project's
/// artifact bucket): private, encrypted, its objects owned by the bucket
/// owner (ACLs off); the artifact bucket versioned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSpec {
    pub name: String,
    /// All four public access blocks on.
    pub block_public_access: bool,
    /// Default encryption: `AES256` (SSE-S3) or `aws:kms`; empty: none.
    pub encryption: String,
    /// Object ownership: `BucketOwnerEnforced` (ACLs disabled).
    pub object_ownership: String,
    /// Versioning enabled (off: never enabled, or suspended).
    #[serde(default)]
    pub versioned: bool,
    pub tags: Tags,
}

/// One of the environment's secrets in SSM Parameter Store, which servers
/// read at boot with their instance role (`/usr/local/sbin/fabrs-fetch-secrets`).
/// The value itself is never here: only its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsmParameterSpec {
    /// The secret's name in the environment file (`db_password`).
    pub secret: String,
    /// `/<project>/<environment>/<secret>`.
    pub name: String,
    /// Always `SecureString` (encrypted with the account's `aws/ssm` key).
    pub parameter_type: String,
    /// `ssm::fingerprint` of the value (Argon2id, salted with the name),
    /// kept in the parameter's `fabrs:fingerprint` tag. `None`: the value
    /// was not given to this plan (a plan without secrets).
    pub fingerprint: Option<String>,
    /// Ownership tags (without the fingerprint tag).
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spec {
    InstanceRole(InstanceRoleSpec),
    Bucket(BucketSpec),
    SsmParameter(SsmParameterSpec),
    SecurityGroup(SecurityGroupSpec),
    LoadBalancer(LoadBalancerSpec),
    DbSubnetGroup(DbSubnetGroupSpec),
    DbParameterGroup(DbParameterGroupSpec),
    DbInstance(DbInstanceSpec),
    Instance(InstanceSpec),
    LaunchConfiguration(LaunchConfigurationSpec),
    LaunchTemplate(LaunchTemplateSpec),
    AutoScalingGroup(AutoScalingGroupSpec),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::InstanceRole(_) => Kind::InstanceRole,
            Spec::Bucket(_) => Kind::Bucket,
            Spec::SsmParameter(_) => Kind::SsmParameter,
            Spec::SecurityGroup(_) => Kind::SecurityGroup,
            Spec::LoadBalancer(_) => Kind::LoadBalancer,
            Spec::DbSubnetGroup(_) => Kind::DbSubnetGroup,
            Spec::DbParameterGroup(_) => Kind::DbParameterGroup,
            Spec::DbInstance(_) => Kind::DbInstance,
            Spec::Instance(_) => Kind::Instance,
            Spec::LaunchConfiguration(_) => Kind::LaunchConfiguration,
            Spec::LaunchTemplate(_) => Kind::LaunchTemplate,
            Spec::AutoScalingGroup(_) => Kind::AutoScalingGroup,
        }
    }
}

/// Runtime facts about an existing resource, not compared by the planner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `running`, `available`, `InService`…
    pub state: String,
    pub private_ip: Option<String>,
    /// RDS endpoint address, ELB DNS name.
    pub endpoint: Option<String>,
    /// Instances in an ASG or registered with an ELB, with their health.
    pub members: Vec<Member>,
    /// A bucket holds at least one object (or object version): destroy-env
    /// refuses to delete it unless told to empty it.
    #[serde(default)]
    pub holds_data: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub state: String,
    /// ELB health: `InService`, `OutOfService`, or empty when not registered.
    pub health: String,
    pub launch: String,
}

/// A resource the account has, proven to be this environment's by its tags
/// (or, for launch configurations, which cannot carry tags, by the ownership
/// line in their user-data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub address: Address,
    /// The cloud's id: `sg-…`, `i-…`, a name for ELBs/ASGs/LCs/RDS.
    pub id: String,
    pub spec: Spec,
    pub status: Status,
}

/// A resource in the way of one fabrs wants (same name) that fabrs cannot
/// prove it owns. fabrs never adopts, modifies or deletes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Foreign {
    pub address: Address,
    pub id: String,
    pub name: String,
}

/// Everything of one environment that exists, found by tags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub resources: BTreeMap<Address, Observed>,
    pub foreign: Vec<Foreign>,
    /// Every owned launch configuration, including ones no group uses (kept
    /// for rollback; pruned by deploy). Keyed by name.
    pub launch_configurations: BTreeMap<String, LaunchConfigurationSpec>,
    /// The user-data as read back, per address (launch configurations in
    /// use, launch templates' versions, fixed instances): for the plan's
    /// user-data diff. It may hold secret values: only ever shown through
    /// `review::userdata::redact`. Not part of the inventory fingerprint.
    #[serde(skip)]
    pub user_data: BTreeMap<Address, String>,
    /// The SSM parameters the file's `ami:` names (`resolve:ssm:…`), as
    /// discovery read them: parameter name → AMI id. A name missing here does
    /// not exist in the region. Part of the fingerprint: a saved plan is
    /// refused when a parameter moved to a new image since.
    #[serde(default)]
    pub image_parameters: BTreeMap<String, String>,
}
