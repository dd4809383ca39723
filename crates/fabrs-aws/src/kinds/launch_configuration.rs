//! The launch configuration kind (Auto Scaling): immutable, named by its
//! content's hash, owned by its user-data's `# fabrs:owner=` line (it cannot be
//! tagged); a new one is made beside the old (`create_beside`).

use std::time::Duration;

use aws_sdk_autoscaling::types::{
    BlockDeviceMapping, Ebs, InstanceMetadataEndpointState, InstanceMetadataHttpTokensState, InstanceMetadataOptions,
    LaunchConfiguration,
};
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind, Scope};
use fabrs_config::{Revision, RoleKind};
use fabrs_plan::addr::{self};
use fabrs_plan::resource::{Address, LaunchConfigurationSpec, LaunchSpec, Observed, Spec, Status};

use crate::kinds::{self, AwsKind};
use crate::util::{self, GroupMap};
use crate::{AwsCloud, err};

/// Owner marker, and the spec, of a launch configuration.
pub(crate) fn lc_to_spec(
    lc: &LaunchConfiguration,
    role: RoleKind,
    gmap: &GroupMap,
) -> (Option<String>, LaunchConfigurationSpec) {
    let ud = lc.user_data().and_then(util::unb64).unwrap_or_default();
    let (owner, sha, rev) = addr::parse_user_data_markers(&ud);
    let ebs = lc.block_device_mappings().iter().find_map(|b| b.ebs());
    let meta = lc.metadata_options();
    let spec = LaunchConfigurationSpec {
        name: lc.launch_configuration_name().map(str::to_string),
        launch: LaunchSpec {
            role,
            image_id: lc.image_id().unwrap_or_default().to_string(),
            instance_type: lc.instance_type().unwrap_or_default().to_string(),
            security_groups: gmap.keys(lc.security_groups().iter().map(String::as_str)),
            key_name: lc.key_name().filter(|k| !k.is_empty()).map(str::to_string),
            // A name or an ARN, as it was given.
            instance_profile: lc
                .iam_instance_profile()
                .filter(|p| !p.is_empty())
                .map(util::profile_name_of_arn),
            volume_gb: ebs.and_then(|e| e.volume_size()).unwrap_or(0).max(0) as u32,
            volume_type: ebs.and_then(|e| e.volume_type()).unwrap_or_default().to_string(),
            volume_encrypted: ebs.and_then(|e| e.encrypted()).unwrap_or(false),
            metadata_http_tokens: meta
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            metadata_hop_limit: meta.and_then(|m| m.http_put_response_hop_limit()).unwrap_or(0).max(0) as u32,
            user_data_sha256: sha,
            revision: rev.as_deref().and_then(Revision::read_back),
        },
    };
    (owner, spec)
}

/// `<prefix><role>-<revision>-<hash8>` → role.
pub(crate) fn role_from_lc_name(name: &str, prefix: &str) -> String {
    let rest = name.strip_prefix(prefix).unwrap_or(name);
    let parts: Vec<&str> = rest.rsplitn(3, '-').collect();
    if parts.len() == 3 {
        parts[2].to_string()
    } else {
        rest.to_string()
    }
}

pub(crate) async fn describe_lc(
    c: &AwsCloud,
    name: &str,
    res: &str,
) -> Result<Option<LaunchConfiguration>, CloudError> {
    let o = c
        .asg
        .describe_launch_configurations()
        .launch_configuration_names(name)
        .send()
        .await
        .map_err(|e| err::sdk("DescribeLaunchConfigurations", res, e))?;
    Ok(o.launch_configurations().first().cloned())
}

pub(crate) async fn all_lcs(c: &AwsCloud) -> Result<Vec<LaunchConfiguration>, CloudError> {
    c.asg
        .describe_launch_configurations()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| err::sdk("DescribeLaunchConfigurations", "launch configurations", e))
}

pub(crate) async fn read_lc(
    c: &AwsCloud,
    address: &Address,
    name: &str,
    role: RoleKind,
    gmap: &GroupMap,
) -> Result<Option<Observed>, CloudError> {
    let res = format!("launch configuration {name}");
    let Some(lc) = describe_lc(c, name, &res).await? else {
        return Ok(None);
    };
    let (_, spec) = lc_to_spec(&lc, role, gmap);
    Ok(Some(Observed {
        address: address.clone(),
        id: name.to_string(),
        spec: Spec::LaunchConfiguration(spec),
        status: Status {
            state: "exists".into(),
            ..Status::default()
        },
    }))
}

