//! What apply and rollout need from a cloud. The AWS implementation lives in
//! `fabrs-aws`; tests may use an in-memory one. No SDK type appears here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::time::Duration;

use fabrs_config::Revision;
use fabrs_config::secrets::SecretValue;
use fabrs_plan::resource::{Address, Inventory, Kind, Observed, Spec, VpcRef};

use crate::preflight::{Missing, Preconditions};

/// Which environment to look at, and the names its resources would have (to
/// find look-alikes that are in the way but not fabrs's).
#[derive(Clone, Debug)]
pub struct Scope {
    pub project: String,
    pub environment: String,
    pub region: String,
    pub vpc: VpcRef,
    /// Every desired resource's cloud name (SG name, ELB name, ASG name, LT
    /// name, RDS identifier, DB subnet/parameter group name, instance Name tag).
    pub names: BTreeMap<Address, String>,
    /// Launch configurations of this environment are named `<prefix>…`.
    pub launch_configuration_prefix: String,
    /// SSM parameters naming AMIs (`ami: resolve:ssm:…`) to read with the
    /// rest: their values land in `Inventory::image_parameters`.
    pub image_parameters: Vec<String>,
    /// The identifiers this environment's databases may have (the master,
    /// every replica a file may ask for): discovery asks RDS for these
    /// rather than for the account's every instance. Empty: every one.
    pub db_identifiers: Vec<String>,
    /// The kinds to look for; `None`, every kind. A deploy looks only for
    /// what it rolls and what its launches name (`Scope::for_deploy`).
    pub kinds: Option<BTreeSet<Kind>>,
}

impl Scope {
    /// Whether discovery looks for resources of `kind`.
    pub fn wants(&self, kind: Kind) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }

    /// What a deploy needs to know: the groups it rolls, their launch
    /// configurations or templates, and what the launches name (security
    /// groups by id; the database endpoints and the cache server's address
    /// in the user-data; the fixed servers migrations may run on). Not the
    /// buckets, roles, parameters, load balancer settings or database
    /// groups: a deploy changes none of them, and `fabrs plan` reviews them.
    pub fn for_deploy(mut self) -> Scope {
        self.kinds = Some(Scope::DEPLOY_KINDS.iter().copied().collect());
        self
    }

    /// The kinds of [`Scope::for_deploy`].
    pub const DEPLOY_KINDS: &[Kind] = &[
        Kind::AutoScalingGroup,
        Kind::LaunchConfiguration,
        Kind::LaunchTemplate,
        Kind::SecurityGroup,
        Kind::Instance,
        Kind::DbInstance,
    ];
}

/// Inputs of a create or update beyond the spec itself.
#[derive(Clone, Debug, Default)]
pub struct ApplyCtx {
    /// Cloud ids of this environment's resources known so far
    /// (`security_group.web` → `sg-…`): how specs' group keys become ids.
    pub ids: BTreeMap<Address, String>,
    /// For launch configurations, launch templates and instances: the full
    /// user-data (secrets resolved, marker lines included).
    pub user_data: Option<String>,
    /// For a database master: its password.
    pub db_password: Option<SecretValue>,
    /// For an SSM parameter: the secret's value (written, never read back).
    pub secret_value: Option<SecretValue>,
}

/// How a database instance is deleted (`destroy-env`'s flags). The default
/// takes no snapshot and leaves deletion protection alone (so a protected
/// database is refused by the cloud).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbDelete {
    /// The master's final snapshot identifier; `None`: no final snapshot.
    /// Read replicas never get one (RDS refuses it for them).
    pub final_snapshot: Option<String>,
    /// Turn deletion protection off first where it is on.
    pub disable_deletion_protection: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    /// Throttling or a 5xx that survived the retries.
    Transient,
    AccessDenied,
    /// The account refuses launch configurations (accounts created after 2024-10-01).
    LaunchConfigurationsUnsupported,
    /// The resource is still in use (a group referenced, a subnet group in use…).
    DependencyViolation,
    Timeout,
    Other,
}

/// One line for the user: the operation, the resource, what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudError {
    pub kind: ErrorKind,
    /// The API operation, e.g. `CreateSecurityGroup`.
    pub operation: String,
    /// The resource, e.g. `security group myproject-staging-web-sg`.
    pub resource: String,
    pub message: String,
}

impl CloudError {
    pub fn new(
        kind: ErrorKind,
        operation: impl Into<String>,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CloudError {
            kind,
            operation: operation.into(),
            resource: resource.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.operation, self.resource, self.message)
    }
}

impl std::error::Error for CloudError {}

/// Progress callback for long waits: receives a one-line status.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

