//! Small helpers shared by the per-service modules.

use std::collections::BTreeMap;

use base64::Engine;
use fabrs_cloud::{ApplyCtx, CloudError, Scope};
use fabrs_plan::addr::{MANAGED_BY, TAG_ENVIRONMENT, TAG_MANAGED_BY, TAG_PROJECT};
use fabrs_plan::resource::{Address, Foreign, Kind, Spec, Tags};

use crate::err;

/// Security group id → group key (`sg-0ab…` → `web`), and back.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupMap {
    id_to_key: BTreeMap<String, String>,
}

impl GroupMap {
    pub fn from_ctx(ctx: &ApplyCtx) -> Self {
        let mut m = GroupMap::default();
        for (a, id) in &ctx.ids {
            if a.kind == Kind::SecurityGroup {
                m.insert(id, &a.name);
            }
        }
        m
    }
    pub fn insert(&mut self, id: &str, key: &str) {
        self.id_to_key.insert(id.to_string(), key.to_string());
    }
    /// The key of a group id; an unknown group is reported by its id (so a
    /// rule or attachment fabrs does not know shows up as drift).
    pub fn key(&self, id: &str) -> String {
        self.id_to_key.get(id).cloned().unwrap_or_else(|| id.to_string())
    }
    /// Group ids → sorted keys.
    pub fn keys<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut v: Vec<String> = ids.into_iter().map(|i| self.key(i)).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Group key → id through `ctx.ids` (a raw `sg-…` passes through).
pub(crate) fn group_id(ctx: &ApplyCtx, key: &str, op: &str, resource: &str) -> Result<String, CloudError> {
    if let Some(id) = ctx.ids.get(&fabrs_plan::addr::security_group(key)) {
        return Ok(id.clone());
    }
    if key.starts_with("sg-") {
        return Ok(key.to_string());
    }
    Err(err::not_found(
        op,
        resource,
        format!("security group `{key}` has no id yet (security_group.{key} must be created first)"),
    ))
}

pub(crate) fn group_ids(ctx: &ApplyCtx, keys: &[String], op: &str, resource: &str) -> Result<Vec<String>, CloudError> {
    keys.iter().map(|k| group_id(ctx, k, op, resource)).collect()
}

pub(crate) fn owned(tags: &Tags, project: &str, environment: &str) -> bool {
    tags.get(TAG_PROJECT).map(String::as_str) == Some(project)
        && tags.get(TAG_ENVIRONMENT).map(String::as_str) == Some(environment)
        && tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
}

/// Whose an item of the account is: the owned/look-alike split, written
/// once for every kind.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Proven this environment's (by its tags, or what stands for them).
    Owned,
    /// Not proven ours, but with a name this environment wants: in the way,
    /// and never adopted, modified or deleted.
    LookAlike(Foreign),
    /// Someone else's, and none of fabrs's business.
    Unrelated,
}

/// The owned/look-alike split against one discovery's scope.
pub(crate) struct Claims<'a> {
    scope: &'a Scope,
}

impl<'a> Claims<'a> {
    pub fn new(scope: &'a Scope) -> Self {
        Claims { scope }
    }

    /// The ownership tags are this environment's.
    pub fn owned(&self, tags: &Tags) -> bool {
        owned(tags, &self.scope.project, &self.scope.environment)
    }

    /// The names the scope wants for a kind, with their addresses.
    pub fn wanted(&self, kind: Kind) -> Vec<(Address, String)> {
        self.scope
            .names
            .iter()
            .filter(|(a, n)| a.kind == kind && !n.is_empty())
            .map(|(a, n)| (a.clone(), n.clone()))
            .collect()
    }

    /// The address the scope wants a resource of this kind and name at.
    pub fn address_of(&self, kind: Kind, name: &str) -> Option<Address> {
        self.scope
            .names
            .iter()
            .find(|(a, n)| a.kind == kind && !n.is_empty() && n.as_str() == name)
            .map(|(a, _)| a.clone())
    }

    /// Owned when `owned` (the kind's proof); else a look-alike when the
    /// scope wants this name for the kind; else unrelated.
    pub fn claim(&self, kind: Kind, owned: bool, name: &str, id: &str) -> Claim {
        if owned {
            return Claim::Owned;
        }
        match self.address_of(kind, name) {
            Some(address) => Claim::LookAlike(Foreign {
                address,
                id: id.to_string(),
                name: name.to_string(),
            }),
            None => Claim::Unrelated,
        }
    }
}

/// (project, environment) a spec's tags say it belongs to.
pub(crate) fn owner_of(tags: &Tags) -> (String, String) {
    (
        tags.get(TAG_PROJECT).cloned().unwrap_or_default(),
        tags.get(TAG_ENVIRONMENT).cloned().unwrap_or_default(),
    )
}

