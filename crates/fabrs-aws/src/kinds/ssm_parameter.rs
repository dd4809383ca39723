//! The environment's secrets in SSM Parameter Store: one SecureString
//! parameter per secret, `/<project>/<environment>/<secret>` (encrypted with
//! the account's `aws/ssm` key), which servers read at boot with their
//! instance role. Each carries the ownership tags and `fabrs:fingerprint`
//! (`fabrs_plan::ssm::fingerprint` of the value), so discovery tells a
//! rotated secret without decrypting anything: fabrs never reads a value
//! back. A parameter of a wanted name without this environment's tags is a
//! look-alike, never overwritten or deleted.

use std::time::Duration;

use aws_sdk_ssm::types::{ParameterMetadata, ParameterStringFilter, ParameterType, ResourceTypeForTagging, Tag};
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind, Scope};
use fabrs_config::secrets::SecretValue;
use fabrs_plan::addr::{self, TAG_FINGERPRINT};
use fabrs_plan::resource::{Address, Foreign, Kind, Observed, Spec, SsmParameterSpec, Status, Tags};

use crate::kinds::{self, AwsKind};
use crate::util::GroupMap;
use crate::{AwsCloud, err, util};

fn res(name: &str) -> String {
    format!("SSM parameter {name}")
}

/// An error of a call that carried a value: should the service ever echo
/// it, it is cut out of the message.
fn scrubbed(mut e: CloudError, value: &SecretValue) -> CloudError {
    let v = value.expose();
    if !v.is_empty() && e.message.contains(v) {
        e.message = e.message.replace(v, "(sensitive)");
    }
    e
}

fn ssm_tags(tags: &Tags) -> Result<Vec<Tag>, CloudError> {
    util::sdk_tags(tags, |k, v| Tag::builder().key(k).value(v).build())
}

/// The tags written on a parameter: the spec's, plus its fingerprint.
fn tags_with_fingerprint(s: &SsmParameterSpec) -> Tags {
    let mut t = s.tags.clone();
    if let Some(f) = &s.fingerprint {
        t.insert(TAG_FINGERPRINT.into(), f.clone());
    }
    t
}

async fn tags_of(c: &AwsCloud, name: &str) -> Result<Tags, CloudError> {
    let o = c
        .ssm
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .map_err(|e| err::sdk("ListTagsForResource", &res(name), e))?;
    Ok(util::clean_tags(o.tag_list().iter().map(|t| (t.key(), t.value()))))
}

fn observe(meta: &ParameterMetadata, mut tags: Tags) -> Option<Observed> {
    let name = meta.name()?;
    let secret = name.rsplit('/').next()?.to_string();
    let fingerprint = tags.remove(TAG_FINGERPRINT);
    Some(Observed {
        address: addr::ssm_parameter(&secret),
        id: name.to_string(),
        spec: Spec::SsmParameter(SsmParameterSpec {
            secret,
            name: name.to_string(),
            parameter_type: meta.r#type().map(|t| t.as_str().to_string()).unwrap_or_default(),
            fingerprint,
            tags,
        }),
        status: Status {
            state: "exists".into(),
            ..Default::default()
        },
    })
}

/// Parameters' metadata (never values) matching one filter.
async fn describe(c: &AwsCloud, key: &str, option: &str, value: &str) -> Result<Vec<ParameterMetadata>, CloudError> {
    let filter = ParameterStringFilter::builder()
        .key(key)
        .option(option)
        .values(value)
        .build()
        .map_err(|e| err::other("DescribeParameters", value, e.to_string()))?;
    let pages: Vec<_> = c
        .ssm
        .describe_parameters()
        .parameter_filters(filter)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| err::sdk("DescribeParameters", &format!("SSM parameters {key} {value}"), e))?;
    Ok(pages.iter().flat_map(|p| p.parameters().iter().cloned()).collect())
}

pub(crate) async fn read(c: &AwsCloud, name: &str) -> Result<Option<Observed>, CloudError> {
    let found = describe(c, "Name", "Equals", name).await?;
    let Some(meta) = found.iter().find(|m| m.name() == Some(name)) else {
        return Ok(None);
    };
    let tags = tags_of(c, name).await?;
    Ok(observe(meta, tags))
}

/// The AMI ids the file's `ami: resolve:ssm:…` parameters name (public
/// ones such as Debian's `/aws/service/debian/…`, or the account's own):
/// `GetParameters`, ten names a call (AWS's limit), all at once. A name AWS
/// lists as invalid does not exist: it is left out, and the planner names
/// it. A value that is not an AMI id is an error naming the parameter.
pub(crate) async fn image_parameters(
    c: &AwsCloud,
    names: &[String],
) -> Result<std::collections::BTreeMap<String, String>, CloudError> {
    let pages = futures::future::try_join_all(names.chunks(10).map(|chunk| async move {
        c.ssm
            .get_parameters()
            .set_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| err::sdk("GetParameters", &res(&chunk.join(", ")), e))
    }))
    .await?;
    let mut out = std::collections::BTreeMap::new();
    for page in &pages {
        for p in page.parameters() {
            let (Some(name), Some(value)) = (p.name(), p.value()) else {
                continue;
            };
            if !value.starts_with("ami-") || !value[4..].chars().all(|ch| ch.is_ascii_hexdigit()) {
                return Err(err::other(
                    "GetParameters",
                    &res(name),
                    format!("names `{}`, not an AMI id", value.chars().take(40).collect::<String>()),
                ));
            }
            out.insert(name.to_string(), value.to_string());
        }
    }
    Ok(out)
}

