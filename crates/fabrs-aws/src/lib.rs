//! fabrs's `Cloud` on the AWS SDK for Rust: IAM (instance roles), SSM
//! Parameter Store (the secrets servers read at boot), EC2 (security groups, instances,
//! launch templates), classic ELB, Auto Scaling (groups, launch
//! configurations) and RDS (PostgreSQL master, read replicas, subnet and
//! parameter groups); `Store` on S3 (`AwsCloud::store`). `preflight.rs`:
//! read-only checks of what the file names but fabrs does not make (AMIs,
//! the key pair, IAM and ACM certificates).
//!
//! Ownership is proven by tags (`fabrs:project`, `fabrs:environment`,
//! `managed-by: fabrs`), or for launch configurations, which cannot carry
//! tags, by the `# fabrs:owner=` line of their user-data.

mod discover;
mod ec2;
mod err;
mod kinds;
mod preflight;
mod rds;
mod roll;
mod s3;
mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_ec2::config::{ConfigBag, Intercept, Region, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;
use fabrs_cloud::{ApplyCtx, Cloud, CloudError, DbDelete, ErrorKind, Missing, Preconditions, Progress, Scope};
use fabrs_plan::resource::{Address, Inventory, Observed, Spec};

pub use err::LC_UNSUPPORTED;
pub use s3::S3Store;

/// How to reach AWS.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    pub region: String,
    /// Overrides `AWS_ENDPOINT_URL` (e.g. a moto server).
    pub endpoint_url: Option<String>,
    /// A named profile; otherwise `AWS_PROFILE` or the default chain.
    pub profile: Option<String>,
}

/// Counts API operations (one per call) and attempts (retries included).
#[derive(Debug, Default)]
struct CallCounter {
    operations: AtomicU64,
    attempts: AtomicU64,
}

#[derive(Debug, Clone)]
struct CountingInterceptor(Arc<CallCounter>);

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "fabrs-call-counter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.operations.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.attempts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The default VPC: its id and its default subnet per availability zone.
#[derive(Clone, Debug, Default)]
pub(crate) struct VpcInfo {
    pub vpc_id: String,
    pub default_subnets: BTreeMap<String, String>,
}

impl VpcInfo {
    pub fn zones(&self) -> Vec<String> {
        self.default_subnets.keys().cloned().collect()
    }
    pub fn subnet_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.default_subnets.values().cloned().collect();
        v.sort();
        v
    }
    /// Subnets as a spec reports them: empty when they are exactly the
    /// default VPC's default subnets (what an empty spec creates), else sorted.
    pub fn normalise_subnets(&self, mut subnets: Vec<String>) -> Vec<String> {
        subnets.sort();
        subnets.dedup();
        if !subnets.is_empty() && subnets == self.subnet_ids() {
            Vec::new()
        } else {
            subnets
        }
    }
}

pub struct AwsCloud {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) elb: aws_sdk_elasticloadbalancing::Client,
    pub(crate) asg: aws_sdk_autoscaling::Client,
    pub(crate) rds: aws_sdk_rds::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) acm: aws_sdk_acm::Client,
    pub(crate) ssm: aws_sdk_ssm::Client,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) region: String,
    counter: Arc<CallCounter>,
    vpc: tokio::sync::OnceCell<VpcInfo>,
    root_devices: std::sync::Mutex<BTreeMap<String, String>>,
}

impl AwsCloud {
    /// Build the clients: the default credential chain (env, profile, SSO
    /// cache, IMDS…), standard retries (8 attempts, exponential backoff with
    /// jitter: throttling, 5xx and dropped connections are retried by the
    /// SDK), connect timeout 3 s, 20 s per attempt, 120 s per operation.
    pub async fn connect(opts: ConnectOptions) -> Result<AwsCloud, CloudError> {
        Self::connect_inner(opts, None).await
    }

