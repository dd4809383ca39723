//! The auto scaling group kind: its launch, capacity, load balancer and health
//! check; its members with the load balancer's health.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter, LaunchTemplateSpecification, Tag};
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind, Scope};
use fabrs_config::RoleKind;
use fabrs_plan::addr::{self, TAG_ROLE};
use fabrs_plan::resource::{Address, AutoScalingGroupSpec, LaunchRef, Member, Observed, Spec, Status, Tags};

use crate::kinds::{self, AwsKind};
use crate::util::{self, GroupMap};
use crate::{AwsCloud, VpcInfo, err};

pub(crate) fn asg_filters(project: &str, environment: &str) -> Vec<Filter> {
    // The environment first, as in `ec2::owner_filters`.
    [
        (addr::TAG_ENVIRONMENT, environment),
        (addr::TAG_PROJECT, project),
        (addr::TAG_MANAGED_BY, addr::MANAGED_BY),
    ]
    .iter()
    .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(*v).build())
    .collect()
}

pub(crate) fn asg_tags(g: &AutoScalingGroup) -> Tags {
    util::clean_tags(
        g.tags()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))),
    )
}

pub(crate) fn asg_members(g: &AutoScalingGroup, health: &BTreeMap<String, String>) -> Vec<Member> {
    let on_lb = !g.load_balancer_names().is_empty();
    let mut m: Vec<Member> = g
        .instances()
        .iter()
        .filter_map(|i| {
            let id = i.instance_id()?.to_string();
            Some(Member {
                health: if on_lb {
                    health.get(&id).cloned().unwrap_or_default()
                } else {
                    String::new()
                },
                state: i.lifecycle_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                launch: i
                    .launch_configuration_name()
                    .map(str::to_string)
                    .or_else(|| {
                        i.launch_template().map(|t| {
                            format!(
                                "{}:{}",
                                t.launch_template_name().unwrap_or_default(),
                                t.version().unwrap_or_default()
                            )
                        })
                    })
                    .unwrap_or_default(),
                id,
            })
        })
        .collect();
    m.sort();
    m
}

pub(crate) fn asg_to_observed(
    g: &AutoScalingGroup,
    health: &BTreeMap<String, String>,
    vpc: &VpcInfo,
) -> Option<Observed> {
    let tags = asg_tags(g);
    let role = RoleKind::parse(tags.get(TAG_ROLE)?)?;
    let name = g.auto_scaling_group_name()?.to_string();
    let launch = match (g.launch_configuration_name(), g.launch_template()) {
        (Some(lc), _) => LaunchRef::Configuration(Some(lc.to_string())),
        (None, Some(t)) => LaunchRef::Template {
            name: t.launch_template_name().unwrap_or_default().to_string(),
            version: t.version().map(str::to_string),
        },
        (None, None) => LaunchRef::Configuration(None),
    };
    let mut lbs: Vec<String> = g.load_balancer_names().to_vec();
    lbs.sort();
    let subnets: Vec<String> = g
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Some(Observed {
        address: addr::autoscaling_group(role),
        id: name.clone(),
        spec: Spec::AutoScalingGroup(AutoScalingGroupSpec {
            name,
            role,
            min: g.min_size().unwrap_or(0).max(0) as u32,
            max: g.max_size().unwrap_or(0).max(0) as u32,
            desired: g.desired_capacity().unwrap_or(0).max(0) as u32,
            launch,
            load_balancers: lbs,
            subnets: vpc.normalise_subnets(subnets),
            health_check_type: g.health_check_type().unwrap_or("EC2").to_string(),
            health_check_grace_secs: g.health_check_grace_period().unwrap_or(0).max(0) as u32,
            tags,
        }),
        status: Status {
            holds_data: false,
            template_version: None,
            state: g.status().unwrap_or("active").to_string(),
            private_ip: None,
            endpoint: None,
            members: asg_members(g, health),
        },
    })
}

pub(crate) async fn describe_asg(c: &AwsCloud, name: &str) -> Result<Option<AutoScalingGroup>, CloudError> {
    let o = c
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| err::sdk("DescribeAutoScalingGroups", &format!("auto scaling group {name}"), e))?;
    Ok(o.auto_scaling_groups().first().cloned())
}

/// ELB health of the instances of the load balancers a group is attached to.
pub(crate) async fn lb_health(c: &AwsCloud, g: &AutoScalingGroup) -> Result<BTreeMap<String, String>, CloudError> {
    let mut out = BTreeMap::new();
    for lb in g.load_balancer_names() {
        out.extend(crate::kinds::load_balancer::health_of(c, lb).await?);
    }
    Ok(out)
}

