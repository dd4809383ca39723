//! The deploy driver's paths on the fakes (FakeFleet on a virtual clock,
//! FakeRemote, MemStore): success, a later role's rollback sending the
//! earlier one back, Ctrl-C mid-roll, a held lock, a failing migration, and a
//! deploy that finds under the lock that another did its work. No sleeps:
//! every wait of the driver passes on the virtual clock. The same driver runs
//! against moto and real sshds in the CLI's `tests/deploy.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fabrs_cloud::Store;
use fabrs_config::secrets::Secrets;
use fabrs_config::{Environment, Revision, RoleKind};
use fabrs_exec::apply::ApplyOptions;
use fabrs_exec::deploy::{
    self, Actor, Clock, DeployError, Deployer, LockHolder, Note, Operation, Prepared, Record, Report, Settings,
};
use fabrs_exec::fake::MemStore;
use fabrs_exec::fake_fleet::{FakeFleet, FakeRemote, VirtualClock};
use fabrs_exec::ops::{converge, make_plan};
use fabrs_plan::deploy::GroupNow;
use fabrs_plan::resource::LaunchRef;
use fabrs_render::Renderer;
use fabrs_test_support::root;

const WEB: &str = "myproject-staging-web";
const WORKER: &str = "myproject-staging-worker";

/// Staging, converged on the fakes at revision r0, with artifacts for r0..r3
/// and the bad-migration revision.
struct Rig {
    env: Environment,
    renderer: Renderer,
    secrets: Secrets,
    clock: Arc<VirtualClock>,
    fleet: FakeFleet,
    store: MemStore,
    remote: FakeRemote,
    settings: Settings,
    notes: Arc<Mutex<Vec<String>>>,
    note: Box<dyn Fn(Note) + Send + Sync>,
}

async fn rig(remote: FakeRemote) -> Rig {
    // Staging on launch configurations (the shipped file uses templates):
    // these paths prune configurations and name them in their assertions.
    let file = root().join("environments/staging.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("launch: template", "launch: configuration");
    let env = fabrs_config::load_str(&text, &file, &root()).unwrap();
    let renderer = Renderer::new(&root()).unwrap();
    let secrets = Secrets::from_pairs([
        ("db_password", "pw-db"),
        ("cache_password", "pw-cache"),
        ("queue_password", "pw-queue"),
    ]);
    let clock = Arc::new(VirtualClock::new());
    let fleet = FakeFleet::new(clock.clone());
    converge(
        &fleet,
        &env,
        &renderer,
        Some(&rev("r0")),
        &secrets,
        &ApplyOptions::default(),
        None,
        &|_| {},
    )
    .await
    .unwrap();
    let store = MemStore::new(&env.artifacts.bucket);
    for rev in ["r0", "r1", "r2", "r3", "badmig1"] {
        store
            .put_new(&env.artifact_key(rev), b"release".to_vec(), BTreeMap::new())
            .await
            .unwrap();
    }
    let mut settings = Settings::from_env(&env);
    settings.health_timeout = Duration::from_secs(120);
    let notes = Arc::new(Mutex::new(Vec::new()));
    let n2 = notes.clone();
    Rig {
        env,
        renderer,
        secrets,
        clock,
        fleet,
        store,
        remote,
        settings,
        notes,
        note: Box::new(move |n: Note| n2.lock().unwrap().push(format!("{n:?}"))),
    }
}

fn actor() -> Actor {
    Actor {
        who: "ci".into(),
        host: "h".into(),
    }
}

fn rev(r: &str) -> Revision {
    Revision::parse(r).unwrap()
}

fn deploy_op(r: &str) -> Operation {
    Operation::Deploy { revision: rev(r) }
}

type Driver<'a> = Deployer<'a, FakeFleet, MemStore, FakeRemote, VirtualClock>;

impl Rig {
    fn deployer(&self) -> Driver<'_> {
        Deployer {
            cloud: &self.fleet,
            store: &self.store,
            remote: &self.remote,
            clock: &*self.clock,
            env: &self.env,
            renderer: &self.renderer,
            secrets: &self.secrets,
            settings: &self.settings,
            notes: &*self.note,
        }
    }

    async fn prepare(&self, op: Operation) -> Result<Prepared, DeployError> {
        self.deployer().prepare(&op).await
    }

    /// Preflight, then the run (as the CLI does), never cancelled.
    async fn deploy(&self, rev: &str) -> Result<Report, DeployError> {
        let p = self.prepare(deploy_op(rev)).await?;
        self.deployer().run(p, &actor(), std::future::pending()).await
    }

    async fn group(&self, name: &str) -> GroupNow {
        self.fleet.group_named(name).await
    }

    async fn history(&self) -> Vec<Record> {
        deploy::history(&self.store, &self.env).await.unwrap()
    }

    async fn lock_held(&self) -> bool {
        self.store.head(&deploy::lock_key(&self.env)).await.unwrap().is_some()
    }

    fn notes(&self) -> String {
        self.notes.lock().unwrap().join("\n")
    }
}

