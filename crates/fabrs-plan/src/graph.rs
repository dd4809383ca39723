//! The plan's dependency graph: what each created or updated resource needs
//! to exist first, as AWS requires it (a load balancer names its security
//! groups, a read replica its master, a group its launch and load balancer;
//! a server reads the secrets' parameters and runs with its instance role
//! from its first boot). The apply driver starts each change the moment
//! what it needs is done; [`depth`] is the length of the longest chain, the
//! fewest rounds of writes any driver could make. Pure.
//!
//! The app servers' launches need the cache server and the database: their
//! user-data names those addresses (until they exist the launches are not
//! fully known, and a create-env pass defers them to the next). Not edges:
//! security group rules that name other groups (the driver creates groups
//! bare and adds those rules once every group exists).

use std::collections::BTreeMap;

use fabrs_config::RoleKind;

use crate::addr;
use crate::plan::{Action, Change, Plan};
use crate::resource::{Address, Kind, LaunchSpec, Spec};

/// What the launches need beyond their own spec.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// The secrets' parameters (a server reads them at boot).
    pub parameters: Vec<Address>,
    /// The servers whose addresses the app servers' user-data names: the
    /// cache server and the database instances.
    pub servers: Vec<Address>,
}

/// What `spec` (at `address`) needs to exist before it is created or
/// changed, whether or not the plan changes those.
pub fn needs(address: &Address, spec: &Spec, cx: &Context) -> Vec<Address> {
    let mut out = spec.as_kind().needs(cx);
    out.retain(|a| a != address);
    out.sort();
    out.dedup();
    out
}

/// The security groups of these keys.
pub(crate) fn groups(keys: &[String]) -> Vec<Address> {
    keys.iter().map(|g| addr::security_group(g)).collect()
}

/// What a server launched with `l` needs: its security groups, its
/// instance role, the secrets' parameters it reads at boot and (app
/// servers) the servers its user-data names.
pub(crate) fn launch_needs(l: &LaunchSpec, cx: &Context) -> Vec<Address> {
    let mut out = groups(&l.security_groups);
    if l.instance_profile.is_some() {
        out.push(addr::instance_role(l.role));
    }
    out.extend(cx.parameters.iter().cloned());
    if l.role != RoleKind::Cache {
        out.extend(cx.servers.iter().cloned());
    }
    out
}

/// The plan's creates and updates, each with the indexes (into the
/// returned list) of those it waits for: the dependencies the plan itself
/// changes (what exists already is not waited for).
pub fn edges(plan: &Plan) -> Vec<(&Change, Vec<usize>)> {
    let writes: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::Delete).collect();
    let index: BTreeMap<&Address, usize> = writes.iter().enumerate().map(|(i, c)| (&c.address, i)).collect();
    let of = |pred: &dyn Fn(&Change) -> bool| -> Vec<Address> {
        writes.iter().filter(|c| pred(c)).map(|c| c.address.clone()).collect()
    };
    let cx = Context {
        parameters: of(&|c| c.address.kind == Kind::SsmParameter),
        servers: of(&|c| match &c.desired {
            Some(Spec::DbInstance(_)) => true,
            Some(Spec::Instance(i)) => i.role == RoleKind::Cache,
            _ => false,
        }),
    };
    writes
        .iter()
        .map(|c| {
            let deps = match &c.desired {
                Some(spec) => needs(&c.address, spec, &cx)
                    .iter()
                    .filter_map(|a| index.get(a).copied())
                    .collect(),
                None => Vec::new(),
            };
            (*c, deps)
        })
        .collect()
}

/// The longest chain of the plan's creates and updates, counted in
/// changes (0 for a plan without any): a driver that starts every change
/// as soon as what it needs is done finishes in this many rounds.
pub fn depth(plan: &Plan) -> usize {
    longest(plan, |_| 1)
}

/// What the plan needs in round trips in series, at the least: one round of
/// concurrent Describe calls (the discovery it was made from), then along
/// the longest chain one call per change, and one look more for each change
/// whose dependents wait until it is ready (its `Waits::until_ready`: a
/// database's endpoint, a server's address exist only then). Calls a kind
/// makes beyond one per change (a security group's rules, a load balancer's
/// listener policies) are not counted: they are what an apply may add to
/// this floor, and what the benchmarks measure against it.
pub fn round_trips(plan: &Plan) -> usize {
    1 + longest(plan, |c| 1 + usize::from(c.address.kind.waits().until_ready))
}

/// The longest chain of the plan's creates and updates, each weighing
/// `weight`.
fn longest(plan: &Plan, weight: impl Fn(&Change) -> usize) -> usize {
    let edges = edges(plan);
    let weights: Vec<usize> = edges.iter().map(|(c, _)| weight(c)).collect();
    let mut memo: Vec<Option<usize>> = vec![None; edges.len()];
    fn walk(
        i: usize,
        edges: &[(&Change, Vec<usize>)],
        weights: &[usize],
        memo: &mut [Option<usize>],
        on: &mut Vec<usize>,
    ) -> usize {
        if let Some(d) = memo[i] {
            return d;
        }
        if on.contains(&i) {
            return 0; // a cycle is the planner's bug; never loop on it
        }
        on.push(i);
        let d = weights[i]
            + edges[i]
                .1
                .iter()
                .map(|&j| walk(j, edges, weights, memo, on))
                .max()
                .unwrap_or(0);
        on.pop();
        memo[i] = Some(d);
        d
    }
    (0..edges.len())
        .map(|i| walk(i, &edges, &weights, &mut memo, &mut Vec::new()))
        .max()
        .unwrap_or(0)
}
