//! The rollout state machine: typical runs, and properties over a simulated group + load balancer.

use std::collections::{BTreeMap, BTreeSet};

use fabrs_plan::rollout::{Action, Event, Outcome, Phase, Rollout, RolloutConfig, RolloutError};
use proptest::prelude::*;

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn cfg(desired: u32, batch: u32, floor: u32, timeout: u64) -> RolloutConfig {
    RolloutConfig {
        batch_size: batch,
        healthy_floor: floor,
        health_timeout_secs: timeout,
        desired,
    }
}

fn health(in_service: &[&str], out: &[&str], now: u64) -> Event {
    Event::Health {
        in_service: ids(in_service),
        out_of_service: ids(out),
        now,
    }
}

fn launched(v: &[&str], now: u64) -> Event {
    Event::Launched { ids: ids(v), now }
}

fn outcome(actions: &[Action]) -> Option<Outcome> {
    actions.iter().find_map(|a| match a {
        Action::Finish { outcome, .. } => Some(*outcome),
        _ => None,
    })
}

fn without_finish(actions: Vec<Action>) -> Vec<Action> {
    actions
        .into_iter()
        .filter(|a| !matches!(a, Action::Finish { .. }))
        .collect()
}

#[test]
fn two_old_batch_one_floor_one_is_done() {
    let mut r = Rollout::new(cfg(2, 1, 1, 60), ids(&["a", "b"]), 0).unwrap();
    assert_eq!(
        r.handle(Event::Started { now: 0 }),
        vec![Action::LaunchBatch { count: 1 }]
    );
    assert_eq!(
        r.handle(launched(&["n1"], 5)),
        vec![Action::WaitForHealth {
            ids: ids(&["n1"]),
            deadline: 60
        }]
    );
    // Not yet InService: nothing happens.
    assert_eq!(r.handle(health(&["a", "b"], &["n1"], 8)), vec![]);
    assert_eq!(
        r.handle(health(&["a", "b", "n1"], &[], 10)),
        vec![
            Action::Deregister { ids: ids(&["a"]) },
            Action::Terminate { ids: ids(&["a"]) },
            Action::LaunchBatch { count: 1 },
        ]
    );
    assert_eq!(r.deadline(), Some(70));
    assert_eq!(
        r.handle(launched(&["n2"], 12)),
        vec![Action::WaitForHealth {
            ids: ids(&["n2"]),
            deadline: 70
        }]
    );
    let last = r.handle(health(&["b", "n1", "n2"], &[], 20));
    assert_eq!(outcome(&last), Some(Outcome::Done));
    assert_eq!(
        without_finish(last),
        vec![
            Action::Deregister { ids: ids(&["b"]) },
            Action::Terminate { ids: ids(&["b"]) }
        ]
    );
    assert_eq!(r.phase(), Phase::Done);
    // Terminal: everything is ignored.
    assert_eq!(r.handle(Event::Tick { now: 1000 }), vec![]);
}

#[test]
fn a_batch_that_never_turns_healthy_rolls_back() {
    let mut r = Rollout::new(cfg(2, 1, 1, 30), ids(&["a", "b"]), 0).unwrap();
    r.handle(Event::Started { now: 0 });
    r.handle(launched(&["n1"], 2));
    assert_eq!(r.handle(health(&["a", "b"], &["n1"], 10)), vec![]);
    assert_eq!(r.handle(Event::Tick { now: 29 }), vec![]);
    let acts = r.handle(Event::Tick { now: 30 });
    assert_eq!(outcome(&acts), Some(Outcome::RolledBack));
    assert_eq!(
        without_finish(acts),
        vec![
            Action::SwitchBack { cancel: 0 },
            Action::Deregister { ids: ids(&["n1"]) },
            Action::Terminate { ids: ids(&["n1"]) },
        ]
    );
    assert_eq!(r.phase(), Phase::RolledBack);
    assert!(r.rollback_reason().unwrap().contains("n1"));
}

