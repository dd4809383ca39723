//! Fakes for fast tests of the deploy driver, beside the in-memory cloud:
//! [`FakeFleet`] (a [`FakeCloud`] plus autoscaling groups whose instances
//! boot, turn healthy — or not, for a "sick" revision — and go, in virtual
//! time), [`VirtualClock`] (sleeping advances it at once) and
//! [`FakeRemote`] (migrations that succeed, fail or hang). The moto tests of
//! the CLI stay the real-peer check.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fabrs_cloud::{ApplyCtx, Cloud, CloudError, ErrorKind, Fleet, Progress, Remote, RemoteOutput, Scope};
use fabrs_config::revision::or_none;
use fabrs_config::{Revision, RoleKind};
use fabrs_plan::addr;
use fabrs_plan::deploy::GroupNow;
use fabrs_plan::resource::{Address, Inventory, LaunchRef, Member, Observed, Spec, VpcRef};
use tokio::sync::Notify;

use crate::deploy::Clock;
use crate::fake::FakeCloud;

// ------------------------------------------------------------------ clock

/// Time that passes only when the driver sleeps: a sleep advances it by the
/// full amount at once (and yields, so a racing future — a cancel — runs).
pub struct VirtualClock {
    t: Mutex<Duration>,
    wall0: SystemTime,
}

impl VirtualClock {
    pub fn new() -> VirtualClock {
        VirtualClock {
            t: Mutex::new(Duration::ZERO),
            // 2026-11-18T11:06:40Z
            wall0: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        }
    }
    pub fn advance(&self, d: Duration) {
        *self.t.lock().unwrap() += d;
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> SystemTime {
        self.wall0 + self.elapsed()
    }
    fn elapsed(&self) -> Duration {
        *self.t.lock().unwrap()
    }
    async fn sleep(&self, d: Duration) {
        self.advance(d);
        tokio::task::yield_now().await;
    }
}

// ------------------------------------------------------------------ fleet

struct FakeInstance {
    id: String,
    /// When it has booted (virtual time).
    ready_at: Duration,
    revision: Option<Revision>,
    deregistered: bool,
}

struct FakeGroup {
    role: RoleKind,
    desired: u32,
    max: u32,
    min: u32,
    launch: LaunchRef,
    revision: Option<Revision>,
    load_balancer: Option<String>,
    members: Vec<FakeInstance>,
}

#[derive(Default)]
struct FleetState {
    groups: BTreeMap<String, FakeGroup>,
    next_instance: u64,
    /// Launch configuration name → creation order.
    created: BTreeMap<String, u64>,
    next_created: u64,
    /// (role, revision) whose instances never turn healthy.
    sick: BTreeSet<(RoleKind, Revision)>,
    /// Every mutating fleet call, in order.
    calls: Vec<String>,
    /// Deregistrations and terminations with the virtual time they came at.
    timed: Vec<(Duration, String)>,
}

/// A [`FakeCloud`] whose autoscaling groups run instances. An instance is
/// `Pending` for [`FakeFleet::BOOT`] of virtual time, then `InService` (and
/// InService behind the load balancer unless deregistered) — unless its
/// role and revision were made sick: then the load balancer never sees it
/// healthy (and a group without one never sees it InService).
pub struct FakeFleet {
    cloud: FakeCloud,
    clock: std::sync::Arc<VirtualClock>,
    state: Mutex<FleetState>,
    discoveries: AtomicUsize,
    capacity_changed: Notify,
}

impl FakeFleet {
    pub const BOOT: Duration = Duration::from_secs(20);

    pub fn new(clock: std::sync::Arc<VirtualClock>) -> FakeFleet {
        FakeFleet {
            cloud: FakeCloud::new(),
            clock,
            state: Mutex::default(),
            discoveries: AtomicUsize::new(0),
            capacity_changed: Notify::new(),
        }
    }

    pub fn cloud(&self) -> &FakeCloud {
        &self.cloud
    }

    /// `discover` calls so far.
    pub fn discoveries(&self) -> usize {
        self.discoveries.load(Ordering::SeqCst)
    }

