//! Instance roles: per server role an IAM role (only EC2 may assume it) with
//! fabrs's one inline policy, and the instance profile of the same name
//! holding it. Both are tagged at creation and live under the environment's
//! IAM path (`/fabrs/<project>/<environment>/`), which is how discovery
//! lists them; a role or profile of that name without this environment's
//! tags is a look-alike, never changed or deleted.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_iam::types::{Role, Tag};
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind, Scope};
use fabrs_config::RoleKind;
use fabrs_plan::addr::{self, TAG_ROLE};
use fabrs_plan::iam::{POLICY_NAME, TRUST_POLICY, parse_policy_document, policy_document};
use fabrs_plan::resource::{Address, Foreign, InstanceRoleSpec, Kind, Observed, Spec, Status, Tags};

use crate::kinds::{self, AwsKind};
use crate::util::GroupMap;
use crate::{AwsCloud, err, util};

fn iam_tags(tags: &Tags) -> Result<Vec<Tag>, CloudError> {
    util::sdk_tags(tags, |k, v| Tag::builder().key(k).value(v).build())
}

fn from_iam_tags(tags: &[Tag]) -> Tags {
    util::clean_tags(tags.iter().map(|t| (t.key(), t.value())))
}

async fn get_role(c: &AwsCloud, name: &str) -> Result<Option<Role>, CloudError> {
    let res = format!("IAM role {name}");
    err::none_if_not_found(
        c.iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| err::sdk("GetRole", &res, e)),
    )
    .map(|o| o.and_then(|o| o.role().cloned()))
}

/// The role's tags: GetRole carries them on AWS; ListRoleTags when a
/// listing or an older endpoint left them out.
async fn role_tags(c: &AwsCloud, role: &Role) -> Result<Tags, CloudError> {
    if !role.tags().is_empty() {
        return Ok(from_iam_tags(role.tags()));
    }
    let res = format!("IAM role {}", role.role_name());
    let o = c
        .iam
        .list_role_tags()
        .role_name(role.role_name())
        .send()
        .await
        .map_err(|e| err::sdk("ListRoleTags", &res, e))?;
    Ok(from_iam_tags(o.tags()))
}

/// The inline policy `fabrs` as statements (empty: none, or not a document
/// fabrs writes, which the plan then shows as a change).
async fn policy_of(c: &AwsCloud, name: &str) -> Result<Vec<fabrs_plan::resource::PolicyStatement>, CloudError> {
    let res = format!("IAM role {name}");
    let doc = err::none_if_not_found(
        c.iam
            .get_role_policy()
            .role_name(name)
            .policy_name(POLICY_NAME)
            .send()
            .await
            .map_err(|e| err::sdk("GetRolePolicy", &res, e)),
    )?;
    let Some(doc) = doc else { return Ok(vec![]) };
    // IAM returns the document URL-encoded (RFC 3986).
    let raw = doc.policy_document();
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    Ok(parse_policy_document(&decoded).unwrap_or_default())
}

/// The profile's name when it exists, is this environment's and holds the
/// role; else empty (repaired by an update).
async fn profile_of(c: &AwsCloud, name: &str, p: &str, e: &str) -> Result<String, CloudError> {
    let res = format!("instance profile {name}");
    let prof = err::none_if_not_found(
        c.iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(|e| err::sdk("GetInstanceProfile", &res, e)),
    )?
    .and_then(|o| o.instance_profile().cloned());
    Ok(match prof {
        Some(ip)
            if util::owned(&from_iam_tags(ip.tags()), p, e) && ip.roles().iter().any(|r| r.role_name() == name) =>
        {
            name.to_string()
        }
        _ => String::new(),
    })
}

