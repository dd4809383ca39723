//! S3 access (originals and renditions).

use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::{BehaviorVersion, Region, timeout::TimeoutConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use crate::config::Config;

#[derive(Clone)]
pub struct Storage {
    pub client: Client,
    pub bucket: String,
}

/// Build an S3 client: region from AWS_REGION, credentials from the default
/// AWS chain (env, profile, IMDS...) unless the config (e.g. the env file)
/// carries static AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. When
/// S3_ENDPOINT_URL is set (moto, MinIO) path-style addressing is used.
pub async fn s3_client(cfg: &Config) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(cfg.aws_region.clone()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some((id, secret, token)) = &cfg.aws_static_credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            id.clone(),
            secret.clone(),
            token.clone(),
            None,
            "refapp-config",
        ));
    }
    let shared = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&shared);
    if let Some(ep) = &cfg.s3_endpoint_url {
        b = b.endpoint_url(ep).force_path_style(true);
    }
    Client::from_conf(b.build())
}

impl Storage {
    pub async fn new(cfg: &Config) -> Self {
        Storage {
            client: s3_client(cfg).await,
            bucket: cfg.s3_bucket.clone(),
        }
    }

    pub async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("S3 put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    /// `Ok(None)` when the object does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let data = out
                    .body
                    .collect()
                    .await
                    .with_context(|| format!("S3 get {key}: reading body"))?;
                Ok(Some(data.into_bytes().to_vec()))
            }
            Err(e) => {
                if let Some(service) = e.as_service_error()
                    && service.is_no_such_key()
                {
                    return Ok(None);
                }
                Err(anyhow::anyhow!(
                    "S3 get {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                ))
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("S3 delete {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    /// All keys under a prefix (tests and tooling).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("S3 list {prefix}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }
}
