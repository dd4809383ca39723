use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::graph::Context;
use crate::resource::Address;
use crate::resource::{PolicyStatement, Tags};
use fabrs_config::RoleKind;

/// A role's servers' identity: an IAM role (EC2 may assume it) with one
/// inline policy, and the instance profile of the same name that launch
/// templates, launch configurations and instances name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRoleSpec {
    pub role: RoleKind,
    /// The IAM role's name, also the instance profile's.
    pub name: String,
    /// `/fabrs/<project>/<environment>/`.
    pub path: String,
    /// The inline policy `fabrs` (least privilege: see `iam::role_policy`).
    pub policy: Vec<PolicyStatement>,
    /// The instance profile holding the role (its name; empty when the
    /// profile is missing or does not hold the role: repaired in place).
    pub profile: String,
    pub tags: Tags,
}

impl ResourceKind for InstanceRoleSpec {
    const REPLACEMENT: Replacement = Replacement::DeleteThenCreate;
    const WAITS: Waits = Waits {
        until_ready: false,
        until_gone: false,
        slow: false,
    };
    const SERVICE: &'static str = "iam";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(InstanceRoleSpec {
            role: Ignore,
            name: Replace,
            path: Replace,
            policy: Update,
            profile: Update,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn describe(&self, _address: &Address) -> String {
        format!("instance role {}", self.name)
    }

    fn needs(&self, _cx: &Context) -> Vec<Address> {
        Vec::new()
    }

    fn is_known(&self) -> bool {
        true
    }

    fn launches(&self) -> Option<RoleKind> {
        None
    }

    fn security_groups(&self) -> Vec<String> {
        Vec::new()
    }
}