pub(crate) async fn create_lc(
    c: &AwsCloud,
    address: &Address,
    s: &LaunchConfigurationSpec,
    ctx: &ApplyCtx,
    _gmap: &GroupMap,
) -> Result<String, CloudError> {
    let Some(name) = &s.name else {
        return Err(err::other(
            "CreateLaunchConfiguration",
            &util::describe(address, &s.clone().into()),
            "the launch configuration has no name yet (its launch spec is not fully known)",
        ));
    };
    let res = format!("launch configuration {name}");
    let ud = ctx
        .user_data
        .as_deref()
        .ok_or_else(|| err::other("CreateLaunchConfiguration", &res, "no user-data was given for it"))?;
    let (owner, _, _) = addr::parse_user_data_markers(ud);
    let Some(owner) = owner else {
        return Err(err::other(
            "CreateLaunchConfiguration",
            &res,
            "its user-data has no `# fabrs:owner=` line: fabrs could never prove it owns it",
        ));
    };
    // Look first: AWS refuses a duplicate name but moto silently replaces it.
    let adopt = |lc: &LaunchConfiguration| -> Result<String, CloudError> {
        let found = lc.user_data().and_then(util::unb64).unwrap_or_default();
        if addr::parse_user_data_markers(&found).0.as_deref() == Some(owner.as_str()) {
            Ok(name.clone())
        } else {
            Err(err::exists_foreign("CreateLaunchConfiguration", &res))
        }
    };
    // The image's root device is read beside the look.
    let (existing, root) = futures::join!(describe_lc(c, name, &res), c.root_device(&s.launch.image_id));
    if let Some(lc) = existing? {
        return adopt(&lc);
    }
    let sgs = util::group_ids(ctx, &s.launch.security_groups, "CreateLaunchConfiguration", &res)?;
    let r = util::while_profile_propagates("CreateLaunchConfiguration", &res, || {
        c.asg
            .create_launch_configuration()
            .launch_configuration_name(name)
            .image_id(&s.launch.image_id)
            .instance_type(&s.launch.instance_type)
            .set_security_groups(Some(sgs.clone()))
            .set_key_name(s.launch.key_name.clone())
            .set_iam_instance_profile(s.launch.instance_profile.clone())
            .user_data(util::b64(ud))
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&root)
                    .ebs(
                        Ebs::builder()
                            .volume_size(s.launch.volume_gb as i32)
                            .volume_type(&s.launch.volume_type)
                            .encrypted(s.launch.volume_encrypted)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            // IMDSv2 only, one hop (see `resource::IMDS_HOP_LIMIT`: no containers).
            .metadata_options(
                InstanceMetadataOptions::builder()
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_tokens(InstanceMetadataHttpTokensState::from(
                        s.launch.metadata_http_tokens.as_str(),
                    ))
                    .http_put_response_hop_limit(s.launch.metadata_hop_limit as i32)
                    .build(),
            )
            .send()
    })
    .await;
    match r {
        Ok(_) => Ok(name.clone()),
        Err(e) => {
            let e = err::lc_refused(e);
            if e.kind == ErrorKind::AlreadyExists
                && let Some(lc) = describe_lc(c, name, &res).await?
            {
                return adopt(&lc);
            }
            Err(e)
        }
    }
}

pub(crate) async fn delete_lc(c: &AwsCloud, name: &str) -> Result<(), CloudError> {
    c.asg
        .delete_launch_configuration()
        .launch_configuration_name(name)
        .send()
        .await
        .map_err(|e| err::sdk("DeleteLaunchConfiguration", &format!("launch configuration {name}"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn role_from_name() {
        assert_eq!(super::role_from_lc_name("p-e-web-3f9c2e1-abcd1234", "p-e-"), "web");
        assert_eq!(
            super::role_from_lc_name("p-e-web-worker-3f9c2e1-abcd1234", "p-e-"),
            "web-worker"
        );
    }
}

// ---------------------------------------------------------------- the kind

impl AwsKind for LaunchConfigurationSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(10);

    async fn list(_c: &AwsCloud, _scope: &Scope) -> Result<kinds::Listing, CloudError> {
        // Found with the other kinds in discover.rs: a launch configuration is owned by its user-data's owner line and attributed to a role by the group that uses it.
        Ok(kinds::Listing::default())
    }

    async fn read(
        c: &AwsCloud,
        address: &Address,
        id: &str,
        spec: &Self,
        gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        read_lc(c, address, id, spec.launch.role, gmap).await
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
            create_lc(c, address, spec, ctx, gmap).await?,
            spec.clone(),
        ))
    }

    async fn update(
        _c: &AwsCloud,
        current: &Observed,
        was: &Self,
        desired: &Self,
        _ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        if was != desired {
            return Err(err::other(
                "update",
                &util::describe(&current.address, &current.spec),
                "launch configurations are immutable: create a new one (a new name) and point the group at it",
            ));
        }
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<(), CloudError> {
        delete_lc(c, &current.id).await
    }

    async fn status(c: &AwsCloud, current: &Observed, spec: &Self) -> Result<Option<Status>, CloudError> {
        kinds::status_by_read(c, current, spec).await
    }

    fn ready(_spec: &Self, _status: &Status) -> bool {
        true
    }
}
