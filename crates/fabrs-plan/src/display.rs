//! How a plan reads: Terraform's symbols and wording for people, a versioned
//! JSON document for CI.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::plan::{Action, Change, Diff, Plan};

pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

pub(crate) fn value(d: &Diff, after: bool) -> String {
    if d.sensitive {
        return "(sensitive)".into();
    }
    let v = if after { &d.after } else { &d.before };
    match v {
        _ if after && d.known_after_apply => "(known after apply)".into(),
        Some(v) => show(v),
        None => "null".into(),
    }
}

/// The symbol and wording of an action.
pub(crate) fn verb(c: &Change) -> (&'static str, &'static str) {
    match c.action {
        Action::Create => ("+", "will be created"),
        Action::Update => ("~", "will be updated in place"),
        Action::CreateBeside => (
            "+",
            "will be created (a new launch configuration; the current one is kept for rollback)",
        ),
        Action::Replace => ("-/+", "must be replaced"),
        Action::Delete => ("-", "will be destroyed"),
    }
}

/// Lists: which elements come and go, one per line.
fn list_lines(d: &Diff, out: &mut String, indent: &str) -> bool {
    let (Some(Value::Array(b)), Some(Value::Array(a))) = (&d.before, &d.after) else {
        if let (None, Some(Value::Array(a))) = (&d.before, &d.after) {
            let _ = writeln!(out, "{indent}+ {} = [", d.attribute);
            for item in a {
                let _ = writeln!(out, "{indent}    {},", show(item));
            }
            let _ = writeln!(out, "{indent}  ]");
            return true;
        }
        return false;
    };
    let _ = writeln!(
        out,
        "{indent}~ {} = [{}",
        d.attribute,
        if d.forces_replacement {
            " # forces replacement"
        } else {
            ""
        }
    );
    for item in b.iter().filter(|i| !a.contains(i)) {
        let _ = writeln!(out, "{indent}    - {},", show(item));
    }
    for item in a.iter().filter(|i| !b.contains(i)) {
        let _ = writeln!(out, "{indent}    + {},", show(item));
    }
    let _ = writeln!(out, "{indent}  ]");
    true
}

pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.changes.is_empty() && plan.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "No changes. {} / {} matches its environment file.",
            plan.project, plan.environment
        );
        return out;
    }
    if !plan.changes.is_empty() {
        let _ = writeln!(
            out,
            "fabrs will perform the following actions on {} / {}:\n",
            plan.project, plan.environment
        );
    }
    for c in &plan.changes {
        let (symbol, verb) = verb(c);
        let _ = writeln!(out, "  # {} {verb}", c.address);
        if c.action != Action::Create {
            let _ = writeln!(out, "  # ({})", c.reason);
        }
        let id = c.id.as_deref().map(|i| format!(" ({i})")).unwrap_or_default();
        let _ = writeln!(out, "{symbol:>3} {}{id}", c.address);
        let indent = "      ";
        for d in &c.diffs {
            if !d.sensitive && list_lines(d, &mut out, indent) {
                continue;
            }
            match (c.action, &d.before) {
                (Action::Create, _) | (_, None) => {
                    let _ = writeln!(out, "{indent}+ {} = {}", d.attribute, value(d, true));
                }
                _ if d.after.is_none() && !d.known_after_apply => {
                    let _ = writeln!(out, "{indent}- {} = {}", d.attribute, value(d, false));
                }
                _ => {
                    let note = if d.forces_replacement {
                        " # forces replacement"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "{indent}~ {} = {} -> {}{note}",
                        d.attribute,
                        value(d, false),
                        value(d, true)
                    );
                }
            }
        }
        out.push('\n');
    }
    for c in &plan.conflicts {
        let _ = writeln!(out, "  ! {}: {}", c.address, c.message);
    }
    if !plan.conflicts.is_empty() {
        out.push('\n');
    }
    let (add, change, destroy) = plan.summary();
    let _ = writeln!(out, "Plan: {add} to add, {change} to change, {destroy} to destroy.");
    if !plan.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "This plan cannot be applied: {} conflict(s) above.",
            plan.conflicts.len()
        );
    }
    out
}

/// The JSON form (format version 2), documented in docs/plan-json.md.
pub fn json(plan: &Plan) -> Value {
    let (add, change, destroy) = plan.summary();
    json!({
        "format_version": plan.format_version,
        "project": plan.project,
        "environment": plan.environment,
        "inventory_fingerprint": plan.inventory_fingerprint,
        "summary": { "add": add, "change": change, "destroy": destroy },
        "changes": plan.changes.iter().map(|c| json!({
            "address": c.address.to_string(),
            "kind": c.address.kind.as_str(),
            "action": c.action,
            "reason": c.reason,
            "id": c.id,
            "diffs": c.diffs.iter().map(|d| json!({
                "attribute": d.attribute,
                "before": if d.sensitive { json!("(sensitive)") } else { d.before.clone().unwrap_or(Value::Null) },
                "after": if d.sensitive { json!("(sensitive)") } else if d.known_after_apply { json!("(known after apply)") } else { d.after.clone().unwrap_or(Value::Null) },
                "known_after_apply": d.known_after_apply,
                "forces_replacement": d.forces_replacement,
                "sensitive": d.sensitive,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "conflicts": plan.conflicts.iter().map(|c| json!({ "address": c.address.to_string(), "message": c.message })).collect::<Vec<_>>(),
    })
}
