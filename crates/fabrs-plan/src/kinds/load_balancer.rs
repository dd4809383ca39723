use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::graph::{self, Context};
use crate::resource::Address;
use std::collections::BTreeMap;

#[allow(unused_imports)]
use crate::resource::TLS_SECURITY_POLICY;
use crate::resource::{HealthCheckSpec, ListenerSpec, Tags, port_map};
use fabrs_config::RoleKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerSpec {
    pub name: String,
    pub listeners: Vec<ListenerSpec>,
    pub health_check: HealthCheckSpec,
    /// Group keys (`lb`).
    pub security_groups: Vec<String>,
    /// Subnet ids; empty means the default VPC's availability zones.
    pub subnets: Vec<String>,
    pub cross_zone: bool,
    pub idle_timeout_secs: u32,
    /// Connection draining: `Some(timeout in seconds)` when on (always, in a
    /// desired spec: `load_balancer.draining_timeout`); `None` read back
    /// from a load balancer that has it off.
    pub connection_draining_secs: Option<u32>,
    /// Listener port → the AWS predefined security policy its SSL
    /// negotiation policy references (`Reference-Security-Policy`), for
    /// every HTTPS/SSL listener ([`TLS_SECURITY_POLICY`]: no TLS below 1.2).
    /// A listener without such a policy is absent.
    #[serde(with = "port_map")]
    pub tls_policies: BTreeMap<u16, String>,
    pub tags: Tags,
}

impl ResourceKind for LoadBalancerSpec {
    const REPLACEMENT: Replacement = Replacement::DeleteThenCreate;
    const WAITS: Waits = Waits {
        until_ready: false,
        until_gone: true,
        slow: false,
    };
    const SERVICE: &'static str = "elb";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(LoadBalancerSpec {
            name: Replace,
            listeners: Update,
            health_check: Update,
            security_groups: Update,
            subnets: Replace,
            cross_zone: Update,
            idle_timeout_secs: Update,
            connection_draining_secs: Update,
            tls_policies: Update,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn describe(&self, _address: &Address) -> String {
        format!("load balancer {}", self.name)
    }

    fn needs(&self, _cx: &Context) -> Vec<Address> {
        graph::groups(&self.security_groups)
    }

    fn is_known(&self) -> bool {
        true
    }

    fn launches(&self) -> Option<RoleKind> {
        None
    }

    fn security_groups(&self) -> Vec<String> {
        self.security_groups.clone()
    }
}
