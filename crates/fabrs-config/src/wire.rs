//! The file format (version 1): node tree → model, every problem reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

use crate::decode::{At, Obj, boolean, cidr, duration, int, join, list, one_of, string};
use crate::diag::{Loc, Sink, did_you_mean, shorten};
use crate::model::*;
use crate::node::{Node, Value};

const NAME_HINT: &str = "use lowercase letters, digits and '-', starting with a letter";

fn name(sink: &mut Sink, node: &Node, path: &str, max: usize) -> Option<At<String>> {
    let s = string(sink, node, path)?;
    let ok = s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-');
    if !ok {
        let d = sink.error(s.loc, path, format!("`{}` is not a valid name", shorten(&s.value)));
        d.hint = Some(format!("{NAME_HINT}, at most {max} characters"));
        return None;
    }
    Some(s)
}

fn port(sink: &mut Sink, node: &Node, path: &str) -> Option<u16> {
    int(sink, node, path, 1, 65535).map(|p| p.value as u16)
}

fn protocol(sink: &mut Sink, node: &Node, path: &str) -> Option<Protocol> {
    one_of(sink, node, path, &["HTTP", "HTTPS", "TCP", "SSL"]).and_then(|p| Protocol::parse(p.value))
}

pub(crate) fn decode(sink: &mut Sink, root: &Node, file: &Path, project_dir: &Path) -> Option<Environment> {
    let mut top = Obj::new(sink, root, "")?;

    // The version comes first: a file from a newer fabrs gets one clear error.
    let version = top
        .req(sink, "version")
        .and_then(|n| int(sink, n, "version", 0, i64::MAX));
    if let Some(v) = &version {
        if v.value != FORMAT_VERSION {
            let d = sink.error(v.loc, "version", format!("unsupported format version {}", v.value));
            d.hint = Some(format!("this fabrs reads version {FORMAT_VERSION}"));
            return None;
        }
    }

    let project = top.req(sink, "project").and_then(|n| name(sink, n, "project", 32));
    let env_name = top
        .req(sink, "environment")
        .and_then(|n| name(sink, n, "environment", 24));
    let region = top.req(sink, "region").and_then(|n| string(sink, n, "region"));
    if let Some(r) = &region {
        if !REGIONS.contains(&r.value.as_str()) {
            let d = sink.error(r.loc, "region", format!("`{}` is not an AWS region", shorten(&r.value)));
            d.hint = Some(match did_you_mean(&r.value, REGIONS) {
                Some(m) => format!("did you mean `{m}`?"),
                None => "e.g. us-east-1, eu-west-1".into(),
            });
        }
    }
    let ami = top.req(sink, "ami").and_then(|n| ami(sink, n, "ami"));

    let network = top
        .req(sink, "network")
        .and_then(|n| network(sink, n, project.as_ref(), env_name.as_ref()));
    let ssh = top.req(sink, "ssh").and_then(|n| ssh(sink, n));
    let load_balancer = top.req(sink, "load_balancer").and_then(|n| load_balancer(sink, n));
    let secrets_node = top.opt("secrets");
    let secrets = match secrets_node {
        Some(n) => secrets(sink, n, project_dir),
        None => Some(BTreeMap::new()),
    };
    // References are checked against every declared name, even one whose
    // declaration has its own error, so one mistake is reported once.
    let secret_names: Vec<String> = match secrets_node.map(|n| &n.value) {
        Some(Value::Map(entries)) => entries.iter().map(|(k, _)| k.name.clone()).collect(),
        _ => vec![],
    };
    let roles = top
        .req(sink, "roles")
        .and_then(|n| roles(sink, n, ami.as_ref(), &secret_names));
    let database = top.req(sink, "database").and_then(|n| database(sink, n, &secret_names));
    let app = match top.opt("app") {
        Some(n) => app(sink, n),
        None => Some(App {
            name: "refapp".into(),
            photos_bucket: None,
            server_names: vec![],
            port: 8000,
            env: BTreeMap::new(),
        }),
    };
    let artifacts = top.req(sink, "artifacts").and_then(|n| artifacts(sink, n));
    let deploy = match top.opt("deploy") {
        Some(n) => deploy(sink, n, roles.as_ref()),
        None => deploy(
            sink,
            &Node {
                loc: top.loc,
                value: Value::Null,
            },
            roles.as_ref(),
        ),
    };
    let firewall = match top.opt("firewall") {
        Some(n) => list(sink, n, "firewall", |s, n, p| firewall_rule(s, n, p, roles.as_ref())),
        None => Some(vec![]),
    };
    let tags = match top.opt("tags") {
        Some(n) => tags(sink, n),
        None => Some(BTreeMap::new()),
    };
    top.finish(sink);

    let env = Environment {
        file: file.to_path_buf(),
        project_dir: project_dir.to_path_buf(),
        project: project?.value,
        name: env_name?.value,
        region: region?.value,
        network: network?,
        ami: ami?.value,
        ssh: ssh?,
        load_balancer: load_balancer?,
        roles: roles?,
        database: database?,
        app: app?,
        artifacts: artifacts?,
        deploy: deploy?,
        secrets: secrets?,
        firewall: firewall?,
        tags: tags?,
    };
    let locs = NameLocs {
        project: project_loc(root, "project"),
        environment: project_loc(root, "environment"),
        group_prefix: nested_loc(root, "network", "security_group_prefix"),
        photos_bucket: nested_loc(root, "app", "photos_bucket"),
    };
    check_derived_names(sink, &env, &locs);
    Some(env)
}

/// AWS regions (every partition), as botocore's endpoint data lists them.
pub(crate) const REGIONS: [&str; 45] = [
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "cn-north-1",
    "cn-northwest-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-isob-west-1",
    "eu-isoe-west-1",
    "us-isof-east-1",
    "eusc-de-east-1",
];

/// Where the keys that names are made of sit in the file.
struct NameLocs {
    project: Loc,
    environment: Loc,
    group_prefix: Option<Loc>,
    photos_bucket: Option<Loc>,
}

fn project_loc(root: &Node, key: &str) -> Loc {
    match &root.value {
        Value::Map(e) => e
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v.loc)
            .unwrap_or(root.loc),
        _ => root.loc,
    }
}

fn nested_loc(root: &Node, section: &str, key: &str) -> Option<Loc> {
    let Value::Map(e) = &root.value else { return None };
    let (_, sec) = e.iter().find(|(k, _)| k.name == section)?;
    let Value::Map(e) = &sec.value else { return None };
    e.iter().find(|(k, _)| k.name == key).map(|(_, v)| v.loc)
}

/// Every name fabrs will give a resource, against AWS's rules for it, pointing
/// at the key whose value makes it bad.
fn check_derived_names(sink: &mut Sink, env: &Environment, locs: &NameLocs) {
    use crate::names::{self, Source as From};
    // One diagnostic per cause: seven security groups with one bad prefix are one mistake.
    let mut reported = std::collections::BTreeSet::new();
    for d in names::derived(env) {
        let Some(problem) = names::problem(d.rule, &d.name) else {
            continue;
        };
        if !reported.insert((
            format!("{:?}", d.rule),
            format!("{:?}", d.source),
            problem.contains("characters"),
        )) {
            continue;
        }
        let (loc, path, fix) = match d.source {
            From::GroupPrefix if locs.group_prefix.is_some() => (
                locs.group_prefix.unwrap_or(locs.project),
                "network.security_group_prefix",
                "change `network.security_group_prefix`".to_string(),
            ),
            From::PhotosBucket if locs.photos_bucket.is_some() => (
                locs.photos_bucket.unwrap_or(locs.project),
                "app.photos_bucket",
                "change `app.photos_bucket`".to_string(),
            ),
            _ => {
                // The value that holds the bad part; for a length, the
                // environment unless the project alone is already too long.
                let over = d.name.chars().count().saturating_sub(limit_of(&problem));
                let in_project = problem.contains("--") && env.project.contains("--")
                    || problem.contains("start")
                    || (over > 0 && over >= env.name.len());
                if in_project {
                    (locs.project, "project", project_fix(&problem, over, "project"))
                } else {
                    (
                        locs.environment,
                        "environment",
                        project_fix(&problem, over, "environment"),
                    )
                }
            }
        };
        let d2 = sink.error(
            loc,
            path,
            format!("{} `{}` {problem}", d.what, crate::diag::shorten_to(&d.name, 120)),
        );
        d2.hint = Some(fix);
    }
}

