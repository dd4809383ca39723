//! EC2: security groups, launch templates, fixed instances.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, Instance, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, IpPermission, IpRange, Ipv6Range, LaunchTemplate,
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateHttpTokensState,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateVersion,
    RequestLaunchTemplateData, ResourceType, SecurityGroup, Tag, TagSpecification, UserIdGroupPair, VolumeType,
};
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind};
use fabrs_config::revision::or_none;
use fabrs_config::{Revision, RoleKind};
use fabrs_plan::addr::{self, TAG_ROLE};
use fabrs_plan::resource::{
    Address, IngressRule, InstanceSpec, LaunchSpec, LaunchTemplateSpec, Observed, RuleSource, SecurityGroupSpec, Spec,
    Status, Tags, VpcRef,
};

use crate::util::{self, GroupMap};
use crate::{AwsCloud, VpcInfo, err};

pub(crate) fn ec2_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub(crate) fn from_ec2_tags(tags: &[Tag]) -> Tags {
    util::clean_tags(tags.iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))))
}

fn tag_spec(rt: ResourceType, tags: &Tags) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

pub(crate) fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The tag filters that select one environment's resources.
pub(crate) fn owner_filters(project: &str, environment: &str) -> Vec<Filter> {
    vec![
        filter(&format!("tag:{}", addr::TAG_PROJECT), project),
        filter(&format!("tag:{}", addr::TAG_ENVIRONMENT), environment),
        filter(&format!("tag:{}", addr::TAG_MANAGED_BY), addr::MANAGED_BY),
    ]
}

/// Set and remove tags on an EC2 resource to reach `desired`.
async fn sync_tags(c: &AwsCloud, id: &str, current: &Tags, desired: &Tags, res: &str) -> Result<(), CloudError> {
    let (set, remove) = util::tag_diff(current, desired);
    if !set.is_empty() {
        c.ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(ec2_tags(&set)))
            .send()
            .await
            .map_err(|e| err::sdk("CreateTags", res, e))?;
    }
    if !remove.is_empty() {
        let tags = remove.iter().map(|k| Tag::builder().key(k).build()).collect();
        c.ec2
            .delete_tags()
            .resources(id)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| err::sdk("DeleteTags", res, e))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- security groups

