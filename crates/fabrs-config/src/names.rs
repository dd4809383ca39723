//! The AWS names fabrs derives from an environment, and AWS's own rules for
//! names and tags, checked at validate time so that nothing AWS refuses is
//! found out mid-apply, after other resources exist.
//!
//! The scheme (`<project>-<environment>`, `-db`, `-db-replica-N`, …) is the one
//! `fabrs-plan`'s `desired.rs` uses to create the resources;
//! `crates/fabrs-plan/tests/names_agree.rs` asserts the two agree, so they
//! cannot drift apart. It lives here because validation (with positions) is
//! this crate's job and this crate cannot depend on fabrs-plan.

use std::sync::LazyLock;

use regex::Regex;

use crate::model::{Environment, Group, RoleKind, Scaling};

/// `<project>-<environment>`: the stem of every name.
pub fn base(env: &Environment) -> String {
    base_of(&env.project, &env.name)
}

fn base_of(project: &str, environment: &str) -> String {
    format!("{project}-{environment}")
}

/// The classic load balancer (`desired::load_balancer_name`). Validation
/// refuses an environment whose name would need truncating, so the plan's
/// truncation never makes two environments' load balancers the same.
pub fn load_balancer(env: &Environment) -> String {
    base(env)
}
pub fn db_subnet_group(env: &Environment) -> String {
    format!("{}-db", base(env))
}
pub fn db_parameter_group(env: &Environment) -> String {
    let major = env.database.engine_version.split('.').next().unwrap_or("16");
    format!("{}-postgres{major}", base(env))
}
pub fn db_master(env: &Environment) -> String {
    format!("{}-db", base(env))
}
pub fn db_replica(env: &Environment, n: u32) -> String {
    format!("{}-db-replica-{n}", base(env))
}
/// Autoscaling group and launch template of an autoscaled role.
pub fn autoscaling_group(env: &Environment, role: RoleKind) -> String {
    format!("{}-{role}", base(env))
}
pub fn launch_template(env: &Environment, role: RoleKind) -> String {
    format!("{}-{role}", base(env))
}
/// The `Name` tag of a fixed instance.
pub fn instance(env: &Environment, role: RoleKind, i: u32) -> String {
    format!("{}-{role}-{i}", base(env))
}
/// The photo bucket when the file names none (fabrs-render's default).
pub fn photos_bucket(env: &Environment) -> String {
    env.app
        .photos_bucket
        .clone()
        .unwrap_or_else(|| format!("{}-photos", base(env)))
}
/// The IAM role and instance profile a role's servers get (issue 10, item 1;
/// not created yet: whoever creates them must use these names, or change them
/// here, where their limits are checked).
pub fn iam_role(env: &Environment, role: RoleKind) -> String {
    format!("{}-{role}", base(env))
}
pub fn instance_profile(env: &Environment, role: RoleKind) -> String {
    format!("{}-{role}", base(env))
}

/// The IAM path of an environment's roles and instance profiles:
/// `/fabrs/<project>/<environment>/`. Discovery lists by it.
pub fn iam_path(project: &str, environment: &str) -> String {
    format!("/fabrs/{project}/{environment}/")
}
/// The SSM Parameter Store path of an environment's secrets:
/// `/<project>/<environment>` (no trailing slash: the instance roles' policy
/// names this path and what is below it; servers read it at boot with
/// GetParametersByPath).
pub fn ssm_path(project: &str, environment: &str) -> String {
    format!("/{project}/{environment}")
}
/// A secret's parameter: `/<project>/<environment>/<secret>`.
pub fn ssm_parameter(project: &str, environment: &str, secret: &str) -> String {
    format!("{}/{secret}", ssm_path(project, environment))
}
/// Where the app keeps photos and renditions in the photo bucket (the app's
/// `S3_PREFIX`; the instance role may read and write only under it).
pub const PHOTOS_PREFIX: &str = "photos/";

/// Which file keys a derived name is made of, for pointing at the culprit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `<project>-<environment>…`
    Base,
    /// `network.security_group_prefix` (or the base when it is not set).
    GroupPrefix,
    /// `app.photos_bucket` when set, else the base.
    PhotosBucket,
}

