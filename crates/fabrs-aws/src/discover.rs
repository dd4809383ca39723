//! discover(): one Describe call (plus pages) per resource type, all at once;
//! then the few follow-up calls that classic ELB, launch templates, instances
//! and RDS groups need (tags, latest versions, volumes, user-data, parameters).
//! A scope that leaves kinds out (`Scope::kinds`, a deploy's) looks for none of them.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::Filter;
use fabrs_cloud::{CloudError, Scope};
use fabrs_config::RoleKind;
use fabrs_plan::addr;
use fabrs_plan::resource::{Foreign, Inventory, Kind, LaunchRef, Spec, VpcRef};

use crate::ec2::{from_ec2_tags, owner_filters};
use crate::util::{self, Claim, Claims, GroupMap};
use crate::{AwsCloud, err, rds};

fn values(name: &str, vals: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(vals.into_iter().collect()))
        .build()
}

fn live_states() -> Filter {
    values(
        "instance-state-name",
        ["pending", "running", "stopping", "stopped"].map(String::from),
    )
}

pub(crate) async fn discover(c: &AwsCloud, scope: &Scope) -> Result<Inventory, CloudError> {
    let (p, e) = (scope.project.as_str(), scope.environment.as_str());
    // The default VPC is looked up alongside everything else (only the
    // look-alike security groups need its id first).
    let vpc_of_scope = || async {
        Ok::<_, CloudError>(match &scope.vpc {
            VpcRef::Default => c.default_vpc().await?.vpc_id.clone(),
            VpcRef::Id(id) => id.clone(),
        })
    };
    let claims = Claims::new(scope);
    let sg_names = claims.wanted(Kind::SecurityGroup);
    let lb_names = claims.wanted(Kind::LoadBalancer);
    let lt_names = claims.wanted(Kind::LaunchTemplate);
    let asg_names = claims.wanted(Kind::AutoScalingGroup);
    let inst_names = claims.wanted(Kind::Instance);
    let group_names: Vec<&String> = scope
        .names
        .iter()
        .filter(|(a, _)| matches!(a.kind, Kind::DbSubnetGroup | Kind::DbParameterGroup))
        .map(|(_, n)| n)
        .collect();

    // Security groups, in one round: those of the wanted names (ours, and
    // look-alikes when in the scope's VPC) beside the ids this
    // environment's tag is on (DescribeTags: ours under other names, a role
    // the file no longer has). Only an id of the second not among the first
    // is read in a second round. A tag filter on DescribeSecurityGroups
    // itself would say the same; moto answers it in time that grows with
    // the square of the account's groups (1.1 s at 218 groups, against
    // 0.02 s for these two), and plan's wall with it (issue 11).
    let sgs_both = async {
        if !scope.wants(Kind::SecurityGroup) {
            return Ok((vec![], vec![]));
        }
        let describe = |f: Vec<Filter>| async move {
            c.ec2
                .describe_security_groups()
                .set_filters(Some(f))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| err::sdk("DescribeSecurityGroups", "security groups", e))
        };
        let by_name = async {
            if sg_names.is_empty() {
                return Ok(vec![]);
            }
            describe(vec![values("group-name", sg_names.iter().map(|(_, n)| n.clone()))]).await
        };
        let tagged = async {
            c.ec2
                .describe_tags()
                .filters(values("resource-type", ["security-group".to_string()]))
                .filters(values("key", [addr::TAG_ENVIRONMENT.to_string()]))
                .filters(values("value", [e.to_string()]))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| err::sdk("DescribeTags", "security groups", e))
        };
        let (scope_vpc, named, tagged) = futures::try_join!(vpc_of_scope(), by_name, tagged)?;
        let seen: BTreeSet<&str> = named.iter().filter_map(|g| g.group_id()).collect();
        let rest: BTreeSet<String> = tagged
            .iter()
            .filter_map(|t| t.resource_id())
            .filter(|id| !seen.contains(id))
            .map(str::to_string)
            .collect();
        // By filter, not GroupIds: a group deleted since its tags were
        // listed is not an error, just not there.
        let rest = if rest.is_empty() {
            vec![]
        } else {
            describe(vec![values("group-id", rest)]).await?
        };
        // Ours: those whose tags say so (checked again below, all three).
        let owned: Vec<aws_sdk_ec2::types::SecurityGroup> = named
            .iter()
            .chain(&rest)
            .filter(|g| claims.owned(&from_ec2_tags(g.tags())))
            .cloned()
            .collect();
        // Look-alikes: of our names, in the scope's VPC.
        let look_alikes = named
            .into_iter()
            .filter(|g| !scope_vpc.is_empty() && g.vpc_id() == Some(scope_vpc.as_str()))
            .collect();
        Ok::<_, CloudError>((owned, look_alikes))
    };
    // Classic ELBs cannot be filtered by tag: all of them, then their tags
    // (an owned one under another name, a look-alike under ours). The one of
    // the expected name is read whole meanwhile, so that it needs no third
    // round.
    let lbs = async {
        if !scope.wants(Kind::LoadBalancer) {
            return Ok(((vec![], Default::default()), None));
        }
        let listing = async {
            let all = crate::kinds::load_balancer::all_lbs(c).await?;
            let names: Vec<String> = all
                .iter()
                .filter_map(|d| d.load_balancer_name().map(str::to_string))
                .collect();
            let tags = crate::kinds::load_balancer::tags_of(c, &names).await?;
            Ok::<_, CloudError>((all, tags))
        };
        let expected = async {
            match lb_names.first() {
                Some((_, n)) => crate::kinds::load_balancer::prefetch(c, n).await,
                None => Ok(None),
            }
        };
        let ((all, tags), expected) = futures::try_join!(listing, expected)?;
        Ok::<_, CloudError>(((all, tags), expected))
    };
    let lcs = async {
        if !scope.wants(Kind::LaunchConfiguration) {
            return Ok(vec![]);
        }
        crate::kinds::launch_configuration::all_lcs(c).await
    };
    // Owned (by tags) and look-alikes (by name) of a kind are independent
    // lookups: each pair runs at once.
    let lts = async {
        if !scope.wants(Kind::LaunchTemplate) {
            return Ok((vec![], vec![]));
        }
        let owned = async {
            let owned: Vec<aws_sdk_ec2::types::LaunchTemplate> = c
                .ec2
                .describe_launch_templates()
                .set_filters(Some(owner_filters(p, e)))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| err::sdk("DescribeLaunchTemplates", "launch templates", e))?;
            let versions = futures::future::try_join_all(owned.iter().map(|lt| async move {
                let id = lt.launch_template_id().unwrap_or_default();
                crate::kinds::launch_template::latest_version(c, id, &format!("launch template {id}")).await
            }))
            .await?;
            Ok::<_, CloudError>(owned.into_iter().zip(versions).collect::<Vec<_>>())
        };
        let named = async {
            if lt_names.is_empty() {
                return Ok(vec![]);
            }
            c.ec2
                .describe_launch_templates()
                .filters(values("launch-template-name", lt_names.iter().map(|(_, n)| n.clone())))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| err::sdk("DescribeLaunchTemplates", "launch templates", e))
        };
        futures::try_join!(owned, named)
    };
    let asgs = async {
        if !scope.wants(Kind::AutoScalingGroup) {
            return Ok((vec![], vec![]));
        }
        let owned = async {
            c.asg
                .describe_auto_scaling_groups()
                .set_filters(Some(crate::kinds::autoscaling_group::asg_filters(p, e)))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| err::sdk("DescribeAutoScalingGroups", "auto scaling groups", e))
        };
        let named = async {
            if asg_names.is_empty() {
                return Ok(vec![]);
            }
            c.asg
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(asg_names.iter().map(|(_, n)| n.clone()).collect()))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| err::sdk("DescribeAutoScalingGroups", "auto scaling groups", e))
        };
        futures::try_join!(owned, named)
    };
    let instances = async {
        if !scope.wants(Kind::Instance) {
            return Ok((vec![], Default::default(), vec![]));
        }
        let owned = async {
            // The state first: a field, where the tags are a scan (moto).
            let mut f = vec![live_states()];
            f.extend(owner_filters(p, e));
            let owned: Vec<aws_sdk_ec2::types::Instance> = c
                .ec2
                .describe_instances()
                .set_filters(Some(f))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| err::sdk("DescribeInstances", "instances", e))?
                .into_iter()
                .flat_map(|r| r.instances().to_vec())
                .filter(crate::kinds::instance::live)
                .collect();
            // ASG members are reported by their group, not as resources.
            let fixed: Vec<aws_sdk_ec2::types::Instance> = owned
                .into_iter()
                .filter(|i| {
                    !i.tags().iter().any(|t| t.key() == Some("aws:autoscaling:groupName"))
                        && i.tags().iter().any(|t| t.key() == Some(addr::TAG_INDEX))
                })
                .collect();
            let extras = crate::kinds::instance::instance_extras(c, &fixed, &[]).await?;
            Ok::<_, CloudError>((fixed, extras))
        };
        let named = async {
            if inst_names.is_empty() {
                return Ok(vec![]);
            }
            c.ec2
                .describe_instances()
                .filters(values(
                    &format!("tag:{}", addr::TAG_NAME),
                    inst_names.iter().map(|(_, n)| n.clone()),
                ))
                .filters(live_states())
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| err::sdk("DescribeInstances", "instances", e))
                .map(|rs: Vec<aws_sdk_ec2::types::Reservation>| {
                    rs.into_iter().flat_map(|r| r.instances().to_vec()).collect()
                })
        };
        let ((fixed, extras), named) = futures::try_join!(owned, named)?;
        Ok::<_, CloudError>((fixed, extras, named))
    };
    let dbs = async {
        if !scope.wants(Kind::DbInstance) {
            return Ok(vec![]);
        }
        // By identifier, not the account's every instance (issue 11).
        crate::kinds::db_instance::all_dbs(c, &scope.db_identifiers).await
    };
    let subnet_groups = async {
        if !scope.wants(Kind::DbSubnetGroup) {
            return Ok(vec![]);
        }
        let all = crate::kinds::db_subnet_group::all_subnet_groups(c).await?;
        let cands: Vec<_> = all
            .into_iter()
            .filter(|g| rds::candidate(g.db_subnet_group_name().unwrap_or_default(), p, e, &group_names))
            .collect();
        let tags = futures::future::try_join_all(cands.iter().map(|g| {
            let name = g.db_subnet_group_name().unwrap_or_default().to_string();
            async move {
                rds::tags_of(
                    c,
                    g.db_subnet_group_arn().unwrap_or_default(),
                    &format!("DB subnet group {name}"),
                )
                .await
            }
        }))
        .await?;
        Ok::<_, CloudError>(cands.into_iter().zip(tags).collect::<Vec<_>>())
    };
    let parameter_groups = async {
        if !scope.wants(Kind::DbParameterGroup) {
            return Ok(vec![]);
        }
        let all = crate::kinds::db_parameter_group::all_parameter_groups(c).await?;
        let cands: Vec<_> = all
            .into_iter()
            .filter(|g| rds::candidate(g.db_parameter_group_name().unwrap_or_default(), p, e, &group_names))
            .collect();
        let details = futures::future::try_join_all(cands.iter().map(|g| {
            let name = g.db_parameter_group_name().unwrap_or_default().to_string();
            async move {
                let res = format!("DB parameter group {name}");
                // Tags and parameters at once; the parameters are kept (and
                // their errors reported) only when the tags say it is ours.
                let (tags, params) = futures::join!(
                    rds::tags_of(c, g.db_parameter_group_arn().unwrap_or_default(), &res),
                    crate::kinds::db_parameter_group::user_parameters(c, &name, &res)
                );
                let tags = tags?;
                let params = if util::owned(&tags, p, e) {
                    params?
                } else {
                    BTreeMap::new()
                };
                Ok::<_, CloudError>((tags, params))
            }
        }))
        .await?;
        Ok::<_, CloudError>(cands.into_iter().zip(details).collect::<Vec<_>>())
    };

    let (
        vpc,
        (sgs, sgs_named),
        ((lbs, lb_tags), lb_expected),
        lcs,
        (lts, lts_named),
        (asgs, asgs_named),
        (fixed, mut extras, inst_named),
        dbs,
        subnet_groups,
        parameter_groups,
        listed,
        image_parameters,
    ) = futures::try_join!(
        // Each on the heap: together they outgrow a test thread's 2 MiB stack.
        Box::pin(async { c.default_vpc().await.cloned() }),
        Box::pin(sgs_both),
        Box::pin(lbs),
        Box::pin(lcs),
        Box::pin(lts),
        Box::pin(asgs),
        Box::pin(instances),
        Box::pin(dbs),
        Box::pin(subnet_groups),
        Box::pin(parameter_groups),
        // The kinds that find themselves (`AwsKind::list`).
        Box::pin(c.list_all(scope)),
        Box::pin(crate::kinds::ssm_parameter::image_parameters(
            c,
            &scope.image_parameters
        )),
    )?;

    let mut inv = Inventory {
        image_parameters,
        ..Inventory::default()
    };
    let mut foreign: Vec<Foreign> = listed.foreign;
    for o in listed.owned {
        inv.resources.entry(o.address.clone()).or_insert(o);
    }

    // Group ids → keys, from the owned groups.
    let mut gmap = GroupMap::default();
    for sg in &sgs {
        let tags = from_ec2_tags(sg.tags());
        if let (true, Some(key), Some(id)) = (claims.owned(&tags), tags.get(addr::TAG_GROUP), sg.group_id()) {
            gmap.insert(id, key);
        }
    }
    for sg in &sgs {
        if claims.owned(&from_ec2_tags(sg.tags()))
            && let Some(o) = crate::kinds::security_group::sg_to_observed(sg, &gmap, &vpc)
        {
            inv.resources.entry(o.address.clone()).or_insert(o);
        }
    }
    for sg in &sgs_named {
        let owned = claims.owned(&from_ec2_tags(sg.tags()));
        let (name, id) = (sg.group_name().unwrap_or_default(), sg.group_id().unwrap_or_default());
        if let Claim::LookAlike(f) = claims.claim(Kind::SecurityGroup, owned, name, id) {
            foreign.push(f);
        }
    }

    // Load balancer: the owned one (preferring the expected name), with health.
    let want_lb = lb_names.first().map(|(_, n)| n.clone());
    let mut owned_lbs: Vec<_> = lbs
        .iter()
        .filter(|d| {
            lb_tags
                .get(d.load_balancer_name().unwrap_or_default())
                .is_some_and(|t| claims.owned(t))
        })
        .collect();
    owned_lbs.sort_by_key(|d| d.load_balancer_name() != want_lb.as_deref());
    let mut lb_health: BTreeMap<String, String> = BTreeMap::new();
    if let Some(d) = owned_lbs.first() {
        let tags = lb_tags
            .get(d.load_balancer_name().unwrap_or_default())
            .cloned()
            .unwrap_or_default();
        let o = match &lb_expected {
            Some(p) if p.description.load_balancer_name() == d.load_balancer_name() && p.tags == tags => {
                crate::kinds::load_balancer::from_prefetched(p, &gmap, &vpc)
            }
            _ => crate::kinds::load_balancer::complete(c, d, tags, &gmap).await?,
        };
        lb_health.extend(o.status.members.iter().map(|m| (m.id.clone(), m.health.clone())));
        inv.resources.insert(o.address.clone(), o);
    }
    for d in &lbs {
        let name = d.load_balancer_name().unwrap_or_default();
        let owned = lb_tags.get(name).is_some_and(|t| claims.owned(t));
        if let Claim::LookAlike(f) = claims.claim(Kind::LoadBalancer, owned, name, name) {
            foreign.push(f);
        }
    }
    extras.lb_members = lbs
        .iter()
        .filter_map(|d| {
            Some((
                d.load_balancer_name()?.to_string(),
                d.instances()
                    .iter()
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .collect(),
            ))
        })
        .collect();

    // Auto scaling groups (and which launch configuration each uses).
    let mut lc_roles: BTreeMap<String, RoleKind> = BTreeMap::new();
    for g in &asgs {
        if !claims.owned(&crate::kinds::autoscaling_group::asg_tags(g)) {
            continue;
        }
        if let Some(o) = crate::kinds::autoscaling_group::asg_to_observed(g, &lb_health, &vpc) {
            if let Spec::AutoScalingGroup(s) = &o.spec
                && let LaunchRef::Configuration(Some(n)) = &s.launch
            {
                lc_roles.insert(n.clone(), s.role);
            }
            inv.resources.entry(o.address.clone()).or_insert(o);
        }
    }
    for g in &asgs_named {
        let name = g.auto_scaling_group_name().unwrap_or_default();
        let owned = claims.owned(&crate::kinds::autoscaling_group::asg_tags(g));
        if let Claim::LookAlike(f) = claims.claim(Kind::AutoScalingGroup, owned, name, name) {
            foreign.push(f);
        }
    }

    // Launch configurations: owned by their user-data's owner line.
    let owner = addr::owner_value(p, e);
    for lc in &lcs {
        let name = lc.launch_configuration_name().unwrap_or_default();
        let prefixed =
            !scope.launch_configuration_prefix.is_empty() && name.starts_with(&scope.launch_configuration_prefix);
        let named = claims.address_of(Kind::LaunchConfiguration, name).is_some();
        if !prefixed && !named && !lc_roles.contains_key(name) {
            continue;
        }
        let role = lc_roles.get(name).copied().or_else(|| {
            RoleKind::parse(&crate::kinds::launch_configuration::role_from_lc_name(
                name,
                &scope.launch_configuration_prefix,
            ))
        });
        // Owned: a role of fabrs's, and this environment's owner line.
        let owned = role
            .map(|role| (role, crate::kinds::launch_configuration::lc_to_spec(lc, role, &gmap)))
            .filter(|(_, (lc_owner, _))| lc_owner.as_deref() == Some(owner.as_str()));
        let claim = claims.claim(Kind::LaunchConfiguration, owned.is_some(), name, name);
        if let Some((role, (_, spec))) = owned {
            if lc_roles.contains_key(name) {
                let address = addr::launch_configuration(role);
                if let Some(ud) = lc.user_data().and_then(util::unb64) {
                    inv.user_data.insert(address.clone(), ud);
                }
                inv.resources.insert(
                    address.clone(),
                    fabrs_plan::resource::Observed {
                        address,
                        id: name.to_string(),
                        spec: Spec::LaunchConfiguration(spec.clone()),
                        status: fabrs_plan::resource::Status {
                            state: "exists".into(),
                            ..Default::default()
                        },
                    },
                );
            }
            inv.launch_configurations.insert(name.to_string(), spec);
        } else if let Claim::LookAlike(f) = claim {
            foreign.push(f);
        }
    }

    // Launch templates.
    for (lt, ver) in &lts {
        if claims.owned(&from_ec2_tags(lt.tags()))
            && let Some(o) = crate::kinds::launch_template::lt_to_observed(lt, ver.as_ref(), &gmap)
        {
            if let Some(ud) = ver
                .as_ref()
                .and_then(|v| v.launch_template_data())
                .and_then(|d| d.user_data())
                .and_then(util::unb64)
            {
                inv.user_data.insert(o.address.clone(), ud);
            }
            inv.resources.entry(o.address.clone()).or_insert(o);
        }
    }
    for lt in &lts_named {
        let owned = claims.owned(&from_ec2_tags(lt.tags()));
        let (name, id) = (
            lt.launch_template_name().unwrap_or_default(),
            lt.launch_template_id().unwrap_or_default(),
        );
        if let Claim::LookAlike(f) = claims.claim(Kind::LaunchTemplate, owned, name, id) {
            foreign.push(f);
        }
    }

    // Fixed instances.
    for i in &fixed {
        if let Some(o) = crate::kinds::instance::instance_to_observed(i, &extras, &gmap, &vpc) {
            if let Some(ud) = extras.user_data.get(&o.id) {
                inv.user_data.insert(o.address.clone(), ud.clone());
            }
            inv.resources.entry(o.address.clone()).or_insert(o);
        }
    }
    let owned_ids: BTreeSet<&str> = fixed.iter().filter_map(|i| i.instance_id()).collect();
    for i in inst_named.iter().filter(|i| crate::kinds::instance::live(i)) {
        let tags = from_ec2_tags(i.tags());
        let id = i.instance_id().unwrap_or_default();
        let owned = owned_ids.contains(id) || claims.owned(&tags);
        let name = tags.get(addr::TAG_NAME).cloned().unwrap_or_default();
        if let Claim::LookAlike(f) = claims.claim(Kind::Instance, owned, &name, id) {
            foreign.push(f);
        }
    }

    // Databases.
    for d in dbs.iter().filter(|d| crate::kinds::db_instance::db_live(d)) {
        let id = d.db_instance_identifier().unwrap_or_default();
        let owned = claims.owned(&crate::kinds::db_instance::db_tags(d));
        match claims.claim(Kind::DbInstance, owned, id, id) {
            Claim::Owned => {
                if let Some(o) = crate::kinds::db_instance::db_to_observed(d, &gmap) {
                    inv.resources.entry(o.address.clone()).or_insert(o);
                }
            }
            Claim::LookAlike(f) => foreign.push(f),
            Claim::Unrelated => {}
        }
    }
    for (g, tags) in subnet_groups {
        let name = g.db_subnet_group_name().unwrap_or_default().to_string();
        match claims.claim(Kind::DbSubnetGroup, claims.owned(&tags), &name, &name) {
            Claim::Owned => {
                let o = crate::kinds::db_subnet_group::subnet_group_to_observed(&g, tags, &vpc);
                inv.resources.entry(o.address.clone()).or_insert(o);
            }
            Claim::LookAlike(f) => foreign.push(f),
            Claim::Unrelated => {}
        }
    }
    for (g, (tags, params)) in parameter_groups {
        let name = g.db_parameter_group_name().unwrap_or_default().to_string();
        match claims.claim(Kind::DbParameterGroup, claims.owned(&tags), &name, &name) {
            Claim::Owned => {
                let o = crate::kinds::db_parameter_group::parameter_group_to_observed(&g, tags, params);
                inv.resources.entry(o.address.clone()).or_insert(o);
            }
            Claim::LookAlike(f) => foreign.push(f),
            Claim::Unrelated => {}
        }
    }

    foreign.sort_by(|a, b| (&a.address, &a.id).cmp(&(&b.address, &b.id)));
    foreign.dedup();
    inv.foreign = foreign;
    Ok(inv)
}
