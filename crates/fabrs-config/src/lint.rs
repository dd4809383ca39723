//! The security lint (seed 001): an environment that breaks one of these rules
//! is refused before any API call, with the rule named.
//!
//! - `internet-only-to-lb`: the internet reaches only the load balancer, on its listener ports;
//! - `ssh-admin-only`: SSH only from the listed admin CIDRs (never the internet);
//! - `db-from-app-only`: the database only from web and worker;
//! - `cache-queue-from-app-only`: cache and queue only from web and worker;
//! - `db-not-public`: the database is never publicly accessible.

use crate::diag::Sink;
use crate::model::*;
use std::collections::{BTreeMap, BTreeSet};

use crate::network::{AddrSet, Ingress, SSH_PORT, is_internet, security_groups};

pub const RULES: [&str; 5] = [
    "internet-only-to-lb",
    "ssh-admin-only",
    "db-from-app-only",
    "cache-queue-from-app-only",
    "db-not-public",
];

fn refuse(sink: &mut Sink, loc: crate::diag::Loc, path: &str, rule: &'static str, message: String, hint: &str) {
    let d = sink.error(loc, path, message);
    d.rule = Some(rule);
    d.hint = Some(hint.to_string());
}

pub(crate) fn lint(sink: &mut Sink, env: &Environment) {
    // The admin CIDRs are judged one by one and as a whole: 256 /8 blocks
    // open SSH to the internet as surely as 0.0.0.0/0.
    let mut admin = AddrSet::new();
    let mut admin_reported = false;
    for (i, c) in env.network.admin_cidrs.iter().enumerate() {
        admin.add(&c.value);
        if is_internet(&c.value) {
            refuse(
                sink,
                c.loc,
                "network.admin_cidrs",
                "ssh-admin-only",
                format!("SSH from `{}` opens SSH to the internet", c.value),
                "list your office or VPN addresses, e.g. 203.0.113.10/32",
            );
            admin_reported = true;
        } else if !admin_reported && admin.is_internet() {
            refuse(
                sink,
                c.loc,
                "network.admin_cidrs",
                "ssh-admin-only",
                format!(
                    "with this entry the {} admin CIDRs cover {}: that opens SSH to the internet",
                    i + 1,
                    admin.describe()
                ),
                "list your office or VPN addresses, e.g. 203.0.113.10/32",
            );
            admin_reported = true;
        }
    }
    if env.database.publicly_accessible.value {
        refuse(
            sink,
            env.database.publicly_accessible.loc,
            "database.publicly_accessible",
            "db-not-public",
            "the database must not be publicly accessible".into(),
            "set publicly_accessible: false; web and worker reach it inside the VPC",
        );
    }
    let listener_ports: Vec<u16> = env.load_balancer.listeners.iter().map(|l| l.port).collect();
    unions(sink, env, &listener_ports);

    for group in security_groups(env) {
        for rule in &group.ingress {
            // Derived rules are safe by construction; only declared ones are linted.
            let Some(loc) = rule.source_at else {
                continue;
            };
            let path = "firewall";
            let to = group.group;
            if let Source::Cidr(net) = &rule.source {
                if is_internet(net) && to != Group::Lb {
                    refuse(
                        sink,
                        loc,
                        path,
                        "internet-only-to-lb",
                        format!("`{net}` (the internet) may reach only the load balancer, not group `{to}`"),
                        "route public traffic through the load balancer",
                    );
                    continue;
                }
                if is_internet(net) && to == Group::Lb && !covers_only(rule, &listener_ports) {
                    refuse(
                        sink,
                        loc,
                        path,
                        "internet-only-to-lb",
                        format!(
                            "the internet may reach the load balancer only on its listener ports ({})",
                            join_ports(&listener_ports)
                        ),
                        "add a listener instead of opening a port",
                    );
                    continue;
                }
            }
            if rule.protocol == IpProtocol::Tcp && rule.from_port <= SSH_PORT && SSH_PORT <= rule.to_port {
                let from_admin = match &rule.source {
                    Source::Cidr(net) => admin.contains_net(net),
                    Source::Group(_) => false,
                };
                if !from_admin {
                    refuse(
                        sink,
                        loc,
                        path,
                        "ssh-admin-only",
                        format!(
                            "SSH (port 22) to group `{to}` from {} is not from an admin CIDR",
                            rule.source
                        ),
                        "SSH is allowed only from network.admin_cidrs",
                    );
                    continue;
                }
            }
            let from_app = matches!(rule.source, Source::Group(Group::Web | Group::Worker));
            match to {
                Group::Db if !from_app => refuse(
                    sink,
                    loc,
                    path,
                    "db-from-app-only",
                    format!(
                        "the database may be reached only from web and worker, not from {}",
                        rule.source
                    ),
                    "remove this rule; migrations run on a worker",
                ),
                Group::Cache | Group::Queue if !from_app => refuse(
                    sink,
                    loc,
                    path,
                    "cache-queue-from-app-only",
                    format!(
                        "group `{to}` may be reached only from web and worker, not from {}",
                        rule.source
                    ),
                    "remove this rule",
                ),
                _ => {}
            }
        }
    }
}

