//! The S3 buckets fabrs owns: the environment's photo bucket and the
//! project's artifact bucket (`addr::is_project_scoped`: tagged with the
//! project, not an environment). Made private (all four public access
//! blocks), encrypted by default (SSE-S3), ACLs off (`BucketOwnerEnforced`),
//! the artifact bucket versioned, tagged in the create call. Bucket names
//! are global: a name taken by another account (HeadBucket 403) or by a
//! bucket of this account without the owner's tags is a look-alike, never
//! used or changed.

use std::time::Duration;

use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, Delete, ObjectIdentifier,
    ObjectOwnership, OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};
use fabrs_cloud::{ApplyCtx, CloudError, ErrorKind, Scope};
use fabrs_plan::addr::{self, MANAGED_BY, TAG_ENVIRONMENT, TAG_MANAGED_BY, TAG_PROJECT};
use fabrs_plan::resource::{Address, BucketSpec, Foreign, Kind, Observed, Spec, Status, Tags};

use crate::kinds::{self, AwsKind};
use crate::util::GroupMap;
use crate::{AwsCloud, err, util};

fn res(name: &str) -> String {
    format!("bucket {name}")
}

fn s3_tags(tags: &Tags) -> Result<Vec<Tag>, CloudError> {
    util::sdk_tags(tags, |k, v| Tag::builder().key(k).value(v).build())
}

/// What HeadBucket says of a name.
enum Presence {
    Missing,
    /// Another account's (403).
    Elsewhere,
    Here,
}

async fn presence(c: &AwsCloud, name: &str) -> Result<Presence, CloudError> {
    match c.s3.head_bucket().bucket(name).send().await {
        Ok(_) => Ok(Presence::Here),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            match status {
                Some(404) => Ok(Presence::Missing),
                Some(403) => Ok(Presence::Elsewhere),
                _ => Err(err::sdk("HeadBucket", &res(name), e)),
            }
        }
    }
}

/// A missing configuration reads as its absence (S3 answers these with
/// codes of their own: NoSuchTagSet, ServerSideEncryptionConfigurationNotFoundError…).
fn absent<T>(r: Result<T, CloudError>, codes: &[&str]) -> Result<Option<T>, CloudError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if codes.iter().any(|c| e.message.starts_with(c)) || e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn tags_of(c: &AwsCloud, name: &str) -> Result<Tags, CloudError> {
    let t = absent(
        c.s3.get_bucket_tagging()
            .bucket(name)
            .send()
            .await
            .map_err(|e| err::sdk("GetBucketTagging", &res(name), e)),
        &["NoSuchTagSet"],
    )?;
    Ok(
        t.map(|t| util::clean_tags(t.tag_set().iter().map(|t| (t.key(), t.value()))))
            .unwrap_or_default(),
    )
}

/// Whether a bucket's tags prove it is the owner's: the environment's, or
/// for a project-scoped bucket the project's (and no environment's).
fn owned(address: &Address, tags: &Tags, project: &str, environment: &str) -> bool {
    if addr::is_project_scoped(address) {
        tags.get(TAG_PROJECT).map(String::as_str) == Some(project)
            && tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
            && !tags.contains_key(TAG_ENVIRONMENT)
    } else {
        util::owned(tags, project, environment)
    }
}

