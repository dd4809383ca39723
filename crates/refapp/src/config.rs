//! Configuration from environment variables (optionally pre-loaded from an
//! env file). The variable names are the contract with fabrs's templates,
//! which render them into `/etc/<project>/app.env`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::redact::{Secrets, redact_url};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
pub const DEFAULT_S3_PREFIX: &str = "photos/";
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;
pub const DEFAULT_WORKER_CONCURRENCY: usize = 2;
/// Measured (benches/stack.sh, 2 cores shared with nginx): one runtime
/// thread serves the cached page with ~30% less CPU per request than one
/// per core, the difference being cross-thread wakeups; nginx in front
/// already spreads the clients over the cores.
pub const DEFAULT_WEB_THREADS: usize = 1;

/// Fully resolved configuration. `Debug` never prints secrets.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub database_replica_url: Option<String>,
    pub redis_url: String,
    pub amqp_url: String,
    pub s3_bucket: String,
    pub s3_prefix: String,
    pub aws_region: String,
    pub s3_endpoint_url: Option<String>,
    pub rendition_base_url: String,
    pub static_dir: PathBuf,
    pub max_upload_bytes: usize,
    pub worker_concurrency: usize,
    /// REFAPP_WEB_THREADS: the web process's runtime threads.
    pub web_threads: usize,
    pub revision: String,
    pub rust_log: Option<String>,
    /// Prefix of every Redis key (default `refapp:`); the index page is
    /// cached under `<prefix>page:index`.
    pub cache_prefix: String,
    /// Prefix of the AMQP names (default `refapp`): queue `<p>.render`,
    /// dead-letter exchange `<p>.dlx`, dead-letter queue `<p>.render.dead`.
    pub queue_prefix: String,
    /// Transient failures of a job are retried this many times before the
    /// job is dead-lettered.
    pub max_job_attempts: u32,
    /// Seconds a worker waits for jobs in hand after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// A pending row older than this with no render is re-enqueued by the
    /// worker's sweeper (covers a crash between INSERT and publish).
    pub requeue_after_secs: u64,
    /// TEST ONLY: sleep this long in the middle of a render job (after the
    /// first rendition is written) to widen the crash window in tests.
    pub test_render_delay_ms: u64,
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN when
    /// given through the configuration (env file or environment); otherwise
    /// the default AWS credential chain is used.
    pub aws_static_credentials: Option<(String, String, Option<String>)>,
    pub secrets: Secrets,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field(
                "database_replica_url",
                &self.database_replica_url.as_deref().map(redact_url),
            )
            .field("redis_url", &redact_url(&self.redis_url))
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_prefix", &self.s3_prefix)
            .field("aws_region", &self.aws_region)
            .field("s3_endpoint_url", &self.s3_endpoint_url.as_deref().map(redact_url))
            .field("rendition_base_url", &self.rendition_base_url)
            .field("static_dir", &self.static_dir)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("worker_concurrency", &self.worker_concurrency)
            .field("web_threads", &self.web_threads)
            .field("revision", &self.revision)
            .field("cache_prefix", &self.cache_prefix)
            .field("queue_prefix", &self.queue_prefix)
            .finish_non_exhaustive()
    }
}