/// AWS's rule for a kind of name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    ClassicElb,
    RdsIdentifier,
    DbParameterGroup,
    DbSubnetGroup,
    SecurityGroup,
    LaunchTemplate,
    AutoScalingGroup,
    TagValue,
    Bucket,
    IamRole,
    InstanceProfile,
    SsmParameter,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// What the name is for, in a message: "the RDS master identifier".
    pub what: String,
    pub name: String,
    pub rule: Rule,
    pub source: Source,
}

/// Every name fabrs derives for this environment. Of the read replicas only
/// the longest is listed (they differ by their last digit).
pub fn derived(env: &Environment) -> Vec<Derived> {
    let d = |what: &str, name: String, rule: Rule, source: Source| Derived {
        what: what.to_string(),
        name,
        rule,
        source,
    };
    let mut out = vec![
        d(
            "the load balancer name",
            load_balancer(env),
            Rule::ClassicElb,
            Source::Base,
        ),
        d(
            "the RDS master identifier",
            db_master(env),
            Rule::RdsIdentifier,
            Source::Base,
        ),
        d(
            "the DB parameter group name",
            db_parameter_group(env),
            Rule::DbParameterGroup,
            Source::Base,
        ),
        d(
            "the DB subnet group name",
            db_subnet_group(env),
            Rule::DbSubnetGroup,
            Source::Base,
        ),
    ];
    if env.database.replicas > 0 {
        out.push(d(
            "the RDS read replica identifier",
            db_replica(env, env.database.replicas - 1),
            Rule::RdsIdentifier,
            Source::Base,
        ));
    }
    for g in Group::ALL {
        out.push(d(
            &format!("the security group name ({g})"),
            env.group_name(g),
            Rule::SecurityGroup,
            Source::GroupPrefix,
        ));
    }
    for (kind, role) in &env.roles {
        match role.scaling {
            Scaling::Auto { .. } => {
                out.push(d(
                    &format!("the {kind} autoscaling group name"),
                    autoscaling_group(env, *kind),
                    Rule::AutoScalingGroup,
                    Source::Base,
                ));
                out.push(d(
                    &format!("the {kind} launch template name"),
                    launch_template(env, *kind),
                    Rule::LaunchTemplate,
                    Source::Base,
                ));
            }
            Scaling::Fixed { count } => out.push(d(
                &format!("the {kind} instances' Name tag"),
                instance(env, *kind, count.saturating_sub(1)),
                Rule::TagValue,
                Source::Base,
            )),
        }
        out.push(d(
            &format!("the {kind} IAM role name"),
            iam_role(env, *kind),
            Rule::IamRole,
            Source::Base,
        ));
        out.push(d(
            &format!("the {kind} instance profile name"),
            instance_profile(env, *kind),
            Rule::InstanceProfile,
            Source::Base,
        ));
    }
    for secret in env.secrets.keys() {
        out.push(d(
            &format!("the SSM parameter of secret `{secret}`"),
            ssm_parameter(&env.project, &env.name, secret),
            Rule::SsmParameter,
            Source::Base,
        ));
    }
    if env.app.photos_bucket.is_none() {
        out.push(d(
            "the photo bucket name (`<project>-<environment>-photos`)",
            photos_bucket(env),
            Rule::Bucket,
            Source::PhotosBucket,
        ));
    }
    out
}

fn alnum_hyphen(name: &str) -> bool {
    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn too_long(name: &str, max: usize, service: &str) -> Option<String> {
    let n = name.chars().count();
    (n > max).then(|| format!("is {n} characters; {service} allows {max}"))
}

/// Letter first, letters, digits and hyphens, no `--`, no trailing hyphen: the
/// shape RDS wants of identifiers and parameter group names.
fn rds_shape(name: &str) -> Option<String> {
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Some("must start with a letter".into());
    }
    if !alnum_hyphen(name) {
        return Some("may hold only letters, digits and hyphens".into());
    }
    if name.contains("--") {
        return Some("may not contain two hyphens in a row (`--`)".into());
    }
    if name.ends_with('-') {
        return Some("may not end with a hyphen".into());
    }
    None
}

