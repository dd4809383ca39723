use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::graph::{self, Context};
use crate::resource::Address;
use crate::resource::LaunchSpec;
use fabrs_config::RoleKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchConfigurationSpec {
    /// `<project>-<env>-<role>-<revision>-<hash8 of the launch spec>`: the same
    /// content always gets the same name, so a rerun never makes a duplicate.
    /// `None` while the launch spec is not fully known.
    pub name: Option<String>,
    pub launch: LaunchSpec,
}

impl ResourceKind for LaunchConfigurationSpec {
    const REPLACEMENT: Replacement = Replacement::CreateBeside;
    const WAITS: Waits = Waits {
        until_ready: false,
        until_gone: false,
        slow: false,
    };
    const SERVICE: &'static str = "autoscaling";

    fn rules() -> &'static [(&'static str, Rule)] {
        // The name hashes the content: a new configuration is made beside the old one.
        rules!(LaunchConfigurationSpec {
            name: Ignore,
            launch: Replace,
        })
    }

    fn aws_name(&self) -> Option<String> {
        // Named by its content's hash: known once the content is.
        None
    }

    fn describe(&self, address: &Address) -> String {
        format!(
            "launch configuration {}",
            self.name.clone().unwrap_or_else(|| address.to_string())
        )
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