    /// As `connect`, with static credentials instead of the default chain
    /// (tests, and tools that hold keys themselves).
    pub async fn connect_with_credentials(
        opts: ConnectOptions,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<AwsCloud, CloudError> {
        let creds = aws_sdk_ec2::config::Credentials::new(access_key_id, secret_access_key, None, None, "fabrs-static");
        Self::connect_inner(opts, Some(creds)).await
    }

    async fn connect_inner(
        opts: ConnectOptions,
        creds: Option<aws_sdk_ec2::config::Credentials>,
    ) -> Result<AwsCloud, CloudError> {
        if opts.region.trim().is_empty() {
            return Err(err::other("connect", "AWS", "no region given"));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(opts.region.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(8)
                    .with_initial_backoff(Duration::from_millis(250))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(e) = &opts.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        if let Some(c) = creds {
            loader = loader.credentials_provider(c);
        }
        let sdk = loader.load().await;
        let counter = Arc::new(CallCounter::default());
        let icpt = CountingInterceptor(counter.clone());
        Ok(AwsCloud {
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(&sdk)
                    .interceptor(icpt.clone())
                    .build(),
            ),
            elb: aws_sdk_elasticloadbalancing::Client::from_conf(
                aws_sdk_elasticloadbalancing::config::Builder::from(&sdk)
                    .interceptor(icpt.clone())
                    .build(),
            ),
            asg: aws_sdk_autoscaling::Client::from_conf(
                aws_sdk_autoscaling::config::Builder::from(&sdk)
                    .interceptor(icpt.clone())
                    .build(),
            ),
            rds: aws_sdk_rds::Client::from_conf(
                aws_sdk_rds::config::Builder::from(&sdk)
                    .interceptor(icpt.clone())
                    .build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&sdk)
                    .interceptor(icpt.clone())
                    .build(),
            ),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(&sdk)
                    .interceptor(icpt.clone())
                    .build(),
            ),
            acm: aws_sdk_acm::Client::from_conf(
                aws_sdk_acm::config::Builder::from(&sdk)
                    .interceptor(icpt.clone())
                    .build(),
            ),
            // Path-style addressing (`endpoint/bucket/key`): what moto and
            // other local endpoints need; AWS accepts it for these names.
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .interceptor(icpt)
                    .force_path_style(true)
                    .build(),
            ),
            region: opts.region.clone(),
            counter,
            vpc: tokio::sync::OnceCell::new(),
            root_devices: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// The object store on one bucket (the client is shared, its calls are
    /// counted by `api_calls`).
    pub fn store(&self, bucket: &str) -> S3Store {
        S3Store::new(self.s3.clone(), bucket)
    }

    /// (API operations, attempts) made since connect or the last reset.
    pub fn api_calls(&self) -> (u64, u64) {
        (
            self.counter.operations.load(Ordering::Relaxed),
            self.counter.attempts.load(Ordering::Relaxed),
        )
    }

    pub fn reset_api_calls(&self) {
        self.counter.operations.store(0, Ordering::Relaxed);
        self.counter.attempts.store(0, Ordering::Relaxed);
    }

    /// The default VPC (looked up once). An account without one gets an
    /// empty id; what needs it then fails with NotFound.
    pub(crate) async fn default_vpc(&self) -> Result<&VpcInfo, CloudError> {
        self.vpc
            .get_or_try_init(|| async {
                use aws_sdk_ec2::types::Filter;
                // Both at once: default subnets (one per zone) exist only
                // in the default VPC; the VPC id then picks them out.
                let (vpcs, subnets) = futures::try_join!(
                    async {
                        self.ec2
                            .describe_vpcs()
                            .filters(Filter::builder().name("isDefault").values("true").build())
                            .send()
                            .await
                            .map_err(|e| err::sdk("DescribeVpcs", "default VPC", e))
                    },
                    async {
                        self.ec2
                            .describe_subnets()
                            .filters(Filter::builder().name("default-for-az").values("true").build())
                            .into_paginator()
                            .items()
                            .send()
                            .try_collect()
                            .await
                            .map_err(|e| err::sdk("DescribeSubnets", "default VPC subnets", e))
                    },
                )?;
                let Some(vpc_id) = vpcs.vpcs().first().and_then(|v| v.vpc_id()).map(str::to_string) else {
                    return Ok(VpcInfo::default());
                };
                let mut default_subnets = BTreeMap::new();
                for s in subnets.iter().filter(|s| s.vpc_id() == Some(vpc_id.as_str())) {
                    if let (Some(az), Some(id)) = (s.availability_zone(), s.subnet_id()) {
                        default_subnets.insert(az.to_string(), id.to_string());
                    }
                }
                Ok(VpcInfo {
                    vpc_id,
                    default_subnets,
                })
            })
            .await
    }

    pub(crate) async fn vpc_id(
        &self,
        vpc: &fabrs_plan::resource::VpcRef,
        resource: &str,
    ) -> Result<String, CloudError> {
        match vpc {
            fabrs_plan::resource::VpcRef::Id(id) => Ok(id.clone()),
            fabrs_plan::resource::VpcRef::Default => {
                let v = self.default_vpc().await?;
                if v.vpc_id.is_empty() {
                    Err(err::not_found(
                        "DescribeVpcs",
                        resource,
                        "this account/region has no default VPC: set a vpc id in the environment file",
                    ))
                } else {
                    Ok(v.vpc_id.clone())
                }
            }
        }
    }

    /// The root device name of an AMI (`/dev/xvda` when the image cannot be
    /// described, e.g. on a test server).
    pub(crate) async fn root_device(&self, image_id: &str) -> String {
        if let Some(d) = self.root_devices.lock().unwrap().get(image_id) {
            return d.clone();
        }
        let found = self
            .ec2
            .describe_images()
            .image_ids(image_id)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.images()
                    .first()
                    .and_then(|i| i.root_device_name().map(str::to_string))
            });
        let dev = found.unwrap_or_else(|| "/dev/xvda".to_string());
        self.root_devices
            .lock()
            .unwrap()
            .insert(image_id.to_string(), dev.clone());
        dev
    }
}