pub trait Cloud: Send + Sync {
    /// Everything of the environment that exists, found by ownership tags
    /// (`fabrs:project`, `fabrs:environment`, `managed-by: fabrs`), one
    /// Describe call (plus pages) per resource type, run concurrently; plus
    /// look-alikes (same name, not provably fabrs's) as `Inventory::foreign`.
    fn discover(&self, scope: &Scope) -> impl Future<Output = Result<Inventory, CloudError>> + Send;

    /// Create the resource, tagged at creation. Must be safe to call again
    /// after a crash: a resource of the same name that is provably this
    /// environment's is adopted (returned), anything else is an error.
    fn create(
        &self,
        address: &Address,
        spec: &Spec,
        ctx: &ApplyCtx,
    ) -> impl Future<Output = Result<Observed, CloudError>> + Send;

    /// Bring an existing resource to `desired` in place.
    fn update(
        &self,
        current: &Observed,
        desired: &Spec,
        ctx: &ApplyCtx,
    ) -> impl Future<Output = Result<Observed, CloudError>> + Send;

    /// Delete a resource fabrs owns. Deleting something already gone is success.
    /// A database instance is deleted as `delete_database` with `DbDelete::default()`.
    fn delete(&self, current: &Observed) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Delete a database instance: its final snapshot (master only), deletion
    /// protection turned off first when asked. Already gone is success.
    fn delete_database(
        &self,
        current: &Observed,
        how: &DbDelete,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Delete every object (and object version) of a bucket fabrs owns, so
    /// that `delete` can remove it: `destroy-env --delete-bucket-contents`
    /// only. Returns how many were deleted.
    fn empty_bucket(&self, current: &Observed) -> impl Future<Output = Result<u64, CloudError>> + Send;

    /// Read-only: the versions of `engine` the cloud offers for new database
    /// instances in major `major` (RDS: DescribeDBEngineVersions). `None`
    /// when the endpoint does not implement the call (moto), so the check
    /// cannot be made.
    fn engine_versions(
        &self,
        engine: &str,
        major: &str,
    ) -> impl Future<Output = Result<Option<Vec<String>>, CloudError>> + Send;

    /// Read-only, before the first write of `create-env`: which of the
    /// preconditions the file names (AMIs, the key pair, listener
    /// certificates) the account does not have, all of them (empty: every
    /// one holds). An error only when a check could not be made at all
    /// (access denied, the endpoint down). Whether the account may create
    /// launch configurations is not checked: no read-only call tells (the
    /// create call's refusal is `ErrorKind::LaunchConfigurationsUnsupported`).
    fn preflight(&self, preconditions: &Preconditions)
    -> impl Future<Output = Result<Vec<Missing>, CloudError>> + Send;

    /// Wait until the resource is usable (an instance running with a private
    /// address, a database available with an endpoint) or gone (`gone = true`),
    /// reporting progress; fails with `ErrorKind::Timeout` naming what it waited for.
    fn wait(
        &self,
        current: &Observed,
        gone: bool,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> impl Future<Output = Result<Observed, CloudError>> + Send;
}

/// An autoscaling group as a roll sees it (pure data, defined next to the
/// deploy plan that decides from it).
pub use fabrs_plan::deploy::GroupNow;

/// The operations a rolling replacement needs beyond create/update/delete.
pub trait Fleet: Send + Sync {
    /// The group now (one Describe call, plus the load balancer's instance
    /// health when it has one). `NotFound` when there is no such group.
    fn group(&self, name: &str) -> impl Future<Output = Result<GroupNow, CloudError>> + Send;

    /// Set desired capacity (and max, which must allow it); min is unchanged.
    fn set_capacity(&self, name: &str, desired: u32, max: u32) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Point the group at a launch configuration / template version, set its
    /// health check type (`desired::health_check_type`: `ELB` once a group
    /// behind the load balancer installs a release) and tag it with the
    /// revision that launch installs (`None` is tagged `none`). Capacity is
    /// unchanged.
    fn switch_launch(
        &self,
        name: &str,
        launch: &fabrs_plan::resource::LaunchRef,
        revision: Option<&Revision>,
        health_check_type: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Take instances out of a classic load balancer.
    fn deregister(&self, load_balancer: &str, ids: &[String]) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Terminate an instance of a group, decrementing its desired capacity.
    /// An instance already gone is success.
    fn terminate(&self, id: &str) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Private addresses of instances (for SSH), by id; unknown ids are left out.
    fn addresses(&self, ids: &[String]) -> impl Future<Output = Result<BTreeMap<String, String>, CloudError>> + Send;

    /// Launch configuration name → creation time of the given configurations
    /// (any format that sorts by time), for pruning the oldest.
    fn launch_configuration_times(
        &self,
        names: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, String>, CloudError>> + Send;
}
