//! What deploy needs from an object store (S3 in production, moto in tests,
//! memory in scenario tests): release artifacts, the deploy lock, the audit
//! trail. A store is bound to one bucket; keys are full object keys.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;

use crate::cloud::CloudError;

/// What `head` tells about an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// User metadata (`x-amz-meta-*`), keys lower-case without the prefix.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// An object already had the key; nothing was written (S3 answered 412
    /// to `If-None-Match: *`).
    AlreadyExists,
}

pub trait Store: Send + Sync {
    /// The bucket, for messages (`s3://bucket/key`).
    fn bucket(&self) -> &str;

    /// The object's size and metadata, or None when there is no such object.
    /// A missing bucket is an error (`ErrorKind::NotFound`, naming the bucket).
    fn head(&self, key: &str) -> impl Future<Output = Result<Option<ObjectMeta>, CloudError>> + Send;

    /// The object's body, or None when there is no such object.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, CloudError>> + Send;

    /// Write the object only if no object has this key (`If-None-Match: *`):
    /// atomic, the basis of the deploy lock.
    fn put_new(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: BTreeMap<String, String>,
    ) -> impl Future<Output = Result<PutOutcome, CloudError>> + Send;

    /// Upload a file's content, only if no object has this key (same
    /// condition as `put_new`), streaming it from disk.
    fn put_file_new(
        &self,
        key: &str,
        path: &Path,
        metadata: BTreeMap<String, String>,
    ) -> impl Future<Output = Result<PutOutcome, CloudError>> + Send;

    /// Delete the object; deleting a missing object is success.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Keys under the prefix, sorted, all pages.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send;
}