#[test]
fn rollback_replaces_healthy_new_instances_of_earlier_batches() {
    let mut r = Rollout::new(cfg(2, 1, 1, 60), ids(&["a", "b"]), 0).unwrap();
    r.handle(Event::Started { now: 0 });
    r.handle(launched(&["n1"], 5));
    r.handle(health(&["a", "b", "n1"], &[], 10)); // a replaced, second batch launched (deadline 70)
    r.handle(launched(&["n2"], 12));
    assert_eq!(r.handle(health(&["b", "n1"], &["n2"], 69)), vec![]);
    // Deadline: switch back, drop the sick n2 at once, launch one previous-configuration instance for n1.
    assert_eq!(
        r.handle(Event::Tick { now: 70 }),
        vec![
            Action::SwitchBack { cancel: 0 },
            Action::Deregister { ids: ids(&["n2"]) },
            Action::Terminate { ids: ids(&["n2"]) },
            Action::LaunchBatch { count: 1 },
        ]
    );
    assert_eq!(r.phase(), Phase::RollingBack);
    r.handle(launched(&["p1"], 72));
    // n1 is kept until p1 is InService.
    assert_eq!(r.handle(health(&["b", "n1"], &["p1"], 75)), vec![]);
    let acts = r.handle(health(&["b", "n1", "p1"], &[], 80));
    assert_eq!(outcome(&acts), Some(Outcome::RolledBack));
    assert_eq!(
        without_finish(acts),
        vec![
            Action::Deregister { ids: ids(&["n1"]) },
            Action::Terminate { ids: ids(&["n1"]) }
        ]
    );
}

#[test]
fn launch_failure_rolls_back_and_cancels_the_outstanding_launches() {
    let mut r = Rollout::new(cfg(3, 2, 2, 60), ids(&["a", "b", "c"]), 0).unwrap();
    assert_eq!(
        r.handle(Event::Started { now: 0 }),
        vec![Action::LaunchBatch { count: 2 }]
    );
    r.handle(launched(&["n1"], 1));
    r.handle(health(&["a", "b", "c"], &[], 1));
    let acts = r.handle(Event::LaunchFailed {
        reason: "InvalidAMIID.NotFound".into(),
        now: 2,
    });
    assert_eq!(outcome(&acts), Some(Outcome::RolledBack));
    // n1 is not InService, so it counts for nothing and goes at once (the floor of 2 still holds).
    assert_eq!(
        without_finish(acts),
        vec![
            Action::SwitchBack { cancel: 1 },
            Action::Deregister { ids: ids(&["n1"]) },
            Action::Terminate { ids: ids(&["n1"]) },
        ]
    );
    assert!(r.rollback_reason().unwrap().contains("InvalidAMIID"));
}

#[test]
fn a_rollback_that_cannot_complete_aborts() {
    let mut r = Rollout::new(cfg(1, 1, 1, 10), ids(&["a"]), 0).unwrap();
    r.handle(Event::Started { now: 0 });
    r.handle(launched(&["n1"], 1));
    // Desired 1: the first proven batch finishes the roll.
    let acts = r.handle(health(&["a", "n1"], &[], 2));
    assert_eq!(outcome(&acts), Some(Outcome::Done));

    let mut r = Rollout::new(cfg(2, 1, 1, 10), ids(&["a", "b"]), 0).unwrap();
    r.handle(Event::Started { now: 0 });
    r.handle(launched(&["n1"], 1));
    r.handle(health(&["a", "b", "n1"], &[], 2)); // a replaced; batch 2 due by 12
    r.handle(launched(&["n2"], 3));
    let acts = r.handle(Event::Tick { now: 12 });
    assert_eq!(acts.last(), Some(&Action::LaunchBatch { count: 1 }));
    r.handle(launched(&["p1"], 13));
    assert_eq!(r.handle(health(&["b", "n1"], &["p1"], 15)), vec![]);
    // A launch failure reported during the rollback may predate the SwitchBack: only the deadline counts.
    assert_eq!(
        r.handle(Event::LaunchFailed {
            reason: "late news".into(),
            now: 16
        }),
        vec![]
    );
    let acts = r.handle(Event::Tick { now: 22 });
    assert_eq!(outcome(&acts), Some(Outcome::Aborted));
    assert_eq!(r.phase(), Phase::Aborted);
    match &acts[0] {
        Action::Finish { summary, .. } => assert!(summary.contains("n1"), "{summary}"),
        a => panic!("{a:?}"),
    }
}

#[test]
fn floor_equal_to_desired_still_rolls_thanks_to_the_surge() {
    let mut r = Rollout::new(cfg(3, 2, 3, 60), ids(&["a", "b", "c"]), 0).unwrap();
    assert_eq!(
        r.handle(Event::Started { now: 0 }),
        vec![Action::LaunchBatch { count: 2 }]
    );
    r.handle(launched(&["n1", "n2"], 1));
    // Only one replacement healthy: nothing may go.
    assert_eq!(r.handle(health(&["a", "b", "c", "n1"], &["n2"], 2)), vec![]);
    assert_eq!(
        r.handle(health(&["a", "b", "c", "n1", "n2"], &[], 3)),
        vec![
            Action::Deregister { ids: ids(&["a", "b"]) },
            Action::Terminate { ids: ids(&["a", "b"]) },
            Action::LaunchBatch { count: 1 },
        ]
    );
    r.handle(launched(&["n3"], 4));
    let acts = r.handle(health(&["c", "n1", "n2", "n3"], &[], 5));
    assert_eq!(outcome(&acts), Some(Outcome::Done));
}