pub(crate) async fn read_asg(c: &AwsCloud, _address: &Address, name: &str) -> Result<Option<Observed>, CloudError> {
    let Some(g) = describe_asg(c, name).await? else {
        return Ok(None);
    };
    let health = lb_health(c, &g).await?;
    let vpc = c.default_vpc().await?;
    Ok(asg_to_observed(&g, &health, vpc))
}

pub(crate) async fn asg_status(c: &AwsCloud, name: &str) -> Result<Option<Status>, CloudError> {
    let Some(g) = describe_asg(c, name).await? else {
        return Ok(None);
    };
    let health = lb_health(c, &g).await?;
    Ok(Some(Status {
        holds_data: false,
        template_version: None,
        state: g.status().unwrap_or("active").to_string(),
        private_ip: None,
        endpoint: None,
        members: asg_members(&g, &health),
    }))
}

pub(crate) fn lc_name(
    s: &AutoScalingGroupSpec,
    n: &Option<String>,
    ctx: &ApplyCtx,
    res: &str,
) -> Result<String, CloudError> {
    if let Some(n) = n {
        return Ok(n.clone());
    }
    ctx.ids
        .get(&addr::launch_configuration(s.role))
        .cloned()
        .ok_or_else(|| {
            err::not_found(
                "CreateAutoScalingGroup",
                res,
                format!(
                    "launch_configuration.{} has no name yet (it must be created first)",
                    s.role
                ),
            )
        })
}

pub(crate) fn lt_ref(name: &str, version: &Option<String>) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .launch_template_name(name)
        .version(version.clone().unwrap_or_else(|| "$Latest".into()))
        .build()
}

pub(crate) async fn create_asg(
    c: &AwsCloud,
    _address: &Address,
    s: &AutoScalingGroupSpec,
    ctx: &ApplyCtx,
) -> Result<String, CloudError> {
    let res = format!("auto scaling group {}", s.name);
    let tags: Vec<Tag> = s
        .tags
        .iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .propagate_at_launch(true)
                .resource_id(&s.name)
                .resource_type("auto-scaling-group")
                .build()
        })
        .collect();
    let mut req = c
        .asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(&s.name)
        .min_size(s.min as i32)
        .max_size(s.max as i32)
        .desired_capacity(s.desired as i32)
        .set_load_balancer_names(Some(s.load_balancers.clone()))
        .health_check_type(&s.health_check_type)
        .health_check_grace_period(s.health_check_grace_secs as i32)
        .set_tags(Some(tags));
    req = match &s.launch {
        LaunchRef::Configuration(n) => req.launch_configuration_name(lc_name(s, n, ctx, &res)?),
        LaunchRef::Template { name, version } => req.launch_template(lt_ref(name, version)),
    };
    if s.subnets.is_empty() {
        let vpc = c.default_vpc().await?;
        if vpc.default_subnets.is_empty() {
            return Err(err::not_found(
                "CreateAutoScalingGroup",
                &res,
                "no subnets given and this account/region has no default VPC subnets",
            ));
        }
        req = req.set_availability_zones(Some(vpc.zones()));
    } else {
        req = req.vpc_zone_identifier(s.subnets.join(","));
    }
    match req.send().await {
        Ok(_) => Ok(s.name.clone()),
        Err(e) => {
            let e = err::sdk("CreateAutoScalingGroup", &res, e);
            if e.kind != ErrorKind::AlreadyExists {
                return Err(e);
            }
            let Some(g) = describe_asg(c, &s.name).await? else {
                return Err(e);
            };
            let (project, env) = util::owner_of(&s.tags);
            if !util::owned(&asg_tags(&g), &project, &env) {
                return Err(err::exists_foreign("CreateAutoScalingGroup", &res));
            }
            Ok(s.name.clone())
        }
    }
}

