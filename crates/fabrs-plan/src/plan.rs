//! The planner: `plan(desired, inventory) -> Plan`. Pure and deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::addr;
use crate::desired::{Desired, is_known, sha256_hex};
use crate::kinds::{Replacement, Rule};
use crate::resource::*;

/// Version of the plan's JSON form (`fabrs plan --json`, saved plans).
/// 2: a new launch configuration is `create_beside` (was `replace`).
pub const PLAN_FORMAT_VERSION: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    /// Delete then create.
    Replace,
    /// Create a new one beside the current one, which stays (a launch
    /// configuration: its name hashes its content; the old one is kept for
    /// rollback and pruned by deploy).
    CreateBeside,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    /// Dotted attribute path, e.g. `health_check.interval_secs`, `tags.Name`.
    pub attribute: String,
    pub before: Option<Value>,
    /// `None` with `known_after_apply` false: the attribute goes away.
    pub after: Option<Value>,
    pub known_after_apply: bool,
    pub forces_replacement: bool,
    pub sensitive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub address: Address,
    pub action: Action,
    /// Why, in a few words: which attributes differ, or "not found".
    pub reason: String,
    /// The cloud id of the existing resource (update, replace, delete).
    pub id: Option<String>,
    pub diffs: Vec<Diff>,
    /// What the resource should become (create, update, replace).
    pub desired: Option<Spec>,
    /// What it is now (update, replace, delete).
    pub current: Option<Observed>,
}

/// Something fabrs will not do, whatever the flags: the plan cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub address: Address,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub project: String,
    pub environment: String,
    /// Fingerprint of the inventory the plan was made against: a saved plan
    /// is refused when the account no longer matches it.
    pub inventory_fingerprint: String,
    pub changes: Vec<Change>,
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
    /// Terraform's counts: a replacement is one to add and one to destroy.
    pub fn summary(&self) -> (usize, usize, usize) {
        let mut add = 0;
        let mut change = 0;
        let mut destroy = 0;
        for c in &self.changes {
            match c.action {
                Action::Create => add += 1,
                Action::Update => change += 1,
                Action::CreateBeside => add += 1,
                Action::Replace => {
                    add += 1;
                    destroy += 1
                }
                Action::Delete => destroy += 1,
            }
        }
        (add, change, destroy)
    }
}

/// What part of a resource the inventory fingerprint covers: ids and specs,
/// not runtime status (health flapping does not invalidate a saved plan).
pub fn fingerprint(inventory: &Inventory) -> String {
    let core: Vec<(&Address, &str, &Spec)> = inventory
        .resources
        .values()
        .map(|o| (&o.address, o.id.as_str(), &o.spec))
        .collect();
    let foreign: Vec<(&Address, &str)> = inventory.foreign.iter().map(|f| (&f.address, f.id.as_str())).collect();
    let bytes = serde_json::to_vec(&(
        core,
        foreign,
        &inventory.launch_configurations,
        &inventory.image_parameters,
    ))
    .expect("inventories serialize");
    sha256_hex(&bytes)
}

fn rule(kind: Kind, top: &str) -> Rule {
    kind.rules()
        .iter()
        .find(|(field, _)| *field == top)
        .map(|(_, r)| *r)
        .unwrap_or_else(|| unreachable!("{} has no rule for `{top}`", kind.as_str()))
}

