//! The pure half of `fabrs deploy`, `rotate` and `rollback`: from the plan,
//! the inventory and the groups as they are now, what the operation does —
//! which roles get a new launch configuration (or template version) and in
//! which order, which instances each roll replaces, where the migrations may
//! run — or why it refuses. No I/O: the driver in `fabrs-exec` reads the
//! cloud, calls [`plan_deploy`], and carries the result out, feeding the
//! [`rollout`](crate::rollout) machine with the events [`RollWatch`] derives
//! from each look at a group.

use std::collections::{BTreeMap, BTreeSet};

use fabrs_config::revision::or_none;
use fabrs_config::{Environment, Revision, RoleKind};

use crate::addr;
use crate::plan::{Action as PlanAction, Change, Plan};
use crate::resource::{Inventory, Kind, LaunchRef, Member, Observed, Spec};
use crate::rollout::Event;

/// What to put on the servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Deploy {
        revision: Revision,
    },
    /// The same revision, launch settings from the current file.
    Rotate {
        roles: Vec<RoleKind>,
    },
    /// Back to the revision before the current one, or the one named.
    Rollback {
        to: Option<Revision>,
    },
}

impl Operation {
    pub fn verb(&self) -> &'static str {
        match self {
            Operation::Deploy { .. } => "deploy",
            Operation::Rotate { .. } => "rotate",
            Operation::Rollback { .. } => "rollback",
        }
    }
}

/// An autoscaling group as a roll sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupNow {
    pub name: String,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    /// The group's launch configuration, or template at an explicit version
    /// (`None`: `$Latest` / `$Default`).
    pub launch: LaunchRef,
    pub load_balancers: Vec<String>,
    /// Instances: id, lifecycle state (`Pending`, `InService`,
    /// `Terminating`…), ELB health (`InService`, `OutOfService`, empty when
    /// the group has no load balancer), launch (as the cloud reports it: not
    /// trustworthy right after a switch, see test-peers.md).
    pub members: Vec<Member>,
    /// The `fabrs:revision` tag (`None`: no tag, or `none`).
    pub revision: Option<Revision>,
}

impl GroupNow {
    /// Members not on their way out.
    pub fn alive(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| !m.state.starts_with("Terminat"))
            .map(|m| m.id.clone())
            .collect()
    }

    /// What a deploy decides from and the lock protects: the launch, the
    /// revision, the capacity and the instances (not their health, which
    /// changes on its own).
    pub fn same_deploy_state(&self, other: &GroupNow) -> bool {
        self.launch == other.launch
            && self.revision == other.revision
            && self.desired == other.desired
            && self.alive() == other.alive()
    }
}

/// One role's part of a deploy.
#[derive(Clone, Debug)]
pub struct RolePlan {
    pub role: RoleKind,
    pub group: String,
    pub load_balancer: Option<String>,
    /// The instances to replace (the group's members now).
    pub old: Vec<String>,
    pub desired: u32,
    /// What the group uses now (for the switch back), and its revision.
    pub from_launch: LaunchRef,
    pub from_revision: Option<Revision>,
    /// The launch configuration to create or the template to add a version to.
    pub change: Change,
    /// Human summary of the launch change (`+ launch configuration …`).
    pub summary: String,
}

/// What the operation does, before anything is done.
#[derive(Clone, Debug)]
pub struct DeployPlan {
    /// In the order they roll: worker first (it runs the new code against
    /// the migrated schema before users see it), then web.
    pub roles: Vec<RolePlan>,
    /// `Some` when migrations run (something rolls and the revision
    /// changes): the `deploy.migrate_on` servers to run them on, in order of
    /// preference (the first with an address is used).
    pub migrate_on: Option<Vec<String>>,
}

/// What [`plan_deploy`] decides from.
pub struct DeployInput<'a> {
    pub env: &'a Environment,
    pub operation: &'a Operation,
    /// The revision to put in place (resolved: for a rotate the current one,
    /// for a rollback the previous one).
    pub revision: &'a Revision,
    /// The revision the environment runs now.
    pub current: Option<&'a Revision>,
    /// The planner's plan for the environment at `revision`.
    pub plan: &'a Plan,
    pub inventory: &'a Inventory,
    /// The groups of [`groups_to_read`], as they are now.
    pub groups: &'a BTreeMap<RoleKind, GroupNow>,
}