/// The bucket as it is (owned: the caller checked the tags).
async fn observe(c: &AwsCloud, address: &Address, name: &str, tags: Tags) -> Result<Observed, CloudError> {
    let r = res(name);
    let (pab, enc, own, objects, versions, versioning) = futures::try_join!(
        Box::pin(async {
            absent(
                c.s3.get_public_access_block()
                    .bucket(name)
                    .send()
                    .await
                    .map_err(|e| err::sdk("GetPublicAccessBlock", &r, e)),
                &["NoSuchPublicAccessBlockConfiguration"],
            )
        }),
        Box::pin(async {
            absent(
                c.s3.get_bucket_encryption()
                    .bucket(name)
                    .send()
                    .await
                    .map_err(|e| err::sdk("GetBucketEncryption", &r, e)),
                &["ServerSideEncryptionConfigurationNotFoundError"],
            )
        }),
        Box::pin(async {
            absent(
                c.s3.get_bucket_ownership_controls()
                    .bucket(name)
                    .send()
                    .await
                    .map_err(|e| err::sdk("GetBucketOwnershipControls", &r, e)),
                &["OwnershipControlsNotFoundError"],
            )
        }),
        Box::pin(async {
            c.s3.list_objects_v2()
                .bucket(name)
                .max_keys(1)
                .send()
                .await
                .map_err(|e| err::sdk("ListObjectsV2", &r, e))
        }),
        Box::pin(async {
            c.s3.list_object_versions()
                .bucket(name)
                .max_keys(1)
                .send()
                .await
                .map_err(|e| err::sdk("ListObjectVersions", &r, e))
        }),
        Box::pin(async {
            c.s3.get_bucket_versioning()
                .bucket(name)
                .send()
                .await
                .map_err(|e| err::sdk("GetBucketVersioning", &r, e))
        }),
    )?;
    let block_public_access = pab
        .and_then(|p| p.public_access_block_configuration().cloned())
        .is_some_and(|p| {
            p.block_public_acls() == Some(true)
                && p.ignore_public_acls() == Some(true)
                && p.block_public_policy() == Some(true)
                && p.restrict_public_buckets() == Some(true)
        });
    let encryption = enc
        .and_then(|e| e.server_side_encryption_configuration().cloned())
        .and_then(|c| {
            c.rules().iter().find_map(|r| {
                r.apply_server_side_encryption_by_default()
                    .map(|d| d.sse_algorithm().as_str().to_string())
            })
        })
        .unwrap_or_default();
    let object_ownership = own
        .and_then(|o| o.ownership_controls().cloned())
        .and_then(|o| o.rules().first().map(|r| r.object_ownership().as_str().to_string()))
        .unwrap_or_default();
    let holds_data = objects.key_count().unwrap_or(0) > 0
        || !objects.contents().is_empty()
        || !versions.versions().is_empty()
        || !versions.delete_markers().is_empty();
    Ok(Observed {
        address: address.clone(),
        id: name.to_string(),
        spec: Spec::Bucket(BucketSpec {
            name: name.to_string(),
            block_public_access,
            encryption,
            object_ownership,
            versioned: versioning.status() == Some(&BucketVersioningStatus::Enabled),
            tags,
        }),
        status: Status {
            state: "exists".into(),
            holds_data,
            ..Default::default()
        },
    })
}

pub(crate) async fn read_bucket(c: &AwsCloud, address: &Address, name: &str) -> Result<Option<Observed>, CloudError> {
    match presence(c, name).await? {
        Presence::Here => {
            let tags = tags_of(c, name).await?;
            Ok(Some(observe(c, address, name, tags).await?))
        }
        Presence::Missing | Presence::Elsewhere => Ok(None),
    }
}

/// The desired buckets by name: owned ones observed, the rest look-alikes.
/// (Buckets are found by name only: a bucket the file no longer names is
/// not discovered, so it is never deleted — it is the app's data.)
pub(crate) async fn discover(c: &AwsCloud, scope: &Scope) -> Result<(Vec<Observed>, Vec<Foreign>), CloudError> {
    let (p, e) = (scope.project.as_str(), scope.environment.as_str());
    let wanted = util::Claims::new(scope).wanted(Kind::Bucket);
    let found = futures::future::try_join_all(wanted.iter().map(|(a, n)| async move {
        match presence(c, n).await? {
            Presence::Missing => Ok::<_, CloudError>(None),
            Presence::Elsewhere => Ok(Some(Err(Foreign {
                address: a.clone(),
                id: "another AWS account".into(),
                name: n.clone(),
            }))),
            Presence::Here => {
                // Its tags and its settings at once; the settings are kept
                // (and their errors reported) only when the tags say it is ours.
                let (tags, observed) = futures::join!(tags_of(c, n), observe(c, a, n, Tags::new()));
                let tags = tags?;
                if owned(a, &tags, p, e) {
                    let mut o = observed?;
                    if let Spec::Bucket(b) = &mut o.spec {
                        b.tags = tags;
                    }
                    Ok(Some(Ok(o)))
                } else {
                    Ok(Some(Err(Foreign {
                        address: a.clone(),
                        id: n.clone(),
                        name: n.clone(),
                    })))
                }
            }
        }
    }))
    .await?;
    let mut owned = Vec::new();
    let mut foreign = Vec::new();
    for f in found.into_iter().flatten() {
        match f {
            Ok(o) => owned.push(o),
            Err(f) => foreign.push(f),
        }
    }
    Ok((owned, foreign))
}