/// Why AWS would refuse `name` under `rule`, or `None`.
pub fn problem(rule: Rule, name: &str) -> Option<String> {
    match rule {
        Rule::ClassicElb => too_long(name, 32, "a classic load balancer name").or_else(|| {
            if !alnum_hyphen(name) {
                Some("may hold only letters, digits and hyphens".into())
            } else if name.starts_with('-') || name.ends_with('-') {
                Some("may not start or end with a hyphen".into())
            } else {
                None
            }
        }),
        Rule::RdsIdentifier => too_long(name, 63, "an RDS identifier").or_else(|| rds_shape(name)),
        Rule::DbParameterGroup => too_long(name, 255, "a DB parameter group name").or_else(|| rds_shape(name)),
        Rule::DbSubnetGroup => too_long(name, 255, "a DB subnet group name").or_else(|| {
            if name == "default" {
                Some("may not be `default`".into())
            } else if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ' ' | '-'))
            {
                Some("may hold only letters, digits, periods, underscores, spaces and hyphens".into())
            } else {
                None
            }
        }),
        Rule::SecurityGroup => too_long(name, 255, "a security group name").or_else(|| {
            name.to_ascii_lowercase()
                .starts_with("sg-")
                .then(|| "may not start with `sg-` (EC2 keeps that for group ids)".into())
        }),
        Rule::LaunchTemplate => too_long(name, 128, "a launch template name").or_else(|| {
            (!name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '(' | ')' | '.' | '-' | '/' | '_')))
            .then(|| "may hold only letters, digits and ( ) . - / _".into())
        }),
        Rule::AutoScalingGroup => too_long(name, 255, "an autoscaling group name"),
        Rule::TagValue => tag_value_problem(name),
        Rule::Bucket => bucket_problem(name),
        Rule::IamRole => too_long(name, 64, "an IAM role name").or_else(|| iam_chars(name)),
        Rule::InstanceProfile => too_long(name, 128, "an IAM instance profile name").or_else(|| iam_chars(name)),
        Rule::SsmParameter => ssm_parameter_problem(name),
    }
}