async fn observe(c: &AwsCloud, role: &Role, tags: Tags) -> Result<Option<Observed>, CloudError> {
    let Some(kind) = tags.get(TAG_ROLE).and_then(|r| RoleKind::parse(r)) else {
        return Ok(None);
    };
    let (p, e) = util::owner_of(&tags);
    let name = role.role_name();
    let (policy, profile) = futures::try_join!(policy_of(c, name), profile_of(c, name, &p, &e))?;
    Ok(Some(Observed {
        address: addr::instance_role(kind),
        id: name.to_string(),
        spec: Spec::InstanceRole(InstanceRoleSpec {
            role: kind,
            name: name.to_string(),
            path: role.path().to_string(),
            policy,
            profile,
            tags,
        }),
        status: Status {
            state: "exists".into(),
            endpoint: Some(role.arn().to_string()),
            ..Default::default()
        },
    }))
}

pub(crate) async fn read_role(c: &AwsCloud, _address: &Address, name: &str) -> Result<Option<Observed>, CloudError> {
    let Some(role) = get_role(c, name).await? else {
        return Ok(None);
    };
    let tags = role_tags(c, &role).await?;
    observe(c, &role, tags).await
}

/// Owned roles under the environment's path, and look-alikes: a role of a
/// desired name that is not this environment's.
pub(crate) async fn discover(c: &AwsCloud, scope: &Scope) -> Result<(Vec<Observed>, Vec<Foreign>), CloudError> {
    let (p, e) = (scope.project.as_str(), scope.environment.as_str());
    let path = fabrs_config::names::iam_path(p, e);
    let wanted = util::Claims::new(scope).wanted(Kind::InstanceRole);
    let path = path.as_str();
    // A role by name: (its name, owned: observed / not: a look-alike).
    let look = |n: String| async move {
        let Some(role) = get_role(c, &n).await? else {
            return Ok::<_, CloudError>(None);
        };
        let tags = role_tags(c, &role).await?;
        if util::owned(&tags, p, e) && role.path() == path {
            Ok(observe(c, &role, tags).await?.map(Ok))
        } else {
            Ok(Some(Err(role.role_name().to_string())))
        }
    };
    // The wanted names are looked up alongside the listing by path; roles
    // the listing finds beyond them (left over) after it.
    let listing = async {
        c.iam
            .list_roles()
            .path_prefix(path)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| err::sdk("ListRoles", &format!("IAM roles under {path}"), e))
    };
    let wanted_found = futures::future::try_join_all(wanted.iter().map(|(_, n)| look(n.clone())));
    let (listed, mut found) = futures::try_join!(listing, wanted_found)?;
    let others: BTreeSet<String> = listed
        .iter()
        .map(|r| r.role_name().to_string())
        .filter(|n| !wanted.iter().any(|(_, w)| w == n))
        .collect();
    found.extend(futures::future::try_join_all(others.into_iter().map(look)).await?);
    let claims = util::Claims::new(scope);
    let mut owned = Vec::new();
    let mut foreign = Vec::new();
    for f in found.into_iter().flatten() {
        match f {
            Ok(o) => owned.push(o),
            Err(name) => {
                if let util::Claim::LookAlike(f) = claims.claim(Kind::InstanceRole, false, &name, &name) {
                    foreign.push(f);
                }
            }
        }
    }
    Ok((owned, foreign))
}

async fn put_policy(c: &AwsCloud, s: &InstanceRoleSpec) -> Result<(), CloudError> {
    c.iam
        .put_role_policy()
        .role_name(&s.name)
        .policy_name(POLICY_NAME)
        .policy_document(policy_document(&s.policy))
        .send()
        .await
        .map_err(|e| err::sdk("PutRolePolicy", &format!("IAM role {}", s.name), e))?;
    Ok(())
}

/// Make the instance profile (tagged) if it is missing and put the role in
/// it; a profile of that name that is not this environment's is refused.
async fn ensure_profile(c: &AwsCloud, s: &InstanceRoleSpec) -> Result<(), CloudError> {
    if !make_profile(c, s).await? {
        add_role(c, s).await?;
    }
    Ok(())
}

