//! RDS: the PostgreSQL master, its read replicas, subnet and parameter groups.

use std::collections::BTreeMap;

use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::types::{ApplyMethod, DbInstance, DbParameterGroup, DbSubnetGroup, Parameter, Tag};
use fabrs_cloud::{ApplyCtx, CloudError, DbDelete, ErrorKind};
use fabrs_plan::addr;
use fabrs_plan::plan::{engine_major, engine_version_satisfied};
use fabrs_plan::resource::{
    Address, DbInstanceSpec, DbParameterGroupSpec, DbSubnetGroupSpec, Observed, Spec, Status, Tags,
};

use crate::util::{self, GroupMap};
use crate::{AwsCloud, VpcInfo, err};

fn rds_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn from_rds_tags(tags: &[Tag]) -> Tags {
    util::clean_tags(tags.iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))))
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub(crate) async fn tags_of(c: &AwsCloud, arn: &str, res: &str) -> Result<Tags, CloudError> {
    let o = c
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| err::sdk("ListTagsForResource", res, e))?;
    Ok(from_rds_tags(o.tag_list()))
}

async fn sync_tags(c: &AwsCloud, arn: &str, current: &Tags, desired: &Tags, res: &str) -> Result<(), CloudError> {
    let (set, remove) = util::tag_diff(current, desired);
    if !set.is_empty() {
        c.rds
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(rds_tags(&set)))
            .send()
            .await
            .map_err(|e| err::sdk("AddTagsToResource", res, e))?;
    }
    if !remove.is_empty() {
        c.rds
            .remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(|e| err::sdk("RemoveTagsFromResource", res, e))?;
    }
    Ok(())
}

/// Might this (subnet or parameter) group be one of this environment's?
/// Their tags take one call each, so only likely names are asked.
pub(crate) fn candidate(name: &str, project: &str, environment: &str, names: &[&String]) -> bool {
    names.iter().any(|n| n.as_str() == name) || (name.contains(project) && name.contains(environment))
}

// ---------------------------------------------------------------- subnet groups

pub(crate) async fn all_subnet_groups(c: &AwsCloud) -> Result<Vec<DbSubnetGroup>, CloudError> {
    c.rds
        .describe_db_subnet_groups()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| err::sdk("DescribeDBSubnetGroups", "DB subnet groups", e))
}

pub(crate) fn subnet_group_to_observed(g: &DbSubnetGroup, tags: Tags, vpc: &VpcInfo) -> Observed {
    let name = g.db_subnet_group_name().unwrap_or_default().to_string();
    Observed {
        address: addr::db_subnet_group(),
        id: name.clone(),
        spec: Spec::DbSubnetGroup(DbSubnetGroupSpec {
            name,
            description: g.db_subnet_group_description().unwrap_or_default().to_string(),
            subnets: vpc.normalise_subnets(
                g.subnets()
                    .iter()
                    .filter_map(|s| s.subnet_identifier())
                    .map(str::to_string)
                    .collect(),
            ),
            tags,
        }),
        status: Status {
            state: g.subnet_group_status().unwrap_or("Complete").to_string(),
            ..Status::default()
        },
    }
}

