use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::graph::Context;
use crate::resource::Address;
use crate::resource::Tags;
use fabrs_config::RoleKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbSubnetGroupSpec {
    pub name: String,
    pub description: String,
    /// Empty: the default VPC's subnets.
    pub subnets: Vec<String>,
    pub tags: Tags,
}

impl ResourceKind for DbSubnetGroupSpec {
    const REPLACEMENT: Replacement = Replacement::DeleteThenCreate;
    const WAITS: Waits = Waits {
        until_ready: false,
        until_gone: false,
        slow: false,
    };
    const SERVICE: &'static str = "rds";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(DbSubnetGroupSpec {
            name: Replace,
            description: Update,
            subnets: Update,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn describe(&self, _address: &Address) -> String {
        format!("DB subnet group {}", self.name)
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