/// SSM Parameter Store's rules for a hierarchical name (`/a/b/c`): at most
/// 1011 characters with its ARN (names are kept well under: 900), letters,
/// digits and `_ . - /`, at most 15 levels, and no first level starting
/// with `aws` or `ssm` (reserved, in any case).
fn ssm_parameter_problem(name: &str) -> Option<String> {
    too_long(name, 900, "an SSM parameter name (with its ARN, 1011)")
        .or_else(|| {
            (!name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
            .then(|| "may hold only letters, digits and _ . - /".into())
        })
        .or_else(|| {
            let levels = name.trim_start_matches('/').split('/').count();
            (levels > 15).then(|| format!("has {levels} levels; SSM allows 15"))
        })
        .or_else(|| {
            let first = name.trim_start_matches('/').to_ascii_lowercase();
            (first.starts_with("aws") || first.starts_with("ssm"))
                .then(|| "may not start with `aws` or `ssm` (SSM keeps those prefixes)".into())
        })
}

fn iam_chars(name: &str) -> Option<String> {
    (!name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')))
    .then(|| "may hold only letters, digits and _ + = , . @ -".into())
}

/// S3's bucket naming rules (general purpose buckets).
pub fn bucket_problem(name: &str) -> Option<String> {
    let n = name.chars().count();
    if !(3..=63).contains(&n) {
        return Some(format!("is {n} characters; S3 bucket names are 3 to 63"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Some(format!(
            "holds `{c}`; S3 bucket names hold only lowercase letters, digits, '-' and '.'"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("must start and end with a letter or a digit".into());
    }
    if name.contains("..") {
        return Some("may not contain two periods in a row".into());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("may not look like an IP address".into());
    }
    for p in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(p) {
            return Some(format!("may not start with `{p}` (reserved by S3)"));
        }
    }
    for s in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(s) {
            return Some(format!("may not end with `{s}` (reserved by S3)"));
        }
    }
    None
}

/// The tag pattern of ELB and RDS (the strictest of the services fabrs tags):
/// letters, separators (spaces), numbers and `_ . : / = + - @`.
static TAG_CHARS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").expect("a valid pattern"));
static TAG_CHAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]$").expect("a valid pattern"));

/// Most tags a resource may carry (EC2, ELB, RDS, autoscaling alike).
pub const MAX_TAGS: usize = 50;
/// Most tags fabrs itself puts on one resource: the three ownership tags,
/// `fabrs:role`, `Name`, `fabrs:index` and `fabrs:revision` on an instance.
pub const FABRS_TAGS_PER_RESOURCE: usize = 7;

fn bad_tag_char(s: &str) -> Option<char> {
    if TAG_CHARS.is_match(s) {
        return None;
    }
    s.chars().find(|c| !TAG_CHAR.is_match(c.encode_utf8(&mut [0; 4])))
}

fn describe(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("`{c}`")
    }
}

pub fn tag_key_problem(key: &str) -> Option<String> {
    let n = key.chars().count();
    if n == 0 {
        return Some("a tag key may not be empty".into());
    }
    if n > 128 {
        return Some(format!("is {n} characters; tag keys are at most 128"));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Some("keys starting with `aws:` are reserved by AWS".into());
    }
    bad_tag_char(key).map(|c| {
        format!(
            "{} is not allowed in a tag key (letters, digits, spaces and _ . : / = + - @)",
            describe(c)
        )
    })
}

pub fn tag_value_problem(value: &str) -> Option<String> {
    let n = value.chars().count();
    if n > 256 {
        return Some(format!("is {n} characters; tag values are at most 256"));
    }
    bad_tag_char(value).map(|c| {
        format!(
            "{} is not allowed in a tag value (letters, digits, spaces and _ . : / = + - @)",
            describe(c)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_identifiers() {
        assert_eq!(problem(Rule::RdsIdentifier, "shop-prod-db"), None);
        assert!(problem(Rule::RdsIdentifier, "shop--eu-prod-db").unwrap().contains("--"));
        assert!(
            problem(Rule::RdsIdentifier, &"a".repeat(64))
                .unwrap()
                .contains("64 characters")
        );
        assert!(problem(Rule::RdsIdentifier, "1shop").is_some());
        assert!(problem(Rule::RdsIdentifier, "shop-").is_some());
    }

    #[test]
    fn elb_names() {
        assert_eq!(problem(Rule::ClassicElb, &"a".repeat(32)), None);
        assert!(problem(Rule::ClassicElb, &"a".repeat(33)).is_some());
        assert!(problem(Rule::ClassicElb, "a_b").is_some());
    }

    #[test]
    fn buckets() {
        for ok in ["shop-photos", "a.b.c", "abc"] {
            assert_eq!(bucket_problem(ok), None, "{ok}");
        }
        for bad in [
            "ab",
            "Shop",
            "shop_photos",
            "-shop",
            "shop-",
            "a..b",
            "192.168.5.4",
            "xn--shop",
            "shop-s3alias",
            "shop--ol-s3",
            "shop--x-s3",
            &"a".repeat(64),
        ] {
            assert!(bucket_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert_eq!(tag_value_problem("R and D / photos: 42 @ team=a+b_c.d-e"), None);
        assert_eq!(tag_value_problem("Équipe Ünïcødé 写真 ٤٢"), None);
        assert_eq!(tag_value_problem("nbsp\u{a0}ok"), None);
        let p = tag_value_problem("R&D (photos) #42").unwrap();
        assert!(p.starts_with("`&` is not allowed"), "{p}");
        assert!(tag_value_problem(&"x".repeat(257)).is_some());
        assert!(tag_value_problem("tab\there").unwrap().contains("U+0009"));
        assert!(tag_key_problem("aws:foo").is_some());
        assert!(tag_key_problem("").is_some());
        assert!(tag_key_problem(&"k".repeat(129)).is_some());
        // A combining mark is not a letter: RDS refuses it.
        assert!(tag_value_problem("e\u{301}").is_some());
    }

    #[test]
    fn groups_iam_templates() {
        assert!(problem(Rule::SecurityGroup, "sg-prod-sg").is_some());
        assert_eq!(problem(Rule::SecurityGroup, "shop-prod-sg"), None);
        assert!(problem(Rule::IamRole, &"r".repeat(65)).is_some());
        assert_eq!(problem(Rule::InstanceProfile, &"r".repeat(128)), None);
        assert!(problem(Rule::LaunchTemplate, "a b").is_some());
        assert!(problem(Rule::DbSubnetGroup, "default").is_some());
    }

    #[test]
    fn ssm_parameters() {
        assert_eq!(problem(Rule::SsmParameter, "/shop/prod/db_password"), None);
        assert!(problem(Rule::SsmParameter, "/ssm-shop/prod/db_password").is_some());
        assert!(problem(Rule::SsmParameter, "/AWSshop/prod/db_password").is_some());
        assert!(problem(Rule::SsmParameter, "/shop/prod/db password").is_some());
        assert!(problem(Rule::SsmParameter, &format!("/{}", "a/".repeat(15))).is_some());
        assert!(problem(Rule::SsmParameter, &format!("/shop/prod/{}", "x".repeat(900))).is_some());
    }
}
