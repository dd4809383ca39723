//! `ami: resolve:ssm:…`: the file's SSM parameters, resolved against what
//! discovery read ([`Inventory::image_parameters`]). Pure.
//!
//! A group's servers follow the parameter: when it names a new image, the
//! plan shows the launch configuration or template version that launches it,
//! and a deploy (or `rotate`) rolls the servers onto it. A fixed server (the
//! cache server, fixed web servers) is replaced to change its image, which
//! would lose what it holds in memory; so a fixed role keeps the image its
//! server runs, and the review says so when the parameter moved on. Pinning
//! `ami:` to an id (or deleting the server) moves it.

use fabrs_config::{Ami, Environment, RoleKind, Scaling};

use crate::resource::{Inventory, Spec};

/// The file with every `ami:` an id, and what a review says about how.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub env: Environment,
    /// One line per role whose image came from a parameter.
    pub notes: Vec<String>,
}

/// Resolve the file's parameters. `Err`: one line per role whose parameter
/// does not exist in the region (nothing can be planned for it).
pub fn resolve(env: &Environment, inventory: &Inventory) -> Result<Resolved, Vec<String>> {
    let mut out = env.clone();
    let mut notes = Vec::new();
    let mut following: std::collections::BTreeMap<(String, String), Vec<&'static str>> = Default::default();
    let mut missing: std::collections::BTreeMap<String, Vec<&'static str>> = Default::default();
    for (kind, role) in out.roles.iter_mut() {
        let Some(name) = role.ami.parameter().map(str::to_string) else {
            continue;
        };
        let Some(resolved) = inventory.image_parameters.get(&name) else {
            missing.entry(name).or_default().push(kind.as_str());
            continue;
        };
        let running = match role.scaling {
            Scaling::Fixed { .. } => running_image(inventory, *kind),
            Scaling::Auto { .. } => None,
        };
        let image = match running {
            Some(running) if running != *resolved => {
                notes.push(format!(
                    "{kind}: keeps {running}, the image its fixed server runs; {name} now names {resolved} (pin `ami: {resolved}` to replace the server with it)"
                ));
                running
            }
            _ => {
                following
                    .entry((resolved.clone(), name))
                    .or_default()
                    .push(kind.as_str());
                resolved.clone()
            }
        };
        role.ami = Ami::Id(image);
    }
    // One line per image: `web, worker, cache: ami-… (from /aws/…)`.
    notes.splice(
        0..0,
        following
            .into_iter()
            .map(|((id, name), roles)| format!("{}: {id} (from {name})", roles.join(", "))),
    );
    if let Some(name) = out.ami.parameter()
        && let Some(resolved) = inventory.image_parameters.get(name)
    {
        out.ami = Ami::Id(resolved.clone());
    }
    if missing.is_empty() {
        return Ok(Resolved { env: out, notes });
    }
    Err(missing
        .into_iter()
        .map(|(name, roles)| {
            let s = if roles.len() == 1 { "" } else { "s" };
            format!(
                "SSM parameter {name} (ami:) does not exist in {} (role{s} {})",
                env.region,
                roles.join(", ")
            )
        })
        .collect())
}

/// The image the role's existing fixed server runs (the lowest index), when
/// the cloud reported one.
fn running_image(inventory: &Inventory, kind: RoleKind) -> Option<String> {
    inventory
        .resources
        .values()
        .filter_map(|o| match &o.spec {
            Spec::Instance(i) if i.role == kind && !i.launch.image_id.is_empty() => Some((i.index, &i.launch.image_id)),
            _ => None,
        })
        .min()
        .map(|(_, id)| id.clone())
}

/// Every parameter the file names, for discovery to read.
pub fn parameters(env: &Environment) -> Vec<String> {
    let mut names: Vec<String> = std::iter::once(&env.ami)
        .chain(env.roles.values().map(|r| &r.ami))
        .filter_map(|a| a.parameter().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}
