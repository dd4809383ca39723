//! `fabrs deploy`, `rotate` and `rollback`: put a revision (or the current
//! file's launch settings) on an environment's autoscaled roles. This is the
//! driver; what to do is decided by the pure [`fabrs_plan::deploy`].
//!
//! The order, each step bounded in time:
//! 1. [`Deployer::prepare`] (no change): one discovery, of what the deploy
//!    rolls and what its launches name (`Scope::for_deploy`: groups,
//!    launches, security groups, servers, databases); the artifact exists;
//!    the plan's only changes to those are launch configurations / template
//!    versions and the groups' pointers to them (anything else: run
//!    `create-env` first); the groups read once;
//! 2. [`Deployer::run`]: the deploy lock, an object written with
//!    `If-None-Match: *` ([`lock`]); under it the groups are read again —
//!    what another deploy may have changed while this one waited — and only
//!    if they changed is the operation prepared again (a second discovery);
//! 3. migrations, once, on one server of `deploy.migrate_on`, over SSH;
//! 4. per role, worker then web: a new launch configuration (or template
//!    version) carrying the revision, the group pointed at it, and the roll
//!    ([`fabrs_plan::rollout`]) replacing the instances that were there
//!    before, health-gated, rolling back on timeout; a failed role sends the
//!    roles already through back too;
//! 5. launch configurations beyond the newest N pruned (never the one in use
//!    or the previous one);
//! 6. an audit record ([`audit`]); the lock released, on failure and
//!    interruption too.
//!
//! Every sleep and deadline goes through a [`Clock`], so the whole driver
//! runs in tests on a virtual one.

pub mod audit;
pub mod clock;
pub mod lock;
mod roll;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use fabrs_config::revision::or_none;
use fabrs_config::secrets::Secrets;
use fabrs_config::{Environment, Revision, RoleKind};
use fabrs_plan::deploy::{
    DeployInput, GroupNow, RolePlan, groups_to_read, launch_label, plan_deploy, template_version,
};
use fabrs_plan::resource::{Address, Inventory, LaunchRef, Spec};
use fabrs_plan::rollout::Outcome;
use fabrs_render::Renderer;
use serde::{Deserialize, Serialize};

pub use self::audit::{Record, append_record, history, history_prefix};
pub use self::clock::{Clock, SystemClock, compact_time, epoch, human_duration, rfc3339};
pub use self::lock::{Lock, LockHolder, acquire, lock_key};
pub use fabrs_plan::deploy::Operation;

use fabrs_cloud::{ApplyCtx, Cloud, CloudError, Fleet, Remote, Store};

use crate::ops::{OpError, current_revision};

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
    /// The load balancer's connection draining timeout: an instance the
    /// roll takes out of the load balancer is terminated only this long
    /// after its deregistration (`load_balancer.draining_timeout`).
    pub draining: Duration,
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
            draining: env.load_balancer.draining_timeout,
        }
    }
}

fn floor_for(settings: &Settings, desired: u32) -> u32 {
    settings.healthy_floor.min(desired)
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

/// Where the migrations run.
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
    pub revision: Revision,
    pub from_revision: Option<Revision>,
    pub artifact: Option<String>,
    pub roles: Vec<RolePlan>,
    pub migrate: Option<MigrateStep>,
    inventory: Inventory,
    user_data: BTreeMap<RoleKind, String>,
    /// The groups as they were read, to tell under the lock whether another
    /// deploy changed them since.
    groups: BTreeMap<RoleKind, GroupNow>,
}