fn port(p: Option<i32>, default: u16) -> u16 {
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

fn permission(rule: &IngressRule, group_id: Option<String>) -> IpPermission {
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

async fn describe_sg(c: &AwsCloud, id: &str, res: &str) -> Result<Option<SecurityGroup>, CloudError> {
    match c.ec2.describe_security_groups().group_ids(id).send().await {
        Ok(o) => Ok(o.security_groups().first().cloned()),
        Err(e) => {
            let e = err::sdk("DescribeSecurityGroups", res, e);
            if e.kind == ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
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

async fn sync_rules(
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

// ---------------------------------------------------------------- launch templates

async fn lt_data(
    c: &AwsCloud,
    l: &LaunchSpec,
    ctx: &ApplyCtx,
    op: &str,
    res: &str,
) -> Result<RequestLaunchTemplateData, CloudError> {
    let ud = ctx
        .user_data
        .as_deref()
        .ok_or_else(|| err::other(op, res, "no user-data was given for it"))?;
    let sgs = util::group_ids(ctx, &l.security_groups, op, res)?;
    let root = c.root_device(&l.image_id).await;
    Ok(RequestLaunchTemplateData::builder()
        .image_id(&l.image_id)
        .instance_type(InstanceType::from(l.instance_type.as_str()))
        .set_security_group_ids(Some(sgs))
        .set_key_name(l.key_name.clone())
        .set_iam_instance_profile(l.instance_profile.as_ref().map(|n| {
            aws_sdk_ec2::types::LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(n)
                .build()
        }))
        .user_data(util::b64(ud))
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(root)
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(l.volume_gb as i32)
                        .volume_type(VolumeType::from(l.volume_type.as_str()))
                        .encrypted(l.volume_encrypted)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        // IMDSv2 only, one hop (see `resource::IMDS_HOP_LIMIT`: no containers).
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                .http_tokens(LaunchTemplateHttpTokensState::from(l.metadata_http_tokens.as_str()))
                .http_put_response_hop_limit(l.metadata_hop_limit as i32)
                .build(),
        )
        .build())
}

pub(crate) fn lt_to_observed(
    lt: &LaunchTemplate,
    ver: Option<&LaunchTemplateVersion>,
    gmap: &GroupMap,
) -> Option<Observed> {
    let tags = from_ec2_tags(lt.tags());
    let role = RoleKind::parse(tags.get(TAG_ROLE)?)?;
    let data = ver.and_then(|v| v.launch_template_data());
    let ud = data
        .and_then(|d| d.user_data())
        .and_then(util::unb64)
        .unwrap_or_default();
    let (_, sha, rev) = addr::parse_user_data_markers(&ud);
    let rev = rev
        .or_else(|| {
            ver.and_then(|v| v.version_description())
                .and_then(|d| d.strip_prefix("revision "))
                .map(str::to_string)
        })
        .as_deref()
        .and_then(Revision::read_back);
    let ebs = data.and_then(|d| d.block_device_mappings().iter().find_map(|b| b.ebs()));
    let meta = data.and_then(|d| d.metadata_options());
    let launch = LaunchSpec {
        role,
        image_id: data.and_then(|d| d.image_id()).unwrap_or_default().to_string(),
        instance_type: data
            .and_then(|d| d.instance_type())
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        security_groups: gmap.keys(
            data.map(|d| d.security_group_ids())
                .unwrap_or_default()
                .iter()
                .map(String::as_str),
        ),
        key_name: data.and_then(|d| d.key_name()).map(str::to_string),
        instance_profile: data.and_then(|d| d.iam_instance_profile()).and_then(|p| {
            p.name()
                .map(str::to_string)
                .or_else(|| p.arn().map(util::profile_name_of_arn))
        }),
        volume_gb: ebs.and_then(|e| e.volume_size()).unwrap_or(0).max(0) as u32,
        volume_type: ebs
            .and_then(|e| e.volume_type())
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        volume_encrypted: ebs.and_then(|e| e.encrypted()).unwrap_or(false),
        metadata_http_tokens: meta
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        metadata_hop_limit: meta.and_then(|m| m.http_put_response_hop_limit()).unwrap_or(0).max(0) as u32,
        user_data_sha256: sha,
        revision: rev,
    };
    let version = ver
        .and_then(|v| v.version_number())
        .map(|n| n.to_string())
        .unwrap_or_default();
    Some(Observed {
        address: addr::launch_template(role),
        id: lt.launch_template_id()?.to_string(),
        spec: Spec::LaunchTemplate(LaunchTemplateSpec {
            name: lt.launch_template_name().unwrap_or_default().to_string(),
            launch,
            tags,
        }),
        status: Status {
            state: format!("version {version}"),
            ..Status::default()
        },
    })
}

pub(crate) async fn latest_version(
    c: &AwsCloud,
    id: &str,
    res: &str,
) -> Result<Option<LaunchTemplateVersion>, CloudError> {
    match c
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(id)
        .versions("$Latest")
        .send()
        .await
    {
        Ok(o) => Ok(o.launch_template_versions().first().cloned()),
        Err(e) => {
            let e = err::sdk("DescribeLaunchTemplateVersions", res, e);
            if e.kind == ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

pub(crate) async fn read_lt(
    c: &AwsCloud,
    _address: &Address,
    id: &str,
    gmap: &GroupMap,
) -> Result<Option<Observed>, CloudError> {
    let res = format!("launch template {id}");
    let lt = match c.ec2.describe_launch_templates().launch_template_ids(id).send().await {
        Ok(o) => o.launch_templates().first().cloned(),
        Err(e) => {
            let e = err::sdk("DescribeLaunchTemplates", &res, e);
            if e.kind == ErrorKind::NotFound {
                None
            } else {
                return Err(e);
            }
        }
    };
    let Some(lt) = lt else { return Ok(None) };
    let ver = latest_version(c, id, &res).await?;
    Ok(lt_to_observed(&lt, ver.as_ref(), gmap))
}

pub(crate) async fn create_lt(
    c: &AwsCloud,
    _address: &Address,
    s: &LaunchTemplateSpec,
    ctx: &ApplyCtx,
    _gmap: &GroupMap,
) -> Result<String, CloudError> {
    let res = format!("launch template {}", s.name);
    let data = lt_data(c, &s.launch, ctx, "CreateLaunchTemplate", &res).await?;
    let created = c
        .ec2
        .create_launch_template()
        .launch_template_name(&s.name)
        .version_description(format!("revision {}", or_none(s.launch.revision.as_ref())))
        .launch_template_data(data)
        .tag_specifications(tag_spec(ResourceType::LaunchTemplate, &s.tags))
        .send()
        .await;
    match created {
        Ok(o) => Ok(o
            .launch_template()
            .and_then(|l| l.launch_template_id())
            .unwrap_or_default()
            .to_string()),
        Err(e) => {
            let e = err::sdk("CreateLaunchTemplate", &res, e);
            if e.kind != ErrorKind::AlreadyExists {
                return Err(e);
            }
            let found = c
                .ec2
                .describe_launch_templates()
                .filters(filter("launch-template-name", &s.name))
                .send()
                .await
                .map_err(|e| err::sdk("DescribeLaunchTemplates", &res, e))?;
            let Some(lt) = found.launch_templates().first() else {
                return Err(e);
            };
            let (project, env) = util::owner_of(&s.tags);
            if !util::owned(&from_ec2_tags(lt.tags()), &project, &env) {
                return Err(err::exists_foreign("CreateLaunchTemplate", &res));
            }
            Ok(lt.launch_template_id().unwrap_or_default().to_string())
        }
    }
}

pub(crate) async fn update_lt(
    c: &AwsCloud,
    id: &str,
    cur: &LaunchTemplateSpec,
    des: &LaunchTemplateSpec,
    ctx: &ApplyCtx,
) -> Result<(), CloudError> {
    let res = format!("launch template {}", des.name);
    if cur.name != des.name {
        return Err(err::other(
            "update",
            &res,
            "a launch template's name cannot change in place: it must be replaced",
        ));
    }
    if cur.launch != des.launch {
        let data = lt_data(c, &des.launch, ctx, "CreateLaunchTemplateVersion", &res).await?;
        let v = c
            .ec2
            .create_launch_template_version()
            .launch_template_id(id)
            .version_description(format!("revision {}", or_none(des.launch.revision.as_ref())))
            .launch_template_data(data)
            .send()
            .await
            .map_err(|e| err::sdk("CreateLaunchTemplateVersion", &res, e))?;
        let n = v
            .launch_template_version()
            .and_then(|v| v.version_number())
            .unwrap_or_default();
        c.ec2
            .modify_launch_template()
            .launch_template_id(id)
            .default_version(n.to_string())
            .send()
            .await
            .map_err(|e| err::sdk("ModifyLaunchTemplate", &res, e))?;
    }
    sync_tags(c, id, &cur.tags, &des.tags, &res).await
}

pub(crate) async fn delete_lt(c: &AwsCloud, current: &Observed) -> Result<(), CloudError> {
    let res = util::describe(&current.address, &current.spec);
    c.ec2
        .delete_launch_template()
        .launch_template_id(&current.id)
        .send()
        .await
        .map_err(|e| err::sdk("DeleteLaunchTemplate", &res, e))?;
    Ok(())
}

// ---------------------------------------------------------------- instances

/// What an instance's spec needs beyond DescribeInstances.
#[derive(Default)]
pub(crate) struct InstanceExtras {
    /// Volume id → (size in GiB, type, encrypted).
    pub volumes: BTreeMap<String, (u32, String, bool)>,
    /// Instance id → user-data.
    pub user_data: BTreeMap<String, String>,
    /// Load balancer name → registered instance ids.
    pub lb_members: BTreeMap<String, BTreeSet<String>>,
}

pub(crate) fn live(i: &Instance) -> bool {
    !matches!(
        i.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("terminated" | "shutting-down")
    )
}

pub(crate) fn instance_status(i: &Instance) -> Status {
    Status {
        holds_data: false,
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        private_ip: i.private_ip_address().map(str::to_string),
        endpoint: None,
        members: vec![],
    }
}

/// An instance fabrs launched by itself (not an ASG's) → Observed.
pub(crate) fn instance_to_observed(
    i: &Instance,
    x: &InstanceExtras,
    gmap: &GroupMap,
    vpc: &VpcInfo,
) -> Option<Observed> {
    let tags = from_ec2_tags(i.tags());
    if i.tags().iter().any(|t| t.key() == Some("aws:autoscaling:groupName")) {
        return None;
    }
    let role = RoleKind::parse(tags.get(TAG_ROLE)?)?;
    let index: u32 = tags.get(addr::TAG_INDEX)?.parse().ok()?;
    let id = i.instance_id()?.to_string();
    // The root device's volume (moto names the root one device but maps
    // another: then the first EBS mapping).
    let maps = i.block_device_mappings();
    let root = maps
        .iter()
        .find(|b| b.device_name().is_some() && b.device_name() == i.root_device_name())
        .or_else(|| maps.iter().find(|b| b.ebs().is_some()));
    let (volume_gb, volume_type, volume_encrypted) = root
        .and_then(|b| b.ebs())
        .and_then(|e| e.volume_id())
        .and_then(|v| x.volumes.get(v))
        .cloned()
        .unwrap_or_default();
    let meta = i.metadata_options();
    let ud = x.user_data.get(&id).cloned().unwrap_or_default();
    let (_, sha, rev) = addr::parse_user_data_markers(&ud);
    let launch = LaunchSpec {
        role,
        image_id: i.image_id().unwrap_or_default().to_string(),
        instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        security_groups: gmap.keys(i.security_groups().iter().filter_map(|g| g.group_id())),
        key_name: i.key_name().map(str::to_string),
        volume_gb,
        instance_profile: i
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(util::profile_name_of_arn),
        volume_type,
        volume_encrypted,
        metadata_http_tokens: meta
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        metadata_hop_limit: meta.and_then(|m| m.http_put_response_hop_limit()).unwrap_or(0).max(0) as u32,
        user_data_sha256: sha,
        revision: rev
            .or_else(|| tags.get(addr::TAG_REVISION).cloned())
            .as_deref()
            .and_then(Revision::read_back),
    };
    let load_balancer = x
        .lb_members
        .iter()
        .find(|(_, m)| m.contains(&id))
        .map(|(n, _)| n.clone());
    let subnet = i
        .subnet_id()
        .filter(|s| !vpc.default_subnets.values().any(|d| d == s))
        .map(str::to_string);
    Some(Observed {
        address: addr::instance(role, index),
        id,
        spec: Spec::Instance(InstanceSpec {
            role,
            index,
            launch,
            load_balancer,
            subnet,
            tags,
        }),
        status: instance_status(i),
    })
}

/// Volume sizes and user-data of these instances, and who the load balancers hold.
pub(crate) async fn instance_extras(
    c: &AwsCloud,
    instances: &[Instance],
    lbs: &[String],
) -> Result<InstanceExtras, CloudError> {
    let mut x = InstanceExtras::default();
    let vol_ids: Vec<String> = instances
        .iter()
        .flat_map(|i| {
            i.block_device_mappings()
                .iter()
                .filter_map(|b| b.ebs().and_then(|e| e.volume_id()).map(str::to_string))
        })
        .collect();
    let volumes = async {
        if vol_ids.is_empty() {
            return Ok(vec![]);
        }
        c.ec2
            .describe_volumes()
            .set_volume_ids(Some(vol_ids.clone()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| err::sdk("DescribeVolumes", "instance root volumes", e))
    };
    let uds = futures::future::try_join_all(instances.iter().filter_map(|i| i.instance_id()).map(|id| async move {
        let res = format!("instance {id}");
        let o = c
            .ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| err::sdk("DescribeInstanceAttribute", &res, e))?;
        Ok::<_, CloudError>((
            id.to_string(),
            o.user_data()
                .and_then(|v| v.value())
                .and_then(util::unb64)
                .unwrap_or_default(),
        ))
    }));
    let members = crate::elb::members_of(c, lbs);
    let (volumes, uds, members) = futures::try_join!(volumes, uds, members)?;
    for v in volumes {
        if let (Some(id), Some(size)) = (v.volume_id(), v.size()) {
            x.volumes.insert(
                id.to_string(),
                (
                    size.max(0) as u32,
                    v.volume_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                    v.encrypted().unwrap_or(false),
                ),
            );
        }
    }
    x.user_data = uds.into_iter().collect();
    x.lb_members = members;
    Ok(x)
}

async fn describe_instance(c: &AwsCloud, id: &str) -> Result<Option<Instance>, CloudError> {
    match c.ec2.describe_instances().instance_ids(id).send().await {
        Ok(o) => Ok(o.reservations().iter().flat_map(|r| r.instances()).next().cloned()),
        Err(e) => {
            let e = err::sdk("DescribeInstances", &format!("instance {id}"), e);
            if e.kind == ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

pub(crate) async fn read_instance(
    c: &AwsCloud,
    _address: &Address,
    id: &str,
    gmap: &GroupMap,
) -> Result<Option<Observed>, CloudError> {
    let Some(i) = describe_instance(c, id).await? else {
        return Ok(None);
    };
    if !live(&i) {
        return Ok(None);
    }
    let vpc = c.default_vpc().await?.clone();
    let lbs = crate::elb::lbs_holding(c, id).await?;
    let x = instance_extras(c, std::slice::from_ref(&i), &lbs).await?;
    Ok(instance_to_observed(&i, &x, gmap, &vpc))
}

pub(crate) async fn instance_status_of(c: &AwsCloud, id: &str) -> Result<Option<Status>, CloudError> {
    Ok(describe_instance(c, id).await?.map(|i| instance_status(&i)))
}

pub(crate) async fn create_instance(
    c: &AwsCloud,
    address: &Address,
    s: &InstanceSpec,
    ctx: &ApplyCtx,
    _gmap: &GroupMap,
) -> Result<String, CloudError> {
    let res = format!(
        "instance {}",
        s.tags
            .get(addr::TAG_NAME)
            .cloned()
            .unwrap_or_else(|| address.to_string())
    );
    let (project, env) = util::owner_of(&s.tags);
    // A rerun after a crash: the instance may exist already (moto ignores
    // ClientToken, and a token only lives so long on AWS): find it by tags.
    let mut filters = owner_filters(&project, &env);
    filters.push(filter(&format!("tag:{TAG_ROLE}"), s.role.as_str()));
    filters.push(filter(&format!("tag:{}", addr::TAG_INDEX), &s.index.to_string()));
    filters.push(
        Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .build(),
    );
    let existing = c
        .ec2
        .describe_instances()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| err::sdk("DescribeInstances", &res, e))?;
    let found = existing
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| live(i))
        .and_then(|i| i.instance_id())
        .map(str::to_string);
    let id = match found {
        Some(id) => id,
        None => {
            let ud = ctx
                .user_data
                .as_deref()
                .ok_or_else(|| err::other("RunInstances", &res, "no user-data was given for it"))?;
            let sgs = util::group_ids(ctx, &s.launch.security_groups, "RunInstances", &res)?;
            let root = c.root_device(&s.launch.image_id).await;
            let base_token = util::digest(&format!(
                "{project}/{env}/{address}/{}/{}",
                or_none(s.launch.revision.as_ref()),
                util::digest(ud)
            ));
            let mut token = base_token.clone();
            let mut attempt = 0;
            loop {
                let out = util::while_profile_propagates("RunInstances", &res, || {
                    c.ec2
                        .run_instances()
                        .image_id(&s.launch.image_id)
                        .instance_type(InstanceType::from(s.launch.instance_type.as_str()))
                        .min_count(1)
                        .max_count(1)
                        .set_security_group_ids(Some(sgs.clone()))
                        .set_key_name(s.launch.key_name.clone())
                        .set_iam_instance_profile(s.launch.instance_profile.as_ref().map(|n| {
                            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                                .name(n)
                                .build()
                        }))
                        .set_subnet_id(s.subnet.clone())
                        .user_data(util::b64(ud))
                        .client_token(&token)
                        .block_device_mappings(
                            BlockDeviceMapping::builder()
                                .device_name(&root)
                                .ebs(
                                    EbsBlockDevice::builder()
                                        .volume_size(s.launch.volume_gb as i32)
                                        .volume_type(VolumeType::from(s.launch.volume_type.as_str()))
                                        .encrypted(s.launch.volume_encrypted)
                                        .delete_on_termination(true)
                                        .build(),
                                )
                                .build(),
                        )
                        // IMDSv2 only, one hop (see `resource::IMDS_HOP_LIMIT`: no containers).
                        .metadata_options(
                            InstanceMetadataOptionsRequest::builder()
                                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                                .http_tokens(HttpTokensState::from(s.launch.metadata_http_tokens.as_str()))
                                .http_put_response_hop_limit(s.launch.metadata_hop_limit as i32)
                                .build(),
                        )
                        .tag_specifications(tag_spec(ResourceType::Instance, &s.tags))
                        .tag_specifications(tag_spec(ResourceType::Volume, &s.tags))
                        .send()
                })
                .await?;
                let Some(i) = out.instances().first() else {
                    return Err(err::other("RunInstances", &res, "the response named no instance"));
                };
                // The same token once launched an instance that is gone now
                // (a replacement of the same content): launch anew.
                if !live(i) && attempt < 3 {
                    attempt += 1;
                    token = format!(
                        "{base_token}-{attempt}-{}",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0)
                    );
                    continue;
                }
                break i.instance_id().unwrap_or_default().to_string();
            }
        }
    };
    if let Some(lb) = &s.load_balancer {
        crate::elb::ensure_registered(c, lb, &id, &res).await?;
    }
    Ok(id)
}

pub(crate) async fn update_instance(
    c: &AwsCloud,
    id: &str,
    cur: &InstanceSpec,
    des: &InstanceSpec,
    ctx: &ApplyCtx,
) -> Result<(), CloudError> {
    let res = format!(
        "instance {}",
        des.tags.get(addr::TAG_NAME).cloned().unwrap_or_else(|| id.to_string())
    );
    let mut cur_launch = cur.launch.clone();
    cur_launch.security_groups = des.launch.security_groups.clone();
    if cur_launch != des.launch || cur.subnet != des.subnet || cur.role != des.role || cur.index != des.index {
        return Err(err::other(
            "update",
            &res,
            "an instance's image, type, key, volume, user-data and subnet cannot change in place: it must be replaced",
        ));
    }
    if cur.launch.security_groups != des.launch.security_groups {
        let sgs = util::group_ids(ctx, &des.launch.security_groups, "ModifyInstanceAttribute", &res)?;
        c.ec2
            .modify_instance_attribute()
            .instance_id(id)
            .set_groups(Some(sgs))
            .send()
            .await
            .map_err(|e| err::sdk("ModifyInstanceAttribute", &res, e))?;
    }
    if cur.load_balancer != des.load_balancer {
        if let Some(lb) = &cur.load_balancer {
            crate::elb::deregister(c, lb, id, &res).await?;
        }
        if let Some(lb) = &des.load_balancer {
            crate::elb::ensure_registered(c, lb, id, &res).await?;
        }
    }
    sync_tags(c, id, &cur.tags, &des.tags, &res).await
}

pub(crate) async fn delete_instance(c: &AwsCloud, id: &str) -> Result<(), CloudError> {
    c.ec2
        .terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| err::sdk("TerminateInstances", &format!("instance {id}"), e))?;
    Ok(())
}
