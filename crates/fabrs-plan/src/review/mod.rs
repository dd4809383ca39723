//! Plans for review: the text `fabrs plan` prints (rules one per line, tags
//! folded, the user-data diff instead of its fingerprint), `--concise`
//! (addresses by action, with reasons), `--format markdown` (a pull-request
//! comment of bounded size) and the JSON form with the user-data diff added.
//!
//! `display.rs` keeps the plain attribute-by-attribute rendering; this module
//! reads the same `Plan` plus [`Extras`] (what the plan itself does not hold:
//! the user-data texts).

pub mod markdown;
pub mod rules;
pub mod userdata;

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Value, json};

use crate::plan::{Action, Change, Plan};
use crate::resource::Address;
pub use userdata::UserDataChange;

/// What a review shows beside the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// Per launch whose user-data changes: before and after, secrets as placeholders.
    pub user_data: BTreeMap<Address, UserDataChange>,
    /// How the file's `ami: resolve:ssm:…` were resolved, one line per role
    /// (`images::Resolved::notes`), shown above the changes.
    pub images: Vec<String>,
}

/// Tags every resource carries: folded in creates.
fn is_name_tag(attr: &str) -> bool {
    attr == "tags.Name"
}

pub(crate) use crate::display::{show, value, verb};

fn tag_count(c: &Change) -> usize {
    let spec = c
        .current
        .as_ref()
        .map(|o| serde_json::to_value(&o.spec))
        .or_else(|| c.desired.as_ref().map(serde_json::to_value));
    match spec {
        Some(Ok(v)) => v.get("tags").and_then(Value::as_object).map(|m| m.len()).unwrap_or(0),
        _ => 0,
    }
}

