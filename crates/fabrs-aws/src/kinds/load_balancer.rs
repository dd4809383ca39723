//! The classic load balancer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_elasticloadbalancing::types::{
    ConnectionDraining, ConnectionSettings, CrossZoneLoadBalancing, HealthCheck, Instance as LbInstance, Listener,
    LoadBalancerAttributes, LoadBalancerDescription, PolicyAttribute, Tag, TagKeyOnly,
};
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind, Scope};
use fabrs_plan::addr;
use fabrs_plan::resource::{
    Address, HealthCheckSpec, ListenerSpec, LoadBalancerSpec, Member, Observed, Spec, Status, Tags,
};

use crate::kinds::{self, AwsKind};
use crate::util::{self, GroupMap};
use crate::{AwsCloud, VpcInfo, err};

fn build_err(op: &str, res: &str, e: impl std::fmt::Display) -> CloudError {
    err::other(op, res, e.to_string())
}

fn lb_tags(tags: &Tags, res: &str) -> Result<Vec<Tag>, CloudError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| build_err("CreateLoadBalancer", res, e))
        })
        .collect()
}

fn listener(l: &ListenerSpec, res: &str) -> Result<Listener, CloudError> {
    Listener::builder()
        .protocol(&l.protocol)
        .load_balancer_port(l.port as i32)
        .instance_protocol(&l.instance_protocol)
        .instance_port(l.instance_port as i32)
        .set_ssl_certificate_id(l.certificate_arn.clone())
        .build()
        .map_err(|e| build_err("CreateLoadBalancer", res, e))
}

fn health_check(h: &HealthCheckSpec, res: &str) -> Result<HealthCheck, CloudError> {
    HealthCheck::builder()
        .target(&h.target)
        .interval(h.interval_secs as i32)
        .timeout(h.timeout_secs as i32)
        .healthy_threshold(h.healthy_threshold as i32)
        .unhealthy_threshold(h.unhealthy_threshold as i32)
        .build()
        .map_err(|e| build_err("ConfigureHealthCheck", res, e))
}

fn attributes(s: &LoadBalancerSpec, res: &str) -> Result<LoadBalancerAttributes, CloudError> {
    let draining = match s.connection_draining_secs {
        Some(t) => ConnectionDraining::builder().enabled(true).timeout(t as i32).build(),
        None => ConnectionDraining::builder().enabled(false).build(),
    };
    Ok(LoadBalancerAttributes::builder()
        .cross_zone_load_balancing(CrossZoneLoadBalancing::builder().enabled(s.cross_zone).build())
        .connection_draining(draining)
        .connection_settings(
            ConnectionSettings::builder()
                .idle_timeout(s.idle_timeout_secs as i32)
                .build()
                .map_err(|e| build_err("ModifyLoadBalancerAttributes", res, e))?,
        )
        .build())
}

/// Every classic load balancer of the region.
pub(crate) async fn all_lbs(c: &AwsCloud) -> Result<Vec<LoadBalancerDescription>, CloudError> {
    c.elb
        .describe_load_balancers()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| err::sdk("DescribeLoadBalancers", "load balancers", e))
}

async fn describe_lb(c: &AwsCloud, name: &str) -> Result<Option<LoadBalancerDescription>, CloudError> {
    Ok(err::found(
        "DescribeLoadBalancers",
        &format!("load balancer {name}"),
        c.elb.describe_load_balancers().load_balancer_names(name).send().await,
    )?
    .and_then(|o| o.load_balancer_descriptions().first().cloned()))
}

/// Tags of these load balancers (DescribeTags takes 20 names at a time).
pub(crate) async fn tags_of(c: &AwsCloud, names: &[String]) -> Result<BTreeMap<String, Tags>, CloudError> {
    let calls = names.chunks(20).map(|chunk| async move {
        c.elb
            .describe_tags()
            .set_load_balancer_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| err::sdk("DescribeTags", "load balancers", e))
    });
    let mut out = BTreeMap::new();
    for o in futures::future::try_join_all(calls).await? {
        for d in o.tag_descriptions() {
            if let Some(n) = d.load_balancer_name() {
                out.insert(
                    n.to_string(),
                    util::clean_tags(d.tags().iter().map(|t| (t.key(), t.value().unwrap_or("")))),
                );
            }
        }
    }
    Ok(out)
}