async fn configure(c: &AwsCloud, cur: Option<&BucketSpec>, s: &BucketSpec) -> Result<(), CloudError> {
    let r = res(&s.name);
    // Each setting is its own call, independent of the others: all at once.
    let public_access = async {
        if cur.is_none_or(|c| c.block_public_access != s.block_public_access) {
            let on = s.block_public_access;
            c.s3.put_public_access_block()
                .bucket(&s.name)
                .public_access_block_configuration(
                    PublicAccessBlockConfiguration::builder()
                        .block_public_acls(on)
                        .ignore_public_acls(on)
                        .block_public_policy(on)
                        .restrict_public_buckets(on)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| err::sdk("PutPublicAccessBlock", &r, e))?;
        }
        Ok::<(), CloudError>(())
    };
    let encryption = async {
        if cur.is_none_or(|c| c.encryption != s.encryption) && !s.encryption.is_empty() {
            c.s3.put_bucket_encryption()
                .bucket(&s.name)
                .server_side_encryption_configuration(
                    ServerSideEncryptionConfiguration::builder()
                        .rules(
                            ServerSideEncryptionRule::builder()
                                .apply_server_side_encryption_by_default(
                                    ServerSideEncryptionByDefault::builder()
                                        .sse_algorithm(ServerSideEncryption::from(s.encryption.as_str()))
                                        .build()
                                        .map_err(|e| err::other("PutBucketEncryption", &r, e.to_string()))?,
                                )
                                .build(),
                        )
                        .build()
                        .map_err(|e| err::other("PutBucketEncryption", &r, e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| err::sdk("PutBucketEncryption", &r, e))?;
        }
        Ok::<(), CloudError>(())
    };
    let ownership = async {
        if cur.is_some_and(|c| c.object_ownership != s.object_ownership) {
            c.s3.put_bucket_ownership_controls()
                .bucket(&s.name)
                .ownership_controls(
                    OwnershipControls::builder()
                        .rules(
                            OwnershipControlsRule::builder()
                                .object_ownership(ObjectOwnership::from(s.object_ownership.as_str()))
                                .build()
                                .map_err(|e| err::other("PutBucketOwnershipControls", &r, e.to_string()))?,
                        )
                        .build()
                        .map_err(|e| err::other("PutBucketOwnershipControls", &r, e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| err::sdk("PutBucketOwnershipControls", &r, e))?;
        }
        Ok::<(), CloudError>(())
    };
    // Never suspended on a bucket that was created unversioned (nothing to do).
    let versioning = async {
        if cur.map_or(s.versioned, |c| c.versioned != s.versioned) {
            let status = if s.versioned {
                BucketVersioningStatus::Enabled
            } else {
                BucketVersioningStatus::Suspended
            };
            c.s3.put_bucket_versioning()
                .bucket(&s.name)
                .versioning_configuration(VersioningConfiguration::builder().status(status).build())
                .send()
                .await
                .map_err(|e| err::sdk("PutBucketVersioning", &r, e))?;
        }
        Ok::<(), CloudError>(())
    };
    let tagging = async {
        if cur.is_none_or(|c| c.tags != s.tags) {
            c.s3.put_bucket_tagging()
                .bucket(&s.name)
                .tagging(
                    Tagging::builder()
                        .set_tag_set(Some(s3_tags(&s.tags)?))
                        .build()
                        .map_err(|e| err::other("PutBucketTagging", &r, e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| err::sdk("PutBucketTagging", &r, e))?;
        }
        Ok::<(), CloudError>(())
    };
    futures::try_join!(public_access, encryption, ownership, versioning, tagging)?;
    Ok(())
}

/// CreateBucket with its tags, region and object ownership in the call;
/// then the public access block and encryption before anything
/// can be written to it.
pub(crate) async fn create_bucket(c: &AwsCloud, s: &BucketSpec) -> Result<String, CloudError> {
    let r = res(&s.name);
    let mut conf = CreateBucketConfiguration::builder().set_tags(Some(s3_tags(&s.tags)?));
    // us-east-1 is the one region S3 refuses to be named in.
    if c.region != "us-east-1" {
        conf = conf.location_constraint(BucketLocationConstraint::from(c.region.as_str()));
    }
    c.s3.create_bucket()
        .bucket(&s.name)
        .create_bucket_configuration(conf.build())
        .object_ownership(ObjectOwnership::from(s.object_ownership.as_str()))
        .send()
        .await
        .map_err(|e| err::sdk("CreateBucket", &r, e))?;
    configure(c, None, s).await?;
    Ok(s.name.clone())
}

pub(crate) async fn update_bucket(c: &AwsCloud, cur: &BucketSpec, des: &BucketSpec) -> Result<(), CloudError> {
    configure(c, Some(cur), des).await
}

/// DeleteBucket: S3 refuses a bucket that holds objects (`BucketNotEmpty`),
/// which is the point: only `empty_bucket` (asked for) removes data.
pub(crate) async fn delete_bucket(c: &AwsCloud, name: &str) -> Result<(), CloudError> {
    c.s3.delete_bucket()
        .bucket(name)
        .send()
        .await
        .map_err(|e| err::sdk("DeleteBucket", &res(name), e))?;
    Ok(())
}

/// Every object version and delete marker, 1,000 per DeleteObjects call.
pub(crate) async fn empty_bucket(c: &AwsCloud, name: &str) -> Result<u64, CloudError> {
    let r = res(name);
    let mut deleted = 0u64;
    loop {
        let page =
            c.s3.list_object_versions()
                .bucket(name)
                .max_keys(1000)
                .send()
                .await
                .map_err(|e| err::sdk("ListObjectVersions", &r, e))?;
        let mut ids: Vec<ObjectIdentifier> = Vec::new();
        for (key, version) in page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(page.delete_markers().iter().map(|d| (d.key(), d.version_id())))
        {
            let Some(key) = key else { continue };
            ids.push(
                ObjectIdentifier::builder()
                    .key(key)
                    .set_version_id(version.filter(|v| *v != "null").map(str::to_string))
                    .build()
                    .map_err(|e| err::other("DeleteObjects", &r, e.to_string()))?,
            );
        }
        if ids.is_empty() {
            return Ok(deleted);
        }
        let n = ids.len() as u64;
        let out =
            c.s3.delete_objects()
                .bucket(name)
                .delete(
                    Delete::builder()
                        .set_objects(Some(ids))
                        .quiet(true)
                        .build()
                        .map_err(|e| err::other("DeleteObjects", &r, e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| err::sdk("DeleteObjects", &r, e))?;
        if let Some(e) = out.errors().first() {
            return Err(err::other(
                "DeleteObjects",
                &r,
                format!(
                    "{}: {} ({})",
                    e.code().unwrap_or("error"),
                    e.message().unwrap_or_default(),
                    e.key().unwrap_or_default()
                ),
            ));
        }
        deleted += n;
    }
}

// ---------------------------------------------------------------- the kind

impl AwsKind for BucketSpec {
    const BACKOFF_CAP: Duration = Duration::from_secs(10);

    async fn list(c: &AwsCloud, scope: &Scope) -> Result<kinds::Listing, CloudError> {
        Ok(self::discover(c, scope).await?.into())
    }

    async fn read(
        c: &AwsCloud,
        address: &Address,
        id: &str,
        _spec: &Self,
        _gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError> {
        read_bucket(c, address, id).await
    }

    async fn create(
        c: &AwsCloud,
        address: &Address,
        spec: &Self,
        _ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        Ok(kinds::made(address, create_bucket(c, spec).await?, spec.clone()))
    }

    async fn update(
        c: &AwsCloud,
        current: &Observed,
        was: &Self,
        desired: &Self,
        _ctx: &ApplyCtx,
        _gmap: &GroupMap,
    ) -> Result<Observed, CloudError> {
        update_bucket(c, was, desired).await?;
        Ok(kinds::updated(current, desired.clone()))
    }

    async fn delete(c: &AwsCloud, _current: &Observed, spec: &Self) -> Result<(), CloudError> {
        delete_bucket(c, &spec.name).await
    }

    async fn status(c: &AwsCloud, current: &Observed, spec: &Self) -> Result<Option<Status>, CloudError> {
        kinds::status_by_read(c, current, spec).await
    }

    fn ready(_spec: &Self, _status: &Status) -> bool {
        true
    }
}
