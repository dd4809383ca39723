//! The apply driver: carries out a plan's changes against a `Cloud`, in
//! dependency order, a bounded number at once. It decides nothing the plan
//! did not: it orders, waits, and reports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use fabrs_config::RoleKind;
use fabrs_config::secrets::SecretValue;
use fabrs_plan::desired::is_known;
use fabrs_plan::plan::{Action, Change, Plan};
use fabrs_plan::resource::{Address, Inventory, Kind, Observed, Spec};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;

use fabrs_cloud::{ApplyCtx, Cloud, CloudError, DbDelete, ErrorKind};

use crate::deploy::{Clock, SystemClock};

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Changes run at once per AWS service (`service`).
    pub concurrency: usize,
    /// Longest wait for an instance to run or a resource to go away.
    pub instance_timeout: Duration,
    /// Longest wait for a database to become available.
    pub database_timeout: Duration,
    /// The database master's password (needed to create it).
    pub db_password: Option<SecretValue>,
    /// Every secret's value by name, written to its SSM parameter.
    pub secrets: BTreeMap<String, SecretValue>,
    /// Full user-data per role (secrets resolved, marker lines included), for
    /// roles whose user-data is fully known in this pass.
    pub user_data: BTreeMap<RoleKind, String>,
    /// How database instances are deleted (`destroy-env`'s final snapshot
    /// and deletion-protection flags).
    pub db_delete: DbDelete,
    /// Empty a bucket before deleting it (`destroy-env --delete-bucket-contents`);
    /// otherwise a bucket holding data is not deleted.
    pub empty_buckets: bool,
    /// The load balancer's connection draining timeout: a fixed instance
    /// registered with it is deregistered, given this long to finish its
    /// requests, then terminated. Zero: terminated at once (`destroy-env`,
    /// which removes the load balancer too). `ops::converge` sets it from
    /// the file.
    pub draining: Duration,
    /// How the driver waits out the draining: the real clock, or a test's
    /// virtual one.
    pub sleeper: Sleeper,
}

/// A sleep the apply driver can be given (the deploy driver's [`Clock`]).
#[derive(Clone)]
pub struct Sleeper(Arc<dyn Fn(Duration) -> futures::future::BoxFuture<'static, ()> + Send + Sync>);

impl Sleeper {
    /// Sleep on `clock` (e.g. `fake_fleet::VirtualClock`: no real waiting).
    pub fn of<K: Clock + 'static>(clock: Arc<K>) -> Sleeper {
        Sleeper(Arc::new(move |d| {
            let clock = clock.clone();
            Box::pin(async move { clock.sleep(d).await })
        }))
    }
    pub async fn sleep(&self, d: Duration) {
        (self.0)(d).await
    }
}

impl Default for Sleeper {
    fn default() -> Self {
        Sleeper::of(Arc::new(SystemClock::new()))
    }
}

impl std::fmt::Debug for Sleeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sleeper")
    }
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            // Per service: the seven security groups of an environment at
            // once, well inside EC2's request-rate budget for mutating calls.
            concurrency: 8,
            instance_timeout: Duration::from_secs(600),
            database_timeout: Duration::from_secs(2400),
            db_password: None,
            secrets: BTreeMap::new(),
            user_data: BTreeMap::new(),
            db_delete: DbDelete::default(),
            empty_buckets: false,
            draining: Duration::ZERO,
            sleeper: Sleeper::default(),
        }
    }
}

