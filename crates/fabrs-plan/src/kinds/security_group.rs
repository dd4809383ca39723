use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::graph::Context;
use crate::resource::Address;
use std::collections::BTreeSet;

use crate::resource::{IngressRule, RuleSource, Tags, VpcRef};
use fabrs_config::RoleKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupSpec {
    /// The group key: `base`, `lb`, `web`, `worker`, `cache`, `queue`, `db`.
    pub key: String,
    pub name: String,
    pub description: String,
    pub vpc: VpcRef,
    pub ingress: BTreeSet<IngressRule>,
    pub tags: Tags,
}

impl ResourceKind for SecurityGroupSpec {
    const REPLACEMENT: Replacement = Replacement::DeleteThenCreate;
    const WAITS: Waits = Waits {
        until_ready: false,
        until_gone: false,
        slow: false,
    };
    const SERVICE: &'static str = "ec2";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(SecurityGroupSpec {
            key: Ignore,
            name: Replace,
            description: Replace,
            vpc: Replace,
            ingress: Update,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn describe(&self, _address: &Address) -> String {
        format!("security group {}", self.name)
    }

    fn needs(&self, _cx: &Context) -> Vec<Address> {
        // Rules naming other groups are not edges: the driver creates groups
        // bare and adds those rules once every group exists.
        Vec::new()
    }

    fn is_known(&self) -> bool {
        true
    }

    fn launches(&self) -> Option<RoleKind> {
        None
    }

    fn security_groups(&self) -> Vec<String> {
        self.ingress
            .iter()
            .filter_map(|r| match &r.source {
                RuleSource::Group(g) => Some(g.clone()),
                RuleSource::Cidr(_) => None,
            })
            .collect()
    }
}