/// The limit a "is N characters; … allows M" problem names (0 when none).
fn limit_of(problem: &str) -> usize {
    problem
        .rsplit(' ')
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or(usize::MAX)
}

fn project_fix(problem: &str, over: usize, key: &str) -> String {
    if over > 0 && problem.contains("characters") {
        format!("shorten `project` or `environment` by {over} character(s)")
    } else if problem.contains("--") {
        format!("remove the `--` from `{key}`")
    } else {
        format!("change `{key}`")
    }
}

/// `<prefix>-` and 8 or 17 lowercase hex digits: the shape of every EC2 id.
fn is_ec2_id(s: &str, prefix: &str) -> bool {
    let hex = s.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')).unwrap_or("");
    (hex.len() == 8 || hex.len() == 17) && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

fn ami(sink: &mut Sink, n: &Node, path: &str) -> Option<At<Ami>> {
    let s = string(sink, n, path)?;
    if let Some(name) = s.value.strip_prefix(Ami::SSM_PREFIX) {
        if !is_ssm_parameter_name(name) {
            let d = sink.error(s.loc, path, format!("`{}` is not an SSM parameter name", shorten(name)));
            d.hint = Some(format!(
                "a parameter name starts with `/` and holds letters, digits and `_ . - /` (at most 15 levels), e.g. {AMI_PARAMETER_EXAMPLE}"
            ));
            return None;
        }
        return Some(At::new(Ami::Parameter(name.to_string()), s.loc));
    }
    if !is_ec2_id(&s.value, "ami") {
        let d = sink.error(s.loc, path, format!("`{}` is not an AMI id", shorten(&s.value)));
        d.hint = Some(format!(
            "an AMI id is `ami-` and 8 or 17 lowercase hex digits, e.g. ami-0123456789abcdef0, or an SSM parameter naming one, e.g. {AMI_PARAMETER_EXAMPLE}"
        ));
        return None;
    }
    Some(At::new(Ami::Id(s.value), s.loc))
}

const AMI_PARAMETER_EXAMPLE: &str = "resolve:ssm:/aws/service/debian/release/12/latest/amd64";

/// An SSM parameter name as `GetParameters` takes it: `/`-rooted, AWS's
/// character set, at most 15 levels, at most 1011 characters (AWS's limit
/// for a name without the ARN prefix). A version or label selector
/// (`:3`, `:prod`) is not taken: the plan pins the value it read.
fn is_ssm_parameter_name(name: &str) -> bool {
    name.starts_with('/')
        && name.len() > 1
        && name.len() <= 1011
        && !name.ends_with('/')
        && !name.contains("//")
        && name.matches('/').count() <= 15
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
}

fn string_map(sink: &mut Sink, n: &Node, path: &str) -> Option<BTreeMap<String, String>> {
    let mut obj = Obj::new(sink, n, path)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in obj.entries() {
        let p = join(path, &k.name);
        let value = match &v.value {
            // No file fabrs writes (nor AWS) can hold a NUL character.
            Value::Str(s) if s.contains('\0') => {
                sink.error(v.loc, &p, "a NUL character (\\0) is not allowed in a value");
                None
            }
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                sink.error(v.loc, &p, format!("expected a string, found {}", v.kind()));
                None
            }
        };
        match value {
            Some(v) => {
                out.insert(k.name.clone(), v);
            }
            None => ok = false,
        }
    }
    obj.finish(sink);
    ok.then_some(out)
}

fn tags(sink: &mut Sink, n: &Node) -> Option<BTreeMap<String, String>> {
    use crate::names::{FABRS_TAGS_PER_RESOURCE, MAX_TAGS, tag_key_problem, tag_value_problem};
    let map = string_map(sink, n, "tags")?;
    let mut ok = true;
    if let Value::Map(entries) = &n.value {
        let room = MAX_TAGS - FABRS_TAGS_PER_RESOURCE;
        if entries.len() > room {
            let (k, _) = &entries[room];
            let d = sink.error(
                k.loc,
                "tags",
                format!(
                    "{} tags: with the {FABRS_TAGS_PER_RESOURCE} fabrs sets, a resource would carry more than AWS's {MAX_TAGS}",
                    entries.len()
                ),
            );
            d.hint = Some(format!("keep at most {room} tags (this is tag {})", room + 1));
            ok = false;
        }
        for (k, v) in entries {
            let path = join("tags", &k.name);
            if is_reserved_tag_key(&k.name) {
                let d = sink.error(k.loc, "tags", format!("tag `{}` is reserved", shorten(&k.name)));
                d.hint = Some(if k.name == "Name" {
                    "fabrs names every resource itself (its `Name` tag); this one would be overwritten".into()
                } else {
                    "fabrs sets its ownership tags itself".into()
                });
                ok = false;
            } else if let Some(p) = tag_key_problem(&k.name) {
                let d = sink.error(k.loc, "tags", format!("tag key `{}`: {p}", shorten(&k.name)));
                d.hint = Some("ELB and RDS accept only this tag key alphabet".into());
                ok = false;
            }
            if let Some(value) = map.get(&k.name) {
                if let Some(p) = tag_value_problem(value) {
                    let d = sink.error(v.loc, &path, format!("tag value `{}`: {p}", shorten(value)));
                    d.hint = Some("ELB and RDS refuse other characters in tag values".into());
                    ok = false;
                }
            }
        }
    }
    ok.then_some(map)
}

fn network(sink: &mut Sink, n: &Node, project: Option<&At<String>>, env: Option<&At<String>>) -> Option<Network> {
    let mut o = Obj::new(sink, n, "network")?;
    let vpc = match o.opt("vpc") {
        None => Some(Vpc::Default),
        Some(v) => string(sink, v, "network.vpc").and_then(|s| {
            if s.value == "default" {
                Some(Vpc::Default)
            } else if is_ec2_id(&s.value, "vpc") {
                Some(Vpc::Id(s.value))
            } else {
                let d = sink.error(s.loc, "network.vpc", format!("`{}` is not a VPC id", shorten(&s.value)));
                d.hint = Some("write `default` or a VPC id: `vpc-` and 8 or 17 lowercase hex digits".into());
                None
            }
        }),
    };
    let subnets = match o.opt("subnets") {
        None => Some(vec![]),
        Some(v) => list(sink, v, "network.subnets", |s, n, p| {
            let id = string(s, n, p)?;
            if !is_ec2_id(&id.value, "subnet") {
                let d = s.error(id.loc, p, format!("`{}` is not a subnet id", shorten(&id.value)));
                d.hint = Some("`subnet-` and 8 or 17 lowercase hex digits, e.g. subnet-0123456789abcdef0".into());
                return None;
            }
            Some(id.value)
        }),
    };
    let admin_node = o.req(sink, "admin_cidrs");
    let admin_cidrs = admin_node.and_then(|v| list(sink, v, "network.admin_cidrs", cidr));
    if let (Some(list), Some(node)) = (&admin_cidrs, admin_node) {
        if list.is_empty() {
            let d = sink.error(
                node.loc,
                "network.admin_cidrs",
                "list at least one admin CIDR (or no one can SSH in)",
            );
            d.hint = Some("your office or VPN addresses, e.g. `[203.0.113.10/32]`".into());
        }
    }
    let prefix = match o.opt("security_group_prefix") {
        Some(v) => name(sink, v, "network.security_group_prefix", 64).map(|s| s.value),
        None => match (project, env) {
            (Some(p), Some(e)) => Some(format!("{}-{}", p.value, e.value)),
            _ => None,
        },
    };
    o.finish(sink);
    Some(Network {
        vpc: vpc?,
        subnets: subnets?,
        admin_cidrs: admin_cidrs?,
        security_group_prefix: prefix?,
    })
}