/// Parse `KEY=VALUE` lines (blank lines and `#` comments ignored, an
/// optional leading `export `, values optionally in single or double quotes).
pub fn parse_env_file(text: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((k, v)) = line.split_once('=') else {
            bail!("line {}: expected KEY=VALUE", n + 1);
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("line {}: invalid variable name", n + 1);
        }
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

pub fn load_env_file(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading env file {}", path.display()))?;
    parse_env_file(&text).with_context(|| format!("parsing env file {}", path.display()))
}

impl Config {
    /// Real environment variables win over the env file's values.
    pub fn from_env(env_file: Option<&Path>) -> Result<Self> {
        let file_vars = match env_file {
            Some(p) => load_env_file(p)?,
            None => HashMap::new(),
        };
        Self::from_lookup(|k| std::env::var(k).ok().or_else(|| file_vars.get(k).cloned()))
    }

    pub fn from_map(map: &HashMap<String, String>) -> Result<Self> {
        Self::from_lookup(|k| map.get(k).cloned())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let req = |k: &str| get(k).with_context(|| format!("{k} is required"));
        fn num<T: std::str::FromStr>(k: &str, v: Option<String>, default: T) -> Result<T> {
            match v {
                None => Ok(default),
                Some(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{k}: not a valid number: {s:?}")),
            }
        }

        let listen: SocketAddr = get("REFAPP_LISTEN")
            .unwrap_or_else(|| DEFAULT_LISTEN.into())
            .parse()
            .context("REFAPP_LISTEN must be HOST:PORT")?;
        let database_url = req("DATABASE_URL")?;
        let database_replica_url = get("DATABASE_REPLICA_URL");
        let redis_url = req("REDIS_URL")?;
        let amqp_url = req("AMQP_URL")?;
        let s3_bucket = req("S3_BUCKET")?;
        let mut s3_prefix = get("S3_PREFIX").unwrap_or_else(|| DEFAULT_S3_PREFIX.into());
        if !s3_prefix.is_empty() && !s3_prefix.ends_with('/') {
            s3_prefix.push('/');
        }
        let aws_region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let s3_endpoint_url = get("S3_ENDPOINT_URL");
        let mut rendition_base_url =
            get("RENDITION_BASE_URL").unwrap_or_else(|| format!("https://{s3_bucket}.s3.{aws_region}.amazonaws.com/"));
        if !rendition_base_url.ends_with('/') {
            rendition_base_url.push('/');
        }
        let max_upload_bytes = num(
            "REFAPP_MAX_UPLOAD_BYTES",
            get("REFAPP_MAX_UPLOAD_BYTES"),
            DEFAULT_MAX_UPLOAD_BYTES,
        )?;
        let worker_concurrency: usize = num(
            "WORKER_CONCURRENCY",
            get("WORKER_CONCURRENCY"),
            DEFAULT_WORKER_CONCURRENCY,
        )?;
        if worker_concurrency == 0 || worker_concurrency > 256 {
            bail!("WORKER_CONCURRENCY must be between 1 and 256");
        }
        let web_threads: usize = num("REFAPP_WEB_THREADS", get("REFAPP_WEB_THREADS"), DEFAULT_WEB_THREADS)?;
        if web_threads == 0 || web_threads > 256 {
            bail!("REFAPP_WEB_THREADS must be between 1 and 256");
        }
        let mut secrets = Secrets::default();
        for u in [
            Some(&database_url),
            database_replica_url.as_ref(),
            Some(&redis_url),
            Some(&amqp_url),
        ]
        .into_iter()
        .flatten()
        {
            secrets.add_from_url(u);
        }
        let aws_static_credentials = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => {
                secrets.add(secret.clone());
                let token = get("AWS_SESSION_TOKEN");
                if let Some(t) = &token {
                    secrets.add(t.clone());
                }
                Some((id, secret, token))
            }
            _ => None,
        };
        Ok(Config {
            aws_static_credentials,
            listen,
            database_url,
            database_replica_url,
            redis_url,
            amqp_url,
            s3_bucket,
            s3_prefix,
            aws_region,
            s3_endpoint_url,
            rendition_base_url,
            static_dir: get("REFAPP_STATIC_DIR").unwrap_or_else(|| "./static".into()).into(),
            max_upload_bytes,
            worker_concurrency,
            web_threads,
            revision: get("REFAPP_REVISION").unwrap_or_else(|| "unknown".into()),
            rust_log: get("RUST_LOG"),
            cache_prefix: get("REFAPP_CACHE_PREFIX").unwrap_or_else(|| "refapp:".into()),
            queue_prefix: get("REFAPP_QUEUE_PREFIX").unwrap_or_else(|| "refapp".into()),
            max_job_attempts: num("REFAPP_MAX_JOB_ATTEMPTS", get("REFAPP_MAX_JOB_ATTEMPTS"), 5)?,
            shutdown_grace_secs: num("REFAPP_SHUTDOWN_GRACE_SECS", get("REFAPP_SHUTDOWN_GRACE_SECS"), 25)?,
            requeue_after_secs: num("REFAPP_REQUEUE_AFTER_SECS", get("REFAPP_REQUEUE_AFTER_SECS"), 600)?,
            test_render_delay_ms: num("REFAPP_TEST_RENDER_DELAY_MS", get("REFAPP_TEST_RENDER_DELAY_MS"), 0)?,
            secrets,
        })
    }

    pub fn index_cache_key(&self) -> String {
        format!("{}page:index", self.cache_prefix)
    }
    /// The index page's version: bumped after each change it shows (cache.rs).
    pub fn index_version_key(&self) -> String {
        format!("{}page:index:version", self.cache_prefix)
    }
    /// The photos whose change to the index page is being committed (cache.rs).
    pub fn index_changing_key(&self) -> String {
        format!("{}page:index:changing", self.cache_prefix)
    }
    pub fn render_queue(&self) -> String {
        format!("{}.render", self.queue_prefix)
    }
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.queue_prefix)
    }
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.render.dead", self.queue_prefix)
    }
    pub fn replica_url(&self) -> &str {
        self.database_replica_url.as_deref().unwrap_or(&self.database_url)
    }
    pub fn rendition_url(&self, key: &str) -> String {
        format!("{}{}", self.rendition_base_url, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        [
            ("DATABASE_URL", "postgres://app:pgpass@127.0.0.1:6432/app"),
            ("REDIS_URL", "redis://:redispass@127.0.0.1:6379/0"),
            ("AMQP_URL", "amqp://u:amqppass@127.0.0.1:5672/%2f"),
            ("S3_BUCKET", "b1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn defaults() {
        let c = Config::from_map(&base()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.s3_prefix, "photos/");
        assert_eq!(c.max_upload_bytes, 10485760);
        assert_eq!(c.worker_concurrency, 2);
        assert_eq!(c.rendition_base_url, "https://b1.s3.us-east-1.amazonaws.com/");
        assert_eq!(c.index_cache_key(), "refapp:page:index");
        assert_eq!(c.replica_url(), "postgres://app:pgpass@127.0.0.1:6432/app");
        assert_eq!(c.static_dir, PathBuf::from("./static"));
    }

    #[test]
    fn debug_hides_passwords() {
        let c = Config::from_map(&base()).unwrap();
        let d = format!("{c:?}");
        for p in ["pgpass", "redispass", "amqppass"] {
            assert!(!d.contains(p), "{p} leaked in {d}");
        }
        assert!(d.contains("127.0.0.1:6432"));
    }

    #[test]
    fn missing_required_is_an_error() {
        let mut m = base();
        m.remove("AMQP_URL");
        let e = Config::from_map(&m).unwrap_err().to_string();
        assert!(e.contains("AMQP_URL"), "{e}");
    }

    #[test]
    fn env_file_parsing() {
        let m = parse_env_file("# comment\n\nexport A=1\nB = \"two words\"\nC='x=y'\nD=\n").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x=y");
        assert_eq!(m["D"], "");
        assert!(parse_env_file("no equals sign").is_err());
        assert!(parse_env_file("BAD-NAME=1").is_err());
    }

    #[test]
    fn real_env_wins_over_file() {
        let file = parse_env_file("REFAPP_REVISION=from-file\nS3_PREFIX=p\n").unwrap();
        let mut env = base();
        env.insert("REFAPP_REVISION".into(), "from-env".into());
        let c = Config::from_lookup(|k| env.get(k).cloned().or_else(|| file.get(k).cloned())).unwrap();
        assert_eq!(c.revision, "from-env");
        assert_eq!(c.s3_prefix, "p/");
    }
}