/// A spec as attribute path → value. Objects are flattened one level deeper
/// (`health_check.interval_secs`, `tags.Name`); lists stay whole values.
fn attributes(spec: &Spec) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let Value::Object(map) = serde_json::to_value(spec).expect("specs serialize") else {
        unreachable!()
    };
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() && !is_enum_value(m) => {
                for (k, v) in m {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    for (k, v) in &map {
        if k == "kind" {
            continue;
        }
        walk(k, v, &mut out);
    }
    out
}

/// Serde's externally tagged enum values (`{"cidr": "…"}`, `{"id": "vpc-…"}`)
/// stay whole: they are one value, not a structure.
fn is_enum_value(m: &serde_json::Map<String, Value>) -> bool {
    m.len() == 1
        && m.keys()
            .all(|k| ["cidr", "group", "id", "configuration", "template"].contains(&k.as_str()))
}

fn top(attr: &str) -> &str {
    attr.split('.').next().unwrap_or(attr)
}

/// Attribute differences between what is and what should be.
fn diff(kind: Kind, current: &Spec, desired: &Spec) -> Vec<Diff> {
    let before = attributes(current);
    let after = attributes(desired);
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    // A read replica inherits these from its master; clouds report them
    // differently (moto copies the master's, AWS gives 0 backups).
    let replica = matches!(desired, Spec::DbInstance(db) if db.replica_of.is_some());
    for k in keys {
        if replica && ["backup_retention_days", "storage_gb", "db_name", "username"].contains(&top(k)) {
            continue;
        }
        let r = rule(kind, top(k));
        if r == Rule::Ignore {
            continue;
        }
        let (b, a) = (before.get(k), after.get(k));
        if equivalent(k, b, a) {
            continue;
        }
        let unknown = a.is_some_and(|v| is_unknown(k, v));
        out.push(Diff {
            attribute: k.clone(),
            before: b.cloned(),
            after: if unknown { None } else { a.cloned() },
            known_after_apply: unknown,
            forces_replacement: r == Rule::Replace,
            sensitive: false,
        });
    }
    out
}

fn unknown_when_null(attr: &str) -> bool {
    // A secret's fingerprint is unknown to a plan made without the secrets.
    attr.ends_with("user_data_sha256") || attr == "fingerprint"
}

/// A value only known once other resources exist: a user-data fingerprint,
/// or the name of a launch configuration not yet made.
fn is_unknown(attr: &str, v: &Value) -> bool {
    (v.is_null() && unknown_when_null(attr))
        || (attr == "launch" && v.get("configuration").is_some_and(Value::is_null))
        || (attr == "name" && v.is_null())
}

/// A version's numeric parts (`16.9` → [16, 9]); a part that is not a
/// number ends it (`16.9-rds.1` → [16, 9]).
fn version_parts(v: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in v.split('.') {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse() {
            Ok(n) => out.push(n),
            Err(_) => break,
        }
        if digits.len() != part.len() {
            break;
        }
    }
    out
}

/// The major version: `16` of `16.9` or of `16`.
pub fn engine_major(v: &str) -> &str {
    v.split('.').next().unwrap_or(v)
}

/// Does the engine version the cloud reports satisfy the one the file asks
/// for? The same major, and not older than a full desired version: a major
/// (`16`) is any `16.x`; `16.4` is satisfied by `16.4` and by the `16.6` an
/// automatic minor upgrade made (not a change: RDS cannot go back).
pub fn engine_version_satisfied(observed: &str, desired: &str) -> bool {
    if observed == desired {
        return true;
    }
    let (o, d) = (version_parts(observed), version_parts(desired));
    if o.is_empty() || d.is_empty() || o[0] != d[0] {
        return false;
    }
    o >= d
}

/// Is going from `observed` to `desired` a downgrade (which RDS refuses)?
pub fn engine_version_downgrade(observed: &str, desired: &str) -> bool {
    let (o, d) = (version_parts(observed), version_parts(desired));
    !o.is_empty() && !d.is_empty() && o[0] > d[0]
}

fn equivalent(attr: &str, before: Option<&Value>, after: Option<&Value>) -> bool {
    match (before, after) {
        (Some(b), Some(a)) if b == a => true,
        (Some(Value::String(b)), Some(Value::String(a))) if attr == "engine_version" => engine_version_satisfied(b, a),
        // A desired launch template reference means "the latest version":
        // only the template name is compared here (new versions are the
        // template's own update).
        (Some(Value::Object(b)), Some(Value::Object(a)))
            if attr == "launch" && b.contains_key("template") && a.contains_key("template") =>
        {
            b["template"]["name"] == a["template"]["name"]
        }
        (None, Some(Value::Null)) | (Some(Value::Null), None) => true,
        // An empty map against none at all: its entries carry any difference
        // (`tls_policies` {} → `tls_policies.443` added).
        (None, Some(Value::Object(m))) | (Some(Value::Object(m)), None) if m.is_empty() => true,
        _ => false,
    }
}

fn describe(diffs: &[Diff]) -> String {
    let names: Vec<&str> = diffs.iter().map(|d| d.attribute.as_str()).collect();
    let mut s = names.iter().take(4).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 4 {
        s.push_str(&format!(" and {} more", names.len() - 4));
    }
    s
}

pub fn plan(project: &str, environment: &str, desired: &Desired, inventory: &Inventory) -> Plan {
    let mut changes = Vec::new();
    let mut conflicts = Vec::new();

    for (address, spec) in &desired.resources {
        match inventory.resources.get(address) {
            None => {
                if let Some(f) = inventory.foreign.iter().find(|f| &f.address == address) {
                    let message = if addr::is_project_scoped(address) {
                        format!(
                            "{} `{}` ({}) exists but fabrs did not make it for project {project}: fabrs will not adopt, change or delete it; name another one, or, if it is yours and holds only this project's releases, hand it to fabrs by tagging it `{}={}` and `{}={project}`",
                            address.kind.as_str().replace('_', " "),
                            f.name,
                            f.id,
                            addr::TAG_MANAGED_BY,
                            addr::MANAGED_BY,
                            addr::TAG_PROJECT,
                        )
                    } else {
                        format!(
                            "{} `{}` ({}) exists but does not carry this environment's fabrs tags: fabrs will not adopt, change or delete it; rename or remove it",
                            address.kind.as_str().replace('_', " "),
                            f.name,
                            f.id
                        )
                    };
                    conflicts.push(Conflict {
                        address: address.clone(),
                        message,
                    });
                    continue;
                }
                let mut diffs: Vec<Diff> = attributes(spec)
                    .into_iter()
                    .filter(|(k, _)| rule(address.kind, top(k)) != Rule::Ignore || k == "name")
                    .map(|(k, v)| {
                        let unknown = is_unknown(&k, &v);
                        Diff {
                            attribute: k,
                            before: None,
                            after: if unknown { None } else { Some(v) },
                            known_after_apply: unknown,
                            forces_replacement: false,
                            sensitive: false,
                        }
                    })
                    .collect();
                if let Spec::DbInstance(db) = spec {
                    if db.replica_of.is_none() {
                        diffs.push(Diff {
                            attribute: "master_password".into(),
                            before: None,
                            after: Some(Value::String(format!("secret {}", db.password_secret))),
                            known_after_apply: false,
                            forces_replacement: false,
                            sensitive: true,
                        });
                    }
                }
                changes.push(Change {
                    address: address.clone(),
                    action: Action::Create,
                    reason: if is_known(spec) {
                        "does not exist".into()
                    } else {
                        "does not exist; its user-data depends on addresses known after apply".into()
                    },
                    id: None,
                    diffs,
                    desired: Some(spec.clone()),
                    current: None,
                });
            }
            Some(current) => {
                let diffs = diff(address.kind, &current.spec, spec);
                if diffs.is_empty() {
                    continue;
                }
                if let (Spec::DbInstance(cur), Spec::DbInstance(des)) = (&current.spec, spec) {
                    if engine_version_downgrade(&cur.engine_version, &des.engine_version) {
                        conflicts.push(Conflict {
                            address: address.clone(),
                            message: format!(
                                "the database {} runs {} {}, newer than engine_version \"{}\": RDS cannot downgrade; set engine_version to \"{}\"",
                                current.id,
                                cur.engine,
                                cur.engine_version,
                                des.engine_version,
                                engine_major(&cur.engine_version)
                            ),
                        });
                        continue;
                    }
                }
                let replace = diffs.iter().any(|d| d.forces_replacement);
                if replace && address.kind.replacement() == Replacement::Refuse {
                    conflicts.push(Conflict {
                        address: address.clone(),
                        message: format!(
                            "changing {} would replace the database {}: fabrs never replaces a database; change it back, or migrate by hand",
                            describe(&diffs.iter().filter(|d| d.forces_replacement).cloned().collect::<Vec<_>>()),
                            current.id
                        ),
                    });
                    continue;
                }
                let action = match address.kind.replacement() {
                    _ if !replace => Action::Update,
                    Replacement::CreateBeside => Action::CreateBeside,
                    Replacement::DeleteThenCreate | Replacement::Refuse => Action::Replace,
                };
                let reason = if replace {
                    format!(
                        "{} changed (forces replacement)",
                        describe(
                            &diffs
                                .iter()
                                .filter(|d| d.forces_replacement)
                                .cloned()
                                .collect::<Vec<_>>()
                        )
                    )
                } else {
                    format!("{} changed", describe(&diffs))
                };
                changes.push(Change {
                    address: address.clone(),
                    action,
                    reason,
                    id: Some(current.id.clone()),
                    diffs,
                    desired: Some(spec.clone()),
                    current: Some(current.clone()),
                });
            }
        }
    }

    for (address, current) in &inventory.resources {
        if desired.resources.contains_key(address) {
            continue;
        }
        // Launch configurations no group uses any more are kept for rollback;
        // `fabrs deploy` prunes them beyond the last N.
        if address.kind == Kind::LaunchConfiguration {
            continue;
        }
        changes.push(Change {
            address: address.clone(),
            action: Action::Delete,
            reason: "no longer in the environment file".into(),
            id: Some(current.id.clone()),
            diffs: vec![],
            desired: None,
            current: Some(current.clone()),
        });
    }

    Plan {
        format_version: PLAN_FORMAT_VERSION,
        project: project.into(),
        environment: environment.into(),
        inventory_fingerprint: fingerprint(inventory),
        changes,
        conflicts,
    }
}