    /// Mutating fleet calls so far (`set_capacity g 3/4`, `switch_launch g …`,
    /// `deregister …`, `terminate …`).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// `deregister …` and `terminate …` calls with their virtual time.
    pub fn timed_calls(&self) -> Vec<(Duration, String)> {
        self.state.lock().unwrap().timed.clone()
    }

    /// Instances of `role` launched with `revision` never turn healthy.
    pub fn sicken(&self, role: RoleKind, revision: &Revision) {
        self.state.lock().unwrap().sick.insert((role, revision.clone()));
    }

    /// Resolves at the next capacity change (the first launch of a roll).
    pub async fn capacity_changed(&self) {
        self.capacity_changed.notified().await
    }

    /// The group's state now, by its name.
    pub async fn group_named(&self, name: &str) -> GroupNow {
        self.group(name).await.unwrap()
    }

    fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    /// The ASGs of the cloud: name → (id, spec).
    async fn asgs(&self) -> Vec<(String, Observed)> {
        let scope = Scope {
            project: String::new(),
            environment: String::new(),
            region: String::new(),
            vpc: VpcRef::Default,
            names: BTreeMap::new(),
            launch_configuration_prefix: String::new(),
            image_parameters: Vec::new(),
            db_identifiers: Vec::new(),
            kinds: None,
        };
        let inv = self.cloud.discover(&scope).await.expect("the fake cloud discovers");
        inv.resources
            .into_values()
            .filter_map(|o| match &o.spec {
                Spec::AutoScalingGroup(a) => Some((a.name.clone(), o)),
                _ => None,
            })
            .collect()
    }

    /// The group named (or with the cloud id) `key`, started on first use
    /// with its desired capacity of healthy instances.
    async fn ensure_group(&self, key: &str) -> Result<String, CloudError> {
        let asgs = self.asgs().await;
        let Some((name, o)) = asgs.into_iter().find(|(n, o)| n == key || o.id == key) else {
            return Err(CloudError::new(
                ErrorKind::NotFound,
                "DescribeAutoScalingGroups",
                format!("auto scaling group {key}"),
                "no such group",
            ));
        };
        let Spec::AutoScalingGroup(a) = &o.spec else {
            unreachable!()
        };
        let mut s = self.state.lock().unwrap();
        if !s.groups.contains_key(&name) {
            let revision = a.tags.get(addr::TAG_REVISION).and_then(|r| Revision::read_back(r));
            let mut members = Vec::new();
            for _ in 0..a.desired {
                s.next_instance += 1;
                members.push(FakeInstance {
                    id: format!("i-{:08x}", s.next_instance),
                    ready_at: Duration::ZERO,
                    revision: revision.clone(),
                    deregistered: false,
                });
            }
            s.groups.insert(
                name.clone(),
                FakeGroup {
                    role: a.role,
                    desired: a.desired,
                    max: a.max,
                    min: a.min,
                    launch: a.launch.clone(),
                    revision,
                    load_balancer: a.load_balancers.first().cloned(),
                    members,
                },
            );
        }
        Ok(name)
    }

    /// The group catches up with its desired capacity.
    fn settle(s: &mut FleetState, name: &str, now: Duration) {
        let g = s.groups.get_mut(name).expect("known group");
        while (g.members.len() as u32) > g.desired {
            // Like Auto Scaling: the newest go first when scaling in.
            g.members.pop();
        }
        while (g.members.len() as u32) < g.desired {
            s.next_instance += 1;
            g.members.push(FakeInstance {
                id: format!("i-{:08x}", s.next_instance),
                ready_at: now + Self::BOOT,
                revision: g.revision.clone(),
                deregistered: false,
            });
        }
    }