/// The declared rules of each group, judged together: per protocol and per
/// port, the union of every CIDR that reaches it. Several rules that each
/// admit part of the internet add up to the internet.
fn unions(sink: &mut Sink, env: &Environment, listener_ports: &[u16]) {
    let mut by_group: BTreeMap<(Group, IpProtocol), Vec<&FirewallRule>> = BTreeMap::new();
    for r in &env.firewall {
        by_group.entry((r.to.value, r.protocol)).or_default().push(r);
    }
    for ((to, protocol), rules) in by_group {
        let mut seen: Vec<(u32, u32, ipnet::IpNet)> = Vec::new();
        'rules: for r in rules {
            let Source::Cidr(net) = r.from.value else { continue };
            if is_internet(&net) {
                continue; // reported on its own
            }
            let (lo, hi) = (r.ports.value.0 as u32, r.ports.value.1 as u32);
            seen.push((lo, hi, net));
            // Cut this rule's port range where any rule's range (or, for the
            // load balancer, a listener port) starts or ends.
            let mut cuts: BTreeSet<u32> = [lo, hi + 1].into();
            for (a, b, _) in &seen {
                cuts.extend([*a, *b + 1].into_iter().filter(|p| (lo..=hi + 1).contains(p)));
            }
            if to == Group::Lb {
                for p in listener_ports {
                    let p = *p as u32;
                    cuts.extend([p, p + 1].into_iter().filter(|p| (lo..=hi + 1).contains(p)));
                }
            }
            let cuts: Vec<u32> = cuts.into_iter().collect();
            for w in cuts.windows(2) {
                let (a, b) = (w[0], w[1] - 1);
                if to == Group::Lb && (a..=b).all(|p| listener_ports.contains(&(p as u16))) {
                    continue;
                }
                let covering: Vec<&ipnet::IpNet> = seen
                    .iter()
                    .filter(|(x, y, _)| *x <= a && b <= *y)
                    .map(|(_, _, n)| n)
                    .collect();
                let union = AddrSet::of(covering.iter().copied());
                if union.is_internet() {
                    let ports = if a == b {
                        format!("port {a}")
                    } else {
                        format!("ports {a}-{b}")
                    };
                    let message = if to == Group::Lb {
                        format!(
                            "together, {} `firewall` rules admit {} to the load balancer on {} {ports}, which is not a listener port",
                            covering.len(),
                            union.describe(),
                            protocol.as_str()
                        )
                    } else {
                        format!(
                            "together, {} `firewall` rules admit {} to group `{to}` on {} {ports}: the internet may reach only the load balancer",
                            covering.len(),
                            union.describe(),
                            protocol.as_str()
                        )
                    };
                    refuse(
                        sink,
                        r.from.loc,
                        "firewall",
                        "internet-only-to-lb",
                        message,
                        "list only the networks that need this port; route public traffic through the load balancer",
                    );
                    break 'rules;
                }
            }
        }
    }
}

fn covers_only(rule: &Ingress, ports: &[u16]) -> bool {
    (rule.from_port..=rule.to_port).all(|p| ports.contains(&p))
}

fn join_ports(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}