#[test]
fn the_floor_holds_a_batch_back_until_health_allows() {
    // b is out of service: removing a (InService) after n1 turns healthy would leave 1 < floor 2,
    // so the machine removes the sick b first.
    let mut r = Rollout::new(cfg(2, 1, 2, 60), ids(&["a", "b"]), 0).unwrap();
    r.handle(Event::Started { now: 0 });
    r.handle(launched(&["n1"], 1));
    assert_eq!(
        r.handle(health(&["a", "n1"], &["b"], 2)),
        vec![
            Action::Deregister { ids: ids(&["b"]) },
            Action::Terminate { ids: ids(&["b"]) },
            Action::LaunchBatch { count: 1 },
        ]
    );
    // Before any Health event nothing is known to be InService: no removal.
    let mut r = Rollout::new(cfg(1, 1, 1, 60), ids(&["a"]), 0).unwrap();
    r.handle(Event::Started { now: 0 });
    r.handle(launched(&["n1"], 1));
    // a was never reported: removing it leaves n1 InService, enough for floor 1.
    let acts = r.handle(health(&["n1"], &[], 2));
    assert_eq!(outcome(&acts), Some(Outcome::Done));
}

#[test]
fn duplicate_and_irrelevant_events_are_ignored() {
    let mut r = Rollout::new(cfg(2, 1, 1, 60), ids(&["a", "b", "a"]), 0).unwrap();
    assert_eq!(r.handle(Event::Tick { now: 0 }), vec![], "nothing before Started");
    r.handle(Event::Started { now: 0 });
    assert_eq!(r.handle(Event::Started { now: 1 }), vec![]);
    r.handle(launched(&["n1"], 5));
    assert_eq!(r.handle(launched(&["n1"], 6)), vec![], "repeated Launched");
    assert_eq!(r.handle(launched(&["x9"], 6)), vec![], "more instances than requested");
    assert_eq!(r.handle(launched(&["a"], 6)), vec![], "an old instance is not a launch");
    assert_eq!(r.handle(health(&["a", "b", "ghost"], &["n1", "zz"], 7)), vec![]);
    assert_eq!(
        r.handle(Event::Terminated {
            ids: ids(&["ghost"]),
            now: 7
        }),
        vec![]
    );
    // A LaunchFailed once every launch has arrived is stale.
    assert_eq!(
        r.handle(Event::LaunchFailed {
            reason: "old news".into(),
            now: 8
        }),
        vec![]
    );
    // Time going backwards does not move the deadline.
    assert_eq!(r.handle(Event::Tick { now: 3 }), vec![]);
    assert_eq!(r.phase(), Phase::Rolling);
    let acts = r.handle(health(&["a", "b", "n1"], &[], 9));
    assert_eq!(acts.len(), 3);
    assert_eq!(
        r.handle(health(&["a", "b", "n1"], &[], 9)),
        vec![],
        "repeated Health after the removal"
    );
}

#[test]
fn invalid_configs_fail_fast() {
    assert_eq!(
        Rollout::new(cfg(2, 1, 3, 60), ids(&["a", "b"]), 0).unwrap_err(),
        RolloutError::FloorAboveDesired { floor: 3, desired: 2 }
    );
    let e = Rollout::new(cfg(2, 1, 3, 60), vec![], 0).unwrap_err().to_string();
    assert!(e.contains("floor 3") && e.contains("desired capacity 2"), "{e}");
    assert_eq!(
        Rollout::new(cfg(2, 0, 1, 60), vec![], 0).unwrap_err(),
        RolloutError::ZeroBatchSize
    );
    assert_eq!(
        Rollout::new(cfg(2, 1, 1, 0), vec![], 0).unwrap_err(),
        RolloutError::ZeroTimeout
    );
}

