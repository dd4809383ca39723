use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::addr;
use crate::graph::{self, Context};
use crate::resource::Address;
use crate::resource::{LaunchSpec, Tags};
use fabrs_config::RoleKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub role: RoleKind,
    pub index: u32,
    pub launch: LaunchSpec,
    /// Registered with the load balancer (fixed web servers).
    pub load_balancer: Option<String>,
    pub subnet: Option<String>,
    pub tags: Tags,
}

impl ResourceKind for InstanceSpec {
    const REPLACEMENT: Replacement = Replacement::DeleteThenCreate;
    const WAITS: Waits = Waits {
        until_ready: true,
        until_gone: true,
        slow: false,
    };
    const SERVICE: &'static str = "ec2";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(InstanceSpec {
            role: Ignore,
            index: Ignore,
            launch: Replace,
            load_balancer: Update,
            subnet: Replace,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        self.tags.get(addr::TAG_NAME).cloned()
    }

    fn describe(&self, address: &Address) -> String {
        format!(
            "instance {}",
            self.tags
                .get(addr::TAG_NAME)
                .cloned()
                .unwrap_or_else(|| address.to_string())
        )
    }

    fn needs(&self, cx: &Context) -> Vec<Address> {
        let mut out = graph::launch_needs(&self.launch, cx);
        if self.load_balancer.is_some() {
            out.push(addr::load_balancer());
        }
        out
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
