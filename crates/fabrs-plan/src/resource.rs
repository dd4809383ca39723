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

pub use crate::kinds::*;
use serde::{Deserialize, Serialize};

pub type Tags = BTreeMap<String, String>;

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

/// Port-keyed maps as JSON objects keyed by the port as text, both ways
/// (serde_json writes integer keys as strings but cannot read them back
/// through the buffer of `Spec`'s internally tagged enum: a saved plan).
pub(crate) mod port_map {
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
#[serde(rename_all = "snake_case")]
pub enum LaunchRef {
    /// By launch configuration name (`None` in a desired spec until the
    /// configuration's content, and so its name, is known; read back `None`
    /// from a group that names no launch at all).
    Configuration(Option<String>),
    /// Launch template by name, at a version (observed) or `$Latest`-to-be (desired: None).
    Template { name: String, version: Option<String> },
}

/// One statement of an IAM policy: `Allow` these actions on these resources.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyStatement {
    pub sid: String,
    pub actions: BTreeSet<String>,
    pub resources: BTreeSet<String>,
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
    /// A launch template's latest version (what deploy points its group at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<u64>,
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