impl Prepared {
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    /// The steps, for `--dry-run` and the log.
    pub fn steps(&self, env: &Environment, settings: &Settings) -> Vec<String> {
        let mut out = Vec::new();
        let from = or_none(self.from_revision.as_ref());
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

/// `[A-Za-z0-9._-]{1,64}`: it goes into launch configuration names, object
/// keys and shell commands.
pub fn check_revision(rev: &str) -> Result<Revision, DeployError> {
    Revision::parse(rev).map_err(|e| DeployError::Refused(e.to_string()))
}

/// The result of a run that did not fail outright.
#[derive(Clone, Debug)]
pub struct Report {
    pub record: Record,
    /// False when, under the lock, there was nothing left to do (another
    /// deploy of the same revision got there first).
    pub changed: bool,
}

/// What a deploy works with: the peers (cloud, object store, servers, clock)
/// and the environment.
pub struct Deployer<'a, C, S, R, K> {
    pub cloud: &'a C,
    pub store: &'a S,
    pub remote: &'a R,
    pub clock: &'a K,
    pub env: &'a Environment,
    pub renderer: &'a Renderer,
    pub secrets: &'a Secrets,
    pub settings: &'a Settings,
    pub notes: Notes<'a>,
}

impl<C, S, R, K> Deployer<'_, C, S, R, K>
where
    C: Cloud + Fleet,
    S: Store,
    R: Remote,
    K: Clock,
{
    /// Work out what the operation would do, from one discovery. Changes
    /// nothing.
    pub async fn prepare(&self, operation: &Operation) -> Result<Prepared, DeployError> {
        let (env, store) = (self.env, self.store);
        let names_only = fabrs_plan::desired::desired_state(env, &BTreeMap::new());
        // A deploy names its revision: its artifact is looked for beside the
        // discovery (a rotate's or rollback's revision comes from what it finds).
        let named = match operation {
            Operation::Deploy { revision } => Some(revision.clone()),
            Operation::Rotate { .. } | Operation::Rollback { .. } => None,
        };
        // What a deploy rolls and what its launches name, not the whole
        // environment (`Scope::for_deploy`): `fabrs plan` reviews the rest.
        let scope = crate::ops::scope(env, &names_only).for_deploy();
        let (inventory, named_head) = futures::join!(self.cloud.discover(&scope), async {
            match &named {
                Some(r) => Some(store.head(&env.artifact_key(r.as_str())).await),
                None => None,
            }
        });
        let inventory = inventory?;
        let current = current_revision(&inventory);
        let revision = match operation {
            Operation::Deploy { revision } => revision.clone(),
            Operation::Rotate { .. } => current.clone().ok_or_else(|| {
                DeployError::Refused(format!(
                    "{} / {} runs no release yet: deploy a revision first (`fabrs deploy {} --revision REV`)",
                    env.project, env.name, env.name
                ))
            })?,
            Operation::Rollback { to: Some(r) } => r.clone(),
            Operation::Rollback { to: None } => audit::previous_revision(store, env, current.as_ref()).await?,
        };
        let artifact = env.artifact_key(revision.as_str());
        let head = match named_head {
            Some(h) if named.as_ref() == Some(&revision) => h?,
            _ => store.head(&artifact).await?,
        };
        if head.is_none() {
            return Err(DeployError::Refused(format!(
                "revision {revision} has no release artifact at s3://{}/{artifact}: push it first with \
                 `fabrs release push {} --revision {revision} PATH`; nothing was changed",
                store.bucket(),
                env.name
            )));
        }
        let (mut plan, rendered) =
            crate::ops::plan_from(env, self.renderer, &inventory, Some(&revision), Some(self.secrets))?;
        // The kinds not looked for would plan as missing: the plan is of
        // those looked for.
        plan.changes.retain(|c| scope.wants(c.address.kind));
        let groups = self.read_groups(&groups_to_read(env, &inventory)).await?;
        let dp = plan_deploy(&DeployInput {
            env,
            operation,
            revision: &revision,
            current: current.as_ref(),
            plan: &plan,
            inventory: &inventory,
            groups: &groups,
        })
        .map_err(DeployError::Refused)?;
        let migrate = match &dp.migrate_on {
            Some(candidates) => Some(self.migrate_step(candidates, &revision).await?),
            None => None,
        };
        Ok(Prepared {
            operation: operation.clone(),
            revision,
            from_revision: current,
            artifact: Some(artifact),
            roles: dp.roles,
            migrate,
            inventory,
            user_data: rendered.user_data,
            groups,
        })
    }

    async fn read_groups(
        &self,
        which: &BTreeMap<RoleKind, String>,
    ) -> Result<BTreeMap<RoleKind, GroupNow>, DeployError> {
        // Every group at once.
        let groups = futures::future::try_join_all(which.values().map(|id| self.cloud.group(id))).await?;
        Ok(which.keys().copied().zip(groups).collect())
    }

    async fn migrate_step(&self, candidates: &[String], revision: &Revision) -> Result<MigrateStep, DeployError> {
        let addresses = self.cloud.addresses(candidates).await?;
        let Some((instance, address)) = candidates
            .iter()
            .find_map(|id| addresses.get(id).map(|a| (id.clone(), a.clone())))
        else {
            return Err(DeployError::Refused(format!(
                "no running {} server to run the migrations on (deploy.migrate_on); nothing was changed",
                self.env.deploy.migrate_on
            )));
        };
        Ok(MigrateStep {
            instance,
            address,
            command: self.env.deploy.migrate_command.replace("{revision}", revision.as_str()),
        })
    }

    /// Take the lock, check under it that the prepared operation still
    /// stands, migrate, roll every role, prune, record, release. `cancel`
    /// resolving (Ctrl-C) stops the run where it is: the lock is released and
    /// the record says `interrupted`.
    pub async fn run(
        &self,
        prepared: Prepared,
        actor: &Actor,
        cancel: impl Future<Output = ()> + Send,
    ) -> Result<Report, DeployError> {
        let (env, store, notes) = (self.env, self.store, self.notes);
        let started_epoch = clock::epoch_of(self.clock.now());
        let started = self.clock.elapsed();
        let operation = prepared.operation.clone();
        let target = match &operation {
            Operation::Deploy { revision } => revision.to_string(),
            Operation::Rollback { to: Some(r) } => r.to_string(),
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
        let lock = acquire(self.clock, store, env, &holder, self.settings, notes).await?;

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
        let outcome = tokio::select! {
            r = self.locked(prepared, &mut record) => r,
            _ = cancel => Err(DeployError::Interrupted(String::new())),
        };
        record.duration_secs = self.clock.elapsed().saturating_sub(started).as_secs();
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

    /// Under the lock, the groups are what another deploy may have changed
    /// since `prepared` was made: read them again, and prepare again only if
    /// they changed (or a lock was broken: its holder may have left anything).
    async fn recheck(&self, prepared: Prepared) -> Result<Prepared, DeployError> {
        if !self.settings.break_lock {
            let which: BTreeMap<RoleKind, String> = prepared.groups.iter().map(|(r, g)| (*r, g.name.clone())).collect();
            let now = self.read_groups(&which).await?;
            let same = now.len() == prepared.groups.len()
                && now
                    .iter()
                    .all(|(r, g)| prepared.groups.get(r).is_some_and(|p| p.same_deploy_state(g)));
            if same {
                return Ok(prepared);
            }
            (self.notes)(Note::Info(
                "the groups changed while waiting for the lock: looking again".into(),
            ));
        }
        self.prepare(&prepared.operation).await
    }

    /// Under the lock. `Ok(false)`: nothing to do.
    async fn locked(&self, prepared: Prepared, record: &mut Record) -> Result<bool, DeployError> {
        let (env, notes, settings) = (self.env, self.notes, self.settings);
        let p = self.recheck(prepared).await?;
        record.revision = p.revision.to_string();
        record.from_revision = p.from_revision.as_ref().map(Revision::to_string);
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
            let out = self.remote.run(&m.instance, &m.address, &m.command).await;
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
                secret_value: None,
            };
            let new_launch = self.create_launch(r, &ctx).await?;
            record.launches.insert(r.role.to_string(), launch_label(&new_launch));
            let outcome = roll::roll_role(
                self.cloud,
                self.clock,
                r,
                &new_launch,
                Some(&p.revision),
                settings,
                notes,
            )
            .await;
            if let Ok(Outcome::Done) = outcome {
                done.push((r, new_launch));
                continue;
            }
            // Roles already through go back too: one revision per environment.
            let also = self.go_back(&done).await?;
            return Err(match outcome {
                Ok(Outcome::RolledBack) => DeployError::RolledBack(format!(
                    "{}: the new instances did not become healthy within {}; rolled back to {} (revision {}){also}",
                    r.role,
                    human_duration(settings.health_timeout),
                    launch_label(&r.from_launch),
                    or_none(r.from_revision.as_ref())
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

        notes(Note::Step("pruning old launch configurations".into()));
        roll::prune(self.cloud, &p.inventory, &done, settings, notes).await?;
        Ok(true)
    }

    /// The role's new launch: a launch configuration created, or a template
    /// version added.
    async fn create_launch(&self, r: &RolePlan, ctx: &ApplyCtx) -> Result<LaunchRef, DeployError> {
        let desired = r.change.desired.as_ref().expect("launch changes have a desired spec");
        Ok(match desired {
            Spec::LaunchConfiguration(lc) => {
                self.cloud.create(&r.change.address, desired, ctx).await?;
                LaunchRef::Configuration(lc.name.clone())
            }
            Spec::LaunchTemplate(lt) => {
                let current = r
                    .change
                    .current
                    .as_ref()
                    .ok_or_else(|| DeployError::Refused(format!("launch template {} is missing", lt.name)))?;
                let o = self.cloud.update(current, desired, ctx).await?;
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
        })
    }

    /// Roll the roles in `done` back to what they ran before, latest first;
    /// returns `; worker also went back` (or nothing) for the message.
    async fn go_back(&self, done: &[(&RolePlan, LaunchRef)]) -> Result<String, DeployError> {
        let notes = self.notes;
        let mut undone = Vec::new();
        for (d, _) in done.iter().rev() {
            notes(Note::Step(format!(
                "{}: back to {} (revision {})",
                d.role,
                launch_label(&d.from_launch),
                or_none(d.from_revision.as_ref())
            )));
            let fresh = self.cloud.group(&d.group).await?;
            let back = RolePlan {
                old: fresh.alive(),
                desired: fresh.desired,
                ..(*d).clone()
            };
            let rev = d.from_revision.as_ref();
            match roll::roll_role(self.cloud, self.clock, &back, &d.from_launch, rev, self.settings, notes).await {
                Ok(Outcome::Done) => undone.push(d.role.to_string()),
                Ok(o) => notes(Note::Info(format!("{}: going back ended {o:?}", d.role))),
                Err(e) => notes(Note::Info(format!("{}: going back failed: {e}", d.role))),
            }
        }
        Ok(if undone.is_empty() {
            String::new()
        } else {
            format!("; {} also went back", undone.join(", "))
        })
    }
}
