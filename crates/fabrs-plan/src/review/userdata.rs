//! The user-data diff: what a reviewer of a deploy must read, instead of a
//! fingerprint. The rendered `#cloud-config` is split into its own lines and
//! one section per embedded `write_files` file (its path is the header), and
//! each is diffed on its own.
//!
//! The observed user-data is what the cloud holds: it carries the real secret
//! values. [`redact`] replaces every form of every secret value with its
//! `__secret_<name>__` placeholder before anything is diffed or printed;
//! [`secret_forms`] learns those forms (raw, URL-encoded, quoted…) by lining
//! up a review render (placeholders) with a real one (values).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use similar::TextDiff;

use fabrs_config::RoleKind;

use crate::addr::{UD_OWNER, UD_REVISION, UD_SHA};
use crate::plan::Plan;
use crate::resource::{Address, Spec};

/// The section holding the user-data's own lines (everything but the
/// embedded files' contents).
pub const CLOUD_CONFIG: &str = "#cloud-config";

/// The user-data of one launch before and after, secrets as placeholders.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDataChange {
    /// `None`: not shown (not readable, or secrets were not available to
    /// hide their values); `withheld` says why.
    pub before: Option<String>,
    /// `None`: known only after apply.
    pub after: Option<String>,
    /// Why `before` is not shown, when it is not.
    pub withheld: Option<String>,
}

/// One section's unified diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    /// A `write_files` path, or `#cloud-config` for the user-data's own lines.
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub status: &'static str,
    /// Unified diff hunks (`@@ … @@`, ` `/`-`/`+` lines), without file headers.
    pub diff: String,
}

/// Split a rendered user-data into (section, text): the cloud-config's own
/// lines first (fabrs's marker lines left out: the fingerprint changes with
/// every render), then each embedded file's content, dedented.
pub fn sections(user_data: &str) -> Vec<(String, String)> {
    let mut own = String::new();
    let mut files: Vec<(String, String)> = Vec::new();
    let mut path: Option<String> = None;
    // Indentation of the current file's content, while inside one.
    let mut content: Option<usize> = None;
    for line in user_data.lines() {
        if let Some(indent) = content {
            let blank = line.trim().is_empty();
            let lead = line.len() - line.trim_start().len();
            if blank || lead >= indent {
                if let Some((_, text)) = files.last_mut() {
                    text.push_str(line.get(indent..).unwrap_or(""));
                    text.push('\n');
                }
                continue;
            }
            content = None;
            // Trailing blank lines belong to the YAML, not the file.
            if let Some((_, text)) = files.last_mut() {
                while text.ends_with("\n\n") {
                    text.pop();
                }
            }
        }
        let trimmed = line.trim_start();
        if [UD_OWNER, UD_SHA, UD_REVISION].iter().any(|m| line.starts_with(m)) {
            continue;
        }
        if let Some(p) = trimmed.strip_prefix("- path: ") {
            path = Some(p.trim().trim_matches('"').to_string());
        }
        if trimmed.starts_with("content: |") {
            let lead = line.len() - trimmed.len();
            content = Some(lead + 2);
            files.push((
                path.clone().unwrap_or_else(|| format!("file {}", files.len() + 1)),
                String::new(),
            ));
        }
        own.push_str(line);
        own.push('\n');
    }
    let mut out = vec![(CLOUD_CONFIG.to_string(), own)];
    out.extend(files);
    out
}

