//! The launch template kind (EC2): a role's launch as a template whose new
//! versions a deploy points its group at (`Status::template_version`).

use std::time::Duration;

use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplate, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataEndpointState,
    LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateVersion, RequestLaunchTemplateData, ResourceType,
    VolumeType,
};
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind, Scope};
use fabrs_config::revision::or_none;
use fabrs_config::{Revision, RoleKind};
use fabrs_plan::addr::{self, TAG_ROLE};
use fabrs_plan::resource::{Address, LaunchSpec, LaunchTemplateSpec, Observed, Spec, Status};

use crate::ec2::*;
use crate::kinds::{self, AwsKind};
use crate::util::{self, GroupMap};
use crate::{AwsCloud, err};

pub(crate) async fn lt_data(
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
    let version = ver.and_then(|v| v.version_number()).and_then(|n| u64::try_from(n).ok());
    Some(Observed {
        address: addr::launch_template(role),
        id: lt.launch_template_id()?.to_string(),
        spec: Spec::LaunchTemplate(LaunchTemplateSpec {
            name: lt.launch_template_name().unwrap_or_default().to_string(),
            launch,
            tags,
        }),
        status: Status {
            state: version.map_or_else(|| "no version".to_string(), |v| format!("version {v}")),
            template_version: version,
            ..Status::default()
        },
    })
}

pub(crate) async fn latest_version(
    c: &AwsCloud,
    id: &str,
    res: &str,
) -> Result<Option<LaunchTemplateVersion>, CloudError> {
    Ok(err::found(
        "DescribeLaunchTemplateVersions",
        res,
        c.ec2
            .describe_launch_template_versions()
            .launch_template_id(id)
            .versions("$Latest")
            .send()
            .await,
    )?
    .and_then(|o| o.launch_template_versions().first().cloned()))
}

pub(crate) async fn read_lt(
    c: &AwsCloud,
    _address: &Address,
    id: &str,
    gmap: &GroupMap,
) -> Result<Option<Observed>, CloudError> {
    let res = format!("launch template {id}");
    let lt = err::found(
        "DescribeLaunchTemplates",
        &res,
        c.ec2.describe_launch_templates().launch_template_ids(id).send().await,
    )?
    .and_then(|o| o.launch_templates().first().cloned());
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

// ---------------------------------------------------------------- the kind

impl AwsKind for LaunchTemplateSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(10);

    async fn list(_c: &AwsCloud, _scope: &Scope) -> Result<kinds::Listing, CloudError> {
        // Found with the other kinds in discover.rs: a launch template's spec names its security groups by key.
        Ok(kinds::Listing::default())
    }

    async fn read(
        c: &AwsCloud,
        address: &Address,
        id: &str,
        _spec: &Self,
        gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        read_lt(c, address, id, gmap).await
    }

    async fn create(
        c: &AwsCloud,
        address: &Address,
        spec: &Self,
        ctx: &ApplyCtx,
        gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        let id = create_lt(c, address, spec, ctx, gmap).await?;
        // A new template starts at version 1.
        let mut o = kinds::made(address, id, spec.clone());
        o.status.state = "version 1".into();
        o.status.template_version = Some(1);
        Ok(o)
    }

    async fn update(
        c: &AwsCloud,
        current: &Observed,
        was: &Self,
        desired: &Self,
        ctx: &ApplyCtx,
        gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        update_lt(c, &current.id, was, desired, ctx).await?;
        // An update is a new version: read back for its number (what deploy
        // points the group at).
        let res = util::describe(&current.address, &current.spec);
        Self::read(c, &current.address, &current.id, desired, gmap)
            .await?
            .ok_or_else(|| {
                err::not_found(
                    "update",
                    &res,
                    "not found right after it was written (eventual consistency?)",
                )
            })
    }

    async fn delete(c: &AwsCloud, current: &Observed, _spec: &Self) -> Result<(), CloudError> {
        delete_lt(c, current).await
    }

    async fn status(c: &AwsCloud, current: &Observed, spec: &Self) -> Result<Option<Status>, CloudError> {
        kinds::status_by_read(c, current, spec).await
    }

    fn ready(_spec: &Self, _status: &Status) -> bool {
        true
    }
}
