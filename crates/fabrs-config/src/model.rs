//! The validated environment: what the rest of fabrs works from.
//!
//! Values that later checks may need to point at keep their source location
//! (`At<T>`); everything here has passed every check of `crate::load`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::decode::At;

/// The file format version this fabrs understands.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug)]
pub struct Environment {
    /// The file this was loaded from.
    pub file: PathBuf,
    /// The project directory (holds `environments/`, optional `templates/` and `cloud-init/`).
    pub project_dir: PathBuf,
    pub project: String,
    pub name: String,
    pub region: String,
    pub network: Network,
    pub ami: Ami,
    pub ssh: Ssh,
    pub load_balancer: LoadBalancer,
    pub roles: BTreeMap<RoleKind, Role>,
    pub database: Database,
    pub app: App,
    pub artifacts: Artifacts,
    pub deploy: Deploy,
    pub secrets: BTreeMap<String, SecretDecl>,
    pub firewall: Vec<FirewallRule>,
    pub tags: BTreeMap<String, String>,
}

impl Environment {
    pub fn role(&self, kind: RoleKind) -> Option<&Role> {
        self.roles.get(&kind)
    }

    /// Where a revision's release artifact lives in the artifact bucket:
    /// `releases/<project>/<revision>/<app>.tar.gz`.
    pub fn artifact_key(&self, revision: &str) -> String {
        format!(
            "{}/{}/{}/{}.tar.gz",
            self.artifacts.prefix, self.project, revision, self.app.name
        )
    }

    /// `<prefix>-sg`, `<prefix>-web-sg`…: seed 004's names, with the prefix
    /// defaulting to `<project>-<environment>` so environments can share a VPC.
    pub fn group_name(&self, group: Group) -> String {
        match group {
            Group::Base => format!("{}-sg", self.network.security_group_prefix),
            g => format!("{}-{}-sg", self.network.security_group_prefix, g.as_str()),
        }
    }
}

/// The file's `tags:` may not set these keys: fabrs writes its own tags
/// (their names live in fabrs-plan's `addr`, which checks that each is
/// reserved here), `Name` included. AWS's own `aws:` prefix is refused by
/// `names::tag_key_problem` with its own message.
const TAG_MANAGED_BY: &str = "managed-by";
pub fn is_reserved_tag_key(key: &str) -> bool {
    key.starts_with("fabrs:") || key == TAG_MANAGED_BY || key == "Name"
}

#[derive(Clone, Debug)]
pub struct Network {
    pub vpc: Vpc,
    pub subnets: Vec<String>,
    pub admin_cidrs: Vec<At<IpNet>>,
    pub security_group_prefix: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vpc {
    Default,
    Id(String),
}

#[derive(Clone, Debug)]
pub struct Ssh {
    pub user: String,
    pub key_name: Option<String>,
    pub authorized_keys: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct LoadBalancer {
    pub listeners: Vec<Listener>,
    pub health_check: HealthCheck,
    /// Who may reach the load balancer (default: the internet, IPv4 and IPv6).
    pub ingress_cidrs: Vec<At<IpNet>>,
    pub idle_timeout: Duration,
    pub cross_zone: bool,
    /// Connection draining, always on: how long the ELB lets in-flight
    /// requests of a deregistered instance finish (1 s to 1 h; default 300 s).
    pub draining_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Https,
    Tcp,
    Ssl,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tcp => "TCP",
            Protocol::Ssl => "SSL",
        }
    }
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "HTTP" => Some(Protocol::Http),
            "HTTPS" => Some(Protocol::Https),
            "TCP" => Some(Protocol::Tcp),
            "SSL" => Some(Protocol::Ssl),
            _ => None,
        }
    }
    pub fn is_secure(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Ssl)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub protocol: Protocol,
    pub instance_port: u16,
    pub instance_protocol: Protocol,
    pub certificate_arn: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// `HTTPS:443/healthcheck.html`, as the classic ELB API spells it.
    pub target: String,
    pub protocol: Protocol,
    pub port: u16,
    pub path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleKind {
    Web,
    Worker,
    Cache,
}

impl RoleKind {
    pub const ALL: [RoleKind; 3] = [RoleKind::Web, RoleKind::Worker, RoleKind::Cache];
    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::Web => "web",
            RoleKind::Worker => "worker",
            RoleKind::Cache => "cache",
        }
    }
    pub fn parse(s: &str) -> Option<RoleKind> {
        RoleKind::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for RoleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The image a role's servers boot: an AMI id, or an SSM parameter that
/// names one, written as AWS writes it in a launch template's `ImageId`
/// (`resolve:ssm:/aws/service/debian/release/12/latest/amd64`, Debian's
/// public parameter). fabrs resolves a parameter at plan time, so a plan
/// shows the AMI id it will launch, and a saved plan holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ami {
    Id(String),
    Parameter(String),
}