/// What the driver tells the caller as it goes (for progress output).
#[derive(Clone, Debug)]
pub enum Event {
    Started {
        address: Address,
        action: Action,
    },
    Waiting {
        address: Address,
        status: String,
    },
    Finished {
        address: Address,
        action: Action,
        id: String,
    },
    Deferred {
        address: Address,
        why: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    pub applied: Vec<(Address, Action)>,
    pub deferred: Vec<Address>,
    /// What was created or updated, as the cloud answered (and, for
    /// instances and databases, as the wait saw them running): with the
    /// deletions of `applied`, how the account changed. `ops::converge`
    /// carries its inventory forward with it instead of discovering again.
    pub made: BTreeMap<Address, Observed>,
}

#[derive(Debug, thiserror::Error)]
#[error("{} change(s) failed: {}", .failures.len(), .failures.iter().map(|(a, e)| format!("{a}: {e}")).collect::<Vec<_>>().join("; "))]
pub struct ApplyError {
    pub failures: Vec<(Address, CloudError)>,
    pub report: ApplyReport,
}

fn role_of(spec: &Spec) -> Option<RoleKind> {
    spec.as_kind().launches()
}

/// Why a change cannot run in this pass, if it cannot (what needs it is
/// deferred with it: `apply`).
fn blocked(change: &Change, opts: &ApplyOptions) -> Option<String> {
    let spec = change.desired.as_ref()?;
    if let Spec::SsmParameter(p) = spec {
        if p.fingerprint.is_none() || !opts.secrets.contains_key(&p.secret) {
            return Some(format!("the value of secret `{}` was not given", p.secret));
        }
        return None;
    }
    if !is_known(spec) {
        return Some("its user-data depends on addresses not known yet".into());
    }
    if let Some(role) = role_of(spec) {
        if !opts.user_data.contains_key(&role) {
            return Some(format!("the {role} user-data is not rendered yet"));
        }
    }
    None
}

/// Apply a plan. `inventory` is the one the plan was made against (ids of
/// existing resources come from it).
pub async fn apply<C: Cloud>(
    cloud: &C,
    plan: &Plan,
    inventory: &Inventory,
    opts: &ApplyOptions,
    events: &(dyn Fn(Event) + Send + Sync),
) -> Result<ApplyReport, ApplyError> {
    let mut ids: BTreeMap<Address, String> = inventory
        .resources
        .iter()
        .map(|(a, o)| (a.clone(), o.id.clone()))
        .collect();
    let mut report = ApplyReport::default();
    let mut deferred: BTreeSet<Address> = BTreeSet::new();
    // What this run created, as the cloud reported it.
    let mut made: BTreeMap<Address, Observed> = BTreeMap::new();

    // Creates, updates and replacements, each started the moment what it
    // needs is done (`graph::edges`), at most `concurrency` at once per
    // service. A failure starts nothing new; what runs is let finish.
    let edges = fabrs_plan::graph::edges(plan);
    let n = edges.len();
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        Pending,
        Running,
        Done,
        Deferred,
        Failed,
    }
    let mut state = vec![State::Pending; n];
    for (i, (change, _)) in edges.iter().enumerate() {
        // Group rule changes wait until every group exists (the rules task).
        if change.address.kind == Kind::SecurityGroup && change.action == Action::Update {
            state[i] = State::Done;
        }
    }
    // Deferred: what cannot run in this pass, and what needs it. Edges run
    // from dependents to dependencies, so sweep until nothing changes.
    loop {
        let mut more = false;
        for (i, (change, deps)) in edges.iter().enumerate() {
            if state[i] != State::Pending {
                continue;
            }
            let why = blocked(change, opts).or_else(|| {
                deps.iter()
                    .find(|&&j| state[j] == State::Deferred)
                    .map(|&j| format!("{} is deferred", edges[j].0.address))
            });
            if let Some(why) = why {
                state[i] = State::Deferred;
                deferred.insert(change.address.clone());
                events(Event::Deferred {
                    address: change.address.clone(),
                    why,
                });
                more = true;
            }
        }
        if !more {
            break;
        }
    }
    let groups: Vec<usize> = (0..n)
        .filter(|&i| edges[i].0.address.kind == Kind::SecurityGroup)
        .collect();
    let mut rules_started = groups.is_empty();
    let mut running: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut failures: Vec<(Address, CloudError)> = Vec::new();
    let mut tasks: FuturesUnordered<BoxFuture<'_, Done<'_>>> = FuturesUnordered::new();
    loop {
        if failures.is_empty() {
            for i in 0..n {
                let (change, deps) = &edges[i];
                let class = change.address.kind.service();
                if state[i] != State::Pending
                    || !deps.iter().all(|&j| state[j] == State::Done)
                    || running.get(class).copied().unwrap_or(0) >= opts.concurrency.max(1)
                {
                    continue;
                }
                state[i] = State::Running;
                *running.entry(class).or_default() += 1;
                let ids = ids.clone();
                let change: &Change = change;
                tasks.push(Box::pin(async move {
                    Done::Change(i, run_change(cloud, change, ids, opts, events).await)
                }));
            }
            // Security groups are created without rules that name groups not
            // yet made; once all exist, bring every touched group's rules in line.
            if !rules_started && groups.iter().all(|&i| state[i] == State::Done) {
                rules_started = true;
                let touched: Vec<&Change> = groups.iter().map(|&i| edges[i].0).collect();
                tasks.push(Box::pin(apply_rules(cloud, touched, ids.clone(), made.clone(), opts)));
            }
        }
        let Some(done) = tasks.next().await else { break };
        match done {
            Done::Change(i, r) => {
                let (change, _) = &edges[i];
                *running.entry(change.address.kind.service()).or_default() -= 1;
                match r {
                    Ok(o) => {
                        state[i] = State::Done;
                        ids.insert(change.address.clone(), o.id.clone());
                        made.insert(change.address.clone(), o.clone());
                        events(Event::Finished {
                            address: change.address.clone(),
                            action: change.action,
                            id: o.id,
                        });
                        report.applied.push((change.address.clone(), change.action));
                    }
                    Err(e) => {
                        state[i] = State::Failed;
                        failures.push((change.address.clone(), e));
                    }
                }
            }
            Done::Rules(results) => {
                for (change, r) in results {
                    match r {
                        Err(e) => failures.push((change.address.clone(), e)),
                        Ok(o) => {
                            made.insert(change.address.clone(), o.clone());
                            events(Event::Finished {
                                address: change.address.clone(),
                                action: Action::Update,
                                id: o.id,
                            });
                            if change.action == Action::Update {
                                report.applied.push((change.address.clone(), Action::Update));
                            }
                        }
                    }
                }
            }
        }
    }
    if !failures.is_empty() {
        report.deferred = deferred.into_iter().collect();
        return Err(ApplyError { failures, report });
    }