/// The instance profile, made (or, made by an earlier run, proven ours);
/// whether it already holds the role.
async fn make_profile(c: &AwsCloud, s: &InstanceRoleSpec) -> Result<bool, CloudError> {
    let res = format!("instance profile {}", s.name);
    let (p, e) = util::owner_of(&s.tags);
    let created = c
        .iam
        .create_instance_profile()
        .instance_profile_name(&s.name)
        .path(&s.path)
        .set_tags(Some(iam_tags(&s.tags)?))
        .send()
        .await
        .map_err(|e| err::sdk("CreateInstanceProfile", &res, e));
    let holds = match created {
        Ok(_) => false,
        Err(er) if er.kind == ErrorKind::AlreadyExists => {
            let prof = c
                .iam
                .get_instance_profile()
                .instance_profile_name(&s.name)
                .send()
                .await
                .map_err(|e| err::sdk("GetInstanceProfile", &res, e))?;
            let ip = prof.instance_profile();
            if !ip.is_some_and(|ip| util::owned(&from_iam_tags(ip.tags()), &p, &e)) {
                return Err(err::exists_foreign("CreateInstanceProfile", &res));
            }
            ip.is_some_and(|ip| ip.roles().iter().any(|r| r.role_name() == s.name))
        }
        Err(er) => return Err(er),
    };
    Ok(holds)
}

/// The role into its profile (IAM: one role per profile).
async fn add_role(c: &AwsCloud, s: &InstanceRoleSpec) -> Result<(), CloudError> {
    let res = format!("instance profile {}", s.name);
    {
        let added = c
            .iam
            .add_role_to_instance_profile()
            .instance_profile_name(&s.name)
            .role_name(&s.name)
            .send()
            .await
            .map_err(|e| err::sdk("AddRoleToInstanceProfile", &res, e));
        match added {
            Ok(_) => {}
            // A profile holds one role: IAM says LimitExceeded when it has
            // one already, e.g. this role, added by a run killed with the
            // call in flight. That is done; any other role is not.
            Err(er) if er.message.starts_with("LimitExceeded") => {
                let (p, e) = util::owner_of(&s.tags);
                if profile_of(c, &s.name, &p, &e).await? != s.name {
                    return Err(er);
                }
            }
            Err(er) => return Err(er),
        }
    }
    Ok(())
}

/// Role (tagged, with its trust policy), its inline policy, its profile.
/// A rerun after a partial create picks up where it stopped: an existing
/// role of this environment is kept, a foreign one refused.
pub(crate) async fn create_role(c: &AwsCloud, s: &InstanceRoleSpec) -> Result<String, CloudError> {
    let res = format!("IAM role {}", s.name);
    // The role and its profile are independent: made at once.
    let (created, holds) = futures::join!(
        c.iam
            .create_role()
            .role_name(&s.name)
            .path(&s.path)
            .assume_role_policy_document(TRUST_POLICY)
            .description(format!("The {} servers' instance role (made by fabrs)", s.role))
            .set_tags(Some(iam_tags(&s.tags)?))
            .send(),
        make_profile(c, s)
    );
    let created = created.map_err(|e| err::sdk("CreateRole", &res, e));
    let holds = holds?;
    match created {
        Ok(_) => {}
        Err(er) if er.kind == ErrorKind::AlreadyExists => {
            let (p, e) = util::owner_of(&s.tags);
            let owned = match get_role(c, &s.name).await? {
                Some(r) => util::owned(&role_tags(c, &r).await?, &p, &e) && r.path() == s.path,
                None => false,
            };
            if !owned {
                return Err(err::exists_foreign("CreateRole", &res));
            }
        }
        Err(er) => return Err(er),
    }
    // The policy needs the role, adding it to the profile needs both: in
    // two rounds.
    futures::try_join!(put_policy(c, s), async {
        if !holds { add_role(c, s).await } else { Ok(()) }
    })?;
    Ok(s.name.clone())
}