/// The roles whose groups a deploy reads (the autoscaled roles and the
/// migration role), with the group's id.
pub fn groups_to_read(env: &Environment, inventory: &Inventory) -> BTreeMap<RoleKind, String> {
    [RoleKind::Worker, RoleKind::Web, env.deploy.migrate_on]
        .into_iter()
        .filter_map(|role| {
            let g = inventory.resources.get(&addr::autoscaling_group(role))?;
            Some((role, g.id.clone()))
        })
        .collect()
}

/// Decide what the operation does, or refuse (the message says why and what
/// to do; nothing has been changed).
pub fn plan_deploy(i: &DeployInput<'_>) -> Result<DeployPlan, String> {
    let env = i.env;
    if !i.plan.conflicts.is_empty() {
        return Err(format!(
            "the plan has conflicts: {}",
            i.plan
                .conflicts
                .iter()
                .map(|c| format!("{}: {}", c.address, c.message))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let mut launch_changes = launch_changes(env, i.operation, i.plan)?;

    let mut roles = Vec::new();
    for role in [RoleKind::Worker, RoleKind::Web] {
        let Some(change) = launch_changes.remove(&role) else {
            continue;
        };
        let group_addr = addr::autoscaling_group(role);
        let Some(g) = i.groups.get(&role) else {
            return Err(format!(
                "{group_addr} does not exist: run `fabrs create-env {}` first; nothing was changed",
                env.name
            ));
        };
        let from_launch = match &g.launch {
            LaunchRef::Template { name, version } => {
                let numbered = version.as_deref().filter(|v| v.chars().all(|c| c.is_ascii_digit()));
                let v = match numbered {
                    Some(v) => v.to_string(),
                    None => i
                        .inventory
                        .resources
                        .get(&addr::launch_template(role))
                        .and_then(template_version)
                        .ok_or_else(|| {
                            format!("launch template {name}: its current version is unknown; nothing was changed")
                        })?,
                };
                LaunchRef::Template {
                    name: name.clone(),
                    version: Some(v),
                }
            }
            other => other.clone(),
        };
        let summary = match &change.desired {
            Some(Spec::LaunchConfiguration(lc)) => format!(
                "+ launch configuration {}",
                lc.name.as_deref().unwrap_or("(known after apply)")
            ),
            Some(Spec::LaunchTemplate(lt)) => format!(
                "+ launch template {} new version (revision {})",
                lt.name,
                or_none(lt.launch.revision.as_ref())
            ),
            _ => format!("{}", change.address),
        };
        roles.push(RolePlan {
            role,
            group: g.name.clone(),
            load_balancer: g.load_balancers.first().cloned(),
            desired: g.desired,
            old: g.alive(),
            from_launch,
            from_revision: g.revision.clone(),
            change,
            summary,
        });
    }

    let changes_code = i.current != Some(i.revision);
    let migrate_on = (!roles.is_empty() && changes_code).then(|| migrate_candidates(env, i.inventory, i.groups));
    Ok(DeployPlan { roles, migrate_on })
}

/// Per role, the plan's launch change; refuses anything else (drift, fixed
/// instances, user-data not known yet).
fn launch_changes(env: &Environment, operation: &Operation, plan: &Plan) -> Result<BTreeMap<RoleKind, Change>, String> {
    let only: Option<BTreeSet<&str>> = match operation {
        Operation::Rotate { roles } if !roles.is_empty() => Some(roles.iter().map(|r| r.as_str()).collect()),
        _ => None,
    };
    let mut out = BTreeMap::new();
    let mut drift = Vec::new();
    for c in &plan.changes {
        let role = c.address.name.as_str();
        if only.as_ref().is_some_and(|o| !o.contains(role))
            && matches!(
                c.address.kind,
                Kind::LaunchConfiguration | Kind::LaunchTemplate | Kind::AutoScalingGroup
            )
        {
            continue;
        }
        match (c.address.kind, c.action) {
            (Kind::LaunchConfiguration, PlanAction::Create | PlanAction::CreateBeside)
            | (Kind::LaunchTemplate, PlanAction::Update) => {
                let known = c.diffs.iter().all(|d| !d.known_after_apply) && c.desired.is_some();
                let Some(kind) = RoleKind::parse(role).filter(|_| known) else {
                    return Err(format!(
                        "{}: its user-data is not fully known yet (the database or cache server is missing): \
                         run `fabrs create-env {}` first; nothing was changed",
                        c.address, env.name
                    ));
                };
                out.insert(kind, c.clone());
            }
            (Kind::AutoScalingGroup, PlanAction::Update)
                if c.diffs
                    .iter()
                    // What `Fleet::switch_launch` sets: the launch, the
                    // revision tag, and the health check type that follows
                    // the revision (`desired::health_check_type`).
                    .all(|d| {
                        d.attribute == "launch"
                            || d.attribute == "health_check_type"
                            || d.attribute == format!("tags.{}", addr::TAG_REVISION)
                    }) => {}
            (Kind::Instance, _) if instance_role(c) != Some(RoleKind::Cache) => {
                return Err(format!(
                    "role {} runs fixed instances: deploy rolls autoscaling groups only (use `launch: configuration` \
                     or `launch: template` with `autoscaling:`); nothing was changed",
                    c.address.name
                ));
            }
            _ => drift.push(format!("{} ({:?})", c.address, c.action)),
        }
    }
    if !drift.is_empty() {
        return Err(format!(
            "the environment differs from {} beyond launch settings: {}. Review `fabrs plan {}` and apply it \
             with `fabrs create-env {}` first; deploy only rolls launch configurations. Nothing was changed",
            env.name,
            drift.join(", "),
            env.name,
            env.name
        ));
    }
    Ok(out)
}

/// The role of a fixed instance's change.
fn instance_role(c: &Change) -> Option<RoleKind> {
    match c.desired.as_ref().or(c.current.as_ref().map(|o| &o.spec))? {
        Spec::Instance(i) => Some(i.role),
        _ => None,
    }
}

/// The servers of `deploy.migrate_on` that may run the migrations: the
/// group's InService instances, then the role's fixed instance, sorted.
fn migrate_candidates(env: &Environment, inventory: &Inventory, groups: &BTreeMap<RoleKind, GroupNow>) -> Vec<String> {
    let role = env.deploy.migrate_on;
    let mut candidates: Vec<String> = Vec::new();
    if let Some(g) = groups.get(&role) {
        candidates.extend(
            g.members
                .iter()
                .filter(|m| m.state == "InService")
                .map(|m| m.id.clone()),
        );
    }
    if let Some(i) = inventory.resources.get(&addr::instance(role, 0)) {
        candidates.push(i.id.clone());
    }
    candidates.sort();
    candidates
}

/// A launch template's latest version, as `LaunchRef::Template` names it.
pub fn template_version(o: &Observed) -> Option<String> {
    o.status.template_version.map(|v| v.to_string())
}

pub fn launch_label(l: &LaunchRef) -> String {
    match l {
        LaunchRef::Configuration(n) => format!("launch configuration {}", n.as_deref().unwrap_or("(none)")),
        LaunchRef::Template { name, version } => {
            format!(
                "launch template {name} version {}",
                version.as_deref().unwrap_or("$Latest")
            )
        }
    }
}

/// Launch configurations of `role` to delete so that `keep` remain: never the
/// one in use nor the previous one (they count towards `keep`), the oldest
/// first. `created` sorts by creation time (a missing one sorts oldest).
pub fn prune_list(
    inventory: &Inventory,
    role: RoleKind,
    in_use: &str,
    previous: Option<&str>,
    created: &BTreeMap<String, String>,
    keep: u32,
) -> Vec<String> {
    let mut protected: BTreeSet<&str> = BTreeSet::from([in_use]);
    protected.extend(previous);
    let mut mine: Vec<(String, String)> = inventory
        .launch_configurations
        .iter()
        .filter(|(n, lc)| lc.launch.role == role && !protected.contains(n.as_str()))
        .map(|(n, _)| (created.get(n).cloned().unwrap_or_default(), n.clone()))
        .collect();
    // Newest first.
    mine.sort_by(|a, b| b.cmp(a));
    let room = (keep as usize).saturating_sub(protected.len());
    mine.into_iter().skip(room).map(|(_, n)| n).collect()
}

/// Turns successive looks at a group into rollout events. It tracks instance
/// ids itself (moto reports the new launch on old instances): an id not seen
/// before was launched, a known id no longer there is gone.
pub struct RollWatch {
    known: BTreeSet<String>,
    gone: BTreeSet<String>,
    /// Health is the load balancer's when the role has one, else the group's.
    load_balanced: bool,
}

impl RollWatch {
    /// `before`: the group as it was when the roll started.
    pub fn new(before: &GroupNow, load_balanced: bool) -> RollWatch {
        RollWatch {
            known: before.members.iter().map(|m| m.id.clone()).collect(),
            gone: BTreeSet::new(),
            load_balanced,
        }
    }

    /// The events of one look at the group, at `now` (seconds).
    pub fn observe(&mut self, g: &GroupNow, now: u64) -> Vec<Event> {
        let present: BTreeSet<String> = g.alive().into_iter().collect();
        let launched: Vec<String> = present.iter().filter(|id| !self.known.contains(*id)).cloned().collect();
        self.known.extend(launched.iter().cloned());
        let vanished: Vec<String> = self
            .known
            .iter()
            .filter(|id| !present.contains(*id) && !self.gone.contains(*id))
            .cloned()
            .collect();
        self.gone.extend(vanished.iter().cloned());
        let healthy = |m: &Member| {
            if self.load_balanced {
                m.health == "InService"
            } else {
                m.state == "InService"
            }
        };
        let (in_service, out_of_service): (Vec<&Member>, Vec<&Member>) = g
            .members
            .iter()
            .filter(|m| present.contains(&m.id))
            .partition(|m| healthy(m));
        let ids = |v: Vec<&Member>| v.into_iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        let mut out = Vec::new();
        if !launched.is_empty() {
            out.push(Event::Launched { ids: launched, now });
        }
        if !vanished.is_empty() {
            out.push(Event::Terminated { ids: vanished, now });
        }
        out.push(Event::Health {
            in_service: ids(in_service),
            out_of_service: ids(out_of_service),
            now,
        });
        out.push(Event::Tick { now });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, state: &str, health: &str) -> Member {
        Member {
            id: id.into(),
            state: state.into(),
            health: health.into(),
            launch: String::new(),
        }
    }

    fn group(members: Vec<Member>) -> GroupNow {
        GroupNow {
            name: "g".into(),
            min: 1,
            max: 4,
            desired: members.len() as u32,
            launch: LaunchRef::Configuration(Some("lc".into())),
            load_balancers: vec!["lb".into()],
            members,
            revision: Revision::read_back("r1"),
        }
    }

    #[test]
    fn roll_watch_reports_new_ids_as_launched_and_vanished_ones_as_terminated_once() {
        let before = group(vec![member("i-1", "InService", "InService")]);
        let mut w = RollWatch::new(&before, true);
        let now = group(vec![
            member("i-1", "InService", "InService"),
            member("i-2", "Pending", "OutOfService"),
        ]);
        assert_eq!(
            w.observe(&now, 5),
            vec![
                Event::Launched {
                    ids: vec!["i-2".into()],
                    now: 5
                },
                Event::Health {
                    in_service: vec!["i-1".into()],
                    out_of_service: vec!["i-2".into()],
                    now: 5
                },
                Event::Tick { now: 5 },
            ]
        );
        let later = group(vec![
            member("i-1", "Terminating", "InService"),
            member("i-2", "InService", "InService"),
        ]);
        let ev = w.observe(&later, 9);
        assert_eq!(
            ev[0],
            Event::Terminated {
                ids: vec!["i-1".into()],
                now: 9
            }
        );
        // Gone is reported once.
        assert!(
            !w.observe(&later, 10)
                .iter()
                .any(|e| matches!(e, Event::Terminated { .. }))
        );
    }

    #[test]
    fn same_deploy_state_ignores_health_but_not_instances() {
        let a = group(vec![member("i-1", "InService", "InService")]);
        let mut b = a.clone();
        b.members[0].health = "OutOfService".into();
        assert!(a.same_deploy_state(&b));
        b.members[0].id = "i-9".into();
        assert!(!a.same_deploy_state(&b));
    }
}