fn ssh(sink: &mut Sink, n: &Node) -> Option<Ssh> {
    let mut o = Obj::new(sink, n, "ssh")?;
    let user = match o.opt("user") {
        Some(v) => string(sink, v, "ssh.user").and_then(|s| {
            let valid = s.len() <= 32
                && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !valid {
                let d = sink.error(
                    s.loc,
                    "ssh.user",
                    format!("`{}` is not a Linux user name", shorten(&s.value)),
                );
                d.hint = Some(
                    "lowercase letters, digits, '_' and '-', starting with a letter or '_', at most 32 (e.g. `ubuntu`)"
                        .into(),
                );
                None
            } else {
                Some(s.value)
            }
        }),
        None => Some("ubuntu".into()),
    };
    let key_name = o.opt("key_name").map(|v| {
        string(sink, v, "ssh.key_name").and_then(|s| {
            // EC2 key pair names: up to 255 ASCII characters.
            let ok = s.chars().count() <= 255 && s.chars().all(|c| c.is_ascii() && !c.is_ascii_control());
            if !ok {
                let d = sink.error(
                    s.loc,
                    "ssh.key_name",
                    format!("`{}` is not an EC2 key pair name", shorten(&s.value)),
                );
                d.hint = Some("up to 255 printable ASCII characters".into());
                return None;
            }
            Some(s.value)
        })
    });
    let keys = o.req(sink, "authorized_keys").and_then(|v| {
        list(sink, v, "ssh.authorized_keys", |s, n, p| {
            let k = string(s, n, p)?;
            match authorized_key_problem(&k.value) {
                Some((message, hint)) => {
                    let d = s.error(k.loc, p, message);
                    d.hint = Some(hint);
                    None
                }
                None => Some(k.value),
            }
        })
    });
    o.finish(sink);
    let key_name = match key_name {
        Some(k) => Some(k?),
        None => None,
    };
    Some(Ssh {
        user: user?,
        key_name,
        authorized_keys: keys?,
    })
}

/// Why sshd would not accept `line` as an authorized key: not one line, an
/// unknown type, or a blob that is not base64 of a key of the stated type.
fn authorized_key_problem(line: &str) -> Option<(String, String)> {
    use base64::Engine;
    let pub_hint = "paste the line of a .pub file, e.g. `ssh-ed25519 AAAA… you@host`".to_string();
    if let Some(c) = line.chars().find(|c| c.is_control()) {
        return Some((
            format!("an authorized key is one line; this one holds U+{:04X}", c as u32),
            pub_hint,
        ));
    }
    const KNOWN: [&str; 7] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let mut words = line.split_whitespace();
    let (ty, blob) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if !KNOWN.contains(&ty) || blob.is_empty() {
        return Some(("not an OpenSSH public key".into(), pub_hint));
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(blob) else {
        return Some((
            format!("the key data of this {ty} key is not valid base64"),
            "the key was cut or mistyped; paste the whole line of the .pub file again".into(),
        ));
    };
    // The blob starts with its own type: a u32 length, then the name.
    let inner = bytes
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|len| bytes.get(4..4 + len));
    if inner != Some(ty.as_bytes()) {
        return Some((
            format!("the key data does not hold an {ty} key"),
            "the type and the key data come from different keys; paste the whole line of one .pub file".into(),
        ));
    }
    if ty == "ssh-ed25519" && bytes.len() != 51 {
        return Some((
            "the ssh-ed25519 key data is truncated or too long".into(),
            "paste the whole line of the .pub file again".into(),
        ));
    }
    None
}

fn load_balancer(sink: &mut Sink, n: &Node) -> Option<LoadBalancer> {
    let mut o = Obj::new(sink, n, "load_balancer")?;
    let listeners_node = o.req(sink, "listeners");
    let listeners = listeners_node.and_then(|v| list(sink, v, "load_balancer.listeners", listener));
    if let (Some(ls), Some(node)) = (&listeners, listeners_node) {
        if ls.is_empty() {
            sink.error(
                node.loc,
                "load_balancer.listeners",
                "a load balancer needs at least one listener",
            );
        }
        let mut seen = BTreeMap::new();
        for (i, l) in ls.iter().enumerate() {
            if let Some(first) = seen.insert(l.port, i) {
                let path = format!("load_balancer.listeners[{i}].port");
                let loc = item_key_loc(node, i, "port").unwrap_or(node.loc);
                let d = sink.error(loc, &path, format!("a second listener on port {}", l.port));
                d.hint = Some(format!(
                    "listener {first} already uses port {}; one listener per port",
                    l.port
                ));
                seen.insert(l.port, first);
            }
        }
    }
    let health_check = o.req(sink, "health_check").and_then(|v| health_check(sink, v));
    let ingress = match o.opt("ingress_cidrs") {
        Some(v) => list(sink, v, "load_balancer.ingress_cidrs", cidr).filter(|l| {
            if l.is_empty() {
                let d = sink.error(
                    v.loc,
                    "load_balancer.ingress_cidrs",
                    "no one could reach the load balancer",
                );
                d.hint = Some("list who may reach it, or leave the key out for the whole internet".into());
            }
            !l.is_empty()
        }),
        None => Some(vec![
            At::new("0.0.0.0/0".parse::<IpNet>().unwrap(), o.loc),
            At::new("::/0".parse::<IpNet>().unwrap(), o.loc),
        ]),
    };
    let idle = match o.opt("idle_timeout") {
        // The classic ELB's limit: 1 to 4000 seconds.
        Some(v) => duration(sink, v, "load_balancer.idle_timeout", Duration::from_secs(4000)).map(|d| d.value),
        None => Some(Duration::from_secs(60)),
    };
    let cross_zone = match o.opt("cross_zone") {
        Some(v) => boolean(sink, v, "load_balancer.cross_zone").map(|b| b.value),
        None => Some(true),
    };
    let draining = match o.opt("draining_timeout") {
        // The classic ELB's connection draining timeout: 1 to 3600 seconds
        // (durations are whole seconds, more than zero).
        Some(v) => duration(sink, v, "load_balancer.draining_timeout", Duration::from_secs(3600)).map(|d| d.value),
        None => Some(Duration::from_secs(300)),
    };
    o.finish(sink);
    Some(LoadBalancer {
        listeners: listeners?,
        health_check: health_check?,
        ingress_cidrs: ingress?,
        idle_timeout: idle?,
        cross_zone: cross_zone?,
        draining_timeout: draining?,
    })
}

/// The value of `key` in the `i`th mapping of the list `list` (for positions).
fn item_key_loc(list: &Node, i: usize, key: &str) -> Option<Loc> {
    let Value::Seq(items) = &list.value else { return None };
    let Value::Map(e) = &items.get(i)?.value else {
        return None;
    };
    e.iter().find(|(k, _)| k.name == key).map(|(_, v)| v.loc)
}

/// The ports nginx listens on, on every web server (templates/nginx.conf.tera).
pub(crate) const NGINX_HTTP_PORT: u16 = 80;
pub(crate) const NGINX_HTTPS_PORT: u16 = 443;
/// The one path the web servers answer for a health check (nginx's default
/// server answers only `location = /healthcheck.html`).
pub(crate) const HEALTH_CHECK_PATH: &str = "/healthcheck.html";

/// Which nginx port serves a back-end protocol: plain HTTP on 80, TLS on 443
/// (TCP may go to either: it passes bytes through).
fn nginx_serves(protocol: Protocol, port: u16) -> bool {
    match protocol {
        Protocol::Http => port == NGINX_HTTP_PORT,
        Protocol::Https | Protocol::Ssl => port == NGINX_HTTPS_PORT,
        Protocol::Tcp => port == NGINX_HTTP_PORT || port == NGINX_HTTPS_PORT,
    }
}

fn nginx_port_for(protocol: Protocol) -> u16 {
    match protocol {
        Protocol::Http | Protocol::Tcp => NGINX_HTTP_PORT,
        Protocol::Https | Protocol::Ssl => NGINX_HTTPS_PORT,
    }
}