    // Deletions: the dependency graph backwards. Each starts the moment
    // every deletion that needs it is done (a group before its launch,
    // servers before their security groups and instance roles, replicas
    // before their master), at most `concurrency` at once; a deletion that
    // needs nothing of another waits for nothing (the database's for the
    // auto scaling group's).
    let doomed: Vec<&Change> = plan.changes.iter().filter(|c| c.action == Action::Delete).collect();
    let doomed_groups: Vec<&Change> = doomed
        .iter()
        .copied()
        .filter(|c| c.address.kind == Kind::SecurityGroup)
        .collect();
    if !doomed_groups.is_empty() {
        // A group cannot be deleted while another group's rule names it:
        // strip the rules of every doomed group first.
        let stripped: Vec<Result<Observed, CloudError>> = futures::stream::iter(&doomed_groups)
            .map(|change| {
                let ctx = ApplyCtx {
                    ids: ids.clone(),
                    ..Default::default()
                };
                async move {
                    let current = change.current.as_ref().expect("deletes carry the current resource");
                    let mut bare = current.spec.clone();
                    if let Spec::SecurityGroup(sg) = &mut bare {
                        sg.ingress.clear();
                    }
                    cloud.update(current, &bare, &ctx).await
                }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        let failures: Vec<(Address, CloudError)> = doomed_groups
            .iter()
            .zip(stripped)
            .filter_map(|(c, r)| r.err().map(|e| (c.address.clone(), e)))
            .collect();
        if !failures.is_empty() {
            report.deferred = deferred.into_iter().collect();
            return Err(ApplyError { failures, report });
        }
    }
    let index: BTreeMap<&Address, usize> = doomed.iter().enumerate().map(|(i, c)| (&c.address, i)).collect();
    // `held[i]`: how many doomed resources that need `doomed[i]` are still
    // there; `frees[j]`: what the deletion of `doomed[j]` lets go.
    let mut held = vec![0usize; doomed.len()];
    let mut frees: Vec<Vec<usize>> = vec![Vec::new(); doomed.len()];
    for (j, c) in doomed.iter().enumerate() {
        let current = c.current.as_ref().expect("deletes carry the current resource");
        for a in fabrs_plan::graph::needs(&c.address, &current.spec, &fabrs_plan::graph::Context::default()) {
            if let Some(&i) = index.get(&a) {
                held[i] += 1;
                frees[j].push(i);
            }
        }
    }
    let mut ready: std::collections::VecDeque<usize> = (0..doomed.len()).filter(|&i| held[i] == 0).collect();
    let mut running = FuturesUnordered::new();
    let mut failures = Vec::new();
    let mut deleted = 0;
    loop {
        while failures.is_empty() && running.len() < opts.concurrency.max(1) {
            let Some(i) = ready.pop_front() else { break };
            let change = doomed[i];
            running.push(async move {
                events(Event::Started {
                    address: change.address.clone(),
                    action: Action::Delete,
                });
                let current = change.current.as_ref().expect("deletes carry the current resource");
                (i, delete_and_wait(cloud, current, opts, events).await)
            });
        }
        let Some((i, r)) = running.next().await else { break };
        let address = doomed[i].address.clone();
        match r {
            Ok(()) => {
                deleted += 1;
                events(Event::Finished {
                    address: address.clone(),
                    action: Action::Delete,
                    id: String::new(),
                });
                report.applied.push((address, Action::Delete));
                for &k in &frees[i] {
                    held[k] -= 1;
                    if held[k] == 0 {
                        ready.push_back(k);
                    }
                }
            }
            Err(e) => failures.push((address, e)),
        }
    }
    if failures.is_empty() && deleted < doomed.len() {
        // `needs` is acyclic; were it not, what is left could never start.
        failures.extend(doomed.iter().enumerate().filter(|(i, _)| held[*i] > 0).map(|(_, c)| {
            (
                c.address.clone(),
                CloudError::new(
                    ErrorKind::Other,
                    "delete",
                    c.address.to_string(),
                    "a dependency cycle among deletions",
                ),
            )
        }));
    }
    if !failures.is_empty() {
        report.deferred = deferred.into_iter().collect();
        return Err(ApplyError { failures, report });
    }
    report.deferred = deferred.into_iter().collect();
    report.made = made;
    Ok(report)
}

/// A task of the apply driver that ended: a change (by index into
/// `graph::edges`), or the security groups' rules.
enum Done<'a> {
    Change(usize, Result<Observed, CloudError>),
    Rules(Vec<(&'a Change, Result<Observed, CloudError>)>),
}

/// Every touched group's rules, once every group exists: each group as it
/// is now (just created, or as discovered) updated to its desired rules.
async fn apply_rules<'a, C: Cloud>(
    cloud: &'a C,
    touched: Vec<&'a Change>,
    ids: BTreeMap<Address, String>,
    made: BTreeMap<Address, Observed>,
    opts: &'a ApplyOptions,
) -> Done<'a> {
    // Built in a loop, not a closure: a closure over `&Change` here makes the
    // boxed future's `Send` bound fail to prove (rust-lang/rust#64552).
    let mut updates = Vec::new();
    for change in touched {
        let ctx = ApplyCtx {
            ids: ids.clone(),
            ..Default::default()
        };
        let current = made.get(&change.address).cloned().or_else(|| change.current.clone());
        updates.push(async move {
            let desired = change.desired.as_ref().expect("non-delete changes carry a spec");
            let Some(current) = current else {
                let e = CloudError::new(
                    ErrorKind::NotFound,
                    "update",
                    change.address.to_string(),
                    "the group was neither found nor created",
                );
                return (change, Err(e));
            };
            (change, cloud.update(&current, desired, &ctx).await)
        });
    }
    let results = futures::stream::iter(updates)
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    Done::Rules(results)
}

fn timeout_for(kind: Kind, opts: &ApplyOptions) -> Duration {
    if kind.waits().slow {
        opts.database_timeout
    } else {
        opts.instance_timeout
    }
}

/// Delete, then wait until it is gone where later steps depend on that
/// (instances before their groups, replicas before their master).
pub async fn delete_and_wait<C: Cloud>(
    cloud: &C,
    current: &Observed,
    opts: &ApplyOptions,
    events: &(dyn Fn(Event) + Send + Sync),
) -> Result<(), CloudError> {
    if current.address.kind == Kind::DbInstance {
        cloud.delete_database(current, &opts.db_delete).await?;
    } else if current.address.kind == Kind::Bucket {
        if opts.empty_buckets {
            cloud.empty_bucket(current).await?;
        }
        cloud.delete(current).await?;
    } else {
        drain(cloud, current, opts, events).await?;
        cloud.delete(current).await?;
    }
    if current.address.kind.waits().until_gone {
        let address = current.address.clone();
        let progress = move |s: &str| {
            events(Event::Waiting {
                address: address.clone(),
                status: s.to_string(),
            })
        };
        match cloud
            .wait(current, true, timeout_for(current.address.kind, opts), &progress)
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A fixed instance behind the load balancer leaves it before it goes:
/// deregistered (an update to the same spec without the load balancer),
/// then given the connection draining timeout to finish in-flight requests.
/// (Instances of an autoscaling group are the deploy driver's, which drains
/// them the same way.)
async fn drain<C: Cloud>(
    cloud: &C,
    current: &Observed,
    opts: &ApplyOptions,
    events: &(dyn Fn(Event) + Send + Sync),
) -> Result<(), CloudError> {
    let Spec::Instance(spec) = &current.spec else {
        return Ok(());
    };
    if spec.load_balancer.is_none() || opts.draining.is_zero() {
        return Ok(());
    }
    let mut out = spec.clone();
    out.load_balancer = None;
    let ctx = ApplyCtx::default();
    cloud.update(current, &Spec::Instance(out), &ctx).await?;
    events(Event::Waiting {
        address: current.address.clone(),
        status: format!(
            "deregistered from load balancer {}: connection draining for {} s",
            spec.load_balancer.as_deref().unwrap_or_default(),
            opts.draining.as_secs()
        ),
    });
    opts.sleeper.sleep(opts.draining).await;
    Ok(())
}

async fn run_change<C: Cloud>(
    cloud: &C,
    change: &Change,
    ids: BTreeMap<Address, String>,
    opts: &ApplyOptions,
    events: &(dyn Fn(Event) + Send + Sync),
) -> Result<Observed, CloudError> {
    let spec = change.desired.as_ref().expect("non-delete changes carry a spec");
    events(Event::Started {
        address: change.address.clone(),
        action: change.action,
    });
    let ctx = ApplyCtx {
        ids,
        user_data: role_of(spec).and_then(|r| opts.user_data.get(&r).cloned()),
        db_password: match spec {
            Spec::DbInstance(db) if db.replica_of.is_none() => opts.db_password.clone(),
            _ => None,
        },
        secret_value: match spec {
            Spec::SsmParameter(p) => opts.secrets.get(&p.secret).cloned(),
            _ => None,
        },
    };
    let observed = match (change.action, &change.current) {
        (Action::Update, Some(current)) => cloud.update(current, spec, &ctx).await?,
        // A new launch configuration; the current one stays for rollback.
        (Action::CreateBeside, _) => cloud.create(&change.address, spec, &ctx).await?,
        (Action::Replace, Some(current)) => {
            delete_and_wait(cloud, current, opts, events).await?;
            cloud.create(&change.address, spec, &ctx).await?
        }
        _ => cloud.create(&change.address, spec, &ctx).await?,
    };
    // Later steps need running instances (their addresses) and available databases.
    if change.address.kind.waits().until_ready {
        let address = change.address.clone();
        let progress = move |s: &str| {
            events(Event::Waiting {
                address: address.clone(),
                status: s.to_string(),
            })
        };
        return cloud
            .wait(&observed, false, timeout_for(change.address.kind, opts), &progress)
            .await;
    }
    Ok(observed)
}