impl Cloud for AwsCloud {
    async fn discover(&self, scope: &Scope) -> Result<Inventory, CloudError> {
        discover::discover(self, scope).await
    }

    async fn create(&self, address: &Address, spec: &Spec, ctx: &ApplyCtx) -> Result<Observed, CloudError> {
        let gmap = util::GroupMap::from_ctx(ctx);
        self.create_kind(address, spec, ctx, &gmap).await
    }

    async fn update(&self, current: &Observed, desired: &Spec, ctx: &ApplyCtx) -> Result<Observed, CloudError> {
        let mut gmap = util::GroupMap::from_ctx(ctx);
        if let Spec::SecurityGroup(s) = desired {
            gmap.insert(&current.id, &s.key);
        }
        self.update_kind(current, desired, ctx, &gmap).await
    }

    async fn delete(&self, current: &Observed) -> Result<(), CloudError> {
        let r = self.delete_kind(current).await;
        match r {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    async fn delete_database(&self, current: &Observed, how: &DbDelete) -> Result<(), CloudError> {
        let Spec::DbInstance(db) = &current.spec else {
            return Err(err::other(
                "DeleteDBInstance",
                &util::describe(&current.address, &current.spec),
                "not a database instance",
            ));
        };
        match crate::kinds::db_instance::delete_db(self, db, how).await {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    async fn empty_bucket(&self, current: &Observed) -> Result<u64, CloudError> {
        match &current.spec {
            Spec::Bucket(s) => crate::kinds::bucket::empty_bucket(self, &s.name).await,
            other => Err(err::other(
                "DeleteObjects",
                &util::describe(&current.address, other),
                "not a bucket",
            )),
        }
    }

    async fn engine_versions(&self, engine: &str, major: &str) -> Result<Option<Vec<String>>, CloudError> {
        crate::kinds::db_instance::engine_versions(self, engine, major).await
    }

    async fn preflight(&self, p: &Preconditions) -> Result<Vec<Missing>, CloudError> {
        preflight::preflight(self, p).await
    }

    async fn wait(
        &self,
        current: &Observed,
        gone: bool,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<Observed, CloudError> {
        let what = format!(
            "{} {}",
            util::describe(&current.address, &current.spec),
            if gone { "to be deleted" } else { "to be ready" }
        );
        let start = Instant::now();
        let cap = kinds::backoff_cap(current.address.kind);
        let mut delay = Duration::from_secs(1);
        // How long the last look was after the one before: the most a change
        // of state can have gone unnoticed.
        let mut lag = Duration::ZERO;
        loop {
            let (done, state, obs) = self.poll(current, gone).await?;
            let elapsed = start.elapsed().as_secs();
            progress(&format!("waiting for {what}: {state} ({elapsed}s)"));
            if done {
                progress(&format!(
                    "{what}: {state} after {elapsed}s (noticed within {:.1}s of the change)",
                    lag.as_secs_f64()
                ));
                return Ok(obs);
            }
            if start.elapsed() + delay > timeout {
                return Err(CloudError::new(
                    ErrorKind::Timeout,
                    "wait",
                    util::describe(&current.address, &current.spec),
                    format!(
                        "timed out after {}s waiting for it {}; last state: {state}",
                        timeout.as_secs(),
                        if gone { "to be deleted" } else { "to be ready" }
                    ),
                ));
            }
            // ±20 %: waits started together do not poll in step.
            let jittered = delay.mul_f64(0.8 + 0.4 * fastrand::f64());
            tokio::time::sleep(jittered).await;
            lag = jittered;
            delay = (delay * 2).min(cap);
        }
    }
}

impl AwsCloud {
    /// One look at a resource for wait(): (done, state, observed). The spec
    /// is kept as it was; only the status is refreshed.
    async fn poll(&self, current: &Observed, gone: bool) -> Result<(bool, String, Observed), CloudError> {
        let (ready, status) = self.look(current).await?;
        let mut obs = current.clone();
        match status {
            None => {
                obs.status.state = "deleted".into();
                Ok((gone, "not found".into(), obs))
            }
            Some(st) => {
                let state = st.state.clone();
                let done = if gone {
                    matches!(state.as_str(), "terminated" | "deleted")
                } else {
                    ready
                };
                obs.status = st;
                Ok((done, state, obs))
            }
        }
    }
}