/// What a load balancer's spec needs beyond DescribeLoadBalancers.
#[derive(Clone, Debug, Default)]
pub(crate) struct LbAttrs {
    pub cross_zone: bool,
    pub idle_timeout_secs: u32,
    /// Connection draining's timeout when it is on.
    pub draining_secs: Option<u32>,
    /// Listener port → the predefined security policy its SSL negotiation
    /// policy references.
    pub tls_policies: BTreeMap<u16, String>,
}

/// The name of the SSL negotiation policy fabrs creates on a load balancer
/// for a predefined security policy.
pub(crate) fn tls_policy_name(reference: &str) -> String {
    format!("fabrs-{reference}")
}

const SSL_NEGOTIATION: &str = "SSLNegotiationPolicyType";
const REFERENCE_SECURITY_POLICY: &str = "Reference-Security-Policy";

/// What DescribeLoadBalancerAttributes and DescribeLoadBalancerPolicies (the
/// load balancer's own policies) said: asked at once, by name alone.
#[derive(Clone, Debug)]
pub(crate) struct LbDetails {
    attributes: Option<aws_sdk_elasticloadbalancing::types::LoadBalancerAttributes>,
    policies: Vec<aws_sdk_elasticloadbalancing::types::PolicyDescription>,
}

async fn details_of(c: &AwsCloud, name: &str) -> Result<LbDetails, CloudError> {
    let res = format!("load balancer {name}");
    let (a, p) = futures::try_join!(
        async {
            c.elb
                .describe_load_balancer_attributes()
                .load_balancer_name(name)
                .send()
                .await
                .map_err(|e| err::sdk("DescribeLoadBalancerAttributes", &res, e))
        },
        async {
            c.elb
                .describe_load_balancer_policies()
                .load_balancer_name(name)
                .send()
                .await
                .map_err(|e| err::sdk("DescribeLoadBalancerPolicies", &res, e))
        },
    )?;
    Ok(LbDetails {
        attributes: a.load_balancer_attributes().cloned(),
        policies: p.policy_descriptions().to_vec(),
    })
}

/// Cross zone, idle timeout, connection draining; and the TLS policy of each
/// listener (of the load balancer's policies, those its listeners name).
fn attrs_from(d: &LoadBalancerDescription, details: &LbDetails) -> LbAttrs {
    let a = details.attributes.as_ref();
    let named: BTreeSet<&String> = d
        .listener_descriptions()
        .iter()
        .flat_map(|ld| ld.policy_names().iter())
        .collect();
    let mut references: BTreeMap<String, String> = BTreeMap::new();
    for pd in &details.policies {
        if pd.policy_type_name() != Some(SSL_NEGOTIATION)
            || !pd.policy_name().is_some_and(|n| named.contains(&n.to_string()))
        {
            continue;
        }
        let reference = pd
            .policy_attribute_descriptions()
            .iter()
            .find(|a| a.attribute_name() == Some(REFERENCE_SECURITY_POLICY))
            .and_then(|a| a.attribute_value());
        if let (Some(n), Some(r)) = (pd.policy_name(), reference) {
            references.insert(n.to_string(), r.to_string());
        }
    }
    let mut tls_policies = BTreeMap::new();
    for ld in d.listener_descriptions() {
        let Some(l) = ld.listener() else { continue };
        if let Some(r) = ld.policy_names().iter().find_map(|n| references.get(n)) {
            tls_policies.insert(l.load_balancer_port().clamp(0, 65535) as u16, r.clone());
        }
    }
    LbAttrs {
        cross_zone: a
            .and_then(|a| a.cross_zone_load_balancing())
            .map(|c| c.enabled())
            .unwrap_or(false),
        idle_timeout_secs: a
            .and_then(|a| a.connection_settings())
            .map(|c| c.idle_timeout().max(0) as u32)
            .unwrap_or(60),
        draining_secs: a
            .and_then(|a| a.connection_draining())
            .filter(|d| d.enabled())
            .map(|d| d.timeout().unwrap_or(300).max(0) as u32),
        tls_policies,
    }
}