/// Tags as fabrs compares them: AWS's own (`aws:…`) left out.
pub(crate) fn clean_tags<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Tags {
    pairs
        .into_iter()
        .filter(|(k, _)| !k.starts_with("aws:"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// (tags to set, keys to remove) to go from `current` to `desired`.
pub(crate) fn tag_diff(current: &Tags, desired: &Tags) -> (Tags, Vec<String>) {
    let set = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = current.keys().filter(|k| !desired.contains_key(*k)).cloned().collect();
    (set, remove)
}

/// The tags as a service's own `Tag` values (IAM, S3 and SSM each have one,
/// with required key and value): `build` is the service's builder.
pub(crate) fn sdk_tags<T, E: std::fmt::Display>(
    tags: &Tags,
    build: impl Fn(&str, &str) -> Result<T, E>,
) -> Result<Vec<T>, CloudError> {
    tags.iter()
        .map(|(k, v)| build(k, v).map_err(|e| err::other("Tag", k, e.to_string())))
        .collect()
}

pub(crate) fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

pub(crate) fn unb64(s: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// `arn:aws:iam::123:instance-profile/fabrs/p/e/p-e-web` → `p-e-web` (a
/// plain name is returned as it is).
pub(crate) fn profile_name_of_arn(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

/// How long a new instance profile may take to become usable by EC2 and
/// Auto Scaling (IAM is eventually consistent; AWS documents "a few
/// seconds", and minutes are seen).
pub(crate) const PROFILE_PROPAGATION: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether an error says the named instance profile does not exist (yet):
/// EC2's `InvalidParameterValue … iamInstanceProfile.name … invalid` and
/// Auto Scaling's `ValidationError: Invalid IamInstanceProfile`.
pub(crate) fn profile_not_visible(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("iaminstanceprofile")
        && (m.contains("invalid") || m.contains("not found") || m.contains("does not exist"))
}

/// Run a launch call (RunInstances, CreateLaunchConfiguration) again while
/// EC2 cannot see the instance profile yet, for at most
/// `PROFILE_PROPAGATION`; the last error then says what was waited for.
pub(crate) async fn while_profile_propagates<T, E, F, Fut>(op: &str, res: &str, mut call: F) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
            Output = Result<
                T,
                aws_sdk_ec2::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
            >,
        >,
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let start = std::time::Instant::now();
    let mut delay = std::time::Duration::from_secs(2);
    loop {
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(e) => err::sdk(op, res, e),
        };
        if !profile_not_visible(&e.message) {
            return Err(e);
        }
        if start.elapsed() + delay > PROFILE_PROPAGATION {
            let mut e = e;
            e.message = format!(
                "{} (the instance profile was still not visible to EC2 after {} s of IAM propagation)",
                e.message,
                start.elapsed().as_secs()
            );
            return Err(e);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(10));
    }
}

/// `security group myproject-staging-web-sg`, `instance web[0]`…
pub(crate) fn describe(address: &Address, spec: &Spec) -> String {
    spec.as_kind().describe(address)
}

/// A stable 128-bit hex digest (two FNV-1a 64 variants): idempotency tokens.
pub(crate) fn digest(s: &str) -> String {
    let mut a: u64 = 0xcbf29ce484222325;
    let mut b: u64 = 0x84222325cbf29ce4;
    for byte in s.bytes() {
        a = (a ^ byte as u64).wrapping_mul(0x100000001b3);
        b = (b ^ (byte as u64).rotate_left(3)).wrapping_mul(0x100000001b3);
    }
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_profile_errors_and_arns() {
        // EC2's and Auto Scaling's words for a profile IAM has not spread yet.
        assert!(profile_not_visible(
            "InvalidParameterValue: Value (p-e-web) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
        ));
        assert!(profile_not_visible(
            "ValidationError: Invalid IamInstanceProfile: p-e-web"
        ));
        assert!(!profile_not_visible(
            "InvalidParameterValue: Invalid value for instance type"
        ));
        assert_eq!(
            profile_name_of_arn("arn:aws:iam::123456789012:instance-profile/fabrs/p/e/p-e-web"),
            "p-e-web"
        );
        assert_eq!(profile_name_of_arn("p-e-web"), "p-e-web");
    }

    #[test]
    fn tag_diff_sets_and_removes() {
        let cur: Tags = [("a", "1"), ("b", "2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let des: Tags = [("a", "1"), ("b", "3"), ("c", "4")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (set, rm) = tag_diff(&cur, &des);
        assert_eq!(set.len(), 2);
        assert!(rm.is_empty());
        let (set, rm) = tag_diff(&des, &cur);
        assert_eq!(set.len(), 1);
        assert_eq!(rm, vec!["c".to_string()]);
    }

    #[test]
    fn digest_is_stable_and_distinct() {
        assert_eq!(digest("p/e/instance.web[0]"), digest("p/e/instance.web[0]"));
        assert_ne!(digest("p/e/instance.web[0]"), digest("p/e/instance.web[1]"));
        assert_eq!(digest("x").len(), 32);
    }
}