impl Ami {
    /// AWS's prefix for an `ImageId` read from Parameter Store.
    pub const SSM_PREFIX: &'static str = "resolve:ssm:";

    /// The SSM parameter's name, when the image is one.
    pub fn parameter(&self) -> Option<&str> {
        match self {
            Ami::Parameter(name) => Some(name),
            Ami::Id(_) => None,
        }
    }
}

impl std::fmt::Display for Ami {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ami::Id(id) => f.write_str(id),
            Ami::Parameter(name) => write!(f, "{}{name}", Ami::SSM_PREFIX),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Role {
    pub kind: RoleKind,
    pub instance_type: String,
    pub ami: Ami,
    pub scaling: Scaling,
    pub volume_gb: u32,
    /// Worker processes' concurrency (worker role), rendered into the app's environment.
    pub concurrency: u32,
    /// Cache + queue role: which services it runs.
    pub cache: CacheEngine,
    pub queue: QueueEngine,
    pub cache_password_secret: Option<String>,
    pub queue_password_secret: Option<String>,
}

impl Role {
    pub fn is_autoscaled(&self) -> bool {
        matches!(self.scaling, Scaling::Auto { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaling {
    Fixed {
        count: u32,
    },
    Auto {
        min: u32,
        max: u32,
        desired: u32,
        launch: Launch,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Launch {
    Configuration,
    Template,
}

impl Launch {
    pub fn as_str(self) -> &'static str {
        match self {
            Launch::Configuration => "configuration",
            Launch::Template => "template",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheEngine {
    Redis,
    Memcached,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueEngine {
    Rabbitmq,
    Redis,
    None,
}

/// The most read replicas a file may ask for (`database.replicas`).
pub const MAX_REPLICAS: u32 = 5;

#[derive(Clone, Debug)]
pub struct Database {
    pub engine: String,
    pub engine_version: String,
    pub instance_class: String,
    pub replica_instance_class: String,
    pub storage_gb: u32,
    pub name: String,
    pub username: String,
    pub password_secret: String,
    /// At most [`MAX_REPLICAS`].
    pub replicas: u32,
    pub backup_retention_days: u32,
    pub multi_az: bool,
    pub publicly_accessible: At<bool>,
    pub parameters: BTreeMap<String, String>,
    /// RDS deletion protection on the master (default true): `destroy-env`
    /// refuses it unless told to turn it off.
    pub deletion_protection: bool,
}

#[derive(Clone, Debug)]
pub struct App {
    pub name: String,
    /// Where the app stores photos and renditions (default `<project>-<environment>-photos`).
    pub photos_bucket: Option<String>,
    pub server_names: Vec<crate::formats::NginxServerName>,
    pub port: u16,
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct Artifacts {
    pub bucket: String,
    pub prefix: String,
}

#[derive(Clone, Debug)]
pub struct Deploy {
    pub batch_size: u32,
    pub healthy_floor: u32,
    pub health_timeout: Duration,
    pub lock_wait: Duration,
    pub keep_launch_configurations: u32,
    pub migrate_on: RoleKind,
    /// Run over SSH on one server of `migrate_on` before a new revision is
    /// rolled out; `{revision}` is replaced by the revision.
    pub migrate_command: String,
}

/// The installer cloud-init puts on every app server can fetch a release
/// and run its migrations without switching to it.
pub const DEFAULT_MIGRATE_COMMAND: &str = "sudo -n /usr/local/sbin/fabrs-install-release --migrate {revision}";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretDecl {
    pub name: String,
    pub source: SecretSource,
    pub loc: crate::diag::Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// A security group fabrs manages: the base group, one per role, the load
/// balancer's, the queue's and the database's (seed 001 and 004).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Base,
    Lb,
    Web,
    Worker,
    Cache,
    Queue,
    Db,
}

impl Group {
    pub const ALL: [Group; 7] = [
        Group::Base,
        Group::Lb,
        Group::Web,
        Group::Worker,
        Group::Cache,
        Group::Queue,
        Group::Db,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Base => "base",
            Group::Lb => "lb",
            Group::Web => "web",
            Group::Worker => "worker",
            Group::Cache => "cache",
            Group::Queue => "queue",
            Group::Db => "db",
        }
    }
    pub fn parse(s: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An extra ingress rule declared in the file's `firewall:` list.
#[derive(Clone, Debug)]
pub struct FirewallRule {
    pub to: At<Group>,
    pub from: At<Source>,
    pub protocol: IpProtocol,
    pub ports: At<(u16, u16)>,
    pub description: Option<String>,
    pub loc: crate::diag::Loc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpProtocol {
    Tcp,
    Udp,
}

impl IpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            IpProtocol::Tcp => "tcp",
            IpProtocol::Udp => "udp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Cidr(IpNet),
    Group(Group),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Cidr(c) => write!(f, "{c}"),
            Source::Group(g) => write!(f, "group {g}"),
        }
    }
}