fn lc(g: &GroupNow) -> String {
    match &g.launch {
        LaunchRef::Configuration(n) => n.clone().expect("a group's configuration has a name"),
        other => panic!("{other:?}"),
    }
}

fn ids(g: &GroupNow) -> BTreeSet<String> {
    g.alive().into_iter().collect()
}

fn healthy(g: &GroupNow) -> usize {
    g.members
        .iter()
        .filter(|m| m.state == "InService" && (g.load_balancers.is_empty() || m.health == "InService"))
        .count()
}

#[tokio::test]
async fn a_deploy_migrates_once_rolls_worker_then_web_from_one_discovery_and_leaves_nothing_to_plan() {
    let r = rig(FakeRemote::new()).await;
    let (web0, worker0) = (r.group(WEB).await, r.group(WORKER).await);
    let before = r.fleet.discoveries();

    let p = r.prepare(deploy_op("r1")).await.unwrap();
    let roles: Vec<RoleKind> = p.roles.iter().map(|x| x.role).collect();
    assert_eq!(roles, [RoleKind::Worker, RoleKind::Web]);
    let m = p.migrate.clone().expect("a new revision migrates");
    assert!(worker0.alive().contains(&m.instance), "on a worker: {m:?}");
    let report = r.deployer().run(p, &actor(), std::future::pending()).await.unwrap();
    assert!(report.changed);
    assert_eq!(r.fleet.discoveries() - before, 1, "one discovery per deploy");

    let (web, worker) = (r.group(WEB).await, r.group(WORKER).await);
    for (g, g0) in [(&web, &web0), (&worker, &worker0)] {
        assert!(lc(g).contains("-r1-"), "{}", lc(g));
        assert_eq!(g.revision, Some(rev("r1")));
        assert!(ids(g).is_disjoint(&ids(g0)), "every old instance replaced");
        assert_eq!(g.desired, g0.desired);
        assert_eq!(healthy(g), g0.desired as usize);
        assert_eq!(g.max, g0.max, "max back to what it was");
    }
    let calls = r.fleet.calls();
    let first = |g: &str| {
        calls
            .iter()
            .position(|c| c.starts_with(&format!("switch_launch {g} ")))
            .unwrap()
    };
    assert!(first(WORKER) < first(WEB), "worker first: {calls:?}");
    let ran = r.remote.calls();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0].0, m.instance);

    let h = r.history().await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].result, "succeeded");
    assert_eq!(h[0].from_revision.as_deref(), Some("r0"));
    assert_eq!(h[0].started, "2026-11-18T11:06:40Z", "the virtual clock's wall time");
    assert!(!r.lock_held().await);

    let (plan, _, _) = make_plan(&r.fleet, &r.env, &r.renderer, None, None).await.unwrap();
    assert!(plan.is_empty(), "{:?}", plan.changes);
    assert!(r.prepare(deploy_op("r1")).await.unwrap().is_empty());

    // Two more: the launch configurations beyond the newest 3 are pruned.
    r.deploy("r2").await.unwrap();
    r.deploy("r3").await.unwrap();
    let lcs = r.fleet.cloud().calls();
    let deleted: Vec<&String> = lcs
        .iter()
        .filter(|(op, a)| op == "delete" && a.contains("-web-"))
        .map(|(_, a)| a)
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert!(deleted[0].contains("-r0-"), "the oldest goes: {deleted:?}");
}