/// A change's attribute lines, without indentation: `+ min = 1`,
/// `~ max = 9 -> 2`, rules one per line, tags folded. The user-data
/// fingerprint line is left out when `extras` has the user-data diff.
pub fn body(c: &Change, extras: &Extras) -> Vec<String> {
    let mut out = Vec::new();
    let ud = extras.user_data.get(&c.address);
    let ud_shown = ud.is_some_and(|u| u.before.is_some() && u.after.is_some());
    let mut folded_tags: Vec<&str> = Vec::new();
    let mut changed_tags = 0;
    for d in &c.diffs {
        if d.attribute.starts_with("tags.") {
            changed_tags += 1;
            if c.action == Action::Create && !is_name_tag(&d.attribute) {
                folded_tags.push(&d.attribute["tags.".len()..]);
                continue;
            }
        }
        if ud_shown && d.attribute.ends_with("user_data_sha256") {
            continue;
        }
        let replace = if d.forces_replacement {
            " # forces replacement"
        } else {
            ""
        };
        if !d.sensitive
            && let Some((removed, added, same)) = rules::rule_changes(d.before.as_ref(), d.after.as_ref())
            && matches!(
                (&d.before, &d.after),
                (Some(Value::Array(_)), _) | (_, Some(Value::Array(_)))
            )
        {
            let sign = if d.before.is_none() { "+" } else { "~" };
            out.push(format!("{sign} {} = [{replace}", d.attribute));
            for r in &removed {
                out.push(format!("    - {r}"));
            }
            for r in &added {
                out.push(format!("    + {r}"));
            }
            if same > 0 && d.before.is_some() {
                out.push(format!("      # ({same} unchanged rule{} hidden)", plural(same)));
            }
            out.push("  ]".into());
            continue;
        }
        match (&d.before, &d.after) {
            (Some(Value::Array(b)), Some(Value::Array(a))) if !d.sensitive => {
                out.push(format!("~ {} = [{replace}", d.attribute));
                for item in b.iter().filter(|i| !a.contains(i)) {
                    out.push(format!("    - {},", show(item)));
                }
                for item in a.iter().filter(|i| !b.contains(i)) {
                    out.push(format!("    + {},", show(item)));
                }
                out.push("  ]".into());
            }
            (None, Some(Value::Array(a))) if !d.sensitive => {
                out.push(format!("+ {} = [", d.attribute));
                for item in a {
                    out.push(format!("    {},", show(item)));
                }
                out.push("  ]".into());
            }
            _ if c.action == Action::Create || d.before.is_none() => {
                out.push(format!("+ {} = {}", d.attribute, value(d, true)));
            }
            (_, None) if !d.known_after_apply => {
                out.push(format!("- {} = {}", d.attribute, value(d, false)));
            }
            _ => out.push(format!(
                "~ {} = {} -> {}{replace}",
                d.attribute,
                value(d, false),
                value(d, true)
            )),
        }
    }
    if !folded_tags.is_empty() {
        out.push(format!(
            "  # (+ {} more tag{}: {})",
            folded_tags.len(),
            plural(folded_tags.len()),
            folded_tags.join(", ")
        ));
    } else if c.action != Action::Create && c.action != Action::Delete {
        let unchanged = tag_count(c).saturating_sub(changed_tags);
        if unchanged > 0 {
            out.push(format!("  # ({unchanged} unchanged tag{} hidden)", plural(unchanged)));
        }
    }
    if let Some(why) = ud.and_then(|u| u.withheld.as_ref())
        && c.action != Action::Create
    {
        out.push(format!("  # (user-data diff not shown: {why})"));
    }
    out
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The user-data diffs of a change, when both sides are shown.
pub fn user_data_diffs(c: &Change, extras: &Extras) -> Option<Vec<userdata::FileDiff>> {
    let u = extras.user_data.get(&c.address)?;
    Some(userdata::file_diffs(u.before.as_deref()?, u.after.as_deref()?))
}

fn summary_line(plan: &Plan) -> String {
    let (add, change, destroy) = plan.summary();
    format!("Plan: {add} to add, {change} to change, {destroy} to destroy.")
}

/// The plan for people, Terraform's layout.
pub fn human(plan: &Plan, extras: &Extras) -> String {
    let mut out = String::new();
    if !extras.images.is_empty() {
        let _ = writeln!(out, "Images (read from SSM Parameter Store):");
        for line in &extras.images {
            let _ = writeln!(out, "  {line}");
        }
        out.push('\n');
    }
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
        for line in body(c, extras) {
            let _ = writeln!(out, "{indent}{line}");
        }
        if let Some(diffs) = user_data_diffs(c, extras) {
            let _ = writeln!(out, "{indent}~ user_data:");
            for f in diffs {
                let _ = writeln!(out, "{indent}    --- {}", f.path);
                let _ = writeln!(out, "{indent}    +++ {}", f.path);
                for l in f.diff.lines() {
                    let _ = writeln!(out, "{indent}    {l}");
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
    let _ = writeln!(out, "{}", summary_line(plan));
    if !plan.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "This plan cannot be applied: {} conflict(s) above.",
            plan.conflicts.len()
        );
    }
    out
}

/// `plan --concise`: addresses grouped by action, with the reason for each
/// update and replacement.
pub fn concise(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.changes.is_empty() && plan.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "No changes. {} / {} matches its environment file.",
            plan.project, plan.environment
        );
        return out;
    }
    let _ = writeln!(out, "{} / {}:", plan.project, plan.environment);
    // A new launch configuration is a create (the old one is kept), with
    // the reason it is needed.
    let new_lc = |c: &Change| c.action == Action::CreateBeside;
    type Select<'a> = &'a dyn Fn(&Change) -> bool;
    let groups: [(&str, Select); 4] = [
        ("Destroy", &|c| c.action == Action::Delete),
        ("Replace", &|c| c.action == Action::Replace && !new_lc(c)),
        ("Update in place", &|c| c.action == Action::Update),
        ("Create", &|c| c.action == Action::Create || new_lc(c)),
    ];
    for (title, select) in groups {
        let list: Vec<&Change> = plan.changes.iter().filter(|c| select(c)).collect();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title} ({}):", list.len());
        for c in list {
            let (symbol, _) = verb(c);
            match c.action {
                Action::Create | Action::Delete => {
                    let _ = writeln!(out, "  {symbol:>3} {}", c.address);
                }
                _ if new_lc(c) => {
                    let _ = writeln!(
                        out,
                        "  {symbol:>3} {}: a new one, as {}",
                        c.address,
                        c.reason.replace(" (forces replacement)", "")
                    );
                }
                _ => {
                    let _ = writeln!(out, "  {symbol:>3} {}: {}", c.address, c.reason);
                }
            }
        }
    }
    if !plan.conflicts.is_empty() {
        let _ = writeln!(out, "\nConflicts ({}):", plan.conflicts.len());
        for c in &plan.conflicts {
            let _ = writeln!(out, "    ! {}: {}", c.address, c.message);
        }
    }
    let _ = writeln!(out, "\n{}", summary_line(plan));
    if !plan.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "This plan cannot be applied: {} conflict(s) above.",
            plan.conflicts.len()
        );
    }
    out
}

/// The JSON form of docs/plan-json.md, plus what a review adds: per change,
/// `user_data` (before/after texts with secrets as placeholders and the
/// per-file diffs), and for rule lists `rules_added` / `rules_removed`.
pub fn json(plan: &Plan, extras: &Extras) -> Value {
    let mut v = crate::display::json(plan);
    if let Some(changes) = v.get_mut("changes").and_then(Value::as_array_mut) {
        for (c, jc) in plan.changes.iter().zip(changes.iter_mut()) {
            if let Some(diffs) = jc.get_mut("diffs").and_then(Value::as_array_mut) {
                for (d, jd) in c.diffs.iter().zip(diffs.iter_mut()) {
                    if d.sensitive {
                        continue;
                    }
                    if let Some((removed, added, _)) = rules::rule_changes(d.before.as_ref(), d.after.as_ref())
                        && matches!(
                            (&d.before, &d.after),
                            (Some(Value::Array(_)), _) | (_, Some(Value::Array(_)))
                        )
                    {
                        jd["rules_removed"] = json!(removed);
                        jd["rules_added"] = json!(added);
                    }
                }
            }
            if let Some(u) = extras.user_data.get(&c.address) {
                let files = user_data_diffs(c, extras).map(|files| {
                    files
                        .iter()
                        .map(|f| json!({ "path": f.path, "status": f.status, "diff": f.diff }))
                        .collect::<Vec<_>>()
                });
                jc["user_data"] = json!({
                    "before": u.before,
                    "after": u.after,
                    "withheld": u.withheld,
                    "files": files,
                });
            }
        }
    }
    v
}