fn listener(sink: &mut Sink, n: &Node, path: &str) -> Option<Listener> {
    let mut o = Obj::new(sink, n, path)?;
    let port_v = o.req(sink, "port").and_then(|v| port(sink, v, &join(path, "port")));
    let proto = o
        .req(sink, "protocol")
        .and_then(|v| protocol(sink, v, &join(path, "protocol")));
    let iport = o
        .req(sink, "instance_port")
        .and_then(|v| port(sink, v, &join(path, "instance_port")));
    let iproto = o
        .req(sink, "instance_protocol")
        .and_then(|v| protocol(sink, v, &join(path, "instance_protocol")));
    let cert_node = o.opt("certificate_arn");
    let cert = cert_node.map(|v| string(sink, v, &join(path, "certificate_arn")));
    if let Some(p) = &port_v {
        // The classic ELB listens on 25, 80, 443, 465, 587 or 1024-65535.
        if !(matches!(*p, 25 | 80 | 443 | 465 | 587) || *p >= 1024) {
            let loc = key_value_loc(n, "port").unwrap_or(o.loc);
            let d = sink.error(
                loc,
                &join(path, "port"),
                format!("a classic load balancer cannot listen on port {p}"),
            );
            d.hint = Some("use 25, 80, 443, 465, 587 or 1024-65535".into());
        }
    }
    if let (Some(front), Some(back)) = (proto, iproto) {
        let layer7 = |p: Protocol| matches!(p, Protocol::Http | Protocol::Https);
        if layer7(front) != layer7(back) {
            let loc = key_value_loc(n, "instance_protocol").unwrap_or(o.loc);
            let d = sink.error(
                loc,
                &join(path, "instance_protocol"),
                format!(
                    "{} {} listener cannot forward to {}: the load balancer refuses mixing HTTP/HTTPS with TCP/SSL",
                    if front == Protocol::Tcp { "a" } else { "an" },
                    front.as_str(),
                    back.as_str()
                ),
            );
            d.hint = Some(if layer7(front) {
                "use HTTP or HTTPS as instance_protocol".into()
            } else {
                "use TCP or SSL as instance_protocol".into()
            });
        }
    }
    if let (Some(back), Some(ip)) = (iproto, iport) {
        if !nginx_serves(back, ip) {
            let loc = key_value_loc(n, "instance_port").unwrap_or(o.loc);
            let d = sink.error(
                loc,
                &join(path, "instance_port"),
                format!("nginx on the web servers does not serve {} on port {ip}", back.as_str()),
            );
            d.hint = Some(format!(
                "nginx listens for HTTP on {NGINX_HTTP_PORT} and HTTPS on {NGINX_HTTPS_PORT}: use instance_port: {}",
                nginx_port_for(back)
            ));
        }
    }
    if let (Some(p), Some(c)) = (proto, &cert) {
        match c {
            Some(arn) if !is_certificate_arn(&arn.value) => {
                let d = sink.error(
                    arn.loc,
                    &join(path, "certificate_arn"),
                    format!("`{}` is not a certificate ARN", shorten(&arn.value)),
                );
                d.hint = Some(
                    "arn:aws:acm:<region>:<account>:certificate/<id> or arn:aws:iam::<account>:server-certificate/<name>"
                        .into(),
                );
            }
            Some(arn) if !p.is_secure() => {
                sink.error(
                    arn.loc,
                    &join(path, "certificate_arn"),
                    format!("a {} listener takes no certificate", p.as_str()),
                );
            }
            _ => {}
        }
    }
    if let Some(p) = proto {
        if p.is_secure() && cert.is_none() {
            let d = sink.error(
                o.loc,
                path,
                format!("an {} listener needs `certificate_arn`", p.as_str()),
            );
            d.hint = Some("the ARN of an ACM or IAM server certificate".into());
        }
    }
    o.finish(sink);
    let cert = match cert {
        Some(c) => Some(c?.value),
        None => None,
    };
    Some(Listener {
        port: port_v?,
        protocol: proto?,
        instance_port: iport?,
        instance_protocol: iproto?,
        certificate_arn: cert,
    })
}

/// The value node's position of `key` in the mapping `n`.
fn key_value_loc(n: &Node, key: &str) -> Option<Loc> {
    let Value::Map(e) = &n.value else { return None };
    e.iter().find(|(k, _)| k.name == key).map(|(_, v)| v.loc)
}

/// An ACM certificate or an IAM server certificate, in any partition.
fn is_certificate_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [a, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    let account_ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
    a == "arn"
        && partition.starts_with("aws")
        && account_ok
        && match service {
            "acm" => !region.is_empty() && resource.strip_prefix("certificate/").is_some_and(|r| !r.is_empty()),
            "iam" => {
                region.is_empty()
                    && resource
                        .strip_prefix("server-certificate/")
                        .is_some_and(|r| !r.is_empty())
            }
            _ => false,
        }
}

fn health_check(sink: &mut Sink, n: &Node) -> Option<HealthCheck> {
    let path = "load_balancer.health_check";
    let mut o = Obj::new(sink, n, path)?;
    let target = o
        .req(sink, "target")
        .and_then(|v| string(sink, v, &join(path, "target")));
    let parsed = target.as_ref().and_then(|t| {
        let parsed = parse_target(&t.value);
        match &parsed {
            None => {
                let d = sink.error(
                    t.loc,
                    &join(path, "target"),
                    format!("`{}` is not a health check target", shorten(&t.value)),
                );
                d.hint = Some("PROTOCOL:PORT[/path], e.g. HTTPS:443/healthcheck.html".into());
            }
            Some((proto, port, hpath)) => {
                if !nginx_serves(*proto, *port) {
                    let d = sink.error(
                        t.loc,
                        &join(path, "target"),
                        format!(
                            "nginx on the web servers does not answer {} on port {port}, so every server would be unhealthy",
                            proto.as_str()
                        ),
                    );
                    d.hint = Some(format!(
                        "nginx listens for HTTP on {NGINX_HTTP_PORT} and HTTPS on {NGINX_HTTPS_PORT}: e.g. {}:{}{}",
                        proto.as_str(),
                        nginx_port_for(*proto),
                        hpath.as_deref().map(|_| HEALTH_CHECK_PATH).unwrap_or("")
                    ));
                } else if let Some(hp) = hpath {
                    let bare = hp.split('?').next().unwrap_or(hp);
                    if bare != HEALTH_CHECK_PATH || t.value.chars().count() > 1024 {
                        let d = sink.error(
                            t.loc,
                            &join(path, "target"),
                            format!(
                                "the web servers answer health checks only on {HEALTH_CHECK_PATH}, not `{}`",
                                shorten(hp)
                            ),
                        );
                        d.hint = Some(format!(
                            "use {}:{port}{HEALTH_CHECK_PATH} (nginx's server for the ELB's checks serves only that path)",
                            proto.as_str()
                        ));
                    }
                }
            }
        }
        parsed
    });
    let mut dur = |key: &'static str, default: u64, max: u64| match o.opt(key) {
        Some(v) => duration(sink, v, &join(path, key), Duration::from_secs(max)),
        None => Some(At::new(Duration::from_secs(default), n.loc)),
    };
    // The classic ELB's limits: interval 5-300 s, timeout 2-60 s.
    let interval = dur("interval", 30, 300);
    let timeout = dur("timeout", 5, 60);
    let healthy = match o.opt("healthy_threshold") {
        Some(v) => int(sink, v, &join(path, "healthy_threshold"), 2, 10).map(|v| v.value),
        None => Some(2),
    };
    let unhealthy = match o.opt("unhealthy_threshold") {
        Some(v) => int(sink, v, &join(path, "unhealthy_threshold"), 2, 10).map(|v| v.value),
        None => Some(3),
    };
    if let (Some(i), Some(t)) = (&interval, &timeout) {
        if i.value.as_secs() < 5 || i.value.as_secs() > 300 {
            sink.error(
                i.loc,
                &join(path, "interval"),
                "must be between 5s and 300s (an ELB limit)",
            );
        }
        if t.value.as_secs() < 2 {
            sink.error(
                t.loc,
                &join(path, "timeout"),
                "must be between 2s and 60s (an ELB limit)",
            );
        } else if t.value >= i.value {
            let d = sink.error(t.loc, &join(path, "timeout"), "must be shorter than the interval");
            d.hint = Some(format!("the interval is {}s", i.value.as_secs()));
        }
    }
    o.finish(sink);
    let (protocol, port, hpath) = parsed?;
    Some(HealthCheck {
        target: target?.value,
        protocol,
        port,
        path: hpath,
        interval: interval?.value,
        timeout: timeout?.value,
        healthy_threshold: healthy?,
        unhealthy_threshold: unhealthy?,
    })
}