#[tokio::test]
async fn the_roll_terminates_a_web_instance_only_after_its_connection_draining() {
    let r = rig(FakeRemote::new()).await;
    let web0 = r.group(WEB).await;
    let worker0 = r.group(WORKER).await;
    let drain = r.settings.draining;
    assert_eq!(drain, Duration::from_secs(300), "staging's default draining_timeout");
    r.deploy("r1").await.unwrap();
    let timed = r.fleet.timed_calls();
    let at = |what: &str| timed.iter().find(|(_, c)| c == what).map(|(t, _)| *t);
    for id in ids(&web0) {
        let out = at(&format!("deregister {id}")).unwrap_or_else(|| panic!("{id} deregistered: {timed:?}"));
        let gone = at(&format!("terminate {id}")).unwrap_or_else(|| panic!("{id} terminated: {timed:?}"));
        assert!(
            gone >= out + drain,
            "{id}: terminated {:?} after leaving the load balancer, draining is {drain:?}",
            gone - out
        );
    }
    // Workers have no load balancer: nothing to drain.
    for id in ids(&worker0) {
        assert!(at(&format!("deregister {id}")).is_none());
        assert!(at(&format!("terminate {id}")).is_some());
    }
    let web = r.group(WEB).await;
    assert!(ids(&web).is_disjoint(&ids(&web0)), "every old web instance replaced");
    assert_eq!((web.desired, web.max), (web0.desired, web0.max));
    assert!(r.notes().contains("draining for 5m"), "{}", r.notes());
}

#[tokio::test]
async fn a_later_role_that_never_turns_healthy_rolls_back_and_sends_the_earlier_one_back_too() {
    let r = rig(FakeRemote::new()).await;
    let (web0, worker0) = (r.group(WEB).await, r.group(WORKER).await);
    r.fleet.sicken(RoleKind::Web, &rev("r1"));
    let err = r.deploy("r1").await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DeployError::RolledBack(_)), "{msg}");
    assert!(
        msg.starts_with("web: the new instances did not become healthy within 2m"),
        "{msg}"
    );
    assert!(msg.ends_with("; worker also went back"), "{msg}");
    let (web, worker) = (r.group(WEB).await, r.group(WORKER).await);
    assert_eq!(lc(&web), lc(&web0));
    assert_eq!(lc(&worker), lc(&worker0));
    assert_eq!(web.revision, Some(rev("r0")));
    assert_eq!(worker.revision, Some(rev("r0")));
    assert_eq!(healthy(&web), 2, "{web:?}");
    assert_eq!(healthy(&worker), 1, "{worker:?}");
    assert!(
        !ids(&worker).iter().any(|i| ids(&worker0).contains(i)),
        "the worker rolled twice"
    );
    let h = r.history().await;
    assert_eq!(h.last().unwrap().result, "rolled back");
    assert!(!r.lock_held().await);
    assert!(
        r.notes().contains("worker: back to launch configuration"),
        "{}",
        r.notes()
    );
}

#[tokio::test]
async fn ctrl_c_mid_roll_releases_the_lock_and_records_the_interruption() {
    let r = rig(FakeRemote::new()).await;
    let p = r.prepare(deploy_op("r1")).await.unwrap();
    let err = r
        .deployer()
        .run(p, &actor(), r.fleet.capacity_changed())
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::Interrupted(_)), "{err}");
    assert_eq!(err.to_string(), "interrupted; the lock was released");
    assert!(!r.lock_held().await);
    assert!(
        r.fleet.calls().iter().any(|c| c.starts_with("set_capacity")),
        "mid-roll"
    );
    let h = r.history().await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].result, "interrupted");
}

#[tokio::test]
async fn a_held_lock_stops_the_deploy_before_any_change_naming_the_holder() {
    let mut r = rig(FakeRemote::new()).await;
    r.settings.lock_wait = Duration::from_secs(300);
    let alice = LockHolder {
        who: "alice".into(),
        host: "laptop".into(),
        pid: 7,
        operation: "deploy".into(),
        revision: "r9".into(),
        since: deploy::rfc3339(1_795_000_000),
        since_epoch: 1_795_000_000,
    };
    let lock = deploy::lock_key(&r.env);
    r.store
        .put_new(&lock, serde_json::to_vec(&alice).unwrap(), BTreeMap::new())
        .await
        .unwrap();
    let p = r.prepare(deploy_op("r1")).await.unwrap();
    let t0 = r.clock.elapsed();
    let err = r.deployer().run(p, &actor(), std::future::pending()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DeployError::Locked(_)), "{msg}");
    assert!(
        msg.contains("locked by alice@laptop (pid 7, deploy of revision r9"),
        "{msg}"
    );
    assert!(msg.contains("waited 5m"), "{msg}");
    assert!(
        r.clock.elapsed() - t0 >= Duration::from_secs(300),
        "it waited on the clock"
    );
    assert!(
        r.notes()
            .contains("waiting up to 5m for the deploy lock held by alice@laptop")
    );
    assert!(r.fleet.calls().is_empty(), "{:?}", r.fleet.calls());
    assert!(r.remote.calls().is_empty());
    assert!(r.history().await.is_empty(), "no record without the lock");
    assert!(r.lock_held().await, "alice's lock is left alone");
}

