//! The DB subnet group kind (RDS).

use std::time::Duration;

use aws_sdk_rds::types::DbSubnetGroup;
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind, Scope};
use fabrs_plan::addr;
use fabrs_plan::resource::{Address, DbSubnetGroupSpec, Observed, Spec, Status, Tags};

use crate::kinds::{self, AwsKind};
use crate::rds::*;
use crate::util::{self, GroupMap};
use crate::{AwsCloud, VpcInfo, err};

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

pub(crate) async fn describe_subnet_group(
    c: &AwsCloud,
    name: &str,
    res: &str,
) -> Result<Option<DbSubnetGroup>, CloudError> {
    Ok(err::found(
        "DescribeDBSubnetGroups",
        res,
        c.rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(name)
            .send()
            .await,
    )?
    .and_then(|o| o.db_subnet_groups().first().cloned()))
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

pub(crate) async fn subnets_for(
    c: &AwsCloud,
    subnets: &[String],
    op: &str,
    res: &str,
) -> Result<Vec<String>, CloudError> {
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

// ---------------------------------------------------------------- the kind

impl AwsKind for DbSubnetGroupSpec {
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
        read_subnet_group(c, address, id).await
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
            create_subnet_group(c, address, spec).await?,
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
        update_subnet_group(c, was, desired).await?;
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<(), CloudError> {
        delete_subnet_group(c, &current.id).await
    }

    async fn status(c: &AwsCloud, current: &Observed, spec: &Self) -> Result<Option<Status>, CloudError> {
        kinds::status_by_read(c, current, spec).await
    }

    fn ready(_spec: &Self, _status: &Status) -> bool {
        true
    }
}