/// Owned parameters directly under the environment's path, and look-alikes:
/// a parameter of a wanted name without this environment's tags.
pub(crate) async fn discover(c: &AwsCloud, scope: &Scope) -> Result<(Vec<Observed>, Vec<Foreign>), CloudError> {
    let (p, e) = (scope.project.as_str(), scope.environment.as_str());
    let path = fabrs_config::names::ssm_path(p, e);
    let listed = describe(c, "Path", "OneLevel", &path).await?;
    let found = futures::future::try_join_all(listed.iter().filter_map(|m| m.name().map(|n| (m, n))).map(
        |(m, n)| async move {
            let tags = tags_of(c, n).await?;
            Ok::<_, CloudError>((m, n, tags))
        },
    ))
    .await?;
    let claims = util::Claims::new(scope);
    let mut owned = Vec::new();
    let mut foreign = Vec::new();
    for (meta, name, tags) in found {
        match claims.claim(Kind::SsmParameter, claims.owned(&tags), name, name) {
            util::Claim::Owned => owned.extend(observe(meta, tags)),
            util::Claim::LookAlike(f) => foreign.push(f),
            util::Claim::Unrelated => {}
        }
    }
    Ok((owned, foreign))
}

fn value_of<'a>(ctx: &'a ApplyCtx, op: &str, name: &str) -> Result<&'a SecretValue, CloudError> {
    ctx.secret_value
        .as_ref()
        .ok_or_else(|| err::other(op, &res(name), "no value was given for the secret"))
}

async fn put(c: &AwsCloud, s: &SsmParameterSpec, value: &SecretValue, create: bool) -> Result<(), CloudError> {
    let req = c
        .ssm
        .put_parameter()
        .name(&s.name)
        .value(value.expose())
        .r#type(ParameterType::from(s.parameter_type.as_str()));
    // PutParameter takes tags only when it creates (never with Overwrite):
    // an update sets them with AddTagsToResource.
    let req = if create {
        req.overwrite(false)
            .set_tags(Some(ssm_tags(&tags_with_fingerprint(s))?))
    } else {
        req.overwrite(true)
    };
    req.send()
        .await
        .map_err(|e| scrubbed(err::sdk("PutParameter", &res(&s.name), e), value))?;
    Ok(())
}

pub(crate) async fn create(c: &AwsCloud, s: &SsmParameterSpec, ctx: &ApplyCtx) -> Result<String, CloudError> {
    let value = value_of(ctx, "PutParameter", &s.name)?;
    match put(c, s, value, true).await {
        Ok(()) => Ok(s.name.clone()),
        // A rerun after a crash finds its own parameter: overwrite it; one
        // that is not this environment's is refused.
        Err(e) if e.kind == ErrorKind::AlreadyExists => {
            let (p, env) = util::owner_of(&s.tags);
            if !util::owned(&tags_of(c, &s.name).await?, &p, &env) {
                return Err(err::exists_foreign("PutParameter", &res(&s.name)));
            }
            let current = read(c, &s.name)
                .await?
                .and_then(|o| match o.spec {
                    Spec::SsmParameter(cur) => Some(cur),
                    _ => None,
                })
                .ok_or_else(|| err::not_found("PutParameter", &res(&s.name), "gone while being written"))?;
            update(c, &current, s, ctx).await?;
            Ok(s.name.clone())
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn update(
    c: &AwsCloud,
    cur: &SsmParameterSpec,
    des: &SsmParameterSpec,
    ctx: &ApplyCtx,
) -> Result<(), CloudError> {
    if cur.fingerprint != des.fingerprint || cur.parameter_type != des.parameter_type {
        let value = value_of(ctx, "PutParameter", &des.name)?;
        put(c, des, value, false).await?;
    }
    // The fingerprint tag last: a crash before it leaves the old one, and
    // the next plan writes the value again.
    let (set, remove) = util::tag_diff(&tags_with_fingerprint(cur), &tags_with_fingerprint(des));
    if !remove.is_empty() {
        c.ssm
            .remove_tags_from_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(&des.name)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(|e| err::sdk("RemoveTagsFromResource", &res(&des.name), e))?;
    }
    if !set.is_empty() {
        c.ssm
            .add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(&des.name)
            .set_tags(Some(ssm_tags(&set)?))
            .send()
            .await
            .map_err(|e| err::sdk("AddTagsToResource", &res(&des.name), e))?;
    }
    Ok(())
}

pub(crate) async fn delete(c: &AwsCloud, s: &SsmParameterSpec) -> Result<(), CloudError> {
    c.ssm
        .delete_parameter()
        .name(&s.name)
        .send()
        .await
        .map_err(|e| err::sdk("DeleteParameter", &res(&s.name), e))?;
    Ok(())
}

// ---------------------------------------------------------------- the kind

impl AwsKind for SsmParameterSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(10);

    async fn list(c: &AwsCloud, scope: &Scope) -> Result<kinds::Listing, CloudError> {
        Ok(self::discover(c, scope).await?.into())
    }

    async fn read(
        c: &AwsCloud,
        _address: &Address,
        id: &str,
        _spec: &Self,
        _gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        self::read(c, id).await
    }

    async fn create(
        c: &AwsCloud,
        address: &Address,
        spec: &Self,
        ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        Ok(kinds::made(address, self::create(c, spec, ctx).await?, spec.clone()))
    }

    async fn update(
        c: &AwsCloud,
        current: &Observed,
        was: &Self,
        desired: &Self,
        ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        self::update(c, was, desired, ctx).await?;
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, _current: &Observed, spec: &Self) -> Result<(), CloudError> {
        self::delete(c, spec).await
    }

    async fn status(c: &AwsCloud, current: &Observed, spec: &Self) -> Result<Option<Status>, CloudError> {
        kinds::status_by_read(c, current, spec).await
    }

    fn ready(_spec: &Self, _status: &Status) -> bool {
        true
    }
}