/// Everything about the load balancer of a known name, each asked at once
/// (description, tags, attributes, policies, health): discovery's first
/// round for the environment's own load balancer. `None`: there is none.
pub(crate) struct Prefetched {
    pub description: LoadBalancerDescription,
    pub tags: Tags,
    details: LbDetails,
    health: BTreeMap<String, String>,
}

pub(crate) async fn prefetch(c: &AwsCloud, name: &str) -> Result<Option<Prefetched>, CloudError> {
    let names = [name.to_string()];
    let (d, tags, details, health) = futures::join!(
        describe_lb(c, name),
        tags_of(c, &names),
        details_of(c, name),
        health_of(c, name)
    );
    let Some(description) = d? else {
        return Ok(None);
    };
    Ok(Some(Prefetched {
        description,
        tags: tags?.remove(name).unwrap_or_default(),
        details: details?,
        health: health?,
    }))
}

/// The observed load balancer from what `prefetch` read.
pub(crate) fn from_prefetched(p: &Prefetched, gmap: &GroupMap, vpc: &VpcInfo) -> Observed {
    lb_to_observed(
        &p.description,
        p.tags.clone(),
        attrs_from(&p.description, &p.details),
        &p.health,
        gmap,
        vpc,
    )
}

/// Give each listener port of `policies` the SSL negotiation policy that
/// references its predefined security policy (created on the load balancer
/// first if it is not there: CreateLoadBalancerPolicy refuses a duplicate
/// name on AWS, moto ignores it).
async fn set_tls_policies(
    c: &AwsCloud,
    name: &str,
    policies: &BTreeMap<u16, String>,
    fresh: bool,
    res: &str,
) -> Result<(), CloudError> {
    if policies.is_empty() {
        return Ok(());
    }
    let wanted: BTreeSet<&String> = policies.values().collect();
    // A load balancer this call made has no policies of its own yet.
    let existing: BTreeSet<String> = if fresh {
        BTreeSet::new()
    } else {
        c.elb
            .describe_load_balancer_policies()
            .load_balancer_name(name)
            .send()
            .await
            .map_err(|e| err::sdk("DescribeLoadBalancerPolicies", res, e))?
            .policy_descriptions()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_string))
            .collect()
    };
    for reference in wanted {
        let policy = tls_policy_name(reference);
        if existing.contains(&policy) {
            continue;
        }
        c.elb
            .create_load_balancer_policy()
            .load_balancer_name(name)
            .policy_name(&policy)
            .policy_type_name(SSL_NEGOTIATION)
            .policy_attributes(
                PolicyAttribute::builder()
                    .attribute_name(REFERENCE_SECURITY_POLICY)
                    .attribute_value(reference)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| err::sdk("CreateLoadBalancerPolicy", res, e))?;
    }
    for (port, reference) in policies {
        c.elb
            .set_load_balancer_policies_of_listener()
            .load_balancer_name(name)
            .load_balancer_port(*port as i32)
            .policy_names(tls_policy_name(reference))
            .send()
            .await
            .map_err(|e| err::sdk("SetLoadBalancerPoliciesOfListener", res, e))?;
    }
    Ok(())
}

