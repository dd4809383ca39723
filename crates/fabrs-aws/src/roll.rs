//! `Fleet`: what a rolling replacement needs from Auto Scaling, the classic
//! ELB and EC2, beyond create/update/delete.

use std::collections::BTreeMap;

use aws_sdk_autoscaling::types::Tag;
use fabrs_cloud::{CloudError, ErrorKind, Fleet, GroupNow};
use fabrs_config::Revision;
use fabrs_config::revision::or_none;
use fabrs_plan::addr;
use fabrs_plan::resource::LaunchRef;

use crate::kinds::autoscaling_group::{asg_members, asg_tags, describe_asg, lb_health};
use crate::{AwsCloud, err};

fn group_res(name: &str) -> String {
    format!("auto scaling group {name}")
}

impl Fleet for AwsCloud {
    async fn group(&self, name: &str) -> Result<GroupNow, CloudError> {
        let Some(g) = describe_asg(self, name).await? else {
            return Err(CloudError::new(
                ErrorKind::NotFound,
                "DescribeAutoScalingGroups",
                group_res(name),
                "no such group",
            ));
        };
        let health = lb_health(self, &g).await?;
        let launch = match (g.launch_configuration_name(), g.launch_template()) {
            (Some(lc), _) => LaunchRef::Configuration(Some(lc.to_string())),
            (None, Some(t)) => LaunchRef::Template {
                name: t.launch_template_name().unwrap_or_default().to_string(),
                version: t.version().map(str::to_string),
            },
            (None, None) => LaunchRef::Configuration(None),
        };
        Ok(GroupNow {
            name: name.to_string(),
            min: g.min_size().unwrap_or(0).max(0) as u32,
            max: g.max_size().unwrap_or(0).max(0) as u32,
            desired: g.desired_capacity().unwrap_or(0).max(0) as u32,
            launch,
            load_balancers: g.load_balancer_names().to_vec(),
            members: asg_members(&g, &health),
            revision: asg_tags(&g)
                .get(addr::TAG_REVISION)
                .and_then(|r| Revision::read_back(r)),
        })
    }

    async fn set_capacity(&self, name: &str, desired: u32, max: u32) -> Result<(), CloudError> {
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .max_size(max as i32)
            .desired_capacity(desired as i32)
            .send()
            .await
            .map_err(|e| err::sdk("UpdateAutoScalingGroup", &group_res(name), e))?;
        Ok(())
    }

    async fn switch_launch(
        &self,
        name: &str,
        launch: &LaunchRef,
        revision: Option<&Revision>,
        health_check_type: &str,
    ) -> Result<(), CloudError> {
        let res = group_res(name);
        let req = self
            .asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .health_check_type(health_check_type);
        let req = match launch {
            LaunchRef::Configuration(Some(lc)) => req.launch_configuration_name(lc),
            LaunchRef::Configuration(None) => {
                return Err(err::other(
                    "UpdateAutoScalingGroup",
                    &res,
                    "no launch configuration was named to switch the group to",
                ));
            }
            LaunchRef::Template { name: lt, version } => req.launch_template(
                aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                    .launch_template_name(lt)
                    .version(version.clone().unwrap_or_else(|| "$Latest".into()))
                    .build(),
            ),
        };
        req.send()
            .await
            .map_err(|e| err::sdk("UpdateAutoScalingGroup", &res, e))?;
        let tag = Tag::builder()
            .resource_id(name)
            .resource_type("auto-scaling-group")
            .key(addr::TAG_REVISION)
            .value(or_none(revision))
            .propagate_at_launch(true)
            .build();
        self.asg
            .create_or_update_tags()
            .tags(tag)
            .send()
            .await
            .map_err(|e| err::sdk("CreateOrUpdateTags", &res, e))?;
        Ok(())
    }

    async fn deregister(&self, load_balancer: &str, ids: &[String]) -> Result<(), CloudError> {
        if ids.is_empty() {
            return Ok(());
        }
        let instances = ids
            .iter()
            .map(|id| {
                aws_sdk_elasticloadbalancing::types::Instance::builder()
                    .instance_id(id)
                    .build()
            })
            .collect();
        match self
            .elb
            .deregister_instances_from_load_balancer()
            .load_balancer_name(load_balancer)
            .set_instances(Some(instances))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = err::sdk(
                    "DeregisterInstancesFromLoadBalancer",
                    &format!("load balancer {load_balancer}"),
                    e,
                );
                // An instance already gone is already out.
                if e.kind == ErrorKind::NotFound && e.message.contains("nstance") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn terminate(&self, id: &str) -> Result<(), CloudError> {
        match self
            .asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = err::sdk("TerminateInstanceInAutoScalingGroup", &format!("instance {id}"), e);
                if e.kind == ErrorKind::NotFound { Ok(()) } else { Err(e) }
            }
        }
    }

    async fn addresses(&self, ids: &[String]) -> Result<BTreeMap<String, String>, CloudError> {
        let mut out = BTreeMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let pages = self
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| err::sdk("DescribeInstances", &format!("instances {}", ids.join(", ")), e))?;
        for page in pages {
            for r in page.reservations() {
                for i in r.instances() {
                    if let (Some(id), Some(ip)) = (i.instance_id(), i.private_ip_address()) {
                        out.insert(id.to_string(), ip.to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    async fn launch_configuration_times(&self, names: &[String]) -> Result<BTreeMap<String, String>, CloudError> {
        let all = crate::kinds::launch_configuration::all_lcs(self).await?;
        Ok(all
            .iter()
            .filter_map(|lc| {
                let n = lc.launch_configuration_name()?;
                if !names.iter().any(|x| x == n) {
                    return None;
                }
                let t = lc.created_time()?;
                Some((n.to_string(), format!("{:020}.{:09}", t.secs(), t.subsec_nanos())))
            })
            .collect())
    }
}
