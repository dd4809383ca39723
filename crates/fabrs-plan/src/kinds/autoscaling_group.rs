use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::addr;
use crate::graph::Context;
use crate::resource::Address;
use crate::resource::{LaunchRef, Tags};
use fabrs_config::RoleKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoScalingGroupSpec {
    pub name: String,
    pub role: RoleKind,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    pub launch: LaunchRef,
    /// Classic load balancer names.
    pub load_balancers: Vec<String>,
    /// Subnet ids (VPCZoneIdentifier); empty: all of the default VPC's zones.
    pub subnets: Vec<String>,
    /// `desired::health_check_type`: `ELB` for web once it installs a
    /// release (the load balancer's health decides), `EC2` otherwise.
    pub health_check_type: String,
    pub health_check_grace_secs: u32,
    /// Propagated to instances at launch.
    pub tags: Tags,
}

impl ResourceKind for AutoScalingGroupSpec {
    const REPLACEMENT: Replacement = Replacement::DeleteThenCreate;
    const WAITS: Waits = Waits {
        until_ready: false,
        until_gone: true,
        slow: false,
    };
    const SERVICE: &'static str = "autoscaling";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(AutoScalingGroupSpec {
            name: Replace,
            role: Ignore,
            min: Update,
            max: Update,
            desired: Update,
            launch: Update,
            load_balancers: Update,
            subnets: Update,
            health_check_type: Update,
            health_check_grace_secs: Update,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn describe(&self, _address: &Address) -> String {
        format!("auto scaling group {}", self.name)
    }

    fn needs(&self, _cx: &Context) -> Vec<Address> {
        let mut out = vec![match &self.launch {
            LaunchRef::Configuration(_) => addr::launch_configuration(self.role),
            LaunchRef::Template { .. } => addr::launch_template(self.role),
        }];
        if !self.load_balancers.is_empty() {
            out.push(addr::load_balancer());
        }
        out
    }

    fn is_known(&self) -> bool {
        !matches!(&self.launch, LaunchRef::Configuration(None))
    }

    fn launches(&self) -> Option<RoleKind> {
        None
    }

    fn security_groups(&self) -> Vec<String> {
        Vec::new()
    }
}
