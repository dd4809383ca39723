//! The security groups an environment gets, and their ingress rules: the ones
//! fabrs derives from the stack (seed 001 / 004) plus the ones the file declares.

use ipnet::IpNet;

use crate::diag::Loc;
use crate::model::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    pub group: Group,
    pub name: String,
    pub description: String,
    pub ingress: Vec<Ingress>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ingress {
    pub protocol: IpProtocol,
    pub from_port: u16,
    pub to_port: u16,
    pub source: Source,
    pub description: String,
    /// Where the file declared this rule; `None` for rules fabrs derives.
    pub declared_at: Option<Loc>,
    /// Where the file names this rule's source (`from:`).
    pub source_at: Option<Loc>,
}

pub const POSTGRES_PORT: u16 = 5432;
pub const SSH_PORT: u16 = 22;

pub fn cache_port(engine: CacheEngine) -> Option<u16> {
    match engine {
        CacheEngine::Redis => Some(6379),
        CacheEngine::Memcached => Some(11211),
        CacheEngine::None => None,
    }
}

pub fn queue_port(engine: QueueEngine) -> Option<u16> {
    match engine {
        QueueEngine::Rabbitmq => Some(5672),
        QueueEngine::Redis => Some(6379),
        QueueEngine::None => None,
    }
}

fn tcp(port: u16, source: Source, description: &str) -> Ingress {
    Ingress {
        protocol: IpProtocol::Tcp,
        from_port: port,
        to_port: port,
        source,
        description: description.to_string(),
        declared_at: None,
        source_at: None,
    }
}

/// Which groups an instance of a role is launched into.
pub fn role_groups(env: &Environment, role: RoleKind) -> Vec<Group> {
    let present: Vec<Group> = security_groups(env).iter().map(|g| g.group).collect();
    let wanted: &[Group] = match role {
        RoleKind::Web => &[Group::Base, Group::Web],
        RoleKind::Worker => &[Group::Base, Group::Worker],
        RoleKind::Cache => &[Group::Base, Group::Cache, Group::Queue],
    };
    wanted.iter().copied().filter(|g| present.contains(g)).collect()
}

/// Every security group of the environment, in a fixed order, rules sorted.
pub fn security_groups(env: &Environment) -> Vec<GroupSpec> {
    let app_sources: Vec<Source> = [RoleKind::Web, RoleKind::Worker]
        .into_iter()
        .filter(|r| env.roles.contains_key(r))
        .map(|r| Source::Group(if r == RoleKind::Web { Group::Web } else { Group::Worker }))
        .collect();
    let cache_role = env.role(RoleKind::Cache);
    let mut groups = Vec::new();
    let mut add = |group: Group, description: String, ingress: Vec<Ingress>| {
        groups.push(GroupSpec {
            group,
            name: env.group_name(group),
            description,
            ingress,
        });
    };

    add(
        Group::Base,
        format!("{} {}: every server; SSH from admin CIDRs", env.project, env.name),
        env.network
            .admin_cidrs
            .iter()
            .map(|c| tcp(SSH_PORT, Source::Cidr(c.value), "ssh from admin"))
            .collect(),
    );

    let mut lb = Vec::new();
    for l in &env.load_balancer.listeners {
        for c in &env.load_balancer.ingress_cidrs {
            lb.push(tcp(l.port, Source::Cidr(c.value), "clients to load balancer"));
        }
    }
    add(Group::Lb, format!("{} {}: load balancer", env.project, env.name), lb);

    let mut web_ports: Vec<u16> = env.load_balancer.listeners.iter().map(|l| l.instance_port).collect();
    web_ports.push(env.load_balancer.health_check.port);
    web_ports.sort();
    web_ports.dedup();
    add(
        Group::Web,
        format!("{} {}: web servers", env.project, env.name),
        web_ports
            .into_iter()
            .map(|p| tcp(p, Source::Group(Group::Lb), "load balancer to web"))
            .collect(),
    );

    if env.roles.contains_key(&RoleKind::Worker) {
        add(Group::Worker, format!("{} {}: workers", env.project, env.name), vec![]);
    }
    if let Some(port) = cache_role.and_then(|r| cache_port(r.cache)) {
        add(
            Group::Cache,
            format!("{} {}: cache", env.project, env.name),
            app_sources
                .iter()
                .map(|s| tcp(port, s.clone(), "app to cache"))
                .collect(),
        );
    }
    if let Some(port) = cache_role.and_then(|r| queue_port(r.queue)) {
        add(
            Group::Queue,
            format!("{} {}: queue", env.project, env.name),
            app_sources
                .iter()
                .map(|s| tcp(port, s.clone(), "app to queue"))
                .collect(),
        );
    }
    add(
        Group::Db,
        format!("{} {}: database", env.project, env.name),
        app_sources
            .iter()
            .map(|s| tcp(POSTGRES_PORT, s.clone(), "app to database"))
            .collect(),
    );

    for rule in &env.firewall {
        if let Some(g) = groups.iter_mut().find(|g| g.group == rule.to.value) {
            g.ingress.push(Ingress {
                protocol: rule.protocol,
                from_port: rule.ports.value.0,
                to_port: rule.ports.value.1,
                source: rule.from.value.clone(),
                description: rule
                    .description
                    .clone()
                    .unwrap_or_else(|| "declared in environment file".into()),
                declared_at: Some(rule.loc),
                source_at: Some(rule.from.loc),
            });
        }
    }
    for g in &mut groups {
        g.ingress.sort();
        g.ingress.dedup_by(|a, b| {
            a.protocol == b.protocol && a.from_port == b.from_port && a.to_port == b.to_port && a.source == b.source
        });
    }
    groups
}

/// Addresses so broad they stand for "the internet": /0, or wider than a /8 (IPv4) or /16 (IPv6).
pub fn is_internet(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => n.prefix_len() < 8,
        IpNet::V6(n) => n.prefix_len() < 16,
    }
}