fn parse_target(t: &str) -> Option<(Protocol, u16, Option<String>)> {
    let (proto, rest) = t.split_once(':')?;
    let proto = Protocol::parse(proto)?;
    let (port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    match (proto, &path) {
        (Protocol::Http | Protocol::Https, None) | (Protocol::Tcp | Protocol::Ssl, Some(_)) => None,
        _ => Some((proto, port, path)),
    }
}

fn secret_ref(sink: &mut Sink, n: &Node, path: &str, declared: &[String]) -> Option<String> {
    let s = string(sink, n, path)?;
    if !declared.contains(&s.value) {
        let d = sink.error(s.loc, path, format!("unknown secret `{}`", s.value));
        d.hint = Some(match did_you_mean(&s.value, declared.iter().map(String::as_str)) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!(
                "declare it under `secrets:` (declared: {})",
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            ),
        });
        return None;
    }
    Some(s.value)
}

fn roles(sink: &mut Sink, n: &Node, ami: Option<&At<Ami>>, secrets: &[String]) -> Option<BTreeMap<RoleKind, Role>> {
    let mut o = Obj::new(sink, n, "roles")?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for kind in RoleKind::ALL {
        if let Some(v) = o.opt(kind.as_str()) {
            match role(sink, v, kind, ami, secrets) {
                Some(r) => {
                    out.insert(kind, r);
                }
                None => ok = false,
            }
        }
    }
    o.finish(sink);
    if ok && !out.contains_key(&RoleKind::Web) {
        sink.error(
            n.loc,
            "roles",
            "an environment needs a `web` role behind its load balancer",
        );
        return None;
    }
    ok.then_some(out)
}

fn role(sink: &mut Sink, n: &Node, kind: RoleKind, ami_default: Option<&At<Ami>>, secrets: &[String]) -> Option<Role> {
    let path = format!("roles.{kind}");
    let p = |k: &str| join(&path, k);
    let mut o = Obj::new(sink, n, &path)?;
    let itype = o
        .req(sink, "instance_type")
        .and_then(|v| string(sink, v, &p("instance_type")));
    if let Some(t) = &itype {
        if let Some(hint) = instance_type_problem(&t.value) {
            let d = sink.error(
                t.loc,
                &p("instance_type"),
                format!("`{}` is not an EC2 instance type", shorten(&t.value)),
            );
            d.hint = Some(hint);
        }
    }
    let ami = match o.opt("ami") {
        Some(v) => ami(sink, v, &p("ami")),
        None => ami_default.cloned(),
    };
    let volume = match o.opt("volume_gb") {
        Some(v) => int(sink, v, &p("volume_gb"), 8, 16384).map(|v| v.value),
        None => Some(16),
    };
    let count = o.opt("count");
    let auto = o.opt("autoscaling");
    let launch = o.opt("launch");
    let scaling = match (count, auto) {
        (Some(_), Some(a)) => {
            let d = sink.error(
                a.loc,
                &p("autoscaling"),
                "a role has either `count` or `autoscaling`, not both",
            );
            d.hint = Some("`count` for fixed servers, `autoscaling` for a group".into());
            None
        }
        (None, None) => {
            sink.error(o.loc, &path, "missing `count` or `autoscaling`");
            None
        }
        (Some(c), None) => {
            if let Some(l) = launch {
                sink.error(l.loc, &p("launch"), "`launch` applies only to autoscaled roles");
            }
            int(sink, c, &p("count"), 1, 100).map(|c| Scaling::Fixed { count: c.value })
        }
        (None, Some(a)) if kind == RoleKind::Cache => {
            let d = sink.error(
                a.loc,
                &p("autoscaling"),
                "the cache/queue role holds state and cannot autoscale",
            );
            d.hint = Some("use `count: 1`".into());
            None
        }
        (None, Some(a)) => autoscaling(sink, a, &p("autoscaling"), launch, &p("launch")),
    };
    let concurrency = match o.opt("concurrency") {
        Some(v) if kind == RoleKind::Worker => int(sink, v, &p("concurrency"), 1, 256).map(|v| v.value),
        Some(v) => {
            sink.error(
                v.loc,
                &p("concurrency"),
                "`concurrency` applies only to the worker role",
            );
            None
        }
        None => Some(2),
    };
    let (mut cache, mut queue) = (Some(CacheEngine::None), Some(QueueEngine::None));
    let (mut cache_pw, mut queue_pw) = (None, None);
    if kind == RoleKind::Cache {
        cache = o
            .req(sink, "cache")
            .and_then(|v| one_of(sink, v, &p("cache"), &["redis", "memcached", "none"]))
            .map(|c| match c.value {
                "redis" => CacheEngine::Redis,
                "memcached" => CacheEngine::Memcached,
                _ => CacheEngine::None,
            });
        queue = o
            .req(sink, "queue")
            .and_then(|v| one_of(sink, v, &p("queue"), &["rabbitmq", "redis", "none"]))
            .map(|q| match q.value {
                "rabbitmq" => QueueEngine::Rabbitmq,
                "redis" => QueueEngine::Redis,
                _ => QueueEngine::None,
            });
        let redis = cache == Some(CacheEngine::Redis) || queue == Some(QueueEngine::Redis);
        let cpw = o.opt("cache_password_secret");
        let qpw = o.opt("queue_password_secret");
        match cpw {
            Some(v) => cache_pw = secret_ref(sink, v, &p("cache_password_secret"), secrets),
            None if redis => {
                let d = sink.error(o.loc, &path, "Redis needs `cache_password_secret`");
                d.hint = Some("Redis is bound to the private interface with a password".into());
            }
            None => {}
        }
        match qpw {
            Some(v) => queue_pw = secret_ref(sink, v, &p("queue_password_secret"), secrets),
            None if queue == Some(QueueEngine::Rabbitmq) => {
                let d = sink.error(o.loc, &path, "RabbitMQ needs `queue_password_secret`");
                d.hint = Some("the application user's password".into());
            }
            None => {}
        }
        if let Some(Scaling::Fixed { count }) = scaling {
            if count > 1 {
                if let Some(c) = count_loc(n) {
                    let d = sink.error(c, &p("count"), "fabrs runs one cache/queue server per environment");
                    d.hint = Some("use `count: 1`".into());
                }
            }
        }
    }
    o.finish(sink);
    Some(Role {
        kind,
        instance_type: itype?.value,
        ami: ami?.value,
        scaling: scaling?,
        volume_gb: volume?,
        concurrency: concurrency?,
        cache: cache?,
        queue: queue?,
        cache_password_secret: cache_pw,
        queue_password_secret: queue_pw,
    })
}

/// EC2 instance types are `<family>.<size>`: a family of lowercase letters,
/// digits and '-' holding a generation digit (`t3`, `m7i-flex`, `u-6tb1`), and
/// a size (`nano` … `xlarge`, `<n>xlarge`, `metal`, `metal-<n>xl`). Every type
/// in botocore's EC2 model has this shape.
fn instance_type_problem(t: &str) -> Option<String> {
    static SHAPE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal|metal-[1-9][0-9]*xl)$",
        )
        .expect("a valid pattern")
    });
    if SHAPE.is_match(t) {
        return None;
    }
    if let Some(rest) = t.strip_prefix("db.") {
        return Some(format!(
            "`db.` classes are for RDS (database.instance_class); for a server, did you mean `{rest}`?"
        ));
    }
    if let Some(rest) = t.strip_prefix("cache.") {
        return Some(format!("`cache.` types are ElastiCache's; did you mean `{rest}`?"));
    }
    if SHAPE.is_match(&t.to_ascii_lowercase()) {
        return Some(format!("instance types are lowercase: `{}`", t.to_ascii_lowercase()));
    }
    Some("a family and a size, e.g. t3.small, m6i.large, c7g.2xlarge".into())
}

fn count_loc(n: &Node) -> Option<crate::diag::Loc> {
    match &n.value {
        Value::Map(e) => e.iter().find(|(k, _)| k.name == "count").map(|(_, v)| v.loc),
        _ => None,
    }
}

