//! What the EC2 kinds (security groups, launch templates, fixed instances) share: tags and filters.

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use fabrs_cloud::CloudError;
use fabrs_plan::addr::{self};
use fabrs_plan::resource::Tags;

use crate::util::{self};
use crate::{AwsCloud, err};

pub(crate) fn ec2_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub(crate) fn from_ec2_tags(tags: &[Tag]) -> Tags {
    util::clean_tags(tags.iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))))
}

pub(crate) fn tag_spec(rt: ResourceType, tags: &Tags) -> TagSpecification {
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
    // The environment first: the filter that tells an account's
    // environments apart (moto tries filters in order, each a scan of the
    // account's tags; AWS does not mind the order).
    vec![
        filter(&format!("tag:{}", addr::TAG_ENVIRONMENT), environment),
        filter(&format!("tag:{}", addr::TAG_PROJECT), project),
        filter(&format!("tag:{}", addr::TAG_MANAGED_BY), addr::MANAGED_BY),
    ]
}

/// Set and remove tags on an EC2 resource to reach `desired`.
pub(crate) async fn sync_tags(
    c: &AwsCloud,
    id: &str,
    current: &Tags,
    desired: &Tags,
    res: &str,
) -> Result<(), CloudError> {
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