#[test]
fn nothing_to_replace_is_done_at_once() {
    let mut r = Rollout::new(cfg(0, 1, 0, 60), vec![], 0).unwrap();
    let acts = r.handle(Event::Started { now: 0 });
    assert_eq!(outcome(&acts), Some(Outcome::Done));
    assert_eq!(acts.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Simulated group + load balancer.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lc {
    Prev,
    New,
}

#[derive(Clone, Debug)]
struct Inst {
    lc: Lc,
    healthy_at: Option<u64>,
    alive: bool,
    registered: bool,
}

#[derive(Clone, Debug)]
struct Pending {
    due: u64,
    fail: bool,
}

#[derive(Clone, Debug)]
struct Scenario {
    desired: u32,
    batch: u32,
    floor: u32,
    timeout: u64,
    seed: u64,
    never_new_pct: u64,
    fail_pct: u64,
    never_prev_pct: u64,
    new_delay_max: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        1u32..=6,
        1u32..=4,
        0u32..=100,
        20u64..=40,
        any::<u64>(),
        0u64..=40,
        0u64..=10,
        0u64..=15,
        0u64..=40,
    )
        .prop_map(
            |(desired, batch, f, timeout, seed, never_new_pct, fail_pct, never_prev_pct, new_delay_max)| Scenario {
                desired,
                batch,
                floor: f % (desired + 1),
                timeout,
                seed,
                never_new_pct,
                fail_pct,
                never_prev_pct,
                new_delay_max,
            },
        )
}

struct Sim {
    sc: Scenario,
    rng: u64,
    now: u64,
    lc: Lc,
    insts: BTreeMap<String, Inst>,
    pending: Vec<Pending>,
    next_id: u32,
    old: BTreeSet<String>,
    switched: bool,
    finished: Option<Outcome>,
    old_terminated: u32,
    unconfirmed: Vec<String>,
    history: Vec<Event>,
    prev_never_healthy: bool,
    last_skipped: bool,
    machine: Rollout,
}

impl Sim {
    fn new(sc: Scenario) -> Sim {
        let old: Vec<String> = (0..sc.desired).map(|i| format!("old-{i}")).collect();
        let insts = old
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    Inst {
                        lc: Lc::Prev,
                        healthy_at: Some(0),
                        alive: true,
                        registered: true,
                    },
                )
            })
            .collect();
        let machine = Rollout::new(cfg(sc.desired, sc.batch, sc.floor, sc.timeout), old.clone(), 0).unwrap();
        Sim {
            rng: sc.seed | 1,
            sc,
            now: 0,
            lc: Lc::New,
            insts,
            pending: Vec::new(),
            next_id: 0,
            old: old.into_iter().collect(),
            switched: false,
            finished: None,
            old_terminated: 0,
            unconfirmed: Vec::new(),
            history: Vec::new(),
            prev_never_healthy: false,
            last_skipped: false,
            machine,
        }
    }

    fn rand(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    fn healthy(&self, i: &Inst) -> bool {
        i.alive && i.registered && i.healthy_at.is_some_and(|t| t <= self.now)
    }

    fn capacity(&self) -> u32 {
        self.insts.values().filter(|i| self.healthy(i)).count() as u32
    }

    fn feed(&mut self, ev: Event) {
        let actions = self.machine.handle(ev.clone());
        self.history.push(ev.clone());
        for a in actions {
            assert!(self.finished.is_none(), "action after Finish: {a:?}");
            self.apply(a, &ev);
        }
    }

    fn apply(&mut self, a: Action, ev: &Event) {
        let now = self.now;
        match a {
            Action::LaunchBatch { count } => {
                assert!(count >= 1 && count <= self.sc.batch);
                for _ in 0..count {
                    let delay = if self.lc == Lc::Prev {
                        self.rand(3)
                    } else {
                        self.rand(5)
                    };
                    let fail = self.lc == Lc::New && self.rand(100) < self.sc.fail_pct;
                    self.pending.push(Pending { due: now + delay, fail });
                }
            }
            Action::WaitForHealth { ids, deadline } => {
                assert!(deadline >= now);
                for id in &ids {
                    assert!(!self.old.contains(id) && self.insts.contains_key(id), "{id}");
                }
            }
            Action::Deregister { ids } => {
                for id in &ids {
                    let i = self
                        .insts
                        .get_mut(id)
                        .unwrap_or_else(|| panic!("deregister unknown {id}"));
                    assert!(i.alive && i.registered, "deregister {id} twice");
                    i.registered = false;
                }
                // (1) the floor.
                assert!(
                    self.capacity() >= self.sc.floor,
                    "deregistering {ids:?} took capacity to {} < floor {} (after {ev:?})",
                    self.capacity(),
                    self.sc.floor
                );
            }
            Action::Terminate { ids } => {
                for id in &ids {
                    let i = self
                        .insts
                        .get(id)
                        .unwrap_or_else(|| panic!("terminate unknown {id}"))
                        .clone();
                    assert!(i.alive, "terminate {id} twice");
                    assert!(!i.registered, "terminate {id} before deregistering it");
                    // (2) only old instances while rolling, only new-configuration ones when rolling back.
                    if self.old.contains(id) {
                        assert!(!self.switched, "terminated old {id} while rolling back");
                    } else {
                        assert!(self.switched && i.lc == Lc::New, "terminated {id} ({:?})", i.lc);
                    }
                    self.insts.get_mut(id).unwrap().alive = false;
                    self.unconfirmed.push(id.clone());
                    if self.old.contains(id) {
                        self.old_terminated += 1;
                        // (3) replacements proven first.
                        let new_healthy = self
                            .insts
                            .iter()
                            .filter(|(k, i)| !self.old.contains(*k) && i.lc == Lc::New && self.healthy(i))
                            .count() as u32;
                        assert!(
                            self.old_terminated <= new_healthy,
                            "{} old terminated, {new_healthy} new InService",
                            self.old_terminated
                        );
                    }
                }
                assert!(self.capacity() >= self.sc.floor, "terminate {ids:?} broke the floor");
            }
            Action::SwitchBack { cancel } => {
                assert!(!self.switched, "SwitchBack twice");
                assert_eq!(
                    cancel as usize,
                    self.pending.len(),
                    "cancel must match the unstarted launches"
                );
                self.pending.clear();
                self.switched = true;
                self.lc = Lc::Prev;
            }
            Action::Finish { outcome, summary } => {
                assert!(!summary.is_empty());
                self.finished = Some(outcome);
            }
        }
    }

    fn step(&mut self) {
        let big = !self.switched && self.rand(100) < 5;
        self.now += if big { self.sc.timeout } else { 1 + self.rand(3) };
        let now = self.now;
        // The group starts due instances (or fails to).
        let mut created = Vec::new();
        let mut failed = false;
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            if p.due > now {
                self.pending.push(p);
            } else if p.fail && self.lc == Lc::New {
                failed = true;
                self.pending.push(Pending { due: now + 5, ..p });
            } else {
                let id = format!("i-{}", self.next_id);
                self.next_id += 1;
                let roll = self.rand(100);
                let healthy_at = match self.lc {
                    Lc::New if roll < self.sc.never_new_pct => None,
                    Lc::New => Some(now + self.rand(self.sc.new_delay_max + 1)),
                    Lc::Prev if roll < self.sc.never_prev_pct => {
                        self.prev_never_healthy = true;
                        None
                    }
                    Lc::Prev => Some(now + self.rand(5)),
                };
                self.insts.insert(
                    id.clone(),
                    Inst {
                        lc: self.lc,
                        healthy_at,
                        alive: true,
                        registered: true,
                    },
                );
                created.push(id);
            }
        }
        if !created.is_empty() {
            self.feed(Event::Launched { ids: created, now });
        }
        if failed {
            self.feed(Event::LaunchFailed {
                reason: "capacity".into(),
                now,
            });
        }
        // The load balancer's view (never skipped twice in a row, so observation lags ≤ 2 steps).
        let skip = !self.last_skipped && self.rand(100) < 20;
        self.last_skipped = skip;
        if !skip {
            let mut in_service = Vec::new();
            let mut out = Vec::new();
            for (id, i) in &self.insts {
                if i.alive && i.registered {
                    if self.healthy(i) {
                        in_service.push(id.clone());
                    } else {
                        out.push(id.clone());
                    }
                }
            }
            if self.rand(10) == 0 {
                in_service.push("ghost".into());
            }
            self.feed(Event::Health {
                in_service,
                out_of_service: out,
                now,
            });
        }
        // Termination confirmations, sometimes late, sometimes with strangers.
        if !self.unconfirmed.is_empty() && self.rand(2) == 0 {
            let mut ids = std::mem::take(&mut self.unconfirmed);
            if self.rand(5) == 0 {
                ids.push("stranger".into());
            }
            self.feed(Event::Terminated { ids, now });
        }
        // Replays of earlier events (stale Health, repeated Launched/Terminated/Started).
        if !self.history.is_empty() && self.rand(4) == 0 {
            let k = self.rand(self.history.len() as u64) as usize;
            let ev = self.history[k].clone();
            if !matches!(ev, Event::LaunchFailed { .. }) {
                self.feed(ev);
            }
        }
        if !skip || self.rand(2) == 0 {
            self.feed(Event::Tick { now });
        }
    }
}