fn autoscaling(sink: &mut Sink, n: &Node, path: &str, launch: Option<&Node>, launch_path: &str) -> Option<Scaling> {
    let mut o = Obj::new(sink, n, path)?;
    let min = o
        .req(sink, "min")
        .and_then(|v| int(sink, v, &join(path, "min"), 0, 1000));
    let max = o
        .req(sink, "max")
        .and_then(|v| int(sink, v, &join(path, "max"), 1, 1000));
    let desired = match o.opt("desired") {
        Some(v) => int(sink, v, &join(path, "desired"), 0, 1000),
        None => min.clone(),
    };
    o.finish(sink);
    let launch = match launch {
        Some(l) => one_of(sink, l, launch_path, &["configuration", "template"]).map(|l| match l.value {
            "configuration" => Launch::Configuration,
            _ => Launch::Template,
        }),
        None => {
            let d = sink.error(
                n.loc,
                launch_path,
                "missing `launch: configuration` or `launch: template`",
            );
            d.hint = Some(
                "accounts created after 2024-10-01 cannot create launch configurations: use `template` there".into(),
            );
            None
        }
    };
    let (min, max, desired) = (min?, max?, desired?);
    if min.value > max.value {
        let d = sink.error(
            min.loc,
            &join(path, "min"),
            format!("min ({}) is greater than max ({})", min.value, max.value),
        );
        d.hint = Some("min ≤ desired ≤ max".into());
        return None;
    }
    if desired.value < min.value || desired.value > max.value {
        let d = sink.error(
            desired.loc,
            &join(path, "desired"),
            format!(
                "desired ({}) is outside min..max ({}..{})",
                desired.value, min.value, max.value
            ),
        );
        d.hint = Some("min ≤ desired ≤ max".into());
        return None;
    }
    Some(Scaling::Auto {
        min: min.value,
        max: max.value,
        desired: desired.value,
        launch: launch?,
    })
}

fn database(sink: &mut Sink, n: &Node, secrets: &[String]) -> Option<Database> {
    let path = "database";
    let p = |k: &str| join(path, k);
    let mut o = Obj::new(sink, n, path)?;
    let engine = o.req(sink, "engine").and_then(|v| {
        let e = string(sink, v, &p("engine"))?;
        if e.value != "postgres" {
            let d = sink.error(e.loc, &p("engine"), format!("engine `{}` is not supported", e.value));
            d.hint = Some("fabrs's stack (pgbouncer, the reference app) runs on `postgres`".into());
            return None;
        }
        Some(e.value)
    });
    let version = o.req(sink, "engine_version").and_then(|v| match &v.value {
        // A major version ("16": RDS picks its default minor) or a full one ("16.9").
        Value::Str(s) if s.split('.').count() <= 2 && s.split('.').all(|p| p.parse::<u32>().is_ok()) => Some(s.clone()),
        Value::Float(f) => {
            let d = sink.error(
                v.loc,
                &p("engine_version"),
                format!("expected a string, found the number {f}"),
            );
            d.hint = Some(format!("quote it: \"{f}\" (as a number, 16.10 would read as 16.1)"));
            None
        }
        Value::Int(i) => Some(i.to_string()),
        _ => {
            sink.error(
                v.loc,
                &p("engine_version"),
                format!(
                    "expected a major version such as \"16\" or a full one such as \"16.9\", found {}",
                    v.kind()
                ),
            );
            None
        }
    });
    let class = o
        .req(sink, "instance_class")
        .and_then(|v| db_class(sink, v, &p("instance_class")));
    let replica_class = match o.opt("replica_instance_class") {
        Some(v) => db_class(sink, v, &p("replica_instance_class")),
        None => class.clone(),
    };
    let storage = o
        .req(sink, "storage_gb")
        .and_then(|v| int(sink, v, &p("storage_gb"), 20, 65536))
        .map(|v| v.value);
    let dbname = o.req(sink, "name").and_then(|v| string(sink, v, &p("name")));
    let username = o.req(sink, "username").and_then(|v| string(sink, v, &p("username")));
    for (s, key) in [(&dbname, "name"), (&username, "username")] {
        let Some(s) = s else { continue };
        let ok = s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && s.len() <= 63;
        if !ok {
            let d = sink.error(
                s.loc,
                path,
                format!("`{}` is not a valid PostgreSQL identifier", shorten(&s.value)),
            );
            d.hint = Some("letters, digits and '_', starting with a letter".into());
        } else if let Some(why) = rds_reserved_name(&s.value, key == "username") {
            let d = sink.error(s.loc, &p(key), format!("RDS refuses `{}` as the {why}", s.value));
            d.hint = Some(format!(
                "pick another {}",
                if key == "name" { "database name" } else { "user name" }
            ));
        }
    }
    let password = o
        .req(sink, "password_secret")
        .and_then(|v| secret_ref(sink, v, &p("password_secret"), secrets));
    let replicas = match o.opt("replicas") {
        Some(v) => int(sink, v, &p("replicas"), 0, crate::model::MAX_REPLICAS.into()),
        None => Some(At::new(0, o.loc)),
    };
    let backups = match o.opt("backup_retention_days") {
        Some(v) => int(sink, v, &p("backup_retention_days"), 0, 35),
        None => Some(At::new(7, o.loc)),
    };
    if let (Some(r), Some(b)) = (&replicas, &backups) {
        if r.value > 0 && b.value == 0 {
            let d = sink.error(
                b.loc,
                &p("backup_retention_days"),
                "read replicas need automated backups on the master",
            );
            d.hint = Some("set backup_retention_days to 1 or more".into());
        }
    }
    let multi_az = match o.opt("multi_az") {
        Some(v) => boolean(sink, v, &p("multi_az")).map(|b| b.value),
        None => Some(false),
    };
    let public = match o.opt("publicly_accessible") {
        Some(v) => boolean(sink, v, &p("publicly_accessible")),
        None => Some(At::new(false, o.loc)),
    };
    let params = match o.opt("parameters") {
        Some(v) => string_map(sink, v, &p("parameters")),
        None => Some(BTreeMap::new()),
    };
    let deletion_protection = match o.opt("deletion_protection") {
        Some(v) => boolean(sink, v, &p("deletion_protection")).map(|b| b.value),
        None => Some(true),
    };
    o.finish(sink);
    Some(Database {
        engine: engine?,
        engine_version: version?,
        instance_class: class?,
        replica_instance_class: replica_class?,
        storage_gb: storage?,
        name: dbname?.value,
        username: username?.value,
        password_secret: password?,
        replicas: replicas?.value,
        backup_retention_days: backups?.value,
        multi_az: multi_az?,
        publicly_accessible: public?,
        parameters: params?,
        deletion_protection: deletion_protection?,
    })
}

/// PostgreSQL's reserved key words (RDS refuses them as the database name or
/// the master user name), plus the names RDS and PostgreSQL keep for themselves.
const PG_RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

fn rds_reserved_name(name: &str, user: bool) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let keyword = PG_RESERVED.contains(&lower.as_str());
    if keyword {
        return Some(if user {
            "master user name: it is a PostgreSQL reserved word"
        } else {
            "database name: it is a PostgreSQL reserved word"
        });
    }
    if user && (lower == "rdsadmin" || lower.starts_with("pg_") || lower.starts_with("rds_")) {
        return Some("master user name: RDS and PostgreSQL keep it (and `pg_…`, `rds_…`) for themselves");
    }
    if !user && (lower == "rdsadmin" || lower == "template0" || lower == "template1") {
        return Some("database name: it exists on every RDS PostgreSQL instance");
    }
    None
}

fn db_class(sink: &mut Sink, v: &Node, path: &str) -> Option<String> {
    let c = string(sink, v, path)?;
    if !c.starts_with("db.") {
        let d = sink.error(
            c.loc,
            path,
            format!("`{}` is not an RDS instance class", shorten(&c.value)),
        );
        d.hint = Some(format!("did you mean `db.{}`?", shorten(&c.value)));
        return None;
    }
    if instance_type_problem(&c.value["db.".len()..]).is_some() && !c.value.starts_with("db.serverless") {
        let d = sink.error(
            c.loc,
            path,
            format!("`{}` is not an RDS instance class", shorten(&c.value)),
        );
        d.hint = Some("`db.` and an instance type, e.g. db.t3.micro, db.m6g.large".into());
        return None;
    }
    Some(c.value)
}