    fn snapshot(s: &FleetState, name: &str, now: Duration) -> GroupNow {
        let g = &s.groups[name];
        let members = g
            .members
            .iter()
            .map(|i| {
                let sick = i
                    .revision
                    .as_ref()
                    .is_some_and(|r| s.sick.contains(&(g.role, r.clone())));
                let booted = now >= i.ready_at;
                let state = if booted && (g.load_balancer.is_some() || !sick) {
                    "InService"
                } else {
                    "Pending"
                };
                let health = match &g.load_balancer {
                    None => "",
                    Some(_) if booted && !sick && !i.deregistered => "InService",
                    Some(_) => "OutOfService",
                };
                Member {
                    id: i.id.clone(),
                    state: state.into(),
                    health: health.into(),
                    launch: String::new(),
                }
            })
            .collect();
        GroupNow {
            name: name.to_string(),
            min: g.min,
            max: g.max,
            desired: g.desired,
            launch: g.launch.clone(),
            load_balancers: g.load_balancer.iter().cloned().collect(),
            members,
            revision: g.revision.clone(),
        }
    }
}

impl Cloud for FakeFleet {
    async fn discover(&self, scope: &Scope) -> Result<Inventory, CloudError> {
        self.discoveries.fetch_add(1, Ordering::SeqCst);
        self.cloud.discover(scope).await
    }
    async fn create(&self, address: &Address, spec: &Spec, ctx: &ApplyCtx) -> Result<Observed, CloudError> {
        let o = self.cloud.create(address, spec, ctx).await?;
        if let Spec::LaunchConfiguration(lc) = spec
            && let Some(name) = &lc.name
        {
            let mut s = self.state.lock().unwrap();
            if !s.created.contains_key(name) {
                s.next_created += 1;
                let n = s.next_created;
                s.created.insert(name.clone(), n);
            }
        }
        Ok(o)
    }
    async fn update(&self, current: &Observed, desired: &Spec, ctx: &ApplyCtx) -> Result<Observed, CloudError> {
        self.cloud.update(current, desired, ctx).await
    }
    async fn delete(&self, current: &Observed) -> Result<(), CloudError> {
        self.cloud.delete(current).await
    }
    async fn delete_database(&self, current: &Observed, how: &fabrs_cloud::DbDelete) -> Result<(), CloudError> {
        self.cloud.delete_database(current, how).await
    }

    async fn empty_bucket(&self, current: &Observed) -> Result<u64, CloudError> {
        self.cloud.empty_bucket(current).await
    }
    async fn engine_versions(&self, engine: &str, major: &str) -> Result<Option<Vec<String>>, CloudError> {
        self.cloud.engine_versions(engine, major).await
    }
    async fn preflight(&self, p: &fabrs_cloud::Preconditions) -> Result<Vec<fabrs_cloud::Missing>, CloudError> {
        self.cloud.preflight(p).await
    }
    async fn wait(
        &self,
        current: &Observed,
        gone: bool,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<Observed, CloudError> {
        self.cloud.wait(current, gone, timeout, progress).await
    }
}

impl Fleet for FakeFleet {
    async fn group(&self, name: &str) -> Result<GroupNow, CloudError> {
        let name = self.ensure_group(name).await?;
        let now = self.now();
        let mut s = self.state.lock().unwrap();
        Self::settle(&mut s, &name, now);
        Ok(Self::snapshot(&s, &name, now))
    }

    async fn set_capacity(&self, name: &str, desired: u32, max: u32) -> Result<(), CloudError> {
        let name = self.ensure_group(name).await?;
        {
            let mut s = self.state.lock().unwrap();
            let g = s.groups.get_mut(&name).unwrap();
            g.desired = desired;
            g.max = max;
            s.calls.push(format!("set_capacity {name} {desired}/{max}"));
        }
        self.capacity_changed.notify_one();
        Ok(())
    }

    async fn switch_launch(
        &self,
        name: &str,
        launch: &LaunchRef,
        revision: Option<&Revision>,
        health_check_type: &str,
    ) -> Result<(), CloudError> {
        let name = self.ensure_group(name).await?;
        let role = {
            let mut s = self.state.lock().unwrap();
            let g = s.groups.get_mut(&name).unwrap();
            g.launch = launch.clone();
            g.revision = revision.cloned();
            let role = g.role;
            s.calls
                .push(format!("switch_launch {name} {launch:?} {}", or_none(revision)));
            role
        };
        // What discovery (and so the planner) sees.
        self.cloud.tamper(&addr::autoscaling_group(role), |spec| {
            if let Spec::AutoScalingGroup(a) = spec {
                a.launch = launch.clone();
                a.health_check_type = health_check_type.to_string();
                a.tags
                    .insert(addr::TAG_REVISION.to_string(), or_none(revision).to_string());
            }
        });
        Ok(())
    }

