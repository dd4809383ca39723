use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::graph::Context;
use crate::resource::Address;
use crate::resource::Tags;
use fabrs_config::RoleKind;

/// An S3 bucket fabrs owns (the environment's photo bucket, the project's
/// artifact bucket): private, encrypted, its objects owned by the bucket
/// owner (ACLs off); the artifact bucket versioned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSpec {
    pub name: String,
    /// All four public access blocks on.
    pub block_public_access: bool,
    /// Default encryption: `AES256` (SSE-S3) or `aws:kms`; empty: none.
    pub encryption: String,
    /// Object ownership: `BucketOwnerEnforced` (ACLs disabled).
    pub object_ownership: String,
    /// Versioning enabled (off: never enabled, or suspended).
    #[serde(default)]
    pub versioned: bool,
    pub tags: Tags,
}

impl ResourceKind for BucketSpec {
    const REPLACEMENT: Replacement = Replacement::DeleteThenCreate;
    const WAITS: Waits = Waits {
        until_ready: false,
        until_gone: false,
        slow: false,
    };
    const SERVICE: &'static str = "s3";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(BucketSpec {
            name: Replace,
            block_public_access: Update,
            encryption: Update,
            object_ownership: Update,
            versioned: Update,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn describe(&self, _address: &Address) -> String {
        format!("bucket {}", self.name)
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
