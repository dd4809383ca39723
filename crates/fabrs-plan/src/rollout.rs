//! The rollout state machine behind `fabrs deploy`: replace, per autoscaled role, the instances
//! that were in service before a launch-configuration change with new ones, in batches, gated on
//! load-balancer health, never letting healthy capacity drop below a floor, and rolling back on
//! timeout or launch failure.
//!
//! Pure: no I/O, no clock (time only arrives in events), no randomness. The driver feeds
//! [`Event`]s into [`Rollout::handle`] and carries out the returned [`Action`]s, in order.
//!
//! # Rules
//!
//! **Belief.** The machine's view of health is the `in_service` list of the latest
//! [`Event::Health`]; anything not listed there (not yet reported, out of service, unknown) is
//! *not* in service. Healthy capacity = instances the machine considers alive (not removed by it,
//! not reported terminated) that are in that list. Because it only counts what it was told is
//! InService, the count is a lower bound of the real one whenever reports are not newer than the
//! truth.
//!
//! **Floor.** A removal (Deregister + Terminate) of a set `V` is issued only if the healthy
//! capacity *without* `V` is still `>= healthy_floor`. This is checked for every removal, in both
//! directions; if it fails the machine waits (for better health) until the batch deadline.
//! `healthy_floor` may equal `desired`: replacements are launched first (surge), so once a batch's
//! `k` replacements are InService the capacity is `before + k`, and removing `k` old instances
//! brings it back to `before`. A floor above `desired` can never be held and is refused by
//! [`Rollout::new`].
//!
//! **Forward batches.** The roll launches `desired` new instances in batches of
//! `min(batch_size, still to launch)` ([`Action::LaunchBatch`]). When every instance of the batch
//! has been reported ([`Event::Launched`]) it emits [`Action::WaitForHealth`]; when all of them are
//! InService the batch is *proven* and that many old instances may be removed (old instances
//! believed out of service are picked first, then the rest in the order given). An old instance is
//! never removed before a replacement is proven for it, so removed-old `<=` proven-new at all
//! times. The next batch starts once the proven replacements have been spent. If `old` holds more
//! ids than `desired`, the excess is removed (floor permitting) after the last batch is proven;
//! if fewer, the extra new instances are simply added. The roll is `Done` when every old instance
//! is removed and every launch is proven.
//!
//! **Deadlines.** Each batch has a deadline `now + health_timeout_secs` set when it is launched; it
//! covers launching, turning InService and the floor-permitted removal. It is checked on every
//! event carrying a time (after applying the event): if the batch is not through by then, or an
//! [`Event::LaunchFailed`] arrives while launches are outstanding, the roll rolls back.
//!
//! **Rollback** (the full rule, same batch/floor logic in reverse):
//! 1. [`Action::SwitchBack`] points the group at the previous launch configuration and lowers its
//!    desired capacity by `cancel` = launches of the failed batch the group never reported (they
//!    must not start with the new configuration).
//! 2. Every instance of the new configuration (earlier proven batches and the failed batch alike)
//!    is to be removed. The old instances still there are kept. `desired - kept old` instances of
//!    the previous configuration are launched in batches, each gated on health like above, and a
//!    new-configuration instance is removed only once a previous-configuration replacement is
//!    proven for it — except new-configuration instances believed *not* in service, which give no
//!    capacity and are removed at once (the floor check still applies), and the failed batch's
//!    surge instances, which are surplus and removed after the last rollback batch is proven.
//! 3. `RolledBack` when no new-configuration instance remains and every rollback launch is proven.
//!
//! A rollback batch that misses its deadline ends the machine in [`Phase::Aborted`]: nothing
//! sensible is left to automate; the group already points at the previous configuration and the
//! summary lists the new-configuration instances still there. A `LaunchFailed` during the rollback
//! is ignored: it may predate the SwitchBack, and the group keeps retrying; the deadline decides.
//! Every waiting state has a deadline, so with time advancing the machine always terminates.
//!
//! **Idempotence.** Events are applied as facts: a repeated `Started`, ids already known in
//! `Launched`, instances beyond the outstanding launch count, unknown ids in `Health` or
//! `Terminated`, a `LaunchFailed` with no launch outstanding, and any event after the end are
//! ignored. Time never goes backwards: the machine keeps the largest `now` seen.
//!
//! **Driver contract.** Report each instance in `Launched` as soon as the group shows it (the
//! machine attributes launched ids to its outstanding request count, and `SwitchBack.cancel` is
//! computed from what was reported). `Terminated` for an instance the machine did not remove means
//! it is gone (it stops counting; an old one needs no removal any more).