    async fn deregister(&self, load_balancer: &str, ids: &[String]) -> Result<(), CloudError> {
        let now = self.now();
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("deregister {load_balancer} {}", ids.join(",")));
        for id in ids {
            s.timed.push((now, format!("deregister {id}")));
        }
        for g in s.groups.values_mut() {
            for i in &mut g.members {
                if ids.contains(&i.id) {
                    i.deregistered = true;
                }
            }
        }
        Ok(())
    }

    async fn terminate(&self, id: &str) -> Result<(), CloudError> {
        let now = self.now();
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("terminate {id}"));
        s.timed.push((now, format!("terminate {id}")));
        for g in s.groups.values_mut() {
            if let Some(pos) = g.members.iter().position(|i| i.id == id) {
                g.members.remove(pos);
                g.desired = g.desired.saturating_sub(1);
            }
        }
        Ok(())
    }

    async fn addresses(&self, ids: &[String]) -> Result<BTreeMap<String, String>, CloudError> {
        let s = self.state.lock().unwrap();
        let mut out = BTreeMap::new();
        for g in s.groups.values() {
            for i in &g.members {
                if ids.contains(&i.id) {
                    let n = u64::from_str_radix(&i.id[2..], 16).unwrap_or(0);
                    out.insert(i.id.clone(), format!("10.1.{}.{}", n / 250, n % 250 + 1));
                }
            }
        }
        Ok(out)
    }

    async fn launch_configuration_times(&self, names: &[String]) -> Result<BTreeMap<String, String>, CloudError> {
        let s = self.state.lock().unwrap();
        Ok(names
            .iter()
            .filter_map(|n| s.created.get(n).map(|t| (n.clone(), format!("{t:020}"))))
            .collect())
    }
}

// ------------------------------------------------------------------ remote

/// Runs nothing: records the commands and answers as told — a command
/// containing the `failing` word exits 3, one containing the `hanging` word
/// never returns (as a migration cut short by Ctrl-C), anything else exits 0.
#[derive(Default)]
pub struct FakeRemote {
    failing: Option<String>,
    hanging: Option<String>,
    calls: Mutex<Vec<(String, String, String)>>,
    started: Notify,
}

impl FakeRemote {
    pub fn new() -> FakeRemote {
        FakeRemote::default()
    }
    pub fn failing(mut self, word: &str) -> FakeRemote {
        self.failing = Some(word.into());
        self
    }
    pub fn hanging(mut self, word: &str) -> FakeRemote {
        self.hanging = Some(word.into());
        self
    }
    /// (instance, address, command) of every run, in order.
    pub fn calls(&self) -> Vec<(String, String, String)> {
        self.calls.lock().unwrap().clone()
    }
    /// Resolves once a command has started.
    pub async fn started(&self) {
        self.started.notified().await
    }
}

impl Remote for FakeRemote {
    async fn run(&self, instance_id: &str, address: &str, command: &str) -> RemoteOutput {
        self.calls
            .lock()
            .unwrap()
            .push((instance_id.into(), address.into(), command.into()));
        self.started.notify_one();
        if self.hanging.as_ref().is_some_and(|w| command.contains(w.as_str())) {
            std::future::pending::<()>().await;
        }
        if self.failing.as_ref().is_some_and(|w| command.contains(w.as_str())) {
            return RemoteOutput {
                ok: false,
                status: "exit 3".into(),
                stdout: "applying the migrations\n".into(),
                stderr: "ERROR: relation \"photos\" already exists\n".into(),
            };
        }
        RemoteOutput {
            ok: true,
            status: "exit 0".into(),
            stdout: "applying the migrations\n".into(),
            stderr: String::new(),
        }
    }
}
