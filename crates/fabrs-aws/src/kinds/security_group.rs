//! The security group kind (EC2): created bare, its rules authorized and revoked
//! to match; the group ids in every other spec are mapped to keys (`GroupMap`).

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, ResourceType, SecurityGroup, UserIdGroupPair};
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind, Scope};
use fabrs_plan::addr::{self};
use fabrs_plan::resource::{Address, IngressRule, Observed, RuleSource, SecurityGroupSpec, Spec, Status, VpcRef};

use crate::ec2::*;
use crate::kinds::{self, AwsKind};
use crate::util::{self, GroupMap};
use crate::{AwsCloud, VpcInfo, err};

pub(crate) fn port(p: Option<i32>, default: u16) -> u16 {
    match p {
        Some(p) if (0..=65535).contains(&p) => p as u16,
        _ => default,
    }
}

/// Ingress permissions → the spec's rules (descriptions dropped, group ids → keys).
pub(crate) fn rules_of(perms: &[IpPermission], gmap: &GroupMap) -> BTreeSet<IngressRule> {
    let mut out = BTreeSet::new();
    for p in perms {
        let protocol = p.ip_protocol().unwrap_or("-1").to_string();
        let (from_port, to_port) = (port(p.from_port(), 0), port(p.to_port(), 65535));
        let mut push = |source| {
            out.insert(IngressRule {
                protocol: protocol.clone(),
                from_port,
                to_port,
                source,
            });
        };
        for r in p.ip_ranges() {
            if let Some(c) = r.cidr_ip() {
                push(RuleSource::Cidr(c.to_string()));
            }
        }
        for r in p.ipv6_ranges() {
            if let Some(c) = r.cidr_ipv6() {
                push(RuleSource::Cidr(c.to_string()));
            }
        }
        for g in p.user_id_group_pairs() {
            if let Some(id) = g.group_id() {
                push(RuleSource::Group(gmap.key(id)));
            }
        }
    }
    out
}

pub(crate) fn permission(rule: &IngressRule, group_id: Option<String>) -> IpPermission {
    let b = IpPermission::builder()
        .ip_protocol(&rule.protocol)
        .from_port(rule.from_port as i32)
        .to_port(rule.to_port as i32);
    match (&rule.source, group_id) {
        (_, Some(gid)) => b.user_id_group_pairs(UserIdGroupPair::builder().group_id(gid).build()),
        (RuleSource::Cidr(c), None) if c.contains(':') => b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build()),
        (RuleSource::Cidr(c), None) => b.ip_ranges(IpRange::builder().cidr_ip(c).build()),
        (RuleSource::Group(_), None) => b,
    }
    .build()
}

pub(crate) fn vpc_ref(vpc_id: Option<&str>, vpc: &VpcInfo) -> VpcRef {
    match vpc_id {
        Some(id) if id != vpc.vpc_id => VpcRef::Id(id.to_string()),
        _ => VpcRef::Default,
    }
}

pub(crate) fn sg_to_observed(sg: &SecurityGroup, gmap: &GroupMap, vpc: &VpcInfo) -> Option<Observed> {
    let tags = from_ec2_tags(sg.tags());
    let key = tags.get(addr::TAG_GROUP)?.clone();
    let id = sg.group_id()?.to_string();
    Some(Observed {
        address: addr::security_group(&key),
        id,
        spec: Spec::SecurityGroup(SecurityGroupSpec {
            key,
            name: sg.group_name().unwrap_or_default().to_string(),
            description: sg.description().unwrap_or_default().to_string(),
            vpc: vpc_ref(sg.vpc_id(), vpc),
            ingress: rules_of(sg.ip_permissions(), gmap),
            tags,
        }),
        status: Status {
            state: "exists".into(),
            ..Status::default()
        },
    })
}

pub(crate) async fn describe_sg(c: &AwsCloud, id: &str, res: &str) -> Result<Option<SecurityGroup>, CloudError> {
    Ok(err::found(
        "DescribeSecurityGroups",
        res,
        c.ec2.describe_security_groups().group_ids(id).send().await,
    )?
    .and_then(|o| o.security_groups().first().cloned()))
}

pub(crate) async fn read_sg(
    c: &AwsCloud,
    _address: &Address,
    id: &str,
    gmap: &GroupMap,
) -> Result<Option<Observed>, CloudError> {
    let vpc = c.default_vpc().await?.clone();
    Ok(describe_sg(c, id, &format!("security group {id}"))
        .await?
        .and_then(|sg| sg_to_observed(&sg, gmap, &vpc)))
}