use std::collections::BTreeSet;
use std::fmt;

/// Parameters of one role's rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutConfig {
    /// New instances launched per batch (at least 1).
    pub batch_size: u32,
    /// Healthy capacity the machine's removals never take the role below (at most `desired`).
    pub healthy_floor: u32,
    /// Per batch: launch + InService + removal must be through within this many seconds (>= 1).
    pub health_timeout_secs: u64,
    /// Instances the role should have at the end (of the new configuration, or of the previous one
    /// after a rollback).
    pub desired: u32,
}

/// Why a [`RolloutConfig`] cannot be rolled out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutError {
    ZeroBatchSize,
    ZeroTimeout,
    FloorAboveDesired { floor: u32, desired: u32 },
}

impl fmt::Display for RolloutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutError::ZeroBatchSize => write!(f, "rollout batch size must be at least 1"),
            RolloutError::ZeroTimeout => write!(f, "rollout health timeout must be at least 1 second"),
            RolloutError::FloorAboveDesired { floor, desired } => write!(
                f,
                "healthy floor {floor} is above the desired capacity {desired}: the role can never have that \
                 many healthy instances, lower the floor or raise the desired capacity"
            ),
        }
    }
}

impl std::error::Error for RolloutError {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Start the roll; returns the first actions.
    Started { now: u64 },
    /// Instances the group started (after a LaunchBatch).
    Launched { ids: Vec<String>, now: u64 },
    /// The load balancer's view of all instances.
    Health {
        in_service: Vec<String>,
        out_of_service: Vec<String>,
        now: u64,
    },
    /// Instances confirmed gone.
    Terminated { ids: Vec<String>, now: u64 },
    /// Time passes (the only clock).
    Tick { now: u64 },
    /// The group failed to launch an instance.
    LaunchFailed { reason: String, now: u64 },
}

