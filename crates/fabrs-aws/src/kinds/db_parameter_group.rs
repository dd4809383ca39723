//! The DB parameter group kind (RDS): the user-set parameters only.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_rds::types::{ApplyMethod, DbParameterGroup, Parameter};
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind, Scope};
use fabrs_plan::addr;
use fabrs_plan::resource::{Address, DbParameterGroupSpec, Observed, Spec, Status, Tags};

use crate::kinds::{self, AwsKind};
use crate::rds::*;
use crate::util::{self, GroupMap};
use crate::{AwsCloud, err};

pub(crate) async fn all_parameter_groups(c: &AwsCloud) -> Result<Vec<DbParameterGroup>, CloudError> {
    c.rds
        .describe_db_parameter_groups()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| err::sdk("DescribeDBParameterGroups", "DB parameter groups", e))
}

/// The parameters a user set (not the engine defaults).
pub(crate) async fn user_parameters(
    c: &AwsCloud,
    name: &str,
    res: &str,
) -> Result<BTreeMap<String, String>, CloudError> {
    let ps: Vec<Parameter> = c
        .rds
        .describe_db_parameters()
        .db_parameter_group_name(name)
        .source("user")
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| err::sdk("DescribeDBParameters", res, e))?;
    Ok(ps
        .iter()
        .filter(|p| p.source().is_none_or(|s| s == "user"))
        .filter_map(|p| Some((p.parameter_name()?.to_string(), p.parameter_value()?.to_string())))
        .collect())
}

pub(crate) fn parameter_group_to_observed(
    g: &DbParameterGroup,
    tags: Tags,
    parameters: BTreeMap<String, String>,
) -> Observed {
    let name = g.db_parameter_group_name().unwrap_or_default().to_string();
    Observed {
        address: addr::db_parameter_group(),
        id: name.clone(),
        spec: Spec::DbParameterGroup(DbParameterGroupSpec {
            name,
            family: g.db_parameter_group_family().unwrap_or_default().to_string(),
            description: g.description().unwrap_or_default().to_string(),
            parameters,
            tags,
        }),
        status: Status {
            state: "exists".into(),
            ..Status::default()
        },
    }
}

pub(crate) async fn describe_parameter_group(
    c: &AwsCloud,
    name: &str,
    res: &str,
) -> Result<Option<DbParameterGroup>, CloudError> {
    Ok(err::found(
        "DescribeDBParameterGroups",
        res,
        c.rds
            .describe_db_parameter_groups()
            .db_parameter_group_name(name)
            .send()
            .await,
    )?
    .and_then(|o| o.db_parameter_groups().first().cloned()))
}

pub(crate) async fn read_parameter_group(
    c: &AwsCloud,
    _address: &Address,
    name: &str,
) -> Result<Option<Observed>, CloudError> {
    let res = format!("DB parameter group {name}");
    let Some(g) = describe_parameter_group(c, name, &res).await? else {
        return Ok(None);
    };
    let (tags, params) = futures::try_join!(
        tags_of(c, g.db_parameter_group_arn().unwrap_or_default(), &res),
        user_parameters(c, name, &res)
    )?;
    Ok(Some(parameter_group_to_observed(&g, tags, params)))
}

pub(crate) async fn set_parameters(
    c: &AwsCloud,
    name: &str,
    params: &BTreeMap<String, String>,
    res: &str,
) -> Result<(), CloudError> {
    let all: Vec<Parameter> = params
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_name(k)
                .parameter_value(v)
                .apply_method(ApplyMethod::PendingReboot)
                .build()
        })
        .collect();
    // At most 20 parameters per call.
    for chunk in all.chunks(20) {
        c.rds
            .modify_db_parameter_group()
            .db_parameter_group_name(name)
            .set_parameters(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| err::sdk("ModifyDBParameterGroup", res, e))?;
    }
    Ok(())
}