pub(crate) async fn create_sg(
    c: &AwsCloud,
    address: &Address,
    s: &SecurityGroupSpec,
    ctx: &ApplyCtx,
) -> Result<Observed, CloudError> {
    let res = format!("security group {}", s.name);
    let vpc_id = c.vpc_id(&s.vpc, &res).await?;
    let (project, env) = util::owner_of(&s.tags);
    let created = c
        .ec2
        .create_security_group()
        .group_name(&s.name)
        .description(&s.description)
        .vpc_id(&vpc_id)
        .tag_specifications(tag_spec(ResourceType::SecurityGroup, &s.tags))
        .send()
        .await;
    let id = match created {
        Ok(o) => {
            // A new group: no ingress yet, the tags as sent. Its rules naming
            // groups not made yet wait for update() (the executor makes every
            // group first); the others go on now. No read-back.
            let id = o.group_id().unwrap_or_default().to_string();
            let mut ctx2 = ctx.clone();
            ctx2.ids.insert(addr::security_group(&s.key), id.clone());
            sync_rules(c, &id, &BTreeSet::new(), &s.ingress, &ctx2, true, &res).await?;
            let mut made = s.clone();
            made.ingress.retain(|r| match &r.source {
                RuleSource::Group(g) => util::group_id(&ctx2, g, "", "").is_ok(),
                _ => true,
            });
            return Ok(Observed {
                address: address.clone(),
                id,
                spec: Spec::SecurityGroup(made),
                status: Status::default(),
            });
        }
        Err(e) => {
            let e = err::sdk("CreateSecurityGroup", &res, e);
            if e.kind != ErrorKind::AlreadyExists {
                return Err(e);
            }
            let found = c
                .ec2
                .describe_security_groups()
                .filters(filter("group-name", &s.name))
                .filters(filter("vpc-id", &vpc_id))
                .send()
                .await
                .map_err(|e| err::sdk("DescribeSecurityGroups", &res, e))?;
            let Some(sg) = found.security_groups().first() else {
                return Err(e);
            };
            if !util::owned(&from_ec2_tags(sg.tags()), &project, &env) {
                return Err(err::exists_foreign("CreateSecurityGroup", &res));
            }
            sg.group_id().unwrap_or_default().to_string()
        }
    };
    let mut ctx2 = ctx.clone();
    ctx2.ids.insert(address.clone(), id.clone());
    ctx2.ids.insert(addr::security_group(&s.key), id.clone());
    let current = describe_sg(c, &id, &res)
        .await?
        .ok_or_else(|| err::not_found("DescribeSecurityGroups", &res, "not found right after it was created"))?;
    let mut gmap = GroupMap::from_ctx(&ctx2);
    gmap.insert(&id, &s.key);
    let cur_rules = rules_of(current.ip_permissions(), &gmap);
    // At create time, rules whose source group does not exist yet are left
    // for update() (the executor creates every group first).
    sync_rules(c, &id, &cur_rules, &s.ingress, &ctx2, true, &res).await?;
    let adopted_tags = from_ec2_tags(current.tags());
    if adopted_tags != s.tags {
        sync_tags(c, &id, &adopted_tags, &s.tags, &res).await?;
    }
    read_sg(c, address, &id, &gmap)
        .await?
        .ok_or_else(|| err::not_found("DescribeSecurityGroups", &res, "not found right after it was created"))
}

