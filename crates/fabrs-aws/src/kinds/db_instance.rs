//! The DB instance kind (RDS): the PostgreSQL master and its read replicas;
//! deletion with a final snapshot (`Cloud::delete_database`), and the engine
//! versions RDS offers.

use std::time::Duration;

use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::types::DbInstance;
use fabrs_cloud::{ApplyCtx, CloudError, DbDelete, ErrorKind, Scope};
use fabrs_plan::addr;
use fabrs_plan::plan::{engine_major, engine_version_satisfied};
use fabrs_plan::resource::{Address, DbInstanceSpec, Observed, Spec, Status, Tags};

use crate::kinds::{self, AwsKind};
use crate::rds::*;
use crate::util::{self, GroupMap};
use crate::{AwsCloud, err};

/// The account's DB instances; those of `identifiers` only, when given (a
/// filter: an identifier that does not exist is not an error).
pub(crate) async fn all_dbs(c: &AwsCloud, identifiers: &[String]) -> Result<Vec<DbInstance>, CloudError> {
    let filter = (!identifiers.is_empty()).then(|| {
        vec![
            aws_sdk_rds::types::Filter::builder()
                .name("db-instance-id")
                .set_values(Some(identifiers.to_vec()))
                .build(),
        ]
    });
    c.rds
        .describe_db_instances()
        .set_filters(filter)
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
        template_version: None,
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

pub(crate) async fn describe_db(c: &AwsCloud, id: &str) -> Result<Option<DbInstance>, CloudError> {
    Ok(err::found(
        "DescribeDBInstances",
        &format!("DB instance {id}"),
        c.rds.describe_db_instances().db_instance_identifier(id).send().await,
    )?
    .and_then(|o| o.db_instances().first().cloned()))
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

// ---------------------------------------------------------------- the kind

impl AwsKind for DbInstanceSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(30);

    async fn list(_c: &AwsCloud, _scope: &Scope) -> Result<kinds::Listing, CloudError> {
        // Found with the other kinds in discover.rs: a database's spec names its security groups by key.
        Ok(kinds::Listing::default())
    }

    async fn read(
        c: &AwsCloud,
        address: &Address,
        id: &str,
        _spec: &Self,
        gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        read_db(c, address, id, gmap).await
    }

    async fn create(
        c: &AwsCloud,
        address: &Address,
        spec: &Self,
        ctx: &ApplyCtx,
        gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        Ok(kinds::made(
            address,
            create_db(c, address, spec, ctx, gmap).await?,
            spec.clone(),
        ))
    }

    async fn update(
        c: &AwsCloud,
        current: &Observed,
        was: &Self,
        desired: &Self,
        ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        update_db(c, was, desired, ctx).await?;
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, _current: &Observed, spec: &Self) -> Result<(), CloudError> {
        delete_db(c, spec, &DbDelete::default()).await
    }

    async fn status(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<Option<Status>, CloudError> {
        db_status_of(c, &current.id).await
    }

    fn ready(_spec: &Self, status: &Status) -> bool {
        status.state == "available" && status.endpoint.is_some()
    }
}