#[tokio::test]
async fn a_failing_migration_stops_the_deploy_before_any_rotation() {
    let r = rig(FakeRemote::new().failing("badmig")).await;
    let (web0, worker0) = (r.group(WEB).await, r.group(WORKER).await);
    let creates = r.fleet.cloud().calls().len();
    let err = r.deploy("badmig1").await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DeployError::Migration { .. }), "{msg}");
    assert!(
        msg.contains("migrations failed on i-") && msg.contains("(exit 3); nothing was rotated"),
        "{msg}"
    );
    assert!(
        r.notes().contains("relation \\\"photos\\\" already exists"),
        "{}",
        r.notes()
    );
    assert!(r.fleet.calls().is_empty(), "{:?}", r.fleet.calls());
    assert_eq!(r.fleet.cloud().calls().len(), creates, "no launch configuration made");
    assert_eq!(r.group(WEB).await, web0);
    assert_eq!(r.group(WORKER).await, worker0);
    let h = r.history().await;
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].revision.as_str(), h[0].result.as_str()), ("badmig1", "failed"));
    assert!(!r.lock_held().await);
}

#[tokio::test]
async fn under_the_lock_a_deploy_another_one_got_to_first_finds_nothing_to_do() {
    let r = rig(FakeRemote::new()).await;
    let first = r.prepare(deploy_op("r1")).await.unwrap();
    let second = r.prepare(deploy_op("r1")).await.unwrap();
    r.deployer().run(first, &actor(), std::future::pending()).await.unwrap();
    let before = r.fleet.discoveries();
    let report = r
        .deployer()
        .run(second, &actor(), std::future::pending())
        .await
        .unwrap();
    assert!(!report.changed);
    assert_eq!(r.fleet.discoveries() - before, 1, "the groups changed: it looked again");
    assert_eq!(r.remote.calls().len(), 1, "migrations ran once");
    assert_eq!(r.history().await.len(), 1, "no record for the no-op");
    assert!(r.notes().contains("the groups changed while waiting for the lock"));
}

/// A deploy looks only at what it rolls and what its launches name
/// (`Scope::for_deploy`): drift in the load balancer's settings does not
/// stop it (`fabrs plan` shows it), drift in a security group the launches
/// name does.
#[tokio::test]
async fn a_deploy_refuses_drift_in_what_it_rolls_and_leaves_the_rest_to_plan() {
    use fabrs_plan::addr;
    use fabrs_plan::resource::Spec;
    let r = rig(FakeRemote::new()).await;
    r.fleet.cloud().tamper(&addr::load_balancer(), |s| {
        if let Spec::LoadBalancer(lb) = s {
            lb.idle_timeout_secs += 7;
        }
    });
    let (plan, _, _) = make_plan(&r.fleet, &r.env, &r.renderer, None, None).await.unwrap();
    assert!(
        plan.changes.iter().any(|c| c.address == addr::load_balancer()),
        "plan shows the load balancer's drift: {:?}",
        plan.changes
    );
    let p = r
        .prepare(deploy_op("r1"))
        .await
        .expect("the load balancer's settings are not the deploy's");
    assert_eq!(p.roles.len(), 2);

    r.fleet.cloud().tamper(&addr::security_group("web"), |s| {
        if let Spec::SecurityGroup(g) = s {
            g.ingress.clear();
        }
    });
    let e = r.prepare(deploy_op("r1")).await.unwrap_err().to_string();
    assert!(
        e.contains("security_group.web") && e.contains("beyond launch settings"),
        "{e}"
    );
}