/// Per section, the unified diff of before and after; unchanged sections are
/// left out.
pub fn file_diffs(before: &str, after: &str) -> Vec<FileDiff> {
    let b: BTreeMap<String, String> = sections(before).into_iter().collect();
    let a_list = sections(after);
    let a: BTreeMap<&String, &String> = a_list.iter().map(|(k, v)| (k, v)).collect();
    // Order: the after document's order, then what it no longer has.
    let mut order: Vec<String> = a_list.iter().map(|(k, _)| k.clone()).collect();
    for (k, _) in sections(before) {
        if !a.contains_key(&k) {
            order.push(k);
        }
    }
    let mut out = Vec::new();
    for path in order {
        let old = b.get(&path).map(String::as_str);
        let new = a.get(&path).map(|s| s.as_str());
        if old == new {
            continue;
        }
        let status = match (old, new) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        };
        let diff = TextDiff::from_lines(old.unwrap_or(""), new.unwrap_or(""))
            .unified_diff()
            .context_radius(2)
            .missing_newline_hint(false)
            .to_string();
        out.push(FileDiff { path, status, diff });
    }
    out
}

/// The forms a secret takes in a rendered document: `(form, placeholder)`
/// pairs learned by lining up the review render (placeholders) with the real
/// one (values) line by line. Every encoding a template applies (URL-encoded in
/// a URL, quoted in YAML or a userlist) is learned from the templates
/// themselves, whatever the value.
pub fn secret_forms(review: &str, full: &str) -> Vec<(String, String)> {
    let mut forms = Vec::new();
    let diff = TextDiff::from_lines(review, full);
    for op in diff.ops() {
        let (old, new) = (op.old_range(), op.new_range());
        if old.len() == new.len() {
            let r: Vec<&str> = review.lines().collect();
            let f: Vec<&str> = full.lines().collect();
            for (i, j) in old.zip(new) {
                if let (Some(rl), Some(fl)) = (r.get(i), f.get(j)) {
                    learn_line(rl, fl, &mut forms);
                }
            }
        } else {
            // A value with a newline in it: line the blocks up whole.
            let r: Vec<&str> = review.lines().collect();
            let f: Vec<&str> = full.lines().collect();
            let rb = r.get(old.clone()).map(|l| l.join("\n")).unwrap_or_default();
            let fb = f.get(new.clone()).map(|l| l.join("\n")).unwrap_or_default();
            learn_line(&rb, &fb, &mut forms);
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Placeholders in a line: (start, end, placeholder).
fn placeholders(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(s) = line[from..].find("__secret_").map(|s| s + from) {
        let Some(e) = line[s + 9..].find("__").map(|e| e + s + 9 + 2) else {
            break;
        };
        out.push((s, e));
        from = e;
    }
    out
}

fn learn_line(review: &str, full: &str, forms: &mut Vec<(String, String)>) {
    let spots = placeholders(review);
    if spots.is_empty() {
        return;
    }
    // Literal pieces between placeholders; match them in order in `full`.
    let mut pieces = Vec::new();
    let mut at = 0;
    for (s, e) in &spots {
        pieces.push(&review[at..*s]);
        at = *e;
    }
    pieces.push(&review[at..]);
    let Some(mut pos) = full.starts_with(pieces[0]).then_some(pieces[0].len()) else {
        return;
    };
    for (k, (s, e)) in spots.iter().enumerate() {
        let next = pieces[k + 1];
        let end = if k + 1 == spots.len() {
            if !full.ends_with(next) || full.len() < pos + next.len() {
                return;
            }
            full.len() - next.len()
        } else if next.is_empty() {
            // Two placeholders side by side: ambiguous; the raw values still apply.
            return;
        } else {
            match full[pos..].find(next) {
                Some(off) => pos + off,
                None => return,
            }
        };
        let value = &full[pos..end];
        if !value.is_empty() {
            forms.push((value.to_string(), review[*s..*e].to_string()));
        }
        pos = end + next.len();
    }
}

/// Replace every known form of every secret with its placeholder, longest
/// first (a value that contains another is replaced whole).
pub fn redact(text: &str, forms: &[(String, String)]) -> String {
    let mut forms: Vec<&(String, String)> = forms.iter().filter(|(f, _)| !f.is_empty()).collect();
    forms.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.cmp(b)));
    let mut out = text.to_string();
    for (form, placeholder) in forms {
        if out.contains(form.as_str()) {
            out = out.replace(form.as_str(), placeholder);
        }
    }
    out
}

/// The user-data changes of a plan: for each launch configuration, launch
/// template or fixed instance whose user-data fingerprint changes, the
/// observed user-data (redacted with `forms`; withheld when `forms` is None,
/// i.e. the secrets were not available) and the desired review render of its
/// role.
///
/// `observed` is keyed by address (what discovery read back); `desired` by
/// role and holds review renders (placeholders).
pub fn changes(
    plan: &Plan,
    observed: &BTreeMap<Address, String>,
    desired: &BTreeMap<RoleKind, String>,
    forms: Option<&[(String, String)]>,
) -> BTreeMap<Address, UserDataChange> {
    let mut out = BTreeMap::new();
    for c in &plan.changes {
        if !c.diffs.iter().any(|d| d.attribute.ends_with("user_data_sha256")) {
            continue;
        }
        let Some(launch) = c.desired.as_ref().and_then(|s| match s {
            Spec::LaunchConfiguration(l) => Some(&l.launch),
            Spec::LaunchTemplate(l) => Some(&l.launch),
            Spec::Instance(i) => Some(&i.launch),
            _ => None,
        }) else {
            continue;
        };
        let after = launch
            .user_data_sha256
            .is_some()
            .then(|| desired.get(&launch.role).cloned())
            .flatten();
        let (before, withheld) = match (observed.get(&c.address), forms) {
            (None, _) if c.current.is_none() => (None, Some("does not exist yet".to_string())),
            (None, _) => (None, Some("the current user-data could not be read".to_string())),
            (Some(_), None) => (
                None,
                Some(
                    "the current user-data holds secret values and the secrets are not available here to hide them"
                        .to_string(),
                ),
            ),
            (Some(text), Some(forms)) => (Some(redact(text, forms)), None),
        };
        out.insert(
            c.address.clone(),
            UserDataChange {
                before,
                after,
                withheld,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const UD: &str = "#cloud-config\n# fabrs:owner=p/e\n# fabrs:user-data-sha256=abc\n# fabrs:revision=r1\npackages:\n  - nginx\nwrite_files:\n  - path: /etc/app.env\n    owner: \"root:app\"\n    permissions: \"0640\"\n    defer: false\n    content: |\n      A=1\n      REV=r1\n\n      DB=postgres://u:__secret_db_password__@h/db\n  - path: /etc/other\n    owner: \"root:root\"\n    permissions: \"0644\"\n    defer: false\n    content: |\n      x\nhostname: h\n";

    #[test]
    fn sections_split_files_and_drop_markers() {
        let s = sections(UD);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].0, CLOUD_CONFIG);
        assert!(!s[0].1.contains(UD_SHA));
        assert!(s[0].1.contains("hostname: h"));
        assert_eq!(
            s[1],
            (
                "/etc/app.env".into(),
                "A=1\nREV=r1\n\nDB=postgres://u:__secret_db_password__@h/db\n".into()
            )
        );
        assert_eq!(s[2], ("/etc/other".into(), "x\n".into()));
    }

    #[test]
    fn diff_names_the_file_and_the_line() {
        let after = UD.replace("REV=r1", "REV=r2").replace("revision=r1", "revision=r2");
        let d = file_diffs(UD, &after);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "/etc/app.env");
        assert!(d[0].diff.contains("-REV=r1\n+REV=r2\n"), "{}", d[0].diff);
    }

    #[test]
    fn forms_are_learned_in_every_encoding() {
        let review = "A=__secret_pw__\nURL=x://u:__secret_pw__@h:__secret_port__/d\nQ=\"__secret_pw__\"\n";
        let full = "A=p@ss/w\"d\nURL=x://u:p%40ss%2Fw%22d@h:5432/d\nQ=\"p@ss/w\\\"d\"\n";
        let forms = secret_forms(review, full);
        let redacted = redact(full, &forms);
        assert_eq!(redacted, review);
    }
}