fn app(sink: &mut Sink, n: &Node) -> Option<App> {
    let mut o = Obj::new(sink, n, "app")?;
    let app_name = match o.opt("name") {
        Some(v) => name(sink, v, "app.name", 32).map(|s| s.value),
        None => Some("refapp".into()),
    };
    let photos_bucket = match o.opt("photos_bucket") {
        Some(v) => bucket(sink, v, "app.photos_bucket").map(Some),
        None => Some(None),
    };
    let server_names = match o.opt("server_names") {
        // Each name is written into nginx's `server_name`: only valid names pass.
        Some(v) => list(sink, v, "app.server_names", |s, n, p| {
            let name = string(s, n, p)?;
            crate::formats::NginxServerName::parse(&name.value)
                .map_err(|e| s.error(name.loc, p, e.message).hint = Some(e.hint))
                .ok()
        }),
        None => Some(vec![]),
    };
    let port = match o.opt("port") {
        Some(v) => {
            let p = int(sink, v, "app.port", 1024, 65535);
            if let Some(p) = &p {
                if [6432u32, 6379, 5672, 11211].contains(&p.value) {
                    sink.error(
                        p.loc,
                        "app.port",
                        format!("port {} is taken by a service fabrs runs on the same server", p.value),
                    );
                }
            }
            p.map(|p| p.value as u16)
        }
        None => Some(8000),
    };
    let env_node = o.opt("env");
    let mut env = match env_node {
        Some(v) => string_map(sink, v, "app.env"),
        None => Some(BTreeMap::new()),
    };
    if let Some(Value::Map(entries)) = env_node.map(|n| &n.value) {
        for (k, v) in entries {
            let path = join("app.env", &shorten(&k.name));
            let ok = k.name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                && k.name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                let d = sink.error(
                    k.loc,
                    &path,
                    format!("`{}` is not an environment variable name", shorten(&k.name)),
                );
                d.hint = Some("environment variable names are UPPER_SNAKE_CASE".into());
                env = None;
            } else if FABRS_APP_ENV.contains(&k.name.as_str()) {
                let d = sink.error(
                    k.loc,
                    &path,
                    format!("`{}` is set by fabrs in the app's environment file", k.name),
                );
                d.hint = Some(format!(
                    "fabrs writes {} from the rest of this file; a second one would shadow it",
                    k.name
                ));
                env = None;
            }
            if let Value::Str(text) = &v.value {
                if let Some(c) = text.chars().find(|c| c.is_control()) {
                    let d = sink.error(
                        v.loc,
                        &path,
                        format!("the value holds a control character (U+{:04X})", c as u32),
                    );
                    d.hint = Some("an environment value is one line of text".into());
                    env = None;
                }
            }
        }
    }
    o.finish(sink);
    Some(App {
        name: app_name?,
        photos_bucket: photos_bucket?,
        server_names: server_names?,
        port: port?,
        env: env?,
    })
}

/// What templates/app.env.tera writes itself: the app's own keys may not repeat them.
pub(crate) const FABRS_APP_ENV: [&str; 14] = [
    "REFAPP_LISTEN",
    "REFAPP_REVISION",
    "REFAPP_STATIC_DIR",
    "DATABASE_URL",
    "DATABASE_REPLICA_URL",
    "REDIS_URL",
    "MEMCACHED_URL",
    "AMQP_URL",
    "QUEUE_URL",
    "AWS_REGION",
    "S3_BUCKET",
    "S3_PREFIX",
    "WORKER_CONCURRENCY",
    "RUST_LOG",
];

fn artifacts(sink: &mut Sink, n: &Node) -> Option<Artifacts> {
    let mut o = Obj::new(sink, n, "artifacts")?;
    let bucket = o.req(sink, "bucket").and_then(|v| bucket(sink, v, "artifacts.bucket"));
    let prefix = match o.opt("prefix") {
        Some(v) => string(sink, v, "artifacts.prefix").and_then(|s| {
            // It becomes part of S3 keys, URLs and the installer's command
            // lines: S3's safe characters only, no `.`/`..` segments.
            let trimmed = s.value.trim_matches('/');
            let safe = trimmed.len() <= 512
                && !trimmed.is_empty()
                && trimmed
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                && trimmed
                    .split('/')
                    .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
            if safe {
                Some(trimmed.to_string())
            } else {
                let d = sink.error(
                    s.loc,
                    "artifacts.prefix",
                    format!("`{}` is not a safe S3 key prefix", shorten(&s.value)),
                );
                d.hint =
                    Some("letters, digits, '-', '_', '.' and '/' between non-empty segments, e.g. `releases`".into());
                None
            }
        }),
        None => Some("releases".into()),
    };
    o.finish(sink);
    Some(Artifacts {
        bucket: bucket?,
        prefix: prefix?,
    })
}

fn bucket(sink: &mut Sink, v: &Node, path: &str) -> Option<String> {
    let b = string(sink, v, path)?;
    if let Some(problem) = crate::names::bucket_problem(&b.value) {
        let d = sink.error(
            b.loc,
            path,
            format!("`{}` is not a valid S3 bucket name: it {problem}", shorten(&b.value)),
        );
        d.hint = Some("3-63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit".into());
        return None;
    }
    Some(b.value)
}

fn deploy(sink: &mut Sink, n: &Node, roles: Option<&BTreeMap<RoleKind, Role>>) -> Option<Deploy> {
    let path = "deploy";
    let p = |k: &str| join(path, k);
    let mut o = Obj::new(sink, n, path)?;
    let batch = match o.opt("batch_size") {
        Some(v) => int(sink, v, &p("batch_size"), 1, 100),
        None => Some(At::new(1, o.loc)),
    };
    let floor = match o.opt("healthy_floor") {
        Some(v) => int(sink, v, &p("healthy_floor"), 0, 1000),
        None => Some(At::new(1, o.loc)),
    };
    // A day is far past any deploy; a longer wait is a typo (or an overflow).
    let mut dur = |key: &'static str, default: u64| match o.opt(key) {
        Some(v) => duration(sink, v, &p(key), Duration::from_secs(24 * 3600)).map(|d| d.value),
        None => Some(Duration::from_secs(default)),
    };
    let health_timeout = dur("health_timeout", 600);
    let lock_wait = dur("lock_wait", 300);
    let keep = match o.opt("keep_launch_configurations") {
        Some(v) => int(sink, v, &p("keep_launch_configurations"), 2, 100).map(|v| v.value),
        None => Some(3),
    };
    let migrate_on = match o.opt("migrate_on") {
        Some(v) => role_ref(sink, v, &p("migrate_on"), roles),
        None => roles.map(|r| {
            if r.contains_key(&RoleKind::Worker) {
                RoleKind::Worker
            } else {
                RoleKind::Web
            }
        }),
    };
    let migrate_command = match o.opt("migrate_command") {
        Some(v) => {
            let s = string(sink, v, &p("migrate_command"))?;
            if s.value.trim().is_empty() || !s.value.contains("{revision}") {
                let d = sink.error(
                    s.loc,
                    &p("migrate_command"),
                    "the migration command must name `{revision}`",
                );
                d.hint = Some("e.g. `sudo -n /usr/local/sbin/fabrs-install-release --migrate {revision}`".into());
                None
            } else {
                Some(s.value)
            }
        }
        None => Some(DEFAULT_MIGRATE_COMMAND.to_string()),
    };
    if let (Some(f), Some(roles)) = (&floor, roles) {
        // The floor must be reachable, or no deploy could ever keep it.
        if let Some(web) = roles.get(&RoleKind::Web) {
            let cap = match web.scaling {
                Scaling::Auto { max, .. } => max,
                Scaling::Fixed { count } => count,
            };
            if f.value > cap {
                let d = sink.error(
                    f.loc,
                    &p("healthy_floor"),
                    format!("healthy_floor ({}) is above the web role's capacity ({cap})", f.value),
                );
                d.hint = Some("the floor is the number of InService web instances a roll never goes below".into());
            }
        }
    }
    o.finish(sink);
    Some(Deploy {
        batch_size: batch?.value,
        healthy_floor: floor?.value,
        health_timeout: health_timeout?,
        lock_wait: lock_wait?,
        keep_launch_configurations: keep?,
        migrate_on: migrate_on?,
        migrate_command: migrate_command?,
    })
}

