use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::graph::Context;
use crate::resource::Address;
use std::collections::BTreeMap;

use crate::resource::Tags;
use fabrs_config::RoleKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbParameterGroupSpec {
    pub name: String,
    /// e.g. `postgres16`.
    pub family: String,
    pub description: String,
    pub parameters: BTreeMap<String, String>,
    pub tags: Tags,
}

impl ResourceKind for DbParameterGroupSpec {
    const REPLACEMENT: Replacement = Replacement::DeleteThenCreate;
    const WAITS: Waits = Waits {
        until_ready: false,
        until_gone: false,
        slow: false,
    };
    const SERVICE: &'static str = "rds";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(DbParameterGroupSpec {
            name: Replace,
            family: Replace,
            description: Update,
            parameters: Update,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn describe(&self, _address: &Address) -> String {
        format!("DB parameter group {}", self.name)
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