pub(crate) async fn update_asg(
    c: &AwsCloud,
    cur: &AutoScalingGroupSpec,
    des: &AutoScalingGroupSpec,
    ctx: &ApplyCtx,
) -> Result<(), CloudError> {
    let res = format!("auto scaling group {}", des.name);
    if cur.name != des.name {
        return Err(err::other(
            "update",
            &res,
            "an auto scaling group's name cannot change in place: it must be replaced",
        ));
    }
    let mut req = c
        .asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(&des.name)
        .min_size(des.min as i32)
        .max_size(des.max as i32)
        .desired_capacity(des.desired as i32)
        .health_check_type(&des.health_check_type)
        .health_check_grace_period(des.health_check_grace_secs as i32);
    req = match &des.launch {
        LaunchRef::Configuration(n) => req.launch_configuration_name(lc_name(des, n, ctx, &res)?),
        LaunchRef::Template { name, version } => req.launch_template(lt_ref(name, version)),
    };
    if cur.subnets != des.subnets {
        if des.subnets.is_empty() {
            req = req.set_availability_zones(Some(c.default_vpc().await?.zones()));
        } else {
            req = req.vpc_zone_identifier(des.subnets.join(","));
        }
    }
    req.send()
        .await
        .map_err(|e| err::sdk("UpdateAutoScalingGroup", &res, e))?;
    let attach: Vec<String> = des
        .load_balancers
        .iter()
        .filter(|l| !cur.load_balancers.contains(l))
        .cloned()
        .collect();
    let detach: Vec<String> = cur
        .load_balancers
        .iter()
        .filter(|l| !des.load_balancers.contains(l))
        .cloned()
        .collect();
    if !attach.is_empty() {
        c.asg
            .attach_load_balancers()
            .auto_scaling_group_name(&des.name)
            .set_load_balancer_names(Some(attach))
            .send()
            .await
            .map_err(|e| err::sdk("AttachLoadBalancers", &res, e))?;
    }
    if !detach.is_empty() {
        c.asg
            .detach_load_balancers()
            .auto_scaling_group_name(&des.name)
            .set_load_balancer_names(Some(detach))
            .send()
            .await
            .map_err(|e| err::sdk("DetachLoadBalancers", &res, e))?;
    }
    let (set, remove) = util::tag_diff(&cur.tags, &des.tags);
    let tag = |k: &str, v: Option<&str>| {
        Tag::builder()
            .key(k)
            .set_value(v.map(str::to_string))
            .propagate_at_launch(true)
            .resource_id(&des.name)
            .resource_type("auto-scaling-group")
            .build()
    };
    if !set.is_empty() {
        c.asg
            .create_or_update_tags()
            .set_tags(Some(set.iter().map(|(k, v)| tag(k, Some(v))).collect()))
            .send()
            .await
            .map_err(|e| err::sdk("CreateOrUpdateTags", &res, e))?;
    }
    if !remove.is_empty() {
        c.asg
            .delete_tags()
            .set_tags(Some(remove.iter().map(|k| tag(k, None)).collect()))
            .send()
            .await
            .map_err(|e| err::sdk("DeleteTags", &res, e))?;
    }
    Ok(())
}

pub(crate) async fn delete_asg(c: &AwsCloud, name: &str) -> Result<(), CloudError> {
    c.asg
        .delete_auto_scaling_group()
        .auto_scaling_group_name(name)
        .force_delete(true)
        .send()
        .await
        .map_err(|e| err::sdk("DeleteAutoScalingGroup", &format!("auto scaling group {name}"), e))?;
    Ok(())
}

// ---------------------------------------------------------------- the kind

impl AwsKind for AutoScalingGroupSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(5);

    async fn list(_c: &AwsCloud, _scope: &Scope) -> Result<kinds::Listing, CloudError> {
        // Found with the other kinds in discover.rs: a group's members carry the load balancer's health, and it names the launch configuration it uses.
        Ok(kinds::Listing::default())
    }

    async fn read(
        c: &AwsCloud,
        address: &Address,
        id: &str,
        _spec: &Self,
        _gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        read_asg(c, address, id).await
    }

    async fn create(
        c: &AwsCloud,
        address: &Address,
        spec: &Self,
        ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        let id = create_asg(c, address, spec, ctx).await?;
        let mut made = spec.clone();
        // A group made before its configuration's name was known was given
        // the one just made (`lc_name`).
        if let LaunchRef::Configuration(n @ None) = &mut made.launch
            && let Some(made_lc) = ctx.ids.get(&fabrs_plan::addr::launch_configuration(made.role))
        {
            *n = Some(made_lc.clone());
        }
        Ok(kinds::made(address, id, made))
    }

    async fn update(
        c: &AwsCloud,
        current: &Observed,
        was: &Self,
        desired: &Self,
        ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        update_asg(c, was, desired, ctx).await?;
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<(), CloudError> {
        delete_asg(c, &current.id).await
    }

    async fn status(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<Option<Status>, CloudError> {
        asg_status(c, &current.id).await
    }

    fn ready(spec: &Self, status: &Status) -> bool {
        status.members.iter().filter(|m| m.state == "InService").count() >= spec.desired as usize
    }
}
