//! The security groups an environment gets, and their ingress rules: the ones
//! fabrs derives from the stack (seed 001 / 004) plus the ones the file declares.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use range_set_blaze::RangeSetBlaze;

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

/// A set of addresses (IPv4 and IPv6): the union of CIDR blocks, so that a
/// rule is judged by everything it admits, however it is written (256 /8
/// blocks, two /1 halves, or `0.0.0.0/0`).
#[derive(Clone, Debug, Default)]
pub struct AddrSet {
    v4: RangeSetBlaze<Ipv4Addr>,
    v6: RangeSetBlaze<Ipv6Addr>,
}

/// More public addresses than this is "the internet": a single /8's worth of
/// public IPv4 space (16.7 million) or a /16's worth of global IPv6.
const INTERNET_V4: u64 = 1 << 24;
const INTERNET_V6: u128 = 1 << 112;

/// IPv4 space that is not reachable from the internet: RFC 1918, loopback,
/// link-local, carrier-grade NAT, "this network", multicast and reserved.
const NOT_PUBLIC_V4: [&str; 8] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/3",
];

impl AddrSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn of<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Self {
        let mut s = Self::new();
        for n in nets {
            s.add(n);
        }
        s
    }

    pub fn add(&mut self, net: &IpNet) {
        match net {
            IpNet::V4(n) => {
                self.v4.ranges_insert(n.network()..=n.broadcast());
            }
            IpNet::V6(n) => {
                self.v6.ranges_insert(n.network()..=n.broadcast());
            }
        }
    }

    /// Whether every address of `net` is in the set.
    pub fn contains_net(&self, net: &IpNet) -> bool {
        match net {
            IpNet::V4(n) => RangeSetBlaze::from_iter([n.network()..=n.broadcast()]).is_subset(&self.v4),
            IpNet::V6(n) => RangeSetBlaze::from_iter([n.network()..=n.broadcast()]).is_subset(&self.v6),
        }
    }

    /// Public IPv4 addresses in the set.
    pub fn public_v4(&self) -> u64 {
        let private = RangeSetBlaze::from_iter(NOT_PUBLIC_V4.iter().map(|c| {
            let n: ipnet::Ipv4Net = c.parse().expect("a valid block");
            n.network()..=n.broadcast()
        }));
        (&self.v4 - &private).len()
    }

    /// Global unicast IPv6 addresses (2000::/3) in the set, saturating.
    pub fn public_v6(&self) -> u128 {
        let global: ipnet::Ipv6Net = "2000::/3".parse().expect("a valid block");
        let global = RangeSetBlaze::from_iter([global.network()..=global.broadcast()]);
        match (&self.v6 & &global).len() {
            range_set_blaze::UIntPlusOne::UInt(n) => n,
            range_set_blaze::UIntPlusOne::MaxPlusOne => u128::MAX,
        }
    }

    /// Whether the set stands for "the internet" (IPv4 or IPv6).
    pub fn is_internet(&self) -> bool {
        self.public_v4() > INTERNET_V4 || self.public_v6() > INTERNET_V6
    }

    /// The set's size for a message: "3.7 billion public IPv4 addresses".
    pub fn describe(&self) -> String {
        let v4 = self.public_v4();
        if v4 > INTERNET_V4 {
            format!("{} public IPv4 addresses", approx(v4 as f64))
        } else {
            format!("{} global IPv6 addresses", approx(self.public_v6() as f64))
        }
    }
}

fn approx(n: f64) -> String {
    if n >= 1e12 {
        format!("2^{:.0}", n.log2())
    } else if n >= 1e9 {
        format!("{:.1} billion", n / 1e9)
    } else {
        format!("{:.1} million", n / 1e6)
    }
}

/// Addresses so broad they stand for "the internet": more public addresses
/// than a /8 (IPv4) or a /16 of global unicast (IPv6).
pub fn is_internet(net: &IpNet) -> bool {
    AddrSet::of([net]).is_internet()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn the_internet_however_written() {
        assert!(is_internet(&"0.0.0.0/0".parse().unwrap()));
        assert!(is_internet(&"::/0".parse().unwrap()));
        assert!(AddrSet::of(&nets(&["0.0.0.0/1", "128.0.0.0/1"])).is_internet());
        assert!(AddrSet::of(&nets(&["::/1", "8000::/1"])).is_internet());
        let all8: Vec<IpNet> = (0..=255u8).map(|i| format!("{i}.0.0.0/8").parse().unwrap()).collect();
        assert!(AddrSet::of(&all8).is_internet());
        // Each /8 alone is not.
        assert!(!all8.iter().any(is_internet));
    }

    #[test]
    fn private_and_small_sets_are_not() {
        assert!(!AddrSet::of(&nets(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])).is_internet());
        assert!(!AddrSet::of(&nets(&["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"])).is_internet());
        assert!(!is_internet(&"fc00::/7".parse().unwrap()));
        assert!(AddrSet::of(&nets(&["3.0.0.0/8", "4.0.0.0/8"])).is_internet());
    }

    #[test]
    fn containment_by_union() {
        let admin = AddrSet::of(&nets(&["10.0.0.0/25", "10.0.0.128/25"]));
        assert!(admin.contains_net(&"10.0.0.0/24".parse().unwrap()));
        assert!(!admin.contains_net(&"10.0.0.0/23".parse().unwrap()));
    }
}
