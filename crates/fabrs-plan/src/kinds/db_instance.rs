use serde::{Deserialize, Serialize};

use super::{Replacement, ResourceKind, Rule, Waits};
use crate::addr;
use crate::graph::{self, Context};
use crate::resource::Address;
use crate::resource::Tags;
use fabrs_config::RoleKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInstanceSpec {
    pub identifier: String,
    /// `None` for the master; the master's identifier for a read replica.
    pub replica_of: Option<String>,
    pub instance_class: String,
    pub engine: String,
    /// A major version (`16`: RDS picks the minor) or a full one (`16.9`). An
    /// observed version satisfies a desired one of the same major that is not
    /// newer (`plan::engine_version_satisfied`): automatic minor upgrades are
    /// not changes.
    pub engine_version: String,
    pub storage_gb: u32,
    pub db_name: String,
    pub username: String,
    /// The secret holding the master password (its name, never its value).
    pub password_secret: String,
    pub multi_az: bool,
    pub publicly_accessible: bool,
    pub backup_retention_days: u32,
    /// Group keys (`db`).
    pub security_groups: Vec<String>,
    pub subnet_group: String,
    /// A read replica uses its master's group (RDS refuses one for a
    /// PostgreSQL replica in its create call): the same name here.
    pub parameter_group: String,
    /// RDS deletion protection (the file's `database.deletion_protection` on
    /// the master; off on replicas).
    #[serde(default)]
    pub deletion_protection: bool,
    pub tags: Tags,
}

impl ResourceKind for DbInstanceSpec {
    const REPLACEMENT: Replacement = Replacement::Refuse;
    const WAITS: Waits = Waits {
        until_ready: true,
        until_gone: true,
        slow: true,
    };
    const SERVICE: &'static str = "rds";

    fn rules() -> &'static [(&'static str, Rule)] {
        rules!(DbInstanceSpec {
            identifier: Replace,
            replica_of: Replace,
            instance_class: Update,
            engine: Replace,
            engine_version: Update,
            storage_gb: Update,
            db_name: Replace,
            username: Replace,
            password_secret: Ignore,
            multi_az: Update,
            publicly_accessible: Update,
            backup_retention_days: Update,
            security_groups: Update,
            subnet_group: Replace,
            parameter_group: Update,
            deletion_protection: Update,
            tags: Update,
        })
    }

    fn aws_name(&self) -> Option<String> {
        Some(self.identifier.clone())
    }

    fn describe(&self, _address: &Address) -> String {
        format!("DB instance {}", self.identifier)
    }

    fn needs(&self, _cx: &Context) -> Vec<Address> {
        let mut out = graph::groups(&self.security_groups);
        if self.replica_of.is_some() {
            out.push(addr::db_master());
        } else {
            out.push(addr::db_subnet_group());
            out.push(addr::db_parameter_group());
        }
        out
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
