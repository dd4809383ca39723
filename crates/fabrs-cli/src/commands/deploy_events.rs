//! `fabrs deploy|rotate|rollback --output json`: one JSON object per line on
//! stdout, one per event (docs/deploy-events.md). The driver reports its
//! progress as `Note`s (the lines the human output prints); this turns them
//! into typed events: steps started and finished, instances launched,
//! healthy and terminated, rollbacks, and the result last.
//!
//! The driver's notes are text; the instance events are read from the roll's
//! notes (`<role>: waiting for <ids> to be InService`, `<role>: terminating
//! <ids>`, `<role>: rolling back: …`). New instances become healthy when the
//! roll moves past its wait (it takes old instances out of the load balancer
//! to drain, terminates old instances, launches the next batch, or finishes)
//! without rolling back.

use std::collections::BTreeMap;
use std::sync::Mutex;

use fabrs_exec::deploy::Note;
use serde_json::{Value, json};

use crate::printer::JsonLines;

/// Version of the event stream's format.
pub const DEPLOY_EVENTS_VERSION: u32 = 1;

pub struct Events {
    out: JsonLines,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    seq: u64,
    step: Option<String>,
    /// Per role: new instances waited for, not yet seen healthy.
    waiting: BTreeMap<String, Vec<String>>,
}

fn ids(list: &str) -> Vec<String> {
    list.split(", ")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Events {
    pub fn new(out: JsonLines) -> Events {
        Events {
            out,
            state: Mutex::new(State::default()),
        }
    }

    fn emit(&self, st: &mut State, event: &str, mut fields: Value) {
        st.seq += 1;
        let obj = fields.as_object_mut().expect("event fields are an object");
        obj.insert("event".into(), event.into());
        obj.insert("seq".into(), st.seq.into());
        self.out.emit(&fields);
    }

    fn finish_step(&self, st: &mut State) {
        if let Some(step) = st.step.take() {
            self.emit(st, "step_finished", json!({ "step": step }));
        }
    }

    /// The first event: what runs, on what.
    pub fn started(&self, operation: &str, project: &str, environment: &str) {
        let mut st = self.state.lock().unwrap();
        self.emit(
            &mut st,
            "started",
            json!({ "format_version": DEPLOY_EVENTS_VERSION, "operation": operation, "project": project, "environment": environment }),
        );
    }

    /// `--dry-run`: a step the operation would take.
    pub fn planned(&self, step: &str) {
        let mut st = self.state.lock().unwrap();
        self.emit(&mut st, "planned_step", json!({ "step": step }));
    }

    pub fn note(&self, n: Note) {
        let mut st = self.state.lock().unwrap();
        match n {
            Note::Step(s) => {
                self.finish_step(&mut st);
                if let Some((role, rest)) = s.split_once(": back to ") {
                    self.emit(&mut st, "rollback", json!({ "role": role, "to": rest }));
                }
                st.step = Some(s.clone());
                self.emit(&mut st, "step_started", json!({ "step": s }));
            }
            Note::Remote { host, line } => {
                self.emit(&mut st, "remote_output", json!({ "host": host, "line": line }));
            }
            Note::Info(s) => {
                // `<role>: …` from the roll (a role is one word).
                let (role, rest) = match s.split_once(": ") {
                    Some((r, rest)) if !r.is_empty() && !r.contains(' ') => (r, rest),
                    _ => ("", s.as_str()),
                };
                let role = role.to_string();
                let rest = rest.to_string();
                if let Some(list) = rest
                    .strip_prefix("waiting for ")
                    .and_then(|r| r.split(" to be InService").next())
                    && rest.contains(" to be InService")
                {
                    let new = ids(list);
                    let waiting = st.waiting.entry(role.clone()).or_default();
                    let fresh: Vec<String> = new.iter().filter(|i| !waiting.contains(i)).cloned().collect();
                    waiting.extend(fresh.clone());
                    for i in fresh {
                        self.emit(&mut st, "instance_launched", json!({ "role": role, "instance": i }));
                    }
                } else if let Some(list) = rest.strip_prefix("terminating ") {
                    self.healthy(&mut st, &role);
                    for i in ids(list) {
                        self.emit(&mut st, "instance_terminated", json!({ "role": role, "instance": i }));
                    }
                } else if rest.starts_with("rolling back") {
                    st.waiting.remove(&role);
                    self.emit(&mut st, "rollback", json!({ "role": role, "message": rest }));
                } else if rest.contains(" out of load balancer ") {
                    // Old instances leave the ELB to drain: past the wait.
                    self.healthy(&mut st, &role);
                    self.emit(&mut st, "info", json!({ "role": role, "message": rest }));
                } else if rest.starts_with("launching ") {
                    self.healthy(&mut st, &role);
                    self.emit(&mut st, "info", json!({ "role": role, "message": rest }));
                } else {
                    // The roll's last note for a role is its summary: the
                    // instances still waited for made it unless it went back.
                    if !role.is_empty() && rest.starts_with("replaced ") {
                        self.healthy(&mut st, &role);
                    }
                    let role = (!role.is_empty()).then_some(role);
                    self.emit(&mut st, "info", json!({ "role": role, "message": rest }));
                }
            }
        }
    }

    fn healthy(&self, st: &mut State, role: &str) {
        for i in st.waiting.remove(role).unwrap_or_default() {
            self.emit(st, "instance_healthy", json!({ "role": role, "instance": i }));
        }
    }

    /// The last event. `outcome`: `ok`, `no_changes`, `dry_run` or `failed`.
    pub fn result(&self, outcome: &str, fields: Value) {
        let mut st = self.state.lock().unwrap();
        self.finish_step(&mut st);
        let mut f = fields;
        f["outcome"] = outcome.into();
        self.emit(&mut st, "result", f);
    }
}