impl Event {
    fn now(&self) -> u64 {
        match self {
            Event::Started { now }
            | Event::Launched { now, .. }
            | Event::Health { now, .. }
            | Event::Terminated { now, .. }
            | Event::Tick { now }
            | Event::LaunchFailed { now, .. } => *now,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Raise the group's desired capacity by `count` (instances use the group's current launch
    /// configuration: the new one while rolling, the previous one after SwitchBack).
    LaunchBatch { count: u32 },
    /// Informational: the batch's instances are all known; they must be InService by `deadline`.
    WaitForHealth { ids: Vec<String>, deadline: u64 },
    /// Remove from the load balancer.
    Deregister { ids: Vec<String> },
    /// Terminate, decrementing the group's desired capacity. Always preceded by a Deregister of the
    /// same ids.
    Terminate { ids: Vec<String> },
    /// Point the group back at the previous launch configuration and lower its desired capacity by
    /// `cancel` (launches requested but never reported).
    SwitchBack { cancel: u32 },
    /// The machine is finished.
    Finish { outcome: Outcome, summary: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every old instance replaced by a healthy new one.
    Done,
    /// Back on the previous launch configuration, no instance of the new one left.
    RolledBack,
    /// The rollback itself could not complete; new-configuration instances remain.
    Aborted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Rolling,
    RollingBack,
    Done,
    RolledBack,
    Aborted,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Done | Phase::RolledBack | Phase::Aborted)
    }
}

#[derive(Clone, Debug)]
struct Batch {
    expected: u32,
    arrived: Vec<String>,
    announced: bool,
}

/// One direction of the roll: launch `to_launch` replacements, remove `replace`.
#[derive(Clone, Debug)]
struct Leg {
    replace: Vec<String>,
    to_launch: u32,
    batch: Option<Batch>,
    /// Proven replacements not yet spent on a removal.
    budget: u32,
    /// Removals allowed without replacement once every launch is proven.
    surplus: u32,
    /// Members of `replace` believed out of service may be removed without a replacement.
    free_unhealthy: bool,
    deadline: u64,
}

#[derive(Clone, Debug)]
pub struct Rollout {
    cfg: RolloutConfig,
    old: Vec<String>,
    phase: Phase,
    started: bool,
    now: u64,
    leg: Leg,
    /// Instances alive as far as the machine knows (not removed by it, not reported terminated).
    live: BTreeSet<String>,
    in_service: BTreeSet<String>,
    /// Every id the machine attributed to one of its launches.
    launched_new: Vec<String>,
    launched_prev: Vec<String>,
    removed: Vec<String>,
    batches: u32,
    rollback_reason: Option<String>,
}

impl Rollout {
    /// `old`: the instance ids in service before the roll (duplicates are ignored).
    pub fn new(cfg: RolloutConfig, old: Vec<String>, now_secs: u64) -> Result<Rollout, RolloutError> {
        if cfg.batch_size == 0 {
            return Err(RolloutError::ZeroBatchSize);
        }
        if cfg.health_timeout_secs == 0 {
            return Err(RolloutError::ZeroTimeout);
        }
        if cfg.healthy_floor > cfg.desired {
            return Err(RolloutError::FloorAboveDesired {
                floor: cfg.healthy_floor,
                desired: cfg.desired,
            });
        }
        let mut seen = BTreeSet::new();
        let old: Vec<String> = old.into_iter().filter(|id| seen.insert(id.clone())).collect();
        let surplus = (old.len() as u64).saturating_sub(cfg.desired as u64) as u32;
        Ok(Rollout {
            leg: Leg {
                replace: old.clone(),
                to_launch: cfg.desired,
                batch: None,
                budget: 0,
                surplus,
                free_unhealthy: false,
                deadline: now_secs.saturating_add(cfg.health_timeout_secs),
            },
            live: seen,
            cfg,
            old,
            phase: Phase::Rolling,
            started: false,
            now: now_secs,
            in_service: BTreeSet::new(),
            launched_new: Vec::new(),
            launched_prev: Vec::new(),
            removed: Vec::new(),
            batches: 0,
            rollback_reason: None,
        })
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn config(&self) -> &RolloutConfig {
        &self.cfg
    }

    /// The deadline of what the machine is waiting for, if it is waiting.
    pub fn deadline(&self) -> Option<u64> {
        (self.started && !self.phase.is_terminal()).then_some(self.leg.deadline)
    }

    /// Why the roll went back, once it did.
    pub fn rollback_reason(&self) -> Option<&str> {
        self.rollback_reason.as_deref()
    }

    /// Deterministic: the same sequence of events always gives the same actions.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        if self.phase.is_terminal() {
            return Vec::new();
        }
        self.now = self.now.max(event.now());
        let mut out = Vec::new();
        match event {
            Event::Started { .. } => {
                if self.started {
                    return out;
                }
                self.started = true;
                self.leg.deadline = self.now.saturating_add(self.cfg.health_timeout_secs);
            }
            Event::Health { in_service, .. } => {
                self.in_service = in_service.into_iter().collect();
            }
            Event::Launched { ids, .. } => {
                if !self.started {
                    return out;
                }
                for id in ids {
                    if self.is_known(&id) {
                        continue;
                    }
                    let Some(batch) = self.leg.batch.as_mut() else { break };
                    if batch.arrived.len() as u32 >= batch.expected {
                        break;
                    }
                    batch.arrived.push(id.clone());
                    self.live.insert(id.clone());
                    if self.phase == Phase::Rolling {
                        self.launched_new.push(id);
                    } else {
                        self.launched_prev.push(id);
                    }
                }
            }
            Event::Terminated { ids, .. } => {
                for id in ids {
                    if self.live.remove(&id) {
                        // Gone without us: it needs no removal any more.
                        self.leg.replace.retain(|r| r != &id);
                    }
                }
            }
            Event::Tick { .. } => {}
            Event::LaunchFailed { reason, .. } => {
                let outstanding = self
                    .leg
                    .batch
                    .as_ref()
                    .is_some_and(|b| (b.arrived.len() as u32) < b.expected);
                // While rolling back a failure report may predate the SwitchBack (a launch of the
                // new configuration); the group keeps retrying, so only the deadline ends a rollback.
                if self.started && outstanding && self.phase == Phase::Rolling {
                    self.fail(format!("launch failed: {reason}"), &mut out);
                    return out;
                }
            }
        }
        if !self.started {
            return out;
        }
        self.advance(&mut out);
        if !self.phase.is_terminal() && self.now >= self.leg.deadline {
            let what = match &self.leg.batch {
                Some(b) if (b.arrived.len() as u32) < b.expected => format!(
                    "only {} of {} instances launched by the deadline",
                    b.arrived.len(),
                    b.expected
                ),
                Some(b) => {
                    let sick: Vec<&str> = b
                        .arrived
                        .iter()
                        .filter(|id| !self.healthy(id))
                        .map(String::as_str)
                        .collect();
                    format!("instances not InService by the deadline: {}", sick.join(", "))
                }
                None => format!(
                    "removing replaced instances would take healthy capacity below the floor of {}",
                    self.cfg.healthy_floor
                ),
            };
            self.fail(
                format!("timed out after {}s: {what}", self.cfg.health_timeout_secs),
                &mut out,
            );
        }
        out
    }