pub(crate) async fn update_role(
    c: &AwsCloud,
    cur: &InstanceRoleSpec,
    des: &InstanceRoleSpec,
) -> Result<(), CloudError> {
    let res = format!("IAM role {}", des.name);
    if cur.policy != des.policy {
        put_policy(c, des).await?;
    }
    if cur.tags != des.tags {
        let (set, remove) = util::tag_diff(&cur.tags, &des.tags);
        if !remove.is_empty() {
            c.iam
                .untag_role()
                .role_name(&des.name)
                .set_tag_keys(Some(remove.clone()))
                .send()
                .await
                .map_err(|e| err::sdk("UntagRole", &res, e))?;
        }
        if !set.is_empty() {
            c.iam
                .tag_role()
                .role_name(&des.name)
                .set_tags(Some(iam_tags(&set)?))
                .send()
                .await
                .map_err(|e| err::sdk("TagRole", &res, e))?;
        }
        if !cur.profile.is_empty() && !set.is_empty() {
            c.iam
                .tag_instance_profile()
                .instance_profile_name(&des.name)
                .set_tags(Some(iam_tags(&set)?))
                .send()
                .await
                .map_err(|e| err::sdk("TagInstanceProfile", &format!("instance profile {}", des.name), e))?;
        }
    }
    if cur.profile.is_empty() {
        ensure_profile(c, des).await?;
    }
    Ok(())
}

/// Profile (only if it is this environment's), inline policy, role. Any
/// other policy someone attached makes DeleteRole fail with IAM's own
/// message: fabrs does not detach what it did not attach.
pub(crate) async fn delete_role(c: &AwsCloud, s: &InstanceRoleSpec) -> Result<(), CloudError> {
    let res = format!("IAM role {}", s.name);
    let pres = format!("instance profile {}", s.name);
    let (p, e) = util::owner_of(&s.tags);
    let prof = err::none_if_not_found(
        c.iam
            .get_instance_profile()
            .instance_profile_name(&s.name)
            .send()
            .await
            .map_err(|e| err::sdk("GetInstanceProfile", &pres, e)),
    )?
    .and_then(|o| o.instance_profile().cloned());
    if let Some(ip) = prof.filter(|ip| util::owned(&from_iam_tags(ip.tags()), &p, &e)) {
        for r in ip.roles() {
            ignore_not_found(
                c.iam
                    .remove_role_from_instance_profile()
                    .instance_profile_name(&s.name)
                    .role_name(r.role_name())
                    .send()
                    .await
                    .map_err(|e| err::sdk("RemoveRoleFromInstanceProfile", &pres, e)),
            )?;
        }
        ignore_not_found(
            c.iam
                .delete_instance_profile()
                .instance_profile_name(&s.name)
                .send()
                .await
                .map_err(|e| err::sdk("DeleteInstanceProfile", &pres, e)),
        )?;
    }
    ignore_not_found(
        c.iam
            .delete_role_policy()
            .role_name(&s.name)
            .policy_name(POLICY_NAME)
            .send()
            .await
            .map_err(|e| err::sdk("DeleteRolePolicy", &res, e)),
    )?;
    c.iam
        .delete_role()
        .role_name(&s.name)
        .send()
        .await
        .map_err(|e| err::sdk("DeleteRole", &res, e))?;
    Ok(())
}

fn ignore_not_found<T>(r: Result<T, CloudError>) -> Result<(), CloudError> {
    err::none_if_not_found(r).map(|_| ())
}

// ---------------------------------------------------------------- the kind

impl AwsKind for InstanceRoleSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(10);

    async fn list(c: &AwsCloud, scope: &Scope) -> Result<kinds::Listing, CloudError> {
        Ok(self::discover(c, scope).await?.into())
    }

    async fn read(
        c: &AwsCloud,
        address: &Address,
        id: &str,
        _spec: &Self,
        _gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        read_role(c, address, id).await
    }

    async fn create(
        c: &AwsCloud,
        address: &Address,
        spec: &Self,
        _ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        Ok(kinds::made(address, create_role(c, spec).await?, spec.clone()))
    }

    async fn update(
        c: &AwsCloud,
        current: &Observed,
        was: &Self,
        desired: &Self,
        _ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        update_role(c, was, desired).await?;
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, _current: &Observed, spec: &Self) -> Result<(), CloudError> {
        delete_role(c, spec).await
    }

    async fn status(c: &AwsCloud, current: &Observed, spec: &Self) -> Result<Option<Status>, CloudError> {
        kinds::status_by_read(c, current, spec).await
    }

    fn ready(_spec: &Self, _status: &Status) -> bool {
        true
    }
}