/// Instance id → ELB health state (`InService`, `OutOfService`).
pub(crate) async fn health_of(c: &AwsCloud, name: &str) -> Result<BTreeMap<String, String>, CloudError> {
    let found = err::found(
        "DescribeInstanceHealth",
        &format!("load balancer {name}"),
        c.elb.describe_instance_health().load_balancer_name(name).send().await,
    )?;
    // A load balancer gone has no members.
    Ok(found
        .map(|o| {
            o.instance_states()
                .iter()
                .filter_map(|s| Some((s.instance_id()?.to_string(), s.state().unwrap_or_default().to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// Registered instances of these load balancers.
pub(crate) async fn members_of(
    c: &AwsCloud,
    names: &[String],
) -> Result<BTreeMap<String, BTreeSet<String>>, CloudError> {
    let mut out = BTreeMap::new();
    for n in names {
        if let Some(d) = describe_lb(c, n).await? {
            out.insert(
                n.clone(),
                d.instances()
                    .iter()
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// Names of the load balancers an instance is registered with.
pub(crate) async fn lbs_holding(c: &AwsCloud, instance_id: &str) -> Result<Vec<String>, CloudError> {
    Ok(all_lbs(c)
        .await?
        .iter()
        .filter(|d| d.instances().iter().any(|i| i.instance_id() == Some(instance_id)))
        .filter_map(|d| d.load_balancer_name().map(str::to_string))
        .collect())
}

pub(crate) fn lb_to_observed(
    d: &LoadBalancerDescription,
    tags: Tags,
    attrs: LbAttrs,
    health: &BTreeMap<String, String>,
    gmap: &GroupMap,
    vpc: &VpcInfo,
) -> Observed {
    let name = d.load_balancer_name().unwrap_or_default().to_string();
    let mut listeners: Vec<ListenerSpec> = d
        .listener_descriptions()
        .iter()
        .filter_map(|ld| ld.listener())
        .map(|l| ListenerSpec {
            port: l.load_balancer_port().clamp(0, 65535) as u16,
            protocol: l.protocol().to_ascii_uppercase(),
            instance_port: l.instance_port().clamp(0, 65535) as u16,
            instance_protocol: l.instance_protocol().unwrap_or(l.protocol()).to_ascii_uppercase(),
            certificate_arn: l.ssl_certificate_id().filter(|s| !s.is_empty()).map(str::to_string),
        })
        .collect();
    listeners.sort();
    let hc = d.health_check();
    let mut members: Vec<Member> = d
        .instances()
        .iter()
        .filter_map(|i| i.instance_id())
        .map(|id| Member {
            id: id.to_string(),
            state: "registered".into(),
            health: health.get(id).cloned().unwrap_or_default(),
            launch: String::new(),
        })
        .collect();
    members.sort();
    Observed {
        address: addr::load_balancer(),
        id: name.clone(),
        spec: Spec::LoadBalancer(LoadBalancerSpec {
            name,
            listeners,
            health_check: HealthCheckSpec {
                target: hc.map(|h| h.target().to_string()).unwrap_or_default(),
                interval_secs: hc.map(|h| h.interval().max(0) as u32).unwrap_or(0),
                timeout_secs: hc.map(|h| h.timeout().max(0) as u32).unwrap_or(0),
                healthy_threshold: hc.map(|h| h.healthy_threshold().max(0) as u32).unwrap_or(0),
                unhealthy_threshold: hc.map(|h| h.unhealthy_threshold().max(0) as u32).unwrap_or(0),
            },
            security_groups: gmap.keys(d.security_groups().iter().map(String::as_str)),
            subnets: vpc.normalise_subnets(d.subnets().to_vec()),
            cross_zone: attrs.cross_zone,
            idle_timeout_secs: attrs.idle_timeout_secs,
            connection_draining_secs: attrs.draining_secs,
            tls_policies: attrs.tls_policies,
            tags,
        }),
        status: Status {
            holds_data: false,
            template_version: None,
            state: "active".into(),
            private_ip: None,
            endpoint: d.dns_name().map(str::to_string),
            members,
        },
    }
}

/// Attributes, health and members of an LB description → Observed.
pub(crate) async fn complete(
    c: &AwsCloud,
    d: &LoadBalancerDescription,
    tags: Tags,
    gmap: &GroupMap,
) -> Result<Observed, CloudError> {
    let name = d.load_balancer_name().unwrap_or_default();
    let (details, health, vpc) = futures::try_join!(details_of(c, name), health_of(c, name), c.default_vpc())?;
    Ok(lb_to_observed(d, tags, attrs_from(d, &details), &health, gmap, vpc))
}

pub(crate) async fn read_lb(
    c: &AwsCloud,
    _address: &Address,
    name: &str,
    gmap: &GroupMap,
) -> Result<Option<Observed>, CloudError> {
    let Some(d) = describe_lb(c, name).await? else {
        return Ok(None);
    };
    let tags = tags_of(c, &[name.to_string()]).await?.remove(name).unwrap_or_default();
    Ok(Some(complete(c, &d, tags, gmap).await?))
}

/// A load balancer of the spec's name exists: fine when its tags say it is
/// the environment's, a conflict otherwise.
async fn ours_or_refused(c: &AwsCloud, s: &LoadBalancerSpec, res: &str) -> Result<(), CloudError> {
    let tags = tags_of(c, std::slice::from_ref(&s.name))
        .await?
        .remove(&s.name)
        .unwrap_or_default();
    let (project, env) = util::owner_of(&s.tags);
    if !util::owned(&tags, &project, &env) {
        return Err(err::exists_foreign("CreateLoadBalancer", res));
    }
    Ok(())
}

pub(crate) async fn create_lb(
    c: &AwsCloud,
    _address: &Address,
    s: &LoadBalancerSpec,
    ctx: &ApplyCtx,
    _gmap: &GroupMap,
) -> Result<String, CloudError> {
    let res = format!("load balancer {}", s.name);
    // CreateLoadBalancer is idempotent on AWS for an identical load
    // balancer, whoever made it: look first, so fabrs never adopts a stranger's.
    if describe_lb(c, &s.name).await?.is_some() {
        ours_or_refused(c, s, &res).await?;
        return Ok(s.name.clone());
    }
    let sgs = util::group_ids(ctx, &s.security_groups, "CreateLoadBalancer", &res)?;
    let listeners = s
        .listeners
        .iter()
        .map(|l| listener(l, &res))
        .collect::<Result<Vec<_>, _>>()?;
    let mut req = c
        .elb
        .create_load_balancer()
        .load_balancer_name(&s.name)
        .set_listeners(Some(listeners))
        .set_security_groups(Some(sgs))
        .set_tags(Some(lb_tags(&s.tags, &res)?));
    if s.subnets.is_empty() {
        let vpc = c.default_vpc().await?;
        if vpc.default_subnets.is_empty() {
            return Err(err::not_found(
                "CreateLoadBalancer",
                &res,
                "no subnets given and this account/region has no default VPC subnets",
            ));
        }
        req = req.set_availability_zones(Some(vpc.zones()));
    } else {
        req = req.set_subnets(Some(s.subnets.clone()));
    }
    let fresh = match req.send().await.map_err(|e| err::sdk("CreateLoadBalancer", &res, e)) {
        Ok(_) => true,
        // Made since the look above (a killed run's call in flight): ours
        // by its tags, it is configured below like a new one.
        Err(er) if er.kind == ErrorKind::AlreadyExists => {
            ours_or_refused(c, s, &res).await?;
            false
        }
        Err(er) => return Err(er),
    };
    // Health check, attributes and TLS policies are independent: at once.
    let hc = health_check(&s.health_check, &res)?;
    let attrs = attributes(s, &res)?;
    futures::try_join!(
        async {
            c.elb
                .configure_health_check()
                .load_balancer_name(&s.name)
                .health_check(hc)
                .send()
                .await
                .map_err(|e| err::sdk("ConfigureHealthCheck", &res, e))
        },
        async {
            c.elb
                .modify_load_balancer_attributes()
                .load_balancer_name(&s.name)
                .load_balancer_attributes(attrs)
                .send()
                .await
                .map_err(|e| err::sdk("ModifyLoadBalancerAttributes", &res, e))
        },
        set_tls_policies(c, &s.name, &s.tls_policies, fresh, &res),
    )?;
    Ok(s.name.clone())
}

pub(crate) async fn update_lb(
    c: &AwsCloud,
    cur: &LoadBalancerSpec,
    des: &LoadBalancerSpec,
    ctx: &ApplyCtx,
) -> Result<(), CloudError> {
    let res = format!("load balancer {}", des.name);
    if cur.name != des.name || cur.subnets != des.subnets {
        return Err(err::other(
            "update",
            &res,
            "a load balancer's name and subnets cannot change in place: it must be replaced",
        ));
    }
    let mut cur_l = cur.listeners.clone();
    let mut des_l = des.listeners.clone();
    cur_l.sort();
    des_l.sort();
    // A listener made anew has no policy yet.
    let mut cur_tls = cur.tls_policies.clone();
    if cur_l != des_l {
        for l in des_l.iter().filter(|l| !cur_l.contains(l)) {
            cur_tls.remove(&l.port);
        }
        let gone: Vec<i32> = cur_l
            .iter()
            .filter(|l| !des_l.contains(l))
            .map(|l| l.port as i32)
            .collect();
        let new: Vec<&ListenerSpec> = des_l.iter().filter(|l| !cur_l.contains(l)).collect();
        if !gone.is_empty() {
            c.elb
                .delete_load_balancer_listeners()
                .load_balancer_name(&des.name)
                .set_load_balancer_ports(Some(gone))
                .send()
                .await
                .map_err(|e| err::sdk("DeleteLoadBalancerListeners", &res, e))?;
        }
        if !new.is_empty() {
            let ls = new.iter().map(|l| listener(l, &res)).collect::<Result<Vec<_>, _>>()?;
            c.elb
                .create_load_balancer_listeners()
                .load_balancer_name(&des.name)
                .set_listeners(Some(ls))
                .send()
                .await
                .map_err(|e| err::sdk("CreateLoadBalancerListeners", &res, e))?;
        }
    }
    let mut cur_g = cur.security_groups.clone();
    let mut des_g = des.security_groups.clone();
    cur_g.sort();
    des_g.sort();
    if cur_g != des_g {
        let sgs = util::group_ids(ctx, &des.security_groups, "ApplySecurityGroupsToLoadBalancer", &res)?;
        c.elb
            .apply_security_groups_to_load_balancer()
            .load_balancer_name(&des.name)
            .set_security_groups(Some(sgs))
            .send()
            .await
            .map_err(|e| err::sdk("ApplySecurityGroupsToLoadBalancer", &res, e))?;
    }
    if cur.health_check != des.health_check {
        c.elb
            .configure_health_check()
            .load_balancer_name(&des.name)
            .health_check(health_check(&des.health_check, &res)?)
            .send()
            .await
            .map_err(|e| err::sdk("ConfigureHealthCheck", &res, e))?;
    }
    if cur_tls != des.tls_policies {
        let changed: BTreeMap<u16, String> = des
            .tls_policies
            .iter()
            .filter(|(port, r)| cur_tls.get(port) != Some(r))
            .map(|(p, r)| (*p, r.clone()))
            .collect();
        set_tls_policies(c, &des.name, &changed, false, &res).await?;
    }
    if cur.cross_zone != des.cross_zone
        || cur.idle_timeout_secs != des.idle_timeout_secs
        || cur.connection_draining_secs != des.connection_draining_secs
    {
        c.elb
            .modify_load_balancer_attributes()
            .load_balancer_name(&des.name)
            .load_balancer_attributes(attributes(des, &res)?)
            .send()
            .await
            .map_err(|e| err::sdk("ModifyLoadBalancerAttributes", &res, e))?;
    }
    let (set, remove) = util::tag_diff(&cur.tags, &des.tags);
    if !set.is_empty() {
        c.elb
            .add_tags()
            .load_balancer_names(&des.name)
            .set_tags(Some(lb_tags(&set, &res)?))
            .send()
            .await
            .map_err(|e| err::sdk("AddTags", &res, e))?;
    }
    if !remove.is_empty() {
        let keys = remove.iter().map(|k| TagKeyOnly::builder().key(k).build()).collect();
        c.elb
            .remove_tags()
            .load_balancer_names(&des.name)
            .set_tags(Some(keys))
            .send()
            .await
            .map_err(|e| err::sdk("RemoveTags", &res, e))?;
    }
    Ok(())
}

pub(crate) async fn delete_lb(c: &AwsCloud, name: &str) -> Result<(), CloudError> {
    c.elb
        .delete_load_balancer()
        .load_balancer_name(name)
        .send()
        .await
        .map_err(|e| err::sdk("DeleteLoadBalancer", &format!("load balancer {name}"), e))?;
    Ok(())
}

pub(crate) async fn lb_status(c: &AwsCloud, name: &str) -> Result<Option<Status>, CloudError> {
    let Some(d) = describe_lb(c, name).await? else {
        return Ok(None);
    };
    let health = health_of(c, name).await?;
    let vpc = c.default_vpc().await?;
    Ok(Some(
        lb_to_observed(&d, Tags::new(), LbAttrs::default(), &health, &GroupMap::default(), vpc).status,
    ))
}

/// Register an instance unless it already is (moto duplicates a second
/// registration). A pending instance cannot be registered yet: wait for it.
pub(crate) async fn ensure_registered(c: &AwsCloud, lb: &str, instance_id: &str, res: &str) -> Result<(), CloudError> {
    let d = describe_lb(c, lb).await?.ok_or_else(|| {
        err::not_found(
            "RegisterInstancesWithLoadBalancer",
            res,
            format!("load balancer {lb} does not exist"),
        )
    })?;
    if d.instances().iter().any(|i| i.instance_id() == Some(instance_id)) {
        return Ok(());
    }
    let mut delay = Duration::from_secs(2);
    let start = std::time::Instant::now();
    loop {
        match c
            .elb
            .register_instances_with_load_balancer()
            .load_balancer_name(lb)
            .instances(LbInstance::builder().instance_id(instance_id).build())
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                let e = err::sdk("RegisterInstancesWithLoadBalancer", res, e);
                if e.message.starts_with("InvalidInstance") && start.elapsed() < Duration::from_secs(300) {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(15));
                    continue;
                }
                return Err(e);
            }
        }
    }
}

pub(crate) async fn deregister(c: &AwsCloud, lb: &str, instance_id: &str, res: &str) -> Result<(), CloudError> {
    // Already gone (the load balancer or the instance): nothing to deregister.
    err::found(
        "DeregisterInstancesFromLoadBalancer",
        res,
        c.elb
            .deregister_instances_from_load_balancer()
            .load_balancer_name(lb)
            .instances(LbInstance::builder().instance_id(instance_id).build())
            .send()
            .await,
    )?;
    Ok(())
}

// ---------------------------------------------------------------- the kind

impl AwsKind for LoadBalancerSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(5);

    async fn list(_c: &AwsCloud, _scope: &Scope) -> Result<kinds::Listing, CloudError> {
        // Found with the other kinds in discover.rs: the load balancer is found with the security groups (its spec names them by key) and gives the groups their instances' health.
        Ok(kinds::Listing::default())
    }

    async fn read(
        c: &AwsCloud,
        address: &Address,
        _id: &str,
        spec: &Self,
        gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        read_lb(c, address, &spec.name, gmap).await
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
            create_lb(c, address, spec, ctx, gmap).await?,
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
        update_lb(c, was, desired, ctx).await?;
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, _current: &Observed, spec: &Self) -> Result<(), CloudError> {
        delete_lb(c, &spec.name).await
    }

    async fn status(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<Option<Status>, CloudError> {
        lb_status(c, &current.id).await
    }

    fn ready(_spec: &Self, _status: &Status) -> bool {
        true
    }
}