    fn is_known(&self, id: &str) -> bool {
        self.old.iter().any(|o| o == id)
            || self.launched_new.iter().any(|o| o == id)
            || self.launched_prev.iter().any(|o| o == id)
    }

    fn healthy(&self, id: &str) -> bool {
        self.live.contains(id) && self.in_service.contains(id)
    }

    fn capacity(&self) -> u32 {
        self.live.iter().filter(|id| self.in_service.contains(*id)).count() as u32
    }

    /// Apply everything that can be done now: complete the batch, remove, launch, finish.
    fn advance(&mut self, out: &mut Vec<Action>) {
        loop {
            let mut progressed = false;
            // Batch complete?
            if let Some(b) = &self.leg.batch
                && b.arrived.len() as u32 == b.expected
            {
                if !b.announced && self.now < self.leg.deadline {
                    out.push(Action::WaitForHealth {
                        ids: b.arrived.clone(),
                        deadline: self.leg.deadline,
                    });
                    self.leg.batch.as_mut().unwrap().announced = true;
                }
                let b = self.leg.batch.as_ref().unwrap();
                if b.arrived.iter().all(|id| self.healthy(id)) {
                    self.leg.budget += b.expected;
                    self.leg.batch = None;
                    progressed = true;
                }
            }
            // Removals.
            let victims = self.pick_victims();
            if !victims.is_empty() {
                for v in &victims {
                    self.live.remove(v);
                    self.leg.replace.retain(|r| r != v);
                    self.removed.push(v.clone());
                }
                out.push(Action::Deregister { ids: victims.clone() });
                out.push(Action::Terminate { ids: victims });
                progressed = true;
            }
            // Next batch, once the proven replacements are spent.
            let pending_removals = self.leg.budget.min(self.leg.replace.len() as u32);
            if self.leg.batch.is_none() && self.leg.to_launch > 0 && pending_removals == 0 {
                let k = self.cfg.batch_size.min(self.leg.to_launch);
                self.leg.to_launch -= k;
                self.leg.budget = 0;
                self.leg.batch = Some(Batch {
                    expected: k,
                    arrived: Vec::new(),
                    announced: false,
                });
                self.leg.deadline = self.now.saturating_add(self.cfg.health_timeout_secs);
                self.batches += 1;
                out.push(Action::LaunchBatch { count: k });
                progressed = true;
            }
            // Finished?
            if self.leg.replace.is_empty() && self.leg.to_launch == 0 && self.leg.batch.is_none() {
                self.finish(out);
                return;
            }
            if !progressed {
                return;
            }
        }
    }