async fn describe_subnet_group(c: &AwsCloud, name: &str, res: &str) -> Result<Option<DbSubnetGroup>, CloudError> {
    match c
        .rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(name)
        .send()
        .await
    {
        Ok(o) => Ok(o.db_subnet_groups().first().cloned()),
        Err(e) => {
            let e = err::sdk("DescribeDBSubnetGroups", res, e);
            if e.kind == ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

pub(crate) async fn read_subnet_group(
    c: &AwsCloud,
    _address: &Address,
    name: &str,
) -> Result<Option<Observed>, CloudError> {
    let res = format!("DB subnet group {name}");
    let Some(g) = describe_subnet_group(c, name, &res).await? else {
        return Ok(None);
    };
    let tags = tags_of(c, g.db_subnet_group_arn().unwrap_or_default(), &res).await?;
    let vpc = c.default_vpc().await?;
    Ok(Some(subnet_group_to_observed(&g, tags, vpc)))
}

async fn subnets_for(c: &AwsCloud, subnets: &[String], op: &str, res: &str) -> Result<Vec<String>, CloudError> {
    if !subnets.is_empty() {
        return Ok(subnets.to_vec());
    }
    let v = c.default_vpc().await?.subnet_ids();
    if v.is_empty() {
        return Err(err::not_found(
            op,
            res,
            "no subnets given and this account/region has no default VPC subnets",
        ));
    }
    Ok(v)
}

pub(crate) async fn create_subnet_group(
    c: &AwsCloud,
    _address: &Address,
    s: &DbSubnetGroupSpec,
) -> Result<String, CloudError> {
    let res = format!("DB subnet group {}", s.name);
    let subnets = subnets_for(c, &s.subnets, "CreateDBSubnetGroup", &res).await?;
    let r = c
        .rds
        .create_db_subnet_group()
        .db_subnet_group_name(&s.name)
        .db_subnet_group_description(&s.description)
        .set_subnet_ids(Some(subnets))
        .set_tags(Some(rds_tags(&s.tags)))
        .send()
        .await;
    match r {
        Ok(_) => Ok(s.name.clone()),
        Err(e) => {
            let e = err::sdk("CreateDBSubnetGroup", &res, e);
            if e.kind != ErrorKind::AlreadyExists {
                return Err(e);
            }
            let Some(g) = describe_subnet_group(c, &s.name, &res).await? else {
                return Err(e);
            };
            let tags = tags_of(c, g.db_subnet_group_arn().unwrap_or_default(), &res).await?;
            let (project, env) = util::owner_of(&s.tags);
            if !util::owned(&tags, &project, &env) {
                return Err(err::exists_foreign("CreateDBSubnetGroup", &res));
            }
            Ok(s.name.clone())
        }
    }
}

pub(crate) async fn update_subnet_group(
    c: &AwsCloud,
    cur: &DbSubnetGroupSpec,
    des: &DbSubnetGroupSpec,
) -> Result<(), CloudError> {
    let res = format!("DB subnet group {}", des.name);
    if cur.name != des.name {
        return Err(err::other(
            "update",
            &res,
            "a DB subnet group's name cannot change in place",
        ));
    }
    if cur.subnets != des.subnets || cur.description != des.description {
        let subnets = subnets_for(c, &des.subnets, "ModifyDBSubnetGroup", &res).await?;
        c.rds
            .modify_db_subnet_group()
            .db_subnet_group_name(&des.name)
            .db_subnet_group_description(&des.description)
            .set_subnet_ids(Some(subnets))
            .send()
            .await
            .map_err(|e| err::sdk("ModifyDBSubnetGroup", &res, e))?;
    }
    if cur.tags != des.tags {
        let g = describe_subnet_group(c, &des.name, &res)
            .await?
            .ok_or_else(|| err::not_found("DescribeDBSubnetGroups", &res, "not found"))?;
        sync_tags(
            c,
            g.db_subnet_group_arn().unwrap_or_default(),
            &cur.tags,
            &des.tags,
            &res,
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn delete_subnet_group(c: &AwsCloud, name: &str) -> Result<(), CloudError> {
    c.rds
        .delete_db_subnet_group()
        .db_subnet_group_name(name)
        .send()
        .await
        .map_err(|e| err::sdk("DeleteDBSubnetGroup", &format!("DB subnet group {name}"), e))?;
    Ok(())
}

// ---------------------------------------------------------------- parameter groups

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

async fn describe_parameter_group(c: &AwsCloud, name: &str, res: &str) -> Result<Option<DbParameterGroup>, CloudError> {
    match c
        .rds
        .describe_db_parameter_groups()
        .db_parameter_group_name(name)
        .send()
        .await
    {
        Ok(o) => Ok(o.db_parameter_groups().first().cloned()),
        Err(e) => {
            let e = err::sdk("DescribeDBParameterGroups", res, e);
            if e.kind == ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
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

async fn set_parameters(
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

// ---------------------------------------------------------------- DB instances

pub(crate) async fn all_dbs(c: &AwsCloud) -> Result<Vec<DbInstance>, CloudError> {
    c.rds
        .describe_db_instances()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| err::sdk("DescribeDBInstances", "DB instances", e))
}

pub(crate) fn db_tags(d: &DbInstance) -> Tags {
    from_rds_tags(d.tag_list())
}

pub(crate) fn db_live(d: &DbInstance) -> bool {
    !matches!(d.db_instance_status(), Some("deleting" | "deleted"))
}

pub(crate) fn db_status(d: &DbInstance) -> Status {
    Status {
        holds_data: false,
        state: d.db_instance_status().unwrap_or_default().to_string(),
        private_ip: None,
        endpoint: d.endpoint().and_then(|e| e.address()).map(str::to_string),
        members: vec![],
    }
}

pub(crate) fn db_to_observed(d: &DbInstance, gmap: &GroupMap) -> Option<Observed> {
    let tags = db_tags(d);
    let address = addr::db_from_tag(tags.get(addr::TAG_DB_ROLE)?)?;
    let id = d.db_instance_identifier()?.to_string();
    Some(Observed {
        address,
        id: id.clone(),
        spec: Spec::DbInstance(DbInstanceSpec {
            identifier: id,
            replica_of: d.read_replica_source_db_instance_identifier().map(str::to_string),
            instance_class: d.db_instance_class().unwrap_or_default().to_string(),
            engine: d.engine().unwrap_or_default().to_string(),
            engine_version: d.engine_version().unwrap_or_default().to_string(),
            storage_gb: d.allocated_storage().unwrap_or(0).max(0) as u32,
            db_name: d.db_name().unwrap_or_default().to_string(),
            username: d.master_username().unwrap_or_default().to_string(),
            password_secret: String::new(),
            multi_az: d.multi_az().unwrap_or(false),
            publicly_accessible: d.publicly_accessible().unwrap_or(false),
            backup_retention_days: d.backup_retention_period().unwrap_or(0).max(0) as u32,
            security_groups: gmap.keys(d.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id())),
            subnet_group: d
                .db_subnet_group()
                .and_then(|g| g.db_subnet_group_name())
                .unwrap_or_default()
                .to_string(),
            parameter_group: d
                .db_parameter_groups()
                .first()
                .and_then(|g| g.db_parameter_group_name())
                .unwrap_or_default()
                .to_string(),
            deletion_protection: d.deletion_protection().unwrap_or(false),
            tags,
        }),
        status: db_status(d),
    })
}

async fn describe_db(c: &AwsCloud, id: &str) -> Result<Option<DbInstance>, CloudError> {
    match c.rds.describe_db_instances().db_instance_identifier(id).send().await {
        Ok(o) => Ok(o.db_instances().first().cloned()),
        Err(e) => {
            let e = err::sdk("DescribeDBInstances", &format!("DB instance {id}"), e);
            if e.kind == ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

pub(crate) async fn read_db(
    c: &AwsCloud,
    _address: &Address,
    id: &str,
    gmap: &GroupMap,
) -> Result<Option<Observed>, CloudError> {
    Ok(describe_db(c, id)
        .await?
        .filter(db_live)
        .and_then(|d| db_to_observed(&d, gmap)))
}

pub(crate) async fn db_status_of(c: &AwsCloud, id: &str) -> Result<Option<Status>, CloudError> {
    Ok(describe_db(c, id).await?.map(|d| db_status(&d)))
}

pub(crate) async fn create_db(
    c: &AwsCloud,
    _address: &Address,
    s: &DbInstanceSpec,
    ctx: &ApplyCtx,
    _gmap: &GroupMap,
) -> Result<String, CloudError> {
    let res = format!("DB instance {}", s.identifier);
    let sgs = util::group_ids(ctx, &s.security_groups, "CreateDBInstance", &res)?;
    let r = match &s.replica_of {
        None => {
            let pw = ctx.db_password.as_ref().ok_or_else(|| {
                err::other(
                    "CreateDBInstance",
                    &res,
                    format!("no master password given (secret `{}`)", s.password_secret),
                )
            })?;
            c.rds
                .create_db_instance()
                .db_instance_identifier(&s.identifier)
                .db_instance_class(&s.instance_class)
                .engine(&s.engine)
                .engine_version(&s.engine_version)
                .allocated_storage(s.storage_gb as i32)
                .set_db_name(nonempty(&s.db_name))
                .master_username(&s.username)
                .master_user_password(pw.expose())
                .multi_az(s.multi_az)
                .publicly_accessible(s.publicly_accessible)
                .backup_retention_period(s.backup_retention_days as i32)
                .set_vpc_security_group_ids(Some(sgs))
                .set_db_subnet_group_name(nonempty(&s.subnet_group))
                .set_db_parameter_group_name(nonempty(&s.parameter_group))
                .deletion_protection(s.deletion_protection)
                .storage_encrypted(true)
                .storage_type("gp3")
                .copy_tags_to_snapshot(true)
                .set_tags(Some(rds_tags(&s.tags)))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| err::sdk("CreateDBInstance", &res, e))
        }
        Some(source) => c
            .rds
            .create_db_instance_read_replica()
            .db_instance_identifier(&s.identifier)
            .source_db_instance_identifier(source)
            .db_instance_class(&s.instance_class)
            .multi_az(s.multi_az)
            .publicly_accessible(s.publicly_accessible)
            .set_vpc_security_group_ids(Some(sgs))
            // No DBParameterGroupName: RDS refuses one for a PostgreSQL
            // replica (InvalidParameterCombination); a same-region replica
            // uses its source's group, which is what the spec names.
            .deletion_protection(s.deletion_protection)
            .set_tags(Some(rds_tags(&s.tags)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err::sdk("CreateDBInstanceReadReplica", &res, e)),
    };
    match r {
        Ok(()) => Ok(s.identifier.clone()),
        Err(e) if e.kind == ErrorKind::AlreadyExists => {
            let Some(d) = describe_db(c, &s.identifier).await? else {
                return Err(e);
            };
            let (project, env) = util::owner_of(&s.tags);
            if !util::owned(&db_tags(&d), &project, &env) {
                return Err(err::exists_foreign(&e.operation, &res));
            }
            Ok(s.identifier.clone())
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn update_db(
    c: &AwsCloud,
    cur: &DbInstanceSpec,
    des: &DbInstanceSpec,
    ctx: &ApplyCtx,
) -> Result<(), CloudError> {
    let res = format!("DB instance {}", des.identifier);
    if cur.identifier != des.identifier
        || cur.replica_of != des.replica_of
        || cur.engine != des.engine
        || cur.db_name != des.db_name
    {
        return Err(err::other(
            "update",
            &res,
            "a database's identifier, engine, name and replication source cannot change in place",
        ));
    }
    let mut req = c
        .rds
        .modify_db_instance()
        .db_instance_identifier(&des.identifier)
        .apply_immediately(true);
    let mut any = false;
    if cur.instance_class != des.instance_class {
        req = req.db_instance_class(&des.instance_class);
        any = true;
    }
    if cur.storage_gb != des.storage_gb {
        req = req.allocated_storage(des.storage_gb as i32);
        any = true;
    }
    // A newer minor than asked for (an automatic upgrade) is no change.
    if !engine_version_satisfied(&cur.engine_version, &des.engine_version) {
        req = req.engine_version(&des.engine_version);
        if engine_major(&cur.engine_version) != engine_major(&des.engine_version) {
            req = req.allow_major_version_upgrade(true);
        }
        any = true;
    }
    if cur.multi_az != des.multi_az {
        req = req.multi_az(des.multi_az);
        any = true;
    }
    if cur.publicly_accessible != des.publicly_accessible {
        req = req.publicly_accessible(des.publicly_accessible);
        any = true;
    }
    if cur.backup_retention_days != des.backup_retention_days {
        req = req.backup_retention_period(des.backup_retention_days as i32);
        any = true;
    }
    if cur.parameter_group != des.parameter_group && !des.parameter_group.is_empty() {
        req = req.db_parameter_group_name(&des.parameter_group);
        any = true;
    }
    if cur.deletion_protection != des.deletion_protection {
        req = req.deletion_protection(des.deletion_protection);
        any = true;
    }
    if cur.subnet_group != des.subnet_group && !des.subnet_group.is_empty() {
        req = req.db_subnet_group_name(&des.subnet_group);
        any = true;
    }
    if cur.security_groups != des.security_groups {
        req = req.set_vpc_security_group_ids(Some(util::group_ids(
            ctx,
            &des.security_groups,
            "ModifyDBInstance",
            &res,
        )?));
        any = true;
    }
    if any {
        req.send().await.map_err(|e| err::sdk("ModifyDBInstance", &res, e))?;
    }
    if cur.tags != des.tags {
        let d = describe_db(c, &des.identifier)
            .await?
            .ok_or_else(|| err::not_found("DescribeDBInstances", &res, "not found"))?;
        sync_tags(c, d.db_instance_arn().unwrap_or_default(), &cur.tags, &des.tags, &res).await?;
    }
    Ok(())
}

/// Delete a database instance: a replica without a snapshot (RDS takes none
/// of a replica); the master with `how.final_snapshot` (or none), after
/// turning deletion protection off when asked and on.
pub(crate) async fn delete_db(c: &AwsCloud, current: &DbInstanceSpec, how: &DbDelete) -> Result<(), CloudError> {
    let id = current.identifier.as_str();
    let res = format!("DB instance {id}");
    if how.disable_deletion_protection {
        let Some(d) = describe_db(c, id).await? else {
            return Ok(());
        };
        if d.deletion_protection().unwrap_or(false) {
            c.rds
                .modify_db_instance()
                .db_instance_identifier(id)
                .deletion_protection(false)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| err::sdk("ModifyDBInstance", &res, e))?;
        }
    }
    let snapshot = if current.replica_of.is_some() {
        None
    } else {
        how.final_snapshot.clone()
    };
    match c
        .rds
        .delete_db_instance()
        .db_instance_identifier(id)
        .skip_final_snapshot(snapshot.is_none())
        .set_final_db_snapshot_identifier(snapshot)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = err::sdk("DeleteDBInstance", &res, e);
            // Already being deleted.
            if e.message.starts_with("InvalidDBInstanceState") && e.message.contains("delet") {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// The versions of `engine` RDS offers for new instances in major `major`
/// (DescribeDBEngineVersions by parameter group family, e.g. `postgres16`;
/// deprecated versions are not listed). `None` when the endpoint answers the
/// call with something that is not an RDS answer at all (moto does not
/// implement it and fails with an HTML 500): one attempt, no retries.
pub(crate) async fn engine_versions(
    c: &AwsCloud,
    engine: &str,
    major: &str,
) -> Result<Option<Vec<String>>, CloudError> {
    let res = format!("{engine} {major} engine versions");
    let family = format!("{engine}{major}");
    // One page: a family lists a few dozen versions at most (MaxRecords 100).
    // Retried here, one attempt at a time, so that a cloud that does not
    // implement the call (moto: a 500 without an RDS error code) is told
    // apart at once from a passing fault (throttling, an RDS InternalError),
    // whichever attempt meets which.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = c
            .rds
            .describe_db_engine_versions()
            .engine(engine)
            .db_parameter_group_family(&family)
            .max_records(100)
            .customize()
            .config_override(
                aws_sdk_rds::config::Config::builder()
                    .retry_config(aws_sdk_rds::config::retry::RetryConfig::standard().with_max_attempts(1)),
            )
            .send()
            .await
            .map(|o| o.db_engine_versions().to_vec());
        match r {
            Ok(vs) => {
                return Ok(Some(
                    vs.iter()
                        .filter_map(|v| v.engine_version())
                        .filter(|v| engine_major(v) == major)
                        .map(str::to_string)
                        .collect(),
                ));
            }
            Err(e) => {
                // A 500 without an RDS error code, or a body that does not parse.
                let unanswered = match &e {
                    aws_sdk_rds::error::SdkError::ServiceError(s) => {
                        s.raw().status().as_u16() == 500 && s.err().code().is_none()
                    }
                    aws_sdk_rds::error::SdkError::ResponseError(_) => true,
                    _ => false,
                };
                if unanswered {
                    return Ok(None);
                }
                let e = err::sdk("DescribeDBEngineVersions", &res, e);
                if attempt < 4 && e.kind == ErrorKind::Transient {
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                    continue;
                }
                return Err(e);
            }
        }
    }
}