pub(crate) async fn sync_rules(
    c: &AwsCloud,
    id: &str,
    current: &BTreeSet<IngressRule>,
    desired: &BTreeSet<IngressRule>,
    ctx: &ApplyCtx,
    skip_unresolved: bool,
    res: &str,
) -> Result<(), CloudError> {
    let mut add = Vec::new();
    for r in desired.difference(current) {
        let gid = match &r.source {
            RuleSource::Cidr(_) => None,
            RuleSource::Group(k) => match util::group_id(ctx, k, "AuthorizeSecurityGroupIngress", res) {
                Ok(g) => Some(g),
                Err(_) if skip_unresolved => continue,
                Err(e) => return Err(e),
            },
        };
        add.push(permission(r, gid));
    }
    let mut revoke = Vec::new();
    for r in current.difference(desired) {
        let gid = match &r.source {
            RuleSource::Cidr(_) => None,
            RuleSource::Group(k) => Some(util::group_id(ctx, k, "RevokeSecurityGroupIngress", res)?),
        };
        revoke.push(permission(r, gid));
    }
    if !revoke.is_empty() {
        c.ec2
            .revoke_security_group_ingress()
            .group_id(id)
            .set_ip_permissions(Some(revoke))
            .send()
            .await
            .map_err(|e| err::sdk("RevokeSecurityGroupIngress", res, e))?;
    }
    if !add.is_empty() {
        match c
            .ec2
            .authorize_security_group_ingress()
            .group_id(id)
            .set_ip_permissions(Some(add))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let e = err::sdk("AuthorizeSecurityGroupIngress", res, e);
                // InvalidPermission.Duplicate: already there (a concurrent or repeated run).
                if e.kind != ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

pub(crate) async fn update_sg(
    c: &AwsCloud,
    id: &str,
    cur: &SecurityGroupSpec,
    des: &SecurityGroupSpec,
    ctx: &ApplyCtx,
) -> Result<(), CloudError> {
    let res = format!("security group {}", des.name);
    if cur.name != des.name || cur.description != des.description || cur.vpc != des.vpc {
        return Err(err::other(
            "update",
            &res,
            "a security group's name, description and VPC cannot change in place: it must be replaced",
        ));
    }
    let mut ctx2 = ctx.clone();
    ctx2.ids.insert(addr::security_group(&des.key), id.to_string());
    sync_rules(c, id, &cur.ingress, &des.ingress, &ctx2, false, &res).await?;
    sync_tags(c, id, &cur.tags, &des.tags, &res).await
}

pub(crate) async fn delete_sg(c: &AwsCloud, current: &Observed) -> Result<(), CloudError> {
    let res = util::describe(&current.address, &current.spec);
    let Some(sg) = describe_sg(c, &current.id, &res).await? else {
        return Ok(());
    };
    // Rules naming other groups would keep those groups referenced: revoke them first.
    let only_groups = |perms: &[IpPermission]| -> Vec<IpPermission> {
        perms
            .iter()
            .filter(|p| !p.user_id_group_pairs().is_empty())
            .map(|p| {
                IpPermission::builder()
                    .set_ip_protocol(p.ip_protocol().map(str::to_string))
                    .set_from_port(p.from_port())
                    .set_to_port(p.to_port())
                    .set_user_id_group_pairs(Some(p.user_id_group_pairs().to_vec()))
                    .build()
            })
            .collect()
    };
    // A rule whose group is already gone is nothing to revoke.
    let forgive = |e: CloudError| if e.kind == ErrorKind::NotFound { Ok(()) } else { Err(e) };
    let ingress = only_groups(sg.ip_permissions());
    if !ingress.is_empty() {
        c.ec2
            .revoke_security_group_ingress()
            .group_id(&current.id)
            .set_ip_permissions(Some(ingress))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err::sdk("RevokeSecurityGroupIngress", &res, e))
            .or_else(forgive)?;
    }
    let egress = only_groups(sg.ip_permissions_egress());
    if !egress.is_empty() {
        c.ec2
            .revoke_security_group_egress()
            .group_id(&current.id)
            .set_ip_permissions(Some(egress))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err::sdk("RevokeSecurityGroupEgress", &res, e))
            .or_else(forgive)?;
    }
    c.ec2
        .delete_security_group()
        .group_id(&current.id)
        .send()
        .await
        .map_err(|e| err::sdk("DeleteSecurityGroup", &res, e))?;
    Ok(())
}

// ---------------------------------------------------------------- the kind

impl AwsKind for SecurityGroupSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(10);

    async fn list(_c: &AwsCloud, _scope: &Scope) -> Result<kinds::Listing, CloudError> {
        // Found with the other kinds in discover.rs: security groups are found first: their id → key map is what every other kind's spec is read with.
        Ok(kinds::Listing::default())
    }

    async fn read(
        c: &AwsCloud,
        address: &Address,
        id: &str,
        _spec: &Self,
        gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        read_sg(c, address, id, gmap).await
    }

    async fn create(
        c: &AwsCloud,
        address: &Address,
        spec: &Self,
        ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        create_sg(c, address, spec, ctx).await
    }

    async fn update(
        c: &AwsCloud,
        current: &Observed,
        was: &Self,
        desired: &Self,
        ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        update_sg(c, &current.id, was, desired, ctx).await?;
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<(), CloudError> {
        delete_sg(c, current).await
    }

    async fn status(c: &AwsCloud, current: &Observed, spec: &Self) -> Result<Option<Status>, CloudError> {
        kinds::status_by_read(c, current, spec).await
    }

    fn ready(_spec: &Self, _status: &Status) -> bool {
        true
    }
}
