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
use crate::network::{Ingress, SSH_PORT, is_internet, security_groups};

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
    for c in &env.network.admin_cidrs {
        if is_internet(&c.value) {
            refuse(
                sink,
                c.loc,
                "network.admin_cidrs",
                "ssh-admin-only",
                format!("SSH from `{}` opens SSH to the internet", c.value),
                "list your office or VPN addresses, e.g. 203.0.113.10/32",
            );
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
                    Source::Cidr(net) => env.network.admin_cidrs.iter().any(|a| a.value.contains(net)),
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

fn covers_only(rule: &Ingress, ports: &[u16]) -> bool {
    (rule.from_port..=rule.to_port).all(|p| ports.contains(&p))
}

fn join_ports(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}
