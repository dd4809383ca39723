//! The fixed instance kind (EC2): the cache server, launched by RunInstances with
//! a deterministic client token, and registered with the load balancer when a
//! fixed web server.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, Instance, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, ResourceType, VolumeType,
};
use fabrs_cloud::{ApplyCtx, CloudError, Scope};
use fabrs_config::revision::or_none;
use fabrs_config::{Revision, RoleKind};
use fabrs_plan::addr::{self, TAG_ROLE};
use fabrs_plan::resource::{Address, InstanceSpec, LaunchSpec, Observed, Spec, Status};

use crate::ec2::*;
use crate::kinds::{self, AwsKind};
use crate::util::{self, GroupMap};
use crate::{AwsCloud, VpcInfo, err};

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
        template_version: None,
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
    let members = crate::kinds::load_balancer::members_of(c, lbs);
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

pub(crate) async fn describe_instance(c: &AwsCloud, id: &str) -> Result<Option<Instance>, CloudError> {
    Ok(err::found(
        "DescribeInstances",
        &format!("instance {id}"),
        c.ec2.describe_instances().instance_ids(id).send().await,
    )?
    .and_then(|o| o.reservations().iter().flat_map(|r| r.instances()).next().cloned()))
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
    let lbs = crate::kinds::load_balancer::lbs_holding(c, id).await?;
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
        crate::kinds::load_balancer::ensure_registered(c, lb, &id, &res).await?;
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
            crate::kinds::load_balancer::deregister(c, lb, id, &res).await?;
        }
        if let Some(lb) = &des.load_balancer {
            crate::kinds::load_balancer::ensure_registered(c, lb, id, &res).await?;
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

// ---------------------------------------------------------------- the kind

impl AwsKind for InstanceSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(5);

    async fn list(_c: &AwsCloud, _scope: &Scope) -> Result<kinds::Listing, CloudError> {
        // Found with the other kinds in discover.rs: a fixed instance's spec names its security groups by key and its load balancer registration.
        Ok(kinds::Listing::default())
    }

    async fn read(
        c: &AwsCloud,
        address: &Address,
        id: &str,
        _spec: &Self,
        gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        read_instance(c, address, id, gmap).await
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
            create_instance(c, address, spec, ctx, gmap).await?,
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
        update_instance(c, &current.id, was, desired, ctx).await?;
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<(), CloudError> {
        delete_instance(c, &current.id).await
    }

    async fn status(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<Option<Status>, CloudError> {
        instance_status_of(c, &current.id).await
    }

    fn ready(_spec: &Self, status: &Status) -> bool {
        status.state == "running" && status.private_ip.is_some()
    }
}