fn role_ref(sink: &mut Sink, n: &Node, path: &str, roles: Option<&BTreeMap<RoleKind, Role>>) -> Option<RoleKind> {
    let s = string(sink, n, path)?;
    let names: Vec<&str> = RoleKind::ALL.iter().map(|r| r.as_str()).collect();
    let Some(kind) = RoleKind::parse(&s.value) else {
        let d = sink.error(s.loc, path, format!("unknown role `{}`", s.value));
        d.hint = Some(match did_you_mean(&s.value, names.iter().copied()) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!("roles are: {}", names.join(", ")),
        });
        return None;
    };
    if let Some(roles) = roles {
        if !roles.contains_key(&kind) {
            sink.error(s.loc, path, format!("role `{kind}` is not defined under `roles:`"));
            return None;
        }
    }
    Some(kind)
}

fn group_ref(sink: &mut Sink, s: &At<String>, path: &str, roles: Option<&BTreeMap<RoleKind, Role>>) -> Option<Group> {
    let names: Vec<&str> = Group::ALL.iter().map(|g| g.as_str()).collect();
    let Some(g) = Group::parse(&s.value) else {
        let d = sink.error(s.loc, path, format!("unknown group `{}`", s.value));
        d.hint = Some(match did_you_mean(&s.value, names.iter().copied()) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!("groups are: {}", names.join(", ")),
        });
        return None;
    };
    let needs = match g {
        Group::Web => Some(RoleKind::Web),
        Group::Worker => Some(RoleKind::Worker),
        Group::Cache | Group::Queue => Some(RoleKind::Cache),
        _ => None,
    };
    if let (Some(kind), Some(roles)) = (needs, roles) {
        if !roles.contains_key(&kind) {
            sink.error(
                s.loc,
                path,
                format!("group `{g}` belongs to role `{kind}`, which is not defined under `roles:`"),
            );
            return None;
        }
    }
    Some(g)
}

fn firewall_rule(
    sink: &mut Sink,
    n: &Node,
    path: &str,
    roles: Option<&BTreeMap<RoleKind, Role>>,
) -> Option<FirewallRule> {
    let mut o = Obj::new(sink, n, path)?;
    let to = o
        .req(sink, "to")
        .and_then(|v| string(sink, v, &join(path, "to")))
        .and_then(|s| group_ref(sink, &s, &join(path, "to"), roles).map(|g| At::new(g, s.loc)));
    let from = o.req(sink, "from").and_then(|v| {
        let s = string(sink, v, &join(path, "from"))?;
        if s.contains('/') || s.parse::<std::net::IpAddr>().is_ok() {
            cidr(sink, v, &join(path, "from")).map(|c| At::new(Source::Cidr(c.value), c.loc))
        } else {
            group_ref(sink, &s, &join(path, "from"), roles).map(|g| At::new(Source::Group(g), s.loc))
        }
    });
    let protocol = match o.opt("protocol") {
        Some(v) => one_of(sink, v, &join(path, "protocol"), &["tcp", "udp"]).map(|p| {
            if p.value == "tcp" {
                IpProtocol::Tcp
            } else {
                IpProtocol::Udp
            }
        }),
        None => Some(IpProtocol::Tcp),
    };
    let ports = o.req(sink, "port").and_then(|v| match &v.value {
        Value::Int(_) => port(sink, v, &join(path, "port")).map(|p| At::new((p, p), v.loc)),
        Value::Str(s) => {
            let parsed = s
                .split_once('-')
                .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
            match parsed {
                Some((a, b)) if a >= 1 && a <= b => Some(At::new((a, b), v.loc)),
                _ => {
                    let d = sink.error(
                        v.loc,
                        &join(path, "port"),
                        format!("`{s}` is not a port or a port range"),
                    );
                    d.hint = Some("a number, or a range such as \"8000-8010\"".into());
                    None
                }
            }
        }
        _ => {
            sink.error(
                v.loc,
                &join(path, "port"),
                format!("expected a port, found {}", v.kind()),
            );
            None
        }
    });
    let description = o
        .opt("description")
        .map(|v| string(sink, v, &join(path, "description")).map(|s| s.value));
    o.finish(sink);
    let description = match description {
        Some(d) => Some(d?),
        None => None,
    };
    Some(FirewallRule {
        to: to?,
        from: from?,
        protocol: protocol?,
        ports: ports?,
        description,
        loc: n.loc,
    })
}

fn secrets(sink: &mut Sink, n: &Node, project_dir: &Path) -> Option<BTreeMap<String, SecretDecl>> {
    let mut o = Obj::new(sink, n, "secrets")?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in o.entries() {
        let path = join("secrets", &k.name);
        let valid = k.name.starts_with(|c: char| c.is_ascii_lowercase())
            && k.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            let d = sink.error(k.loc, "secrets", format!("`{}` is not a valid secret name", k.name));
            d.hint = Some("lowercase letters, digits and '_'".into());
            ok = false;
            continue;
        }
        let default_env = format!("FABRS_SECRET_{}", k.name.to_uppercase());
        let source = match &v.value {
            Value::Null => Some(SecretSource::Env(default_env)),
            Value::Map(_) => {
                let mut so = Obj::new(sink, v, &path)?;
                let env = so.opt("env").map(|e| string(sink, e, &join(&path, "env")));
                let file = so.opt("file").map(|f| string(sink, f, &join(&path, "file")));
                so.finish(sink);
                match (env, file) {
                    (Some(_), Some(_)) => {
                        sink.error(v.loc, &path, "a secret comes from `env` or `file`, not both");
                        None
                    }
                    (Some(e), None) => e.and_then(|e| {
                        let valid = e.value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                            && e.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        if valid {
                            Some(SecretSource::Env(e.value))
                        } else {
                            let d = sink.error(
                                e.loc,
                                &join(&path, "env"),
                                format!("`{}` is not an environment variable name", shorten(&e.value)),
                            );
                            d.hint =
                                Some("letters, digits and '_', not starting with a digit (e.g. DB_PASSWORD)".into());
                            None
                        }
                    }),
                    (None, Some(f)) => f.and_then(|f| secret_file(sink, &f, &join(&path, "file"), project_dir)),
                    (None, None) => Some(SecretSource::Env(default_env)),
                }
            }
            Value::Str(s) if s.len() >= 8 => {
                let d = sink.error(v.loc, &path, "secret values do not belong in the environment file");
                d.hint = Some(format!(
                    "remove the value and export {default_env}, or use `file:` outside the repository"
                ));
                None
            }
            _ => {
                let d = sink.error(
                    v.loc,
                    &path,
                    format!("expected a mapping (`env:` or `file:`), found {}", v.kind()),
                );
                d.hint = Some(format!("`{}: {{}}` reads {default_env}", k.name));
                None
            }
        };
        match source {
            Some(source) => {
                out.insert(
                    k.name.clone(),
                    SecretDecl {
                        name: k.name.clone(),
                        source,
                        loc: k.loc,
                    },
                );
            }
            None => ok = false,
        }
    }
    o.finish(sink);
    ok.then_some(out)
}

fn secret_file(sink: &mut Sink, f: &At<String>, path: &str, project_dir: &Path) -> Option<SecretSource> {
    let expanded = match f.value.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(rest),
            None => Path::new(&f.value).to_path_buf(),
        },
        None => Path::new(&f.value).to_path_buf(),
    };
    if !expanded.is_absolute() {
        let d = sink.error(f.loc, path, "a secret file path must be absolute (or start with ~/)");
        d.hint = Some("secret files live outside the repository".into());
        return None;
    }
    let inside = |dir: &Path| {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let parent = expanded
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .unwrap_or_else(|| expanded.clone());
        parent.starts_with(&dir)
    };
    if inside(project_dir) {
        let d = sink.error(f.loc, path, "secret files must live outside the project directory");
        d.hint = Some("a secret committed with the environment file is no longer a secret".into());
        return None;
    }
    Some(SecretSource::File(expanded))
}
