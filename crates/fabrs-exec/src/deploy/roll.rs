//! One role's roll: point the group at a launch and drive the rollout
//! machine from what `Fleet::group` reports; and the pruning after.

use std::collections::BTreeMap;
use std::time::Duration;

use fabrs_plan::deploy::{RolePlan, RollWatch, launch_label, prune_list};
use fabrs_plan::desired::health_check_type;
use fabrs_plan::resource::{Address, Inventory, Kind, LaunchRef, Observed, Spec};
use fabrs_plan::rollout::{self, Outcome, Rollout, RolloutConfig};

use fabrs_cloud::{Cloud, Fleet};
use fabrs_config::Revision;

use super::clock::{Clock, human_duration};
use super::{DeployError, Note, Notes, Settings, floor_for};

/// Point the group at `launch` and replace `r.old` with instances of it.
pub(super) async fn roll_role<C: Cloud + Fleet, K: Clock>(
    cloud: &C,
    clock: &K,
    r: &RolePlan,
    launch: &LaunchRef,
    revision: Option<&Revision>,
    settings: &Settings,
    notes: Notes<'_>,
) -> Result<Outcome, DeployError> {
    let before = cloud.group(&r.group).await?;
    let behind_lb = !before.load_balancers.is_empty();
    cloud
        .switch_launch(&r.group, launch, revision, health_check_type(behind_lb, revision))
        .await?;
    notes(Note::Info(format!(
        "{}: group {} now uses {}",
        r.role,
        r.group,
        launch_label(launch)
    )));
    let cfg = RolloutConfig {
        batch_size: settings.batch_size.max(1),
        healthy_floor: floor_for(settings, r.desired),
        health_timeout_secs: settings.health_timeout.as_secs().max(1),
        desired: r.desired,
    };
    let mut machine =
        Rollout::new(cfg.clone(), r.old.clone(), 0).map_err(|e| DeployError::Refused(format!("{}: {e}", r.role)))?;
    let start = clock.elapsed();
    let elapsed = || clock.elapsed().saturating_sub(start);
    let now = || elapsed().as_secs();
    let max0 = before.max;
    let mut desired = before.desired;
    let mut max = max0;
    let mut watch = RollWatch::new(&before, r.load_balancer.is_some());
    let mut actions = machine.handle(rollout::Event::Started { now: now() });
    // A bound beyond the machine's own deadlines, against a driver bug.
    let hard_stop = settings.health_timeout * (2 * (r.desired + r.old.len() as u32) + 4)
        + settings.draining * (r.old.len() as u32 + 1);
    // Connection draining: an instance the roll took out of the load
    // balancer is terminated only once its in-flight requests had the
    // draining timeout to finish. Auto Scaling waits for draining when it
    // deregisters an instance itself; this one the roll deregistered, so
    // fabrs does not count on TerminateInstanceInAutoScalingGroup waiting.
    // Meanwhile the roll goes on: id → when (elapsed) it may be terminated.
    let mut draining: BTreeMap<String, Duration> = BTreeMap::new();
    // Terminations the machine asked for, waiting for their draining.
    let mut doomed: Vec<String> = Vec::new();
    loop {
        for a in std::mem::take(&mut actions) {
            match a {
                rollout::Action::LaunchBatch { count } => {
                    desired += count;
                    max = max.max(desired);
                    notes(Note::Info(format!("{}: launching {count} instance(s)", r.role)));
                    cloud.set_capacity(&r.group, desired, max).await?;
                }
                rollout::Action::WaitForHealth { ids, deadline } => {
                    notes(Note::Info(format!(
                        "{}: waiting for {} to be InService (up to {} s)",
                        r.role,
                        ids.join(", "),
                        deadline.saturating_sub(now())
                    )));
                }
                rollout::Action::Deregister { ids } => {
                    if let Some(lb) = &r.load_balancer {
                        cloud.deregister(lb, &ids).await?;
                        if !settings.draining.is_zero() {
                            notes(Note::Info(format!(
                                "{}: {} out of load balancer {lb}, draining for {}",
                                r.role,
                                ids.join(", "),
                                human_duration(settings.draining)
                            )));
                            let until = elapsed() + settings.draining;
                            for id in &ids {
                                draining.insert(id.clone(), until);
                            }
                        }
                    }
                }
                rollout::Action::Terminate { ids } => {
                    let (later, now_ids): (Vec<String>, Vec<String>) = ids
                        .into_iter()
                        .partition(|id| draining.get(id).is_some_and(|t| *t > elapsed()));
                    doomed.extend(later);
                    if !now_ids.is_empty() {
                        notes(Note::Info(format!("{}: terminating {}", r.role, now_ids.join(", "))));
                    }
                    for id in &now_ids {
                        cloud.terminate(id).await?;
                        desired = desired.saturating_sub(1);
                    }
                }
                rollout::Action::SwitchBack { cancel } => {
                    notes(Note::Info(format!(
                        "{}: rolling back: group {} back to {}",
                        r.role,
                        r.group,
                        launch_label(&r.from_launch)
                    )));
                    cloud
                        .switch_launch(
                            &r.group,
                            &r.from_launch,
                            r.from_revision.as_ref(),
                            health_check_type(behind_lb, r.from_revision.as_ref()),
                        )
                        .await?;
                    if cancel > 0 {
                        desired = desired.saturating_sub(cancel);
                        cloud.set_capacity(&r.group, desired, max).await?;
                    }
                }
                rollout::Action::Finish { outcome, summary } => {
                    // The last removals wait out their draining.
                    if let Some(until) = doomed.iter().filter_map(|id| draining.get(id)).max().copied() {
                        let left = until.saturating_sub(elapsed());
                        if !left.is_zero() {
                            clock.sleep(left).await;
                        }
                    }
                    let last = std::mem::take(&mut doomed);
                    if !last.is_empty() {
                        notes(Note::Info(format!("{}: terminating {}", r.role, last.join(", "))));
                    }
                    for id in &last {
                        cloud.terminate(id).await?;
                        desired = desired.saturating_sub(1);
                    }
                    if max != max0 {
                        cloud.set_capacity(&r.group, desired, max0.max(desired)).await?;
                    }
                    notes(Note::Info(format!("{}: {summary}", r.role)));
                    return Ok(outcome);
                }
            }
        }
        // Removals whose draining is over.
        let due: Vec<String> = doomed
            .iter()
            .filter(|id| draining.get(*id).is_none_or(|t| *t <= elapsed()))
            .cloned()
            .collect();
        if !due.is_empty() {
            notes(Note::Info(format!("{}: terminating {}", r.role, due.join(", "))));
            for id in &due {
                cloud.terminate(id).await?;
                desired = desired.saturating_sub(1);
            }
            doomed.retain(|id| !due.contains(id));
        }
        if elapsed() > hard_stop {
            return Err(DeployError::Aborted(format!(
                "{}: the roll did not finish within {}",
                r.role,
                human_duration(hard_stop)
            )));
        }
        clock.sleep(settings.poll).await;
        let g = cloud.group(&r.group).await?;
        desired = g.desired;
        for e in watch.observe(&g, now()) {
            actions.extend(machine.handle(e));
        }
    }
}

