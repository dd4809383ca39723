//! Addresses of an environment's resources, and the tags and user-data lines
//! that let the cloud layer map what it finds back to them.

use std::collections::BTreeMap;

use fabrs_config::{Environment, RoleKind};

use crate::resource::{Address, Kind};

/// Every tag name fabrs writes or reads lives in this module.
///
/// Ownership: every resource fabrs creates carries these three, set in the
/// create call; discovery returns only resources that carry all three.
pub const TAG_PROJECT: &str = "fabrs:project";
pub const TAG_ENVIRONMENT: &str = "fabrs:environment";
pub const TAG_MANAGED_BY: &str = "managed-by";
pub const MANAGED_BY: &str = "fabrs";
/// On role resources (groups, templates, instances): `web`, `worker`, `cache`.
pub const TAG_ROLE: &str = "fabrs:role";

/// On security groups: the group key (`base`, `lb`, `web`, `worker`, `cache`, `queue`, `db`).
pub const TAG_GROUP: &str = "fabrs:group";
/// On fixed instances: the index within the role (`0`, `1`…).
pub const TAG_INDEX: &str = "fabrs:index";
/// On RDS instances: `master` or `replica-<n>`.
pub const TAG_DB_ROLE: &str = "fabrs:db-role";
/// On ASGs, launch templates and instances: the revision their user-data installs.
pub const TAG_REVISION: &str = "fabrs:revision";
pub const TAG_NAME: &str = "Name";
/// On SSM parameters: `ssm::fingerprint` of the value, so discovery knows
/// whether the value changed without decrypting it.
pub const TAG_FINGERPRINT: &str = "fabrs:fingerprint";

/// Launch configurations cannot carry tags: their user-data starts with these
/// lines (after `#cloud-config`), which is how fabrs proves it owns one and
/// knows what it holds.
pub const UD_OWNER: &str = "# fabrs:owner=";
pub const UD_SHA: &str = "# fabrs:user-data-sha256=";
pub const UD_REVISION: &str = "# fabrs:revision=";

/// The tags every resource of this environment carries (the file's `tags:`
/// plus the ownership tags); how fabrs finds them again.
pub fn ownership_tags(env: &Environment) -> BTreeMap<String, String> {
    let mut t = env.tags.clone();
    t.insert(TAG_PROJECT.into(), env.project.clone());
    t.insert(TAG_ENVIRONMENT.into(), env.name.clone());
    t.insert(TAG_MANAGED_BY.into(), MANAGED_BY.into());
    t
}

/// The tags of a project-scoped resource (`is_project_scoped`): the
/// ownership tags without the environment and without the file's `tags:`
/// (environments may tag differently; they must not fight over it).
pub fn project_tags(project: &str, name: &str) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    t.insert(TAG_PROJECT.into(), project.to_string());
    t.insert(TAG_MANAGED_BY.into(), MANAGED_BY.into());
    t.insert(TAG_NAME.into(), name.to_string());
    t
}

pub fn owner_value(project: &str, environment: &str) -> String {
    format!("{project}/{environment}")
}

pub fn instance_role(role: RoleKind) -> Address {
    Address::new(Kind::InstanceRole, role.as_str())
}
pub fn photos_bucket() -> Address {
    Address::new(Kind::Bucket, "photos")
}
/// The release artifact bucket (`artifacts.bucket`): releases, the deploy
/// lock and the deploy history of every environment of the project that
/// names it. Shared, so it is the project's, not one environment's (see
/// `project_tags`), and destroy-env keeps it.
pub fn artifacts_bucket() -> Address {
    Address::new(Kind::Bucket, "artifacts")
}
/// Resources owned by the project rather than by one environment: every
/// environment that names them plans them the same way, none deletes them.
pub fn is_project_scoped(address: &Address) -> bool {
    *address == artifacts_bucket()
}
pub fn ssm_parameter(secret: &str) -> Address {
    Address::new(Kind::SsmParameter, secret)
}
pub fn security_group(key: &str) -> Address {
    Address::new(Kind::SecurityGroup, key)
}
pub fn load_balancer() -> Address {
    Address::new(Kind::LoadBalancer, "main")
}
pub fn launch_configuration(role: RoleKind) -> Address {
    Address::new(Kind::LaunchConfiguration, role.as_str())
}
pub fn launch_template(role: RoleKind) -> Address {
    Address::new(Kind::LaunchTemplate, role.as_str())
}
pub fn autoscaling_group(role: RoleKind) -> Address {
    Address::new(Kind::AutoScalingGroup, role.as_str())
}
pub fn instance(role: RoleKind, index: u32) -> Address {
    Address::new(Kind::Instance, format!("{role}[{index}]"))
}
pub fn db_subnet_group() -> Address {
    Address::new(Kind::DbSubnetGroup, "main")
}
pub fn db_parameter_group() -> Address {
    Address::new(Kind::DbParameterGroup, "main")
}
pub fn db_master() -> Address {
    Address::new(Kind::DbInstance, "master")
}
pub fn db_replica(n: u32) -> Address {
    Address::new(Kind::DbInstance, format!("replica[{n}]"))
}
/// `master` → `db_instance.master`, `replica-2` → `db_instance.replica[2]`.
pub fn db_from_tag(tag: &str) -> Option<Address> {
    if tag == "master" {
        return Some(db_master());
    }
    tag.strip_prefix("replica-")
        .and_then(|n| n.parse().ok())
        .map(db_replica)
}
pub fn db_tag(address: &Address) -> String {
    if address.name == "master" {
        "master".into()
    } else {
        address
            .name
            .trim_start_matches("replica[")
            .trim_end_matches(']')
            .parse::<u32>()
            .map(|n| format!("replica-{n}"))
            .unwrap_or_default()
    }
}

/// Parse the marker lines of a user-data document: (owner, sha256, revision).
pub fn parse_user_data_markers(user_data: &str) -> (Option<String>, Option<String>, Option<String>) {
    let mut owner = None;
    let mut sha = None;
    let mut revision = None;
    for line in user_data.lines().take(8) {
        if let Some(v) = line.strip_prefix(UD_OWNER) {
            owner = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix(UD_SHA) {
            sha = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix(UD_REVISION) {
            revision = Some(v.trim().to_string());
        }
    }
    (owner, sha, revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_tags_round_trip() {
        for a in [db_master(), db_replica(0), db_replica(3)] {
            assert_eq!(db_from_tag(&db_tag(&a)), Some(a));
        }
        assert_eq!(db_from_tag("replica-x"), None);
    }

    #[test]
    fn the_file_cannot_set_fabrs_tags() {
        for k in [
            TAG_PROJECT,
            TAG_ENVIRONMENT,
            TAG_MANAGED_BY,
            TAG_ROLE,
            TAG_GROUP,
            TAG_INDEX,
            TAG_DB_ROLE,
            TAG_REVISION,
        ] {
            assert!(fabrs_config::is_reserved_tag_key(k), "{k}");
        }
    }

    #[test]
    fn markers() {
        let ud =
            "#cloud-config\n# fabrs:owner=p/e\n# fabrs:user-data-sha256=abc\n# fabrs:revision=3f9c2e1\nhostname: x\n";
        assert_eq!(
            parse_user_data_markers(ud),
            (Some("p/e".into()), Some("abc".into()), Some("3f9c2e1".into()))
        );
    }
}
