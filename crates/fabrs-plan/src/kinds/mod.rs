//! The resource kinds fabrs manages: one file per kind, each with the kind's
//! spec and its [`ResourceKind`] rules, and one list of them
//! ([`for_each_kind!`](crate::for_each_kind)) from which the `Kind` and
//! `Spec` enums and every dispatch over kinds are generated, here and in the
//! crates that implement kinds (fabrs-aws's `kinds/`, the fake cloud).
//!
//! Adding a kind: its file here, its file in fabrs-aws, and one line in
//! `for_each_kind!`. Every method of the traits is required (no defaults),
//! and a kind's `rules!` names a rule for each field of its spec: a kind
//! that does not say how an attribute changes does not compile.

use std::fmt;

use fabrs_config::RoleKind;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::graph::Context;
use crate::resource::Address;

/// The one list of kinds, in the order they sort in (addresses, plans).
/// `$callback! { Variant(SpecType) in module, … }`: `module` is the kind's
/// file (here and in fabrs-aws) and its name in addresses
/// (`security_group.web`).
#[macro_export]
macro_rules! for_each_kind {
    ($callback:ident) => {
        $callback! {
            InstanceRole(InstanceRoleSpec) in instance_role,
            Bucket(BucketSpec) in bucket,
            SsmParameter(SsmParameterSpec) in ssm_parameter,
            SecurityGroup(SecurityGroupSpec) in security_group,
            LoadBalancer(LoadBalancerSpec) in load_balancer,
            DbSubnetGroup(DbSubnetGroupSpec) in db_subnet_group,
            DbParameterGroup(DbParameterGroupSpec) in db_parameter_group,
            DbInstance(DbInstanceSpec) in db_instance,
            Instance(InstanceSpec) in instance,
            LaunchConfiguration(LaunchConfigurationSpec) in launch_configuration,
            LaunchTemplate(LaunchTemplateSpec) in launch_template,
            AutoScalingGroup(AutoScalingGroupSpec) in autoscaling_group,
        }
    };
}

/// How the planner treats one attribute of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Changes in place.
    Update,
    /// A change means a new resource.
    Replace,
    /// Identity or unreadable (e.g. a password's secret name): never compared.
    Ignore,
}

/// What a change to an attribute whose rule is `Replace` becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// Delete the current one, then create the new one (`Action::Replace`).
    DeleteThenCreate,
    /// Create a new one beside the current one, which stays
    /// (`Action::CreateBeside`: launch configurations, kept for rollback
    /// and pruned by deploy).
    CreateBeside,
    /// Never: the plan gets a conflict instead (a database is never
    /// replaced: its data would go with it).
    Refuse,
}

/// How the apply driver waits for a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waits {
    /// After a create or update, until ready: what needs it reads what it
    /// has only once ready (a server's address, a database's endpoint).
    pub until_ready: bool,
    /// After a delete, until gone: what it used is free only then (a
    /// group's instances hold their security groups, a replica its master).
    pub until_gone: bool,
    /// Its waits take the database timeout (minutes), not the instance one.
    pub slow: bool,
}

/// A kind's rules: one per field of its spec, written like the spec itself.
/// The macro also writes the spec as a struct expression of exactly these
/// fields: a spec field without a rule ("missing field") or a rule for no
/// field ("has no field") does not compile.
macro_rules! rules {
    ($spec:ident { $($field:ident: $rule:ident),* $(,)? }) => {{
        #[allow(dead_code, unreachable_code, clippy::diverging_sub_expression)]
        fn exhaustive() -> $spec {
            $spec { $($field: unreachable!()),* }
        }
        &[$((stringify!($field), $crate::kinds::Rule::$rule)),*]
    }};
}

