use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::graph::{self, Context};
use crate::resource::Address;
use crate::resource::{LaunchSpec, Tags};
use fabrs_config::RoleKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateSpec {
    pub name: String,
    /// The version's content; its description carries the revision.
    pub launch: LaunchSpec,
    pub tags: Tags,
}

impl ResourceKind for LaunchTemplateSpec {
    const REPLACEMENT: Replacement = Replacement::DeleteThenCreate;
    const WAITS: Waits = Waits {
        until_ready: false,
        until_gone: false,
        slow: false,
    };
    const SERVICE: &'static str = "ec2";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(LaunchTemplateSpec {
            name: Replace,
            launch: Update,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn describe(&self, _address: &Address) -> String {
        format!("launch template {}", self.name)
    }

    fn needs(&self, cx: &Context) -> Vec<Address> {
        graph::launch_needs(&self.launch, cx)
    }

    fn is_known(&self) -> bool {
        self.launch.user_data_sha256.is_some()
    }

    fn launches(&self) -> Option<RoleKind> {
        Some(self.launch.role)
    }

    fn security_groups(&self) -> Vec<String> {
        self.launch.security_groups.clone()
    }
}
