//! `fabrs plan --format markdown`: a pull-request comment. The summary line
//! comes first, destroys, replacements and conflicts are called out right
//! under it, each resource's details sit in a collapsed `<details>` section,
//! and the user-data diff is fenced. The whole comment stays under GitHub's
//! 65,536-character limit: details are dropped (with a note) when they do
//! not fit, the summary and call-outs never.

use std::fmt::Write;

use super::{Extras, body, plural, user_data_diffs, verb};
use crate::plan::{Action, Change, Plan};

/// GitHub's limit on a comment, in characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;
/// What this renderer stays under (room for a CI step's own header).
pub const BUDGET: usize = 60_000;
/// Call-outs listed at most; the rest are counted.
const MAX_CALLOUTS: usize = 40;

/// HTML-escape text for a `<summary>`.
fn html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Inline code that survives backticks in the text.
fn code(s: &str) -> String {
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

/// A fence longer than any backtick run in the text.
fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for ch in text.chars() {
        if ch == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn fenced(lang: &str, text: &str) -> String {
    let f = fence(text);
    let text = text.trim_end_matches('\n');
    format!("{f}{lang}\n{text}\n{f}\n")
}

/// One line of a call-out list, shortened when very long.
fn callout_line(symbol: &str, address: &str, why: &str) -> String {
    let mut why = why.to_string();
    if why.chars().count() > 300 {
        why = why.chars().take(300).collect::<String>() + "…";
    }
    format!("> - {} {}: {}\n", code(symbol), code(address), why.replace('\n', " "))
}

fn section(c: &Change, extras: &Extras) -> String {
    let (symbol, verb) = verb(c);
    let mut s = String::new();
    let why = if c.action == Action::Create {
        String::new()
    } else {
        format!(": {}", html(&c.reason))
    };
    let _ = writeln!(
        s,
        "<details><summary><code>{} {}</code> {verb}{why}</summary>\n",
        html(symbol),
        html(&c.address.to_string())
    );
    let lines = body(c, extras);
    if !lines.is_empty() {
        s.push_str(&fenced("diff", &lines.join("\n")));
    }
    if let Some(files) = user_data_diffs(c, extras) {
        let _ = writeln!(
            s,
            "\nUser-data ({} section{} changed):\n",
            files.len(),
            plural(files.len())
        );
        for f in files {
            let _ = writeln!(s, "{} ({})\n", code(&f.path), f.status);
            s.push_str(&fenced("diff", &f.diff));
            s.push('\n');
        }
    }
    s.push_str("\n</details>\n");
    s
}

/// The plan as a pull-request comment, under [`BUDGET`] characters.
pub fn markdown(plan: &Plan, extras: &Extras) -> String {
    let (add, change, destroy) = plan.summary();
    let mut head = String::new();
    let target = code(&format!("{} / {}", plan.project, plan.environment));
    if plan.changes.is_empty() && plan.conflicts.is_empty() {
        let _ = writeln!(head, "**No changes.** {target} matches its environment file.");
        return head;
    }
    let _ = writeln!(
        head,
        "**Plan: {add} to add, {change} to change, {destroy} to destroy.** {target}{}\n",
        if plan.conflicts.is_empty() {
            String::new()
        } else {
            format!(
                " **Cannot be applied: {} conflict{}.**",
                plan.conflicts.len(),
                plan.plural_conflicts()
            )
        }
    );

    if !plan.conflicts.is_empty() {
        head.push_str("> [!CAUTION]\n> **Conflicts: fabrs refuses to apply this plan**\n>\n");
        for c in plan.conflicts.iter().take(MAX_CALLOUTS) {
            head.push_str(&callout_line("!", &c.address.to_string(), &c.message));
        }
        if plan.conflicts.len() > MAX_CALLOUTS {
            let _ = writeln!(head, "> - … and {} more", plan.conflicts.len() - MAX_CALLOUTS);
        }
        head.push('\n');
    }
    let destroys: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete || c.action == Action::Replace)
        .collect();
    if !destroys.is_empty() {
        head.push_str("> [!WARNING]\n> **Destroys and replacements**\n>\n");
        for c in destroys.iter().take(MAX_CALLOUTS) {
            let id = c.id.as_deref().map(|i| format!(" ({i})")).unwrap_or_default();
            head.push_str(&callout_line(verb(c).0, &format!("{}{id}", c.address), &c.reason));
        }
        if destroys.len() > MAX_CALLOUTS {
            let _ = writeln!(head, "> - … and {} more", destroys.len() - MAX_CALLOUTS);
        }
        head.push('\n');
    }

    // Details, in the plan's order, while they fit.
    let note_room = 300;
    let mut details = String::new();
    let mut left_out = 0;
    let mut shortened = 0;
    for c in &plan.changes {
        let mut s = section(c, extras);
        let room = BUDGET.saturating_sub(head.chars().count() + details.chars().count() + note_room);
        if s.chars().count() > room {
            // Too long on its own: the section's summary only.
            let (symbol, verb) = verb(c);
            s = format!(
                "<details><summary><code>{} {}</code> {verb}: {}</summary>\n\nDetails too long for a comment: run `fabrs plan` to see them.\n</details>\n",
                html(symbol),
                html(&c.address.to_string()),
                html(&c.reason)
            );
            if s.chars().count() > room {
                left_out += 1;
                continue;
            }
            shortened += 1;
        }
        details.push_str(&s);
    }
    let mut out = head;
    out.push_str(&details);
    if left_out > 0 || shortened > 0 {
        let _ = writeln!(
            out,
            "\n_Truncated to fit a comment: {left_out} resource{} left out, {shortened} shortened; run `fabrs plan {}` for the whole plan._",
            plural(left_out),
            plan.environment
        );
    }
    debug_assert!(out.chars().count() < GITHUB_COMMENT_LIMIT);
    out
}

impl Plan {
    fn plural_conflicts(&self) -> &'static str {
        plural(self.conflicts.len())
    }
}
