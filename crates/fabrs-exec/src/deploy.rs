//! `fabrs deploy`, `rotate` and `rollback`: put a revision (or the current
//! file's launch settings) on an environment's autoscaled roles.
//!
//! The order, each step bounded in time:
//! 1. preflight (no change): the artifact exists, the plan's only changes are
//!    launch configurations / template versions and the groups' pointers to
//!    them (anything else: run `create-env` first);
//! 2. the deploy lock: an object written with `If-None-Match: *`;
//! 3. migrations, once, on one server of `deploy.migrate_on`, over SSH;
//! 4. per role, worker then web: a new launch configuration (or template
//!    version) carrying the revision, the group pointed at it, and the roll
//!    ([`fabrs_plan::rollout`]) replacing the instances that were there
//!    before, health-gated, rolling back on timeout;
//! 5. launch configurations beyond the newest N pruned (never the one in use
//!    or the previous one);
//! 6. an audit record; the lock released, on failure and interruption too.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fabrs_config::revision::or_none;
use fabrs_config::secrets::Secrets;
use fabrs_config::{Environment, Revision, RoleKind};
use fabrs_plan::addr;
use fabrs_plan::plan::{Action as PlanAction, Change};
use fabrs_plan::resource::{Address, Inventory, Kind, LaunchRef, Observed, Spec};
use fabrs_plan::rollout::{self, Event, Outcome, Rollout, RolloutConfig};
use fabrs_render::Renderer;
use serde::{Deserialize, Serialize};

use fabrs_cloud::{ApplyCtx, Cloud, CloudError, Fleet, PutOutcome, Remote, Store};

use crate::ops::{OpError, current_revision, make_plan};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Op(#[from] OpError),
    /// Bad input or a state deploy refuses to act on; nothing was changed.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Locked(String),
    #[error("migrations failed on {host} ({status}); nothing was rotated")]
    Migration { host: String, status: String },
    #[error("{0}")]
    RolledBack(String),
    #[error("{0}")]
    Aborted(String),
    #[error("interrupted; the lock was released{0}")]
    Interrupted(String),
}

/// What to put on the servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Deploy {
        revision: String,
    },
    /// The same revision, launch settings from the current file.
    Rotate {
        roles: Vec<RoleKind>,
    },
    /// Back to the revision before the current one, or the one named.
    Rollback {
        to: Option<String>,
    },
}

impl Operation {
    pub fn verb(&self) -> &'static str {
        match self {
            Operation::Deploy { .. } => "deploy",
            Operation::Rotate { .. } => "rotate",
            Operation::Rollback { .. } => "rollback",
        }
    }
}

/// Knobs of one run: the file's `deploy:` section, overridden by flags.
#[derive(Clone, Debug)]
pub struct Settings {
    pub batch_size: u32,
    pub healthy_floor: u32,
    pub health_timeout: Duration,
    pub lock_wait: Duration,
    pub keep_launch_configurations: u32,
    /// How often a roll looks at the group.
    pub poll: Duration,
    /// Delete a lock left by another deploy before taking it.
    pub break_lock: bool,
}

impl Settings {
    pub fn from_env(env: &Environment) -> Settings {
        Settings {
            batch_size: env.deploy.batch_size,
            healthy_floor: env.deploy.healthy_floor,
            health_timeout: env.deploy.health_timeout,
            lock_wait: env.deploy.lock_wait,
            keep_launch_configurations: env.deploy.keep_launch_configurations,
            poll: Duration::from_secs(2),
            break_lock: false,
        }
    }
}

/// Who runs the deploy (for the lock and the audit trail).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    pub who: String,
    pub host: String,
}

/// Progress lines for the printer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A step starts.
    Step(String),
    /// Something happened within a step.
    Info(String),
    /// Output of a remote command, per host.
    Remote { host: String, line: String },
}

pub type Notes<'a> = &'a (dyn Fn(Note) + Send + Sync);

/// One role's part of a deploy.
#[derive(Clone, Debug)]
pub struct RolePlan {
    pub role: RoleKind,
    pub group: String,
    pub load_balancer: Option<String>,
    /// The instances to replace (the group's members now).
    pub old: Vec<String>,
    pub desired: u32,
    /// What the group uses now (for the switch back), and its revision.
    pub from_launch: LaunchRef,
    pub from_revision: Option<String>,
    /// The launch configuration to create or the template to add a version to.
    pub change: Change,
    /// Human summary of the launch change (`+ launch configuration …`).
    pub summary: String,
}

#[derive(Clone, Debug)]
pub struct MigrateStep {
    pub instance: String,
    pub address: String,
    pub command: String,
}

