//! What the RDS kinds (the database instances, subnet and parameter groups) share: tags, and which group names may be the environment's.

use aws_sdk_rds::types::Tag;
use fabrs_cloud::CloudError;
use fabrs_plan::resource::Tags;

use crate::util::{self};
use crate::{AwsCloud, err};

pub(crate) fn rds_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub(crate) fn from_rds_tags(tags: &[Tag]) -> Tags {
    util::clean_tags(tags.iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))))
}

pub(crate) fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub(crate) async fn tags_of(c: &AwsCloud, arn: &str, res: &str) -> Result<Tags, CloudError> {
    let o = c
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| err::sdk("ListTagsForResource", res, e))?;
    Ok(from_rds_tags(o.tag_list()))
}

pub(crate) async fn sync_tags(
    c: &AwsCloud,
    arn: &str,
    current: &Tags,
    desired: &Tags,
    res: &str,
) -> Result<(), CloudError> {
    let (set, remove) = util::tag_diff(current, desired);
    if !set.is_empty() {
        c.rds
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(rds_tags(&set)))
            .send()
            .await
            .map_err(|e| err::sdk("AddTagsToResource", res, e))?;
    }
    if !remove.is_empty() {
        c.rds
            .remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(|e| err::sdk("RemoveTagsFromResource", res, e))?;
    }
    Ok(())
}

/// Might this (subnet or parameter) group be one of this environment's?
/// Their tags take one call each, so only likely names are asked.
pub(crate) fn candidate(name: &str, project: &str, environment: &str, names: &[&String]) -> bool {
    names.iter().any(|n| n.as_str() == name) || (name.contains(project) && name.contains(environment))
}