pub(crate) async fn create_parameter_group(
    c: &AwsCloud,
    _address: &Address,
    s: &DbParameterGroupSpec,
) -> Result<String, CloudError> {
    let res = format!("DB parameter group {}", s.name);
    let r = c
        .rds
        .create_db_parameter_group()
        .db_parameter_group_name(&s.name)
        .db_parameter_group_family(&s.family)
        .description(&s.description)
        .set_tags(Some(rds_tags(&s.tags)))
        .send()
        .await;
    if let Err(e) = r {
        let e = err::sdk("CreateDBParameterGroup", &res, e);
        if e.kind != ErrorKind::AlreadyExists {
            return Err(e);
        }
        let Some(g) = describe_parameter_group(c, &s.name, &res).await? else {
            return Err(e);
        };
        let tags = tags_of(c, g.db_parameter_group_arn().unwrap_or_default(), &res).await?;
        let (project, env) = util::owner_of(&s.tags);
        if !util::owned(&tags, &project, &env) {
            return Err(err::exists_foreign("CreateDBParameterGroup", &res));
        }
    }
    set_parameters(c, &s.name, &s.parameters, &res).await?;
    Ok(s.name.clone())
}

pub(crate) async fn update_parameter_group(
    c: &AwsCloud,
    cur: &DbParameterGroupSpec,
    des: &DbParameterGroupSpec,
) -> Result<(), CloudError> {
    let res = format!("DB parameter group {}", des.name);
    if cur.name != des.name || cur.family != des.family || cur.description != des.description {
        return Err(err::other(
            "update",
            &res,
            "a DB parameter group's name, family and description cannot change in place: it must be replaced",
        ));
    }
    let changed: BTreeMap<String, String> = des
        .parameters
        .iter()
        .filter(|(k, v)| cur.parameters.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    set_parameters(c, &des.name, &changed, &res).await?;
    let removed: Vec<Parameter> = cur
        .parameters
        .keys()
        .filter(|k| !des.parameters.contains_key(*k))
        .map(|k| {
            Parameter::builder()
                .parameter_name(k)
                .apply_method(ApplyMethod::PendingReboot)
                .build()
        })
        .collect();
    for chunk in removed.chunks(20) {
        c.rds
            .reset_db_parameter_group()
            .db_parameter_group_name(&des.name)
            .set_parameters(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| err::sdk("ResetDBParameterGroup", &res, e))?;
    }
    if cur.tags != des.tags {
        let g = describe_parameter_group(c, &des.name, &res)
            .await?
            .ok_or_else(|| err::not_found("DescribeDBParameterGroups", &res, "not found"))?;
        sync_tags(
            c,
            g.db_parameter_group_arn().unwrap_or_default(),
            &cur.tags,
            &des.tags,
            &res,
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn delete_parameter_group(c: &AwsCloud, name: &str) -> Result<(), CloudError> {
    c.rds
        .delete_db_parameter_group()
        .db_parameter_group_name(name)
        .send()
        .await
        .map_err(|e| err::sdk("DeleteDBParameterGroup", &format!("DB parameter group {name}"), e))?;
    Ok(())
}

// ---------------------------------------------------------------- the kind

impl AwsKind for DbParameterGroupSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(10);

    async fn list(_c: &AwsCloud, _scope: &Scope) -> Result<kinds::Listing, CloudError> {
        // Found with the other kinds in discover.rs: RDS groups are listed with the databases and the others, in one round.
        Ok(kinds::Listing::default())
    }

    async fn read(
        c: &AwsCloud,
        address: &Address,
        id: &str,
        _spec: &Self,
        _gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        read_parameter_group(c, address, id).await
    }

    async fn create(
        c: &AwsCloud,
        address: &Address,
        spec: &Self,
        _ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        Ok(kinds::made(
            address,
            create_parameter_group(c, address, spec).await?,
            spec.clone(),
        ))
    }

    async fn update(
        c: &AwsCloud,
        current: &Observed,
        was: &Self,
        desired: &Self,
        _ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        update_parameter_group(c, was, desired).await?;
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<(), CloudError> {
        delete_parameter_group(c, &current.id).await
    }

    async fn status(c: &AwsCloud, current: &Observed, spec: &Self) -> Result<Option<Status>, CloudError> {
        kinds::status_by_read(c, current, spec).await
    }

    fn ready(_spec: &Self, _status: &Status) -> bool {
        true
    }
}