/// Everything a deploy will do, computed without changing anything.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub operation: Operation,
    pub revision: String,
    pub from_revision: Option<String>,
    pub artifact: Option<String>,
    pub roles: Vec<RolePlan>,
    pub migrate: Option<MigrateStep>,
    inventory: Inventory,
    user_data: BTreeMap<RoleKind, String>,
}

impl Prepared {
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    /// The steps, for `--dry-run` and the log.
    pub fn steps(&self, env: &Environment, settings: &Settings) -> Vec<String> {
        let mut out = Vec::new();
        let from = self.from_revision.as_deref().unwrap_or("none");
        out.push(format!(
            "{} {} / {}: revision {from} -> {}",
            self.operation.verb(),
            env.project,
            env.name,
            self.revision
        ));
        if let Some(a) = &self.artifact {
            out.push(format!("artifact s3://{}/{a} exists", env.artifacts.bucket));
        }
        if self.roles.is_empty() {
            out.push("nothing to change: every group already runs this revision and launch settings".into());
            return out;
        }
        out.push(format!(
            "take the deploy lock s3://{}/{} (wait up to {})",
            env.artifacts.bucket,
            lock_key(env),
            human_duration(settings.lock_wait)
        ));
        if let Some(m) = &self.migrate {
            out.push(format!(
                "run migrations on {} ({}): {}",
                m.instance, m.address, m.command
            ));
        }
        for r in &self.roles {
            out.push(format!("{}: {}", r.role, r.summary));
            out.push(format!(
                "{}: point group {} at it, then replace {} instance(s) [{}] in batches of {} (healthy floor {}, {} per batch)",
                r.role,
                r.group,
                r.old.len(),
                r.old.join(", "),
                settings.batch_size,
                floor_for(settings, r.desired),
                human_duration(settings.health_timeout)
            ));
        }
        out.push(format!(
            "prune launch configurations beyond the newest {}",
            settings.keep_launch_configurations
        ));
        out.push(format!(
            "append the audit record under s3://{}/{}",
            env.artifacts.bucket,
            history_prefix(env)
        ));
        out
    }
}

fn floor_for(settings: &Settings, desired: u32) -> u32 {
    settings.healthy_floor.min(desired)
}

/// `[A-Za-z0-9._-]{1,64}`: it goes into launch configuration names, object
/// keys and shell commands.
pub fn check_revision(rev: &str) -> Result<Revision, DeployError> {
    Revision::parse(rev).map_err(|e| DeployError::Refused(e.to_string()))
}

pub fn lock_key(env: &Environment) -> String {
    format!("{}/{}/{}/deploy.lock", env.artifacts.prefix, env.project, env.name)
}

pub fn history_prefix(env: &Environment) -> String {
    format!("{}/{}/{}/history/", env.artifacts.prefix, env.project, env.name)
}