/// What the planner, the dependency graph and the apply driver know of a
/// kind. Implemented once per kind, in the kind's file.
pub trait ResourceKind:
    Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned + Into<Spec> + Send + Sync + 'static
{
    /// The AWS service its calls go to: the apply driver runs at most
    /// `concurrency` changes at once per service, so a slow kind (RDS) never
    /// holds a slot another service's change could use.
    const SERVICE: &'static str;
    /// How each top-level attribute changes: in place (`Update`), by a new
    /// resource (`Replace`), or never compared (`Ignore`: identity kept in
    /// the address, or unreadable like a password's secret name). Written
    /// with `rules!`, which makes it exhaustive.
    fn rules() -> &'static [(&'static str, Rule)];
    /// What a `Replace` rule's change becomes.
    const REPLACEMENT: Replacement;
    /// How the apply driver waits for it.
    const WAITS: Waits;
    /// The name AWS knows it by (`None`: none fabrs can predict, as for a
    /// launch configuration, whose name hashes its content).
    fn aws_name(&self) -> Option<String>;
    /// One line naming it in errors and progress: `security group x-web-sg`.
    fn describe(&self, address: &Address) -> String;
    /// What must exist before it is created or changed (as AWS requires it).
    fn needs(&self, cx: &Context) -> Vec<Address>;
    /// Every attribute is known (user-data fingerprints depend on addresses
    /// of resources that may not exist yet).
    fn is_known(&self) -> bool;
    /// The role whose servers it launches (fixed instances, launch
    /// configurations and templates).
    fn launches(&self) -> Option<RoleKind>;
    /// The security groups (keys) it names: one still named cannot be deleted.
    fn security_groups(&self) -> Vec<String>;
}

/// [`ResourceKind`]'s per-value methods, object-safe: `Spec::as_kind`.
pub trait AnyKind {
    fn aws_name(&self) -> Option<String>;
    fn describe(&self, address: &Address) -> String;
    fn needs(&self, cx: &Context) -> Vec<Address>;
    fn is_known(&self) -> bool;
    fn launches(&self) -> Option<RoleKind>;
    fn security_groups(&self) -> Vec<String>;
}

impl<T: ResourceKind> AnyKind for T {
    fn aws_name(&self) -> Option<String> {
        ResourceKind::aws_name(self)
    }
    fn describe(&self, address: &Address) -> String {
        ResourceKind::describe(self, address)
    }
    fn needs(&self, cx: &Context) -> Vec<Address> {
        ResourceKind::needs(self, cx)
    }
    fn is_known(&self) -> bool {
        ResourceKind::is_known(self)
    }
    fn launches(&self) -> Option<RoleKind> {
        ResourceKind::launches(self)
    }
    fn security_groups(&self) -> Vec<String> {
        ResourceKind::security_groups(self)
    }
}

macro_rules! define_kinds {
    ($($variant:ident($spec:ident) in $module:ident),* $(,)?) => {
        $(
            mod $module;
            pub use $module::$spec;
        )*

        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Kind {
            $($variant),*
        }

        impl Kind {
            pub const ALL: &[Kind] = &[$(Kind::$variant),*];

            /// Its name in addresses: `security_group`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => stringify!($module)),*
                }
            }

            pub fn rules(self) -> &'static [(&'static str, Rule)] {
                match self {
                    $(Kind::$variant => <$spec as ResourceKind>::rules()),*
                }
            }

            /// `ResourceKind::REPLACEMENT`.
            pub fn replacement(self) -> Replacement {
                match self {
                    $(Kind::$variant => <$spec as ResourceKind>::REPLACEMENT),*
                }
            }

            /// `ResourceKind::WAITS`.
            pub fn waits(self) -> Waits {
                match self {
                    $(Kind::$variant => <$spec as ResourceKind>::WAITS),*
                }
            }

            /// `ResourceKind::SERVICE`.
            pub fn service(self) -> &'static str {
                match self {
                    $(Kind::$variant => <$spec as ResourceKind>::SERVICE),*
                }
            }
        }

        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum Spec {
            $($variant($spec)),*
        }

        impl Spec {
            pub fn kind(&self) -> Kind {
                match self {
                    $(Spec::$variant(_) => Kind::$variant),*
                }
            }

            /// The kind's rules for this value.
            pub fn as_kind(&self) -> &dyn AnyKind {
                match self {
                    $(Spec::$variant(s) => s),*
                }
            }
        }

        $(
            impl From<$spec> for Spec {
                fn from(s: $spec) -> Spec {
                    Spec::$variant(s)
                }
            }
        )*
    };
}

crate::for_each_kind!(define_kinds);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_unique() {
        // Addresses (`security_group.web`) and the files of both sides are
        // named by these.
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
    }
}
