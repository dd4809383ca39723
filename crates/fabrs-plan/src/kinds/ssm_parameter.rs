use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::graph::Context;
use crate::resource::Address;
use crate::resource::Tags;
use fabrs_config::RoleKind;

/// One of the environment's secrets in SSM Parameter Store, which servers
/// read at boot with their instance role (`/usr/local/sbin/fabrs-fetch-secrets`).
/// The value itself is never here: only its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsmParameterSpec {
    /// The secret's name in the environment file (`db_password`).
    pub secret: String,
    /// `/<project>/<environment>/<secret>`.
    pub name: String,
    /// Always `SecureString` (encrypted with the account's `aws/ssm` key).
    pub parameter_type: String,
    /// `ssm::fingerprint` of the value (Argon2id, salted with the name),
    /// kept in the parameter's `fabrs:fingerprint` tag. `None`: the value
    /// was not given to this plan (a plan without secrets).
    pub fingerprint: Option<String>,
    /// Ownership tags (without the fingerprint tag).
    pub tags: Tags,
}

impl ResourceKind for SsmParameterSpec {
    const REPLACEMENT: Replacement = Replacement::DeleteThenCreate;
    const WAITS: Waits = Waits {
        until_ready: false,
        until_gone: false,
        slow: false,
    };
    const SERVICE: &'static str = "ssm";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(SsmParameterSpec {
            secret: Ignore,
            name: Replace,
            parameter_type: Update,
            // A rotated secret: PutParameter with Overwrite, in place.
            fingerprint: Update,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn describe(&self, _address: &Address) -> String {
        format!("SSM parameter {}", self.name)
    }

    fn needs(&self, _cx: &Context) -> Vec<Address> {
        Vec::new()
    }

    fn is_known(&self) -> bool {
        self.fingerprint.is_some()
    }

    fn launches(&self) -> Option<RoleKind> {
        None
    }

    fn security_groups(&self) -> Vec<String> {
        Vec::new()
    }
}
