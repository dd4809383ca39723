//! `Store` on S3: one bucket, conditional writes (`If-None-Match: *`) for
//! the deploy lock and for artifacts that must never be overwritten.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use fabrs_cloud::{CloudError, ErrorKind};
use fabrs_cloud::{ObjectMeta, PutOutcome, Store};

use crate::err;

/// An S3 bucket as a `Store`. Cheap to clone (the client is shared).
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    pub(crate) fn new(client: aws_sdk_s3::Client, bucket: &str) -> S3Store {
        S3Store {
            client,
            bucket: bucket.to_string(),
        }
    }

    fn resource(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn bucket_resource(&self) -> String {
        format!("s3 bucket {}", self.bucket)
    }

    fn no_bucket(&self, operation: &str) -> CloudError {
        err::not_found(
            operation,
            &self.bucket_resource(),
            format!(
                "the bucket {} does not exist: `fabrs create-env` makes the artifact bucket (artifacts.bucket)",
                self.bucket
            ),
        )
    }

    /// An SDK error of an object operation: a missing bucket names the
    /// bucket, anything else the object.
    fn error<E>(&self, operation: &str, key: &str, e: SdkError<E, HttpResponse>) -> CloudError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if code_of(&e) == Some("NoSuchBucket") {
            return self.no_bucket(operation);
        }
        err::sdk(operation, &self.resource(key), e)
    }

    /// HeadObject answered 404, which S3 also does (without a body, so
    /// without an error code) when the bucket is missing: ask HeadBucket.
    async fn check_bucket(&self, operation: &str) -> Result<(), CloudError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) || code_of(&e) == Some("NoSuchBucket") => {
                Err(self.no_bucket(operation))
            }
            Err(e) => Err(err::sdk("HeadBucket", &self.bucket_resource(), e)),
        }
    }

    async fn put(
        &self,
        operation: &str,
        key: &str,
        body: ByteStream,
        metadata: BTreeMap<String, String>,
    ) -> Result<PutOutcome, CloudError> {
        let r = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .set_metadata((!metadata.is_empty()).then(|| metadata.into_iter().collect()))
            .body(body)
            .send()
            .await;
        match r {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if status_of(&e) == Some(412) || code_of(&e) == Some("PreconditionFailed") => {
                Ok(PutOutcome::AlreadyExists)
            }
            // 409 ConditionalRequestConflict (a concurrent conditional write
            // of the same key): Transient via err::kind_of, the caller retries.
            Err(e) => Err(self.error(operation, key, e)),
        }
    }
}

fn code_of<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Option<&str> {
    match e {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    match e {
        SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
        _ => None,
    }
}

impl Store for S3Store {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, CloudError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(o) => Ok(Some(ObjectMeta {
                size: o.content_length().unwrap_or(0).max(0) as u64,
                metadata: o
                    .metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect())
                    .unwrap_or_default(),
            })),
            Err(e) if status_of(&e) == Some(404) && code_of(&e) != Some("NoSuchBucket") => {
                self.check_bucket("HeadObject").await?;
                Ok(None)
            }
            Err(e) => Err(self.error("HeadObject", key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CloudError> {
        let out = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(o) => o,
            Err(e) if code_of(&e) == Some("NoSuchKey") => return Ok(None),
            Err(e) => return Err(self.error("GetObject", key, e)),
        };
        let body = out.body.collect().await.map_err(|e| {
            CloudError::new(
                ErrorKind::Transient,
                "GetObject",
                self.resource(key),
                format!("reading the body: {}", e.to_string().replace('\n', " ")),
            )
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn put_new(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: BTreeMap<String, String>,
    ) -> Result<PutOutcome, CloudError> {
        self.put("PutObject", key, ByteStream::from(body), metadata).await
    }

    async fn put_file_new(
        &self,
        key: &str,
        path: &Path,
        metadata: BTreeMap<String, String>,
    ) -> Result<PutOutcome, CloudError> {
        let body = ByteStream::from_path(path).await.map_err(|e| {
            CloudError::new(
                ErrorKind::Other,
                "PutObject",
                self.resource(key),
                format!("cannot read {}: {}", path.display(), e.to_string().replace('\n', " ")),
            )
        })?;
        self.put("PutObject", key, body, metadata).await
    }

    async fn delete(&self, key: &str) -> Result<(), CloudError> {
        // S3 answers 204 for a key that does not exist.
        match self.client.delete_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(()),
            Err(e) if code_of(&e) == Some("NoSuchKey") => Ok(()),
            Err(e) => Err(self.error("DeleteObject", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, CloudError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", &format!("{prefix}*"), e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key()).map(str::to_string));
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}