fn run(sc: Scenario) -> Sim {
    let mut sim = Sim::new(sc);
    sim.feed(Event::Started { now: 0 });
    let mut steps = 0;
    // (4) bounded: each batch needs at most timeout seconds, time advances ≥ 1 per step.
    let bound = 20 * (sim.sc.desired as u64 + 1) * (sim.sc.timeout + 10);
    while sim.finished.is_none() {
        steps += 1;
        assert!(
            steps <= bound,
            "not finished after {steps} steps: {:?}",
            sim.machine.phase()
        );
        sim.step();
    }
    sim
}

fn check_end(sim: &Sim) {
    let alive: Vec<(&String, &Inst)> = sim.insts.iter().filter(|(_, i)| i.alive).collect();
    match sim.finished.unwrap() {
        Outcome::Done => {
            assert_eq!(sim.machine.phase(), Phase::Done);
            assert!(!sim.switched);
            assert!(sim.pending.is_empty());
            assert!(sim.old.iter().all(|id| !sim.insts[id].alive), "old instance left");
            assert_eq!(alive.len() as u32, sim.sc.desired);
            assert!(alive.iter().all(|(_, i)| i.lc == Lc::New && sim.healthy(i)));
        }
        Outcome::RolledBack => {
            assert_eq!(sim.machine.phase(), Phase::RolledBack);
            assert!(sim.switched, "RolledBack without SwitchBack");
            assert!(sim.pending.is_empty());
            assert!(
                alive.iter().all(|(_, i)| i.lc == Lc::Prev),
                "new-configuration instance left"
            );
            assert_eq!(alive.len() as u32, sim.sc.desired);
            assert!(alive.iter().all(|(_, i)| sim.healthy(i)));
        }
        Outcome::Aborted => {
            assert_eq!(sim.machine.phase(), Phase::Aborted);
            assert!(sim.switched);
            assert!(
                sim.prev_never_healthy,
                "rollback aborted though previous-configuration instances turn healthy in time"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rollouts_are_safe_and_finish(sc in scenario()) {
        let sim = run(sc);
        check_end(&sim);
    }

    #[test]
    fn healthy_fleets_roll_to_done(
        desired in 1u32..=6, batch in 1u32..=4, f in 0u32..=100, seed in any::<u64>(), delay in 0u64..=10
    ) {
        let sc = Scenario {
            desired, batch, floor: f % (desired + 1), timeout: 40, seed,
            never_new_pct: 0, fail_pct: 0, never_prev_pct: 0, new_delay_max: delay,
        };
        // Without big jumps of time this would always be Done; with them a batch may time out.
        let sim = run(sc);
        check_end(&sim);
        prop_assert!(sim.finished != Some(Outcome::Aborted));
    }

    #[test]
    fn deterministic(sc in scenario()) {
        let a = run(sc.clone());
        let b = run(sc);
        prop_assert_eq!(a.history, b.history);
        prop_assert_eq!(a.finished, b.finished);
    }
}

/// The simulator is not vacuous: over a fixed set of scenarios every outcome happens, with
/// rollbacks after proven batches among them.
#[test]
fn the_simulation_reaches_every_outcome() {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for seed in 0..600u64 {
        let desired = 1 + (seed % 6) as u32;
        let sc = Scenario {
            desired,
            batch: 1 + (seed % 4) as u32,
            floor: (seed / 7) as u32 % (desired + 1),
            timeout: 20 + seed % 21,
            seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            never_new_pct: seed % 30,
            fail_pct: seed % 5,
            never_prev_pct: seed % 20,
            new_delay_max: seed % 40,
        };
        let sim = run(sc);
        check_end(&sim);
        *seen.entry(format!("{:?}", sim.finished.unwrap())).or_default() += 1;
        if sim.switched && sim.old_terminated > 0 {
            *seen.entry("rolled back after a proven batch".into()).or_default() += 1;
        }
        if sim.history.iter().any(|e| matches!(e, Event::LaunchFailed { .. })) {
            *seen.entry("launch failed".into()).or_default() += 1;
        }
    }
    eprintln!("{seen:?}");
    for k in [
        "Done",
        "RolledBack",
        "Aborted",
        "rolled back after a proven batch",
        "launch failed",
    ] {
        assert!(seen.get(k).copied().unwrap_or(0) > 0, "{k} never happened: {seen:?}");
    }
}