    fn pick_victims(&mut self) -> Vec<String> {
        let all_proven = self.leg.to_launch == 0 && self.leg.batch.is_none();
        let mut cands: Vec<&String> = self.leg.replace.iter().filter(|id| !self.healthy(id)).collect();
        cands.extend(self.leg.replace.iter().filter(|id| self.healthy(id)));
        let mut cap = self.capacity();
        let mut victims = Vec::new();
        for c in cands {
            let is = self.healthy(c);
            let free = self.leg.free_unhealthy && !is;
            if !free && self.leg.budget == 0 && !(all_proven && self.leg.surplus > 0) {
                continue;
            }
            let after = if is { cap - 1 } else { cap };
            if after < self.cfg.healthy_floor {
                continue;
            }
            cap = after;
            if !free {
                if self.leg.budget > 0 {
                    self.leg.budget -= 1;
                } else {
                    self.leg.surplus -= 1;
                }
            }
            victims.push(c.clone());
        }
        victims
    }

    fn fail(&mut self, reason: String, out: &mut Vec<Action>) {
        if self.phase == Phase::RollingBack {
            self.phase = Phase::Aborted;
            let left: Vec<&str> = self
                .launched_new
                .iter()
                .filter(|id| self.live.contains(*id))
                .map(String::as_str)
                .collect();
            let first = self.rollback_reason.clone().unwrap_or_default();
            out.push(Action::Finish {
                outcome: Outcome::Aborted,
                summary: format!(
                    "rollback aborted ({reason}) after the roll failed ({first}); the group points at the previous \
                     launch configuration but {} instance(s) of the new one remain: {}",
                    left.len(),
                    if left.is_empty() {
                        "none".to_string()
                    } else {
                        left.join(", ")
                    }
                ),
            });
            return;
        }
        // Start the rollback.
        let cancel = self
            .leg
            .batch
            .as_ref()
            .map_or(0, |b| b.expected - b.arrived.len() as u32);
        out.push(Action::SwitchBack { cancel });
        self.rollback_reason = Some(reason);
        self.phase = Phase::RollingBack;
        let replace: Vec<String> = self
            .launched_new
            .iter()
            .filter(|id| self.live.contains(*id))
            .cloned()
            .collect();
        let kept_old = self.old.iter().filter(|id| self.live.contains(*id)).count() as u32;
        let to_launch = self.cfg.desired.saturating_sub(kept_old);
        self.leg = Leg {
            surplus: (replace.len() as u32).saturating_sub(to_launch),
            replace,
            to_launch,
            batch: None,
            budget: 0,
            free_unhealthy: true,
            deadline: self.now.saturating_add(self.cfg.health_timeout_secs),
        };
        self.advance(out);
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        let (outcome, summary) = match self.phase {
            Phase::Rolling => {
                self.phase = Phase::Done;
                let removed_old = self.removed.iter().filter(|id| self.old.contains(id)).count();
                (
                    Outcome::Done,
                    format!(
                        "replaced {removed_old} old instance(s) with {} new one(s) in {} batch(es)",
                        self.launched_new.len(),
                        self.batches
                    ),
                )
            }
            _ => {
                self.phase = Phase::RolledBack;
                let removed_new = self.removed.iter().filter(|id| self.launched_new.contains(id)).count();
                let kept_old = self.old.iter().filter(|id| self.live.contains(*id)).count();
                (
                    Outcome::RolledBack,
                    format!(
                        "rolled back ({}): the group points at the previous launch configuration; {removed_new} \
                         new-configuration instance(s) removed, {kept_old} old instance(s) kept, {} launched from \
                         the previous configuration",
                        self.rollback_reason.as_deref().unwrap_or("?"),
                        self.launched_prev.len()
                    ),
                )
            }
        };
        out.push(Action::Finish { outcome, summary });
    }
}