/// Work out what the operation would do. Changes nothing.
pub async fn prepare<C: Cloud + Fleet, S: Store>(
    cloud: &C,
    store: &S,
    env: &Environment,
    renderer: &Renderer,
    secrets: &Secrets,
    operation: &Operation,
) -> Result<Prepared, DeployError> {
    let names_only = fabrs_plan::desired::desired_state(env, &BTreeMap::new());
    let found = cloud.discover(&crate::ops::scope(env, &names_only)).await?;
    let current = current_revision(&found).map(|r| r.to_string());
    let revision = match operation {
        Operation::Deploy { revision } => revision.clone(),
        Operation::Rotate { .. } => current.clone().ok_or_else(|| {
            DeployError::Refused(format!(
                "{} / {} runs no release yet: deploy a revision first (`fabrs deploy {} --revision REV`)",
                env.project, env.name, env.name
            ))
        })?,
        Operation::Rollback { to: Some(r) } => r.clone(),
        Operation::Rollback { to: None } => previous_revision(store, env, current.as_deref()).await?,
    };
    let typed = check_revision(&revision)?;
    let artifact = env.artifact_key(&revision);
    match store.head(&artifact).await? {
        Some(_) => {}
        None => {
            return Err(DeployError::Refused(format!(
                "revision {revision} has no release artifact at s3://{}/{artifact}: push it first with \
                 `fabrs release push {} --revision {revision} PATH`; nothing was changed",
                store.bucket(),
                env.name
            )));
        }
    }

    let (plan, inventory, rendered) = make_plan(cloud, env, renderer, Some(&typed), Some(secrets)).await?;
    if !plan.conflicts.is_empty() {
        return Err(DeployError::Refused(format!(
            "the plan has conflicts: {}",
            plan.conflicts
                .iter()
                .map(|c| format!("{}: {}", c.address, c.message))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    let only: Option<BTreeSet<String>> = match operation {
        Operation::Rotate { roles } if !roles.is_empty() => {
            Some(roles.iter().map(|r| r.as_str().to_string()).collect())
        }
        _ => None,
    };
    let mut launch_changes: BTreeMap<String, Change> = BTreeMap::new();
    let mut drift = Vec::new();
    for c in &plan.changes {
        let role = c.address.name.clone();
        if only.as_ref().is_some_and(|o| !o.contains(&role))
            && matches!(
                c.address.kind,
                Kind::LaunchConfiguration | Kind::LaunchTemplate | Kind::AutoScalingGroup
            )
        {
            continue;
        }
        match (c.address.kind, c.action) {
            (Kind::LaunchConfiguration, PlanAction::Create | PlanAction::Replace)
            | (Kind::LaunchTemplate, PlanAction::Update) => {
                if !c.diffs.iter().all(|d| !d.known_after_apply) || c.desired.is_none() {
                    return Err(DeployError::Refused(format!(
                        "{}: its user-data is not fully known yet (the database or cache server is missing): \
                         run `fabrs create-env {}` first; nothing was changed",
                        c.address, env.name
                    )));
                }
                launch_changes.insert(role, c.clone());
            }
            (Kind::AutoScalingGroup, PlanAction::Update)
                if c.diffs
                    .iter()
                    .all(|d| d.attribute == "launch" || d.attribute == format!("tags.{}", addr::TAG_REVISION)) => {}
            (Kind::Instance, _) if !c.address.name.starts_with("cache[") => {
                return Err(DeployError::Refused(format!(
                    "role {} runs fixed instances: deploy rolls autoscaling groups only (use `launch: configuration` \
                     or `launch: template` with `autoscaling:`); nothing was changed",
                    c.address.name
                )));
            }
            _ => drift.push(format!("{} ({:?})", c.address, c.action)),
        }
    }
    if !drift.is_empty() {
        return Err(DeployError::Refused(format!(
            "the environment differs from {} beyond launch settings: {}. Review `fabrs plan {}` and apply it \
             with `fabrs create-env {}` first; deploy only rolls launch configurations. Nothing was changed",
            env.name,
            drift.join(", "),
            env.name,
            env.name
        )));
    }

    // Worker first (it runs the new code against the migrated schema before
    // users see it), then web.
    let mut roles = Vec::new();
    for role in [RoleKind::Worker, RoleKind::Web] {
        let Some(change) = launch_changes.remove(role.as_str()) else {
            continue;
        };
        let group_addr = addr::autoscaling_group(role);
        let Some(group_obs) = inventory.resources.get(&group_addr) else {
            return Err(DeployError::Refused(format!(
                "{group_addr} does not exist: run `fabrs create-env {}` first; nothing was changed",
                env.name
            )));
        };
        let g = cloud.group(&group_obs.id).await?;
        let from_launch = match &g.launch {
            LaunchRef::Template { name, version } => {
                let numbered = version.as_deref().filter(|v| v.chars().all(|c| c.is_ascii_digit()));
                let v = match numbered {
                    Some(v) => v.to_string(),
                    None => inventory
                        .resources
                        .get(&addr::launch_template(role))
                        .and_then(|o| template_version(o))
                        .ok_or_else(|| {
                            DeployError::Refused(format!(
                                "launch template {name}: its current version is unknown; nothing was changed"
                            ))
                        })?,
                };
                LaunchRef::Template {
                    name: name.clone(),
                    version: Some(v),
                }
            }
            other => other.clone(),
        };
        let old: Vec<String> = g
            .members
            .iter()
            .filter(|m| !m.state.starts_with("Terminat"))
            .map(|m| m.id.clone())
            .collect();
        let summary = match (&change.desired, c_kind(&change)) {
            (Some(Spec::LaunchConfiguration(lc)), _) => format!("+ launch configuration {}", lc.name),
            (Some(Spec::LaunchTemplate(lt)), _) => {
                format!(
                    "+ launch template {} new version (revision {})",
                    lt.name,
                    or_none(lt.launch.revision.as_ref())
                )
            }
            _ => format!("{}", change.address),
        };
        roles.push(RolePlan {
            role,
            group: g.name.clone(),
            load_balancer: g.load_balancers.first().cloned(),
            desired: g.desired,
            old,
            from_launch,
            from_revision: g.revision.as_ref().map(Revision::to_string),
            change,
            summary,
        });
    }

    let changes_code = current.as_deref() != Some(revision.as_str());
    let migrate = if roles.is_empty() || !changes_code {
        None
    } else {
        Some(migrate_target(cloud, env, &inventory, &revision).await?)
    };
    Ok(Prepared {
        operation: operation.clone(),
        revision,
        from_revision: current,
        artifact: Some(artifact),
        roles,
        migrate,
        inventory,
        user_data: rendered.user_data,
    })
}

fn c_kind(c: &Change) -> Kind {
    c.address.kind
}

/// `version N` in a launch template's observed state.
fn template_version(o: &Observed) -> Option<String> {
    o.status
        .state
        .strip_prefix("version ")
        .map(str::to_string)
        .filter(|v| !v.is_empty())
}

async fn migrate_target<C: Cloud + Fleet>(
    cloud: &C,
    env: &Environment,
    inventory: &Inventory,
    revision: &str,
) -> Result<MigrateStep, DeployError> {
    let role = env.deploy.migrate_on;
    let mut candidates: Vec<String> = Vec::new();
    if let Some(g) = inventory.resources.get(&addr::autoscaling_group(role)) {
        let now = cloud.group(&g.id).await?;
        candidates.extend(
            now.members
                .iter()
                .filter(|m| m.state == "InService")
                .map(|m| m.id.clone()),
        );
    }
    if let Some(i) = inventory.resources.get(&addr::instance(role, 0)) {
        candidates.push(i.id.clone());
    }
    candidates.sort();
    let addresses = cloud.addresses(&candidates).await?;
    let Some((instance, address)) = candidates
        .iter()
        .find_map(|id| addresses.get(id).map(|a| (id.clone(), a.clone())))
    else {
        return Err(DeployError::Refused(format!(
            "no running {role} server to run the migrations on (deploy.migrate_on); nothing was changed"
        )));
    };
    Ok(MigrateStep {
        instance,
        address,
        command: env.deploy.migrate_command.replace("{revision}", revision),
    })
}

/// The revision the current one replaced, from the audit trail.
async fn previous_revision<S: Store>(
    store: &S,
    env: &Environment,
    current: Option<&str>,
) -> Result<String, DeployError> {
    let records = history(store, env).await?;
    let current = current.ok_or_else(|| DeployError::Refused("nothing is deployed: nothing to roll back".into()))?;
    records
        .iter()
        .rev()
        .filter(|r| r.result == "succeeded" && r.revision == current)
        .find_map(|r| r.from_revision.clone().filter(|f| f != current && f != "none"))
        .ok_or_else(|| {
            DeployError::Refused(format!(
                "the audit trail names no revision before {current}: use `fabrs rollback {} --to REV`",
                env.name
            ))
        })
}

// ------------------------------------------------------------------ lock

/// The lock object's content.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockHolder {
    pub who: String,
    pub host: String,
    pub pid: u32,
    pub operation: String,
    pub revision: String,
    /// RFC 3339, UTC.
    pub since: String,
    pub since_epoch: u64,
}

impl LockHolder {
    pub fn describe(&self, now: u64) -> String {
        format!(
            "{}@{} (pid {}, {} of revision {}, since {}, {} ago)",
            self.who,
            self.host,
            self.pid,
            self.operation,
            self.revision,
            self.since,
            human_duration(Duration::from_secs(now.saturating_sub(self.since_epoch)))
        )
    }
}

pub struct Lock {
    key: String,
}

/// Take the environment's deploy lock: an object created only if absent
/// (`If-None-Match: *`), so of two deploys exactly one gets it. The other
/// waits up to `settings.lock_wait`, then fails naming the holder. A lock
/// is only broken when asked (`break_lock`).
pub async fn acquire<S: Store>(
    store: &S,
    env: &Environment,
    holder: &LockHolder,
    settings: &Settings,
    notes: Notes<'_>,
) -> Result<Lock, DeployError> {
    let key = lock_key(env);
    let body = serde_json::to_vec_pretty(holder).expect("lock serializes");
    let started = Instant::now();
    let mut told = false;
    if settings.break_lock {
        if let Some(old) = read_holder(store, &key).await? {
            notes(Note::Info(format!(
                "breaking the deploy lock held by {}",
                old.describe(epoch())
            )));
        }
        store.delete(&key).await?;
    }
    loop {
        if store.put_new(&key, body.clone(), BTreeMap::new()).await? == PutOutcome::Created {
            return Ok(Lock { key });
        }
        let held = read_holder(store, &key).await?;
        let who = held
            .as_ref()
            .map(|h| h.describe(epoch()))
            .unwrap_or_else(|| "another deploy (the lock was just released or is unreadable)".into());
        if started.elapsed() >= settings.lock_wait {
            return Err(DeployError::Locked(format!(
                "{} / {} is locked by {who}; waited {}. If that deploy is dead, re-run with --break-lock",
                env.project,
                env.name,
                human_duration(settings.lock_wait)
            )));
        }
        if !told {
            notes(Note::Info(format!(
                "waiting up to {} for the deploy lock held by {who}",
                human_duration(settings.lock_wait)
            )));
            told = true;
        }
        let left = settings.lock_wait.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(Duration::from_millis(500))).await;
    }
}

async fn read_holder<S: Store>(store: &S, key: &str) -> Result<Option<LockHolder>, DeployError> {
    Ok(store
        .get(key)
        .await?
        .and_then(|b| serde_json::from_slice::<LockHolder>(&b).ok()))
}

impl Lock {
    pub async fn release<S: Store>(self, store: &S) -> Result<(), CloudError> {
        store.delete(&self.key).await
    }
}

// ------------------------------------------------------------------ audit

/// One line of `fabrs history`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub operation: String,
    pub revision: String,
    pub from_revision: Option<String>,
    pub who: String,
    pub host: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub duration_secs: u64,
    /// `succeeded`, `rolled back`, `failed`, `interrupted`.
    pub result: String,
    pub message: String,
    /// Per role: the launch configuration / template version put in place.
    pub launches: BTreeMap<String, String>,
}

/// Records are separate objects (no read-modify-write, so no lost update),
/// named so that they sort by time.
pub async fn append_record<S: Store>(
    store: &S,
    env: &Environment,
    r: &Record,
    started_epoch: u64,
) -> Result<(), CloudError> {
    let key = format!(
        "{}{}-{}-{}.json",
        history_prefix(env),
        compact_time(started_epoch),
        std::process::id(),
        r.revision
    );
    let body = serde_json::to_vec_pretty(r).expect("records serialize");
    store.put_new(&key, body, BTreeMap::new()).await.map(|_| ())
}

pub async fn history<S: Store>(store: &S, env: &Environment) -> Result<Vec<Record>, DeployError> {
    let keys = store.list(&history_prefix(env)).await?;
    let mut out = Vec::new();
    for k in keys {
        if let Some(b) = store.get(&k).await? {
            match serde_json::from_slice::<Record>(&b) {
                Ok(r) => out.push(r),
                Err(e) => {
                    return Err(DeployError::Refused(format!(
                        "audit record s3://{}/{k} is unreadable: {e}",
                        store.bucket()
                    )));
                }
            }
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------ run

/// The result of a run that did not fail outright.
#[derive(Clone, Debug)]
pub struct Report {
    pub record: Record,
    /// False when, under the lock, there was nothing left to do (another
    /// deploy of the same revision got there first).
    pub changed: bool,
}

/// Take the lock, re-prepare under it, migrate, roll every role, prune,
/// record, release. `cancel` resolving (Ctrl-C) stops the run where it is:
/// the lock is released and the record says `interrupted`.
#[allow(clippy::too_many_arguments)]
pub async fn run<C, S, R>(
    cloud: &C,
    store: &S,
    remote: &R,
    env: &Environment,
    renderer: &Renderer,
    secrets: &Secrets,
    operation: &Operation,
    settings: &Settings,
    actor: &Actor,
    notes: Notes<'_>,
    cancel: impl Future<Output = ()> + Send,
) -> Result<Report, DeployError>
where
    C: Cloud + Fleet,
    S: Store,
    R: Remote,
{
    let started_epoch = epoch();
    let started = Instant::now();
    let target = match operation {
        Operation::Deploy { revision } => revision.clone(),
        Operation::Rollback { to: Some(r) } => r.clone(),
        _ => "(current)".into(),
    };
    let holder = LockHolder {
        who: actor.who.clone(),
        host: actor.host.clone(),
        pid: std::process::id(),
        operation: operation.verb().into(),
        revision: target,
        since: rfc3339(started_epoch),
        since_epoch: started_epoch,
    };
    notes(Note::Step("taking the deploy lock".into()));
    let lock = acquire(store, env, &holder, settings, notes).await?;

    let mut record = Record {
        operation: operation.verb().into(),
        revision: holder.revision.clone(),
        from_revision: None,
        who: actor.who.clone(),
        host: actor.host.clone(),
        started: rfc3339(started_epoch),
        duration_secs: 0,
        result: String::new(),
        message: String::new(),
        launches: BTreeMap::new(),
    };
    let work = locked(
        cloud,
        store,
        remote,
        env,
        renderer,
        secrets,
        operation,
        settings,
        notes,
        &mut record,
    );
    let outcome = tokio::select! {
        r = work => r,
        _ = cancel => Err(DeployError::Interrupted(String::new())),
    };
    record.duration_secs = started.elapsed().as_secs();
    let nothing = matches!(&outcome, Ok(false));
    record.result = match &outcome {
        Ok(_) => "succeeded".into(),
        Err(DeployError::RolledBack(_)) => "rolled back".into(),
        Err(DeployError::Interrupted(_)) => "interrupted".into(),
        Err(_) => "failed".into(),
    };
    if let Err(e) = &outcome {
        record.message = e.to_string();
    }
    // The record and the release happen whatever the outcome.
    let recorded = if nothing {
        Ok(())
    } else {
        append_record(store, env, &record, started_epoch).await
    };
    let released = lock.release(store).await;
    match outcome {
        Ok(_) => {
            recorded?;
            released?;
            Ok(Report {
                record,
                changed: !nothing,
            })
        }
        Err(DeployError::Interrupted(_)) => Err(DeployError::Interrupted(match released {
            Ok(()) => String::new(),
            Err(e) => format!(" (releasing it failed: {e})"),
        })),
        Err(e) => Err(e),
    }
}

/// Under the lock. `Ok(false)`: nothing to do.
#[allow(clippy::too_many_arguments)]
async fn locked<C, S, R>(
    cloud: &C,
    store: &S,
    remote: &R,
    env: &Environment,
    renderer: &Renderer,
    secrets: &Secrets,
    operation: &Operation,
    settings: &Settings,
    notes: Notes<'_>,
    record: &mut Record,
) -> Result<bool, DeployError>
where
    C: Cloud + Fleet,
    S: Store,
    R: Remote,
{
    // Under the lock the state is stable: look again.
    let p = prepare(cloud, store, env, renderer, secrets, operation).await?;
    record.revision = p.revision.clone();
    record.from_revision = p.from_revision.clone();
    if p.is_empty() {
        notes(Note::Info(format!(
            "nothing to change: {} / {} already runs revision {} with these launch settings",
            env.project, env.name, p.revision
        )));
        return Ok(false);
    }

    if let Some(m) = &p.migrate {
        notes(Note::Step(format!(
            "running migrations on {} ({})",
            m.instance, m.address
        )));
        let out = remote.run(&m.instance, &m.address, &m.command).await;
        for line in out.stdout.lines().chain(out.stderr.lines()) {
            notes(Note::Remote {
                host: m.instance.clone(),
                line: line.to_string(),
            });
        }
        if !out.ok {
            return Err(DeployError::Migration {
                host: m.instance.clone(),
                status: out.status,
            });
        }
    }

    let ids: BTreeMap<Address, String> = p
        .inventory
        .resources
        .iter()
        .map(|(a, o)| (a.clone(), o.id.clone()))
        .collect();
    let mut done: Vec<(&RolePlan, LaunchRef)> = Vec::new();
    for r in &p.roles {
        notes(Note::Step(format!("{}: {}", r.role, r.summary)));
        let ctx = ApplyCtx {
            ids: ids.clone(),
            user_data: p.user_data.get(&r.role).cloned(),
            db_password: None,
        };
        let desired = r.change.desired.as_ref().expect("launch changes have a desired spec");
        let new_launch = match desired {
            Spec::LaunchConfiguration(lc) => {
                cloud.create(&r.change.address, desired, &ctx).await?;
                LaunchRef::Configuration(lc.name.clone())
            }
            Spec::LaunchTemplate(lt) => {
                let current = r
                    .change
                    .current
                    .as_ref()
                    .ok_or_else(|| DeployError::Refused(format!("launch template {} is missing", lt.name)))?;
                let o = cloud.update(current, desired, &ctx).await?;
                let v = template_version(&o).ok_or_else(|| {
                    DeployError::Refused(format!(
                        "launch template {}: the new version's number is unknown",
                        lt.name
                    ))
                })?;
                LaunchRef::Template {
                    name: lt.name.clone(),
                    version: Some(v),
                }
            }
            other => unreachable!("not a launch change: {:?}", other.kind()),
        };
        record.launches.insert(r.role.to_string(), launch_label(&new_launch));
        let outcome = roll_role(cloud, r, &new_launch, &p.revision, settings, notes).await;
        match outcome {
            Ok(Outcome::Done) => done.push((r, new_launch)),
            Ok(Outcome::RolledBack) | Ok(Outcome::Aborted) | Err(_) => {
                // Roles already through go back too: one revision per environment.
                let mut undone = Vec::new();
                for (d, _) in done.iter().rev() {
                    notes(Note::Step(format!(
                        "{}: back to {} (revision {})",
                        d.role,
                        launch_label(&d.from_launch),
                        d.from_revision.as_deref().unwrap_or("none")
                    )));
                    let fresh = cloud.group(&d.group).await?;
                    let back = RolePlan {
                        old: fresh
                            .members
                            .iter()
                            .filter(|m| !m.state.starts_with("Terminat"))
                            .map(|m| m.id.clone())
                            .collect(),
                        desired: fresh.desired,
                        ..(*d).clone()
                    };
                    let rev = d.from_revision.clone().unwrap_or_else(|| "none".into());
                    match roll_role(cloud, &back, &d.from_launch, &rev, settings, notes).await {
                        Ok(Outcome::Done) => undone.push(d.role.to_string()),
                        Ok(o) => notes(Note::Info(format!("{}: going back ended {o:?}", d.role))),
                        Err(e) => notes(Note::Info(format!("{}: going back failed: {e}", d.role))),
                    }
                }
                let also = if undone.is_empty() {
                    String::new()
                } else {
                    format!("; {} also went back", undone.join(", "))
                };
                return Err(match outcome {
                    Ok(Outcome::RolledBack) => DeployError::RolledBack(format!(
                        "{}: the new instances did not become healthy within {}; rolled back to {} (revision {}){also}",
                        r.role,
                        human_duration(settings.health_timeout),
                        launch_label(&r.from_launch),
                        r.from_revision.as_deref().unwrap_or("none")
                    )),
                    Ok(_) => DeployError::Aborted(format!(
                        "{}: the rollback itself did not complete in time; the group points at {} but \
                         instances of the new launch settings remain: inspect with `fabrs status {}`{also}",
                        r.role,
                        launch_label(&r.from_launch),
                        env.name
                    )),
                    Err(e) => e,
                });
            }
        }
    }

    notes(Note::Step("pruning old launch configurations".into()));
    prune(cloud, env, &p, &done, settings, notes).await?;
    Ok(true)
}

fn launch_label(l: &LaunchRef) -> String {
    match l {
        LaunchRef::Configuration(n) => format!("launch configuration {n}"),
        LaunchRef::Template { name, version } => {
            format!(
                "launch template {name} version {}",
                version.as_deref().unwrap_or("$Latest")
            )
        }
    }
}

/// Point the group at `launch` and replace `r.old` with instances of it.
async fn roll_role<C: Cloud + Fleet>(
    cloud: &C,
    r: &RolePlan,
    launch: &LaunchRef,
    revision: &str,
    settings: &Settings,
    notes: Notes<'_>,
) -> Result<Outcome, DeployError> {
    let before = cloud.group(&r.group).await?;
    let revision = Revision::parse_wire(revision).map_err(|e| DeployError::Refused(e.to_string()))?;
    cloud.switch_launch(&r.group, launch, revision.as_ref()).await?;
    notes(Note::Info(format!(
        "{}: group {} now uses {}",
        r.role,
        r.group,
        launch_label(launch)
    )));
    let cfg = RolloutConfig {
        batch_size: settings.batch_size.max(1),
        healthy_floor: floor_for(settings, r.desired),
        health_timeout_secs: settings.health_timeout.as_secs().max(1),
        desired: r.desired,
    };
    let mut machine =
        Rollout::new(cfg.clone(), r.old.clone(), 0).map_err(|e| DeployError::Refused(format!("{}: {e}", r.role)))?;
    let clock = Instant::now();
    let now = || clock.elapsed().as_secs();
    let max0 = before.max;
    let mut desired = before.desired;
    let mut max = max0;
    let mut known: BTreeSet<String> = before.members.iter().map(|m| m.id.clone()).collect();
    let mut gone: BTreeSet<String> = BTreeSet::new();
    let mut actions = machine.handle(Event::Started { now: now() });
    // A bound beyond the machine's own deadlines, against a driver bug.
    let hard_stop = settings.health_timeout * (2 * (r.desired + r.old.len() as u32) + 4);
    loop {
        for a in std::mem::take(&mut actions) {
            match a {
                rollout::Action::LaunchBatch { count } => {
                    desired += count;
                    max = max.max(desired);
                    notes(Note::Info(format!("{}: launching {count} instance(s)", r.role)));
                    cloud.set_capacity(&r.group, desired, max).await?;
                }
                rollout::Action::WaitForHealth { ids, deadline } => {
                    notes(Note::Info(format!(
                        "{}: waiting for {} to be InService (up to {} s)",
                        r.role,
                        ids.join(", "),
                        deadline.saturating_sub(now())
                    )));
                }
                rollout::Action::Deregister { ids } => {
                    if let Some(lb) = &r.load_balancer {
                        cloud.deregister(lb, &ids).await?;
                    }
                }
                rollout::Action::Terminate { ids } => {
                    notes(Note::Info(format!("{}: terminating {}", r.role, ids.join(", "))));
                    for id in &ids {
                        cloud.terminate(id).await?;
                        desired = desired.saturating_sub(1);
                    }
                }
                rollout::Action::SwitchBack { cancel } => {
                    notes(Note::Info(format!(
                        "{}: rolling back: group {} back to {}",
                        r.role,
                        r.group,
                        launch_label(&r.from_launch)
                    )));
                    let rev = r.from_revision.as_deref().and_then(|f| Revision::parse(f).ok());
                    cloud.switch_launch(&r.group, &r.from_launch, rev.as_ref()).await?;
                    if cancel > 0 {
                        desired = desired.saturating_sub(cancel);
                        cloud.set_capacity(&r.group, desired, max).await?;
                    }
                }
                rollout::Action::Finish { outcome, summary } => {
                    if max != max0 {
                        cloud.set_capacity(&r.group, desired, max0.max(desired)).await?;
                    }
                    notes(Note::Info(format!("{}: {summary}", r.role)));
                    return Ok(outcome);
                }
            }
        }
        if clock.elapsed() > hard_stop {
            return Err(DeployError::Aborted(format!(
                "{}: the roll did not finish within {}",
                r.role,
                human_duration(hard_stop)
            )));
        }
        tokio::time::sleep(settings.poll).await;
        let g = cloud.group(&r.group).await?;
        desired = g.desired;
        let present: BTreeSet<String> = g
            .members
            .iter()
            .filter(|m| !m.state.starts_with("Terminat"))
            .map(|m| m.id.clone())
            .collect();
        let launched: Vec<String> = present.iter().filter(|id| !known.contains(*id)).cloned().collect();
        known.extend(launched.iter().cloned());
        let vanished: Vec<String> = known
            .iter()
            .filter(|id| !present.contains(*id) && !gone.contains(*id))
            .cloned()
            .collect();
        gone.extend(vanished.iter().cloned());
        let healthy = |m: &fabrs_plan::resource::Member| {
            if r.load_balancer.is_some() {
                m.health == "InService"
            } else {
                m.state == "InService"
            }
        };
        let in_service: Vec<String> = g
            .members
            .iter()
            .filter(|m| present.contains(&m.id) && healthy(m))
            .map(|m| m.id.clone())
            .collect();
        let out_of_service: Vec<String> = g
            .members
            .iter()
            .filter(|m| present.contains(&m.id) && !healthy(m))
            .map(|m| m.id.clone())
            .collect();
        let t = now();
        if !launched.is_empty() {
            actions.extend(machine.handle(Event::Launched { ids: launched, now: t }));
        }
        if !vanished.is_empty() {
            actions.extend(machine.handle(Event::Terminated { ids: vanished, now: t }));
        }
        actions.extend(machine.handle(Event::Health {
            in_service,
            out_of_service,
            now: t,
        }));
        actions.extend(machine.handle(Event::Tick { now: t }));
    }
}

/// Delete this environment's launch configurations of the rolled roles
/// beyond the newest `keep`, never the one in use nor the previous one.
async fn prune<C: Cloud + Fleet>(
    cloud: &C,
    env: &Environment,
    p: &Prepared,
    done: &[(&RolePlan, LaunchRef)],
    settings: &Settings,
    notes: Notes<'_>,
) -> Result<(), DeployError> {
    let names: Vec<String> = p.inventory.launch_configurations.keys().cloned().collect();
    let times = cloud.launch_configuration_times(&names).await?;
    for (r, new) in done {
        let LaunchRef::Configuration(in_use) = new else {
            continue;
        };
        let mut protected: BTreeSet<String> = BTreeSet::from([in_use.clone()]);
        if let LaunchRef::Configuration(prev) = &r.from_launch {
            protected.insert(prev.clone());
        }
        let mut mine: Vec<(String, String)> = p
            .inventory
            .launch_configurations
            .iter()
            .filter(|(_, lc)| lc.launch.role == r.role)
            .map(|(n, _)| (times.get(n).cloned().unwrap_or_default(), n.clone()))
            .filter(|(_, n)| !protected.contains(n))
            .collect();
        // Newest first; the protected ones count towards `keep`.
        mine.sort_by(|a, b| b.cmp(a));
        let room = (settings.keep_launch_configurations as usize).saturating_sub(protected.len());
        for (_, name) in mine.into_iter().skip(room) {
            let lc = &p.inventory.launch_configurations[&name];
            let o = Observed {
                address: Address::new(Kind::LaunchConfiguration, name.clone()),
                id: name.clone(),
                spec: Spec::LaunchConfiguration(lc.clone()),
                status: Default::default(),
            };
            cloud.delete(&o).await?;
            notes(Note::Info(format!("{}: deleted launch configuration {name}", r.role)));
        }
    }
    let _ = env;
    Ok(())
}

// ------------------------------------------------------------------ time

pub fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn rfc3339(secs: u64) -> String {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

fn compact_time(secs: u64) -> String {
    rfc3339(secs).replace(['-', ':'], "")
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else if s == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(compact_time(1_795_000_000), "20261118T110640Z");
    }

    #[test]
    fn revisions() {
        for ok in ["3f9c2e1", "v1.2.3", "release_7", "a"] {
            assert!(check_revision(ok).is_ok(), "{ok}");
        }
        for bad in ["", "none", "-x", ".x", "a b", "a/b", "$(rm)", &"x".repeat(65)] {
            assert!(check_revision(bad).is_err(), "{bad}");
        }
    }
}