/// Delete this environment's launch configurations of the rolled roles
/// beyond the newest `keep`, never the one in use nor the previous one.
pub(super) async fn prune<C: Cloud + Fleet>(
    cloud: &C,
    inventory: &Inventory,
    done: &[(&RolePlan, LaunchRef)],
    settings: &Settings,
    notes: Notes<'_>,
) -> Result<(), DeployError> {
    let names: Vec<String> = inventory.launch_configurations.keys().cloned().collect();
    let times = cloud.launch_configuration_times(&names).await?;
    for (r, new) in done {
        let LaunchRef::Configuration(Some(in_use)) = new else {
            continue;
        };
        let previous = match &r.from_launch {
            LaunchRef::Configuration(prev) => prev.as_deref(),
            LaunchRef::Template { .. } => None,
        };
        let doomed = prune_list(
            inventory,
            r.role,
            in_use,
            previous,
            &times,
            settings.keep_launch_configurations,
        );
        for name in doomed {
            let lc = &inventory.launch_configurations[&name];
            let o = Observed {
                address: Address::new(Kind::LaunchConfiguration, name.clone()),
                id: name.clone(),
                spec: Spec::LaunchConfiguration(lc.clone()),
                status: Default::default(),
            };
            cloud.delete(&o).await?;
            notes(Note::Info(format!("{}: deleted launch configuration {name}", r.role)));
        }
    }
    Ok(())
}
