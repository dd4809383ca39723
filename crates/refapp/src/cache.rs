//! Redis: the shared state of the index page's cache. Lazily connected so
//! the web starts (and reports degraded on its healthcheck) when Redis is
//! down.
//!
//! Exact invalidation across every web server sharing one Redis:
//!   - `<prefix>page:index:version` is a counter bumped by the worker (with
//!     [`Cache::end_page_change`]) after a change to what the page shows
//!     (a render or a failure) is committed, and before the job is done;
//!   - `<prefix>page:index:changing` is the set of photos whose change is
//!     being committed: added to ([`Cache::begin_page_change`]) before the
//!     database commit, removed in the same transaction as the bump.
//!
//! Each web server keeps the page in memory, and a copy shared by all of
//! them is in Redis (`<prefix>page:index`), each tagged with the version it
//! was built at. A copy is built only from the primary database, after
//! reading the version with no change being committed, so it shows every
//! change counted in that version (an asynchronous replica might not).
//!
//! A web server validates its copy on every request with a [`Stamp`] read
//! AFTER the request arrived ([`Cache::fresh_stamp`]): the copy is served
//! only if it is tagged with the stamp's version and no change is being
//! committed. Why that is exact: a change committed before the request
//! arrived is, when the stamp is read, either still in `changing` (the page
//! is then built from the primary, not served from a copy) or already
//! counted in the stamp's version. The version is seeded with a random
//! value (`SET NX`) by whoever finds it missing, so a flushed or restarted
//! Redis never repeats a version an old copy is tagged with.
//!
//! Stamps are coalesced: one Redis round trip answers every request that
//! arrived before it was sent (requests arriving while a check is in flight
//! wait for the next one), so under load Redis sees one check per round
//! trip, not one per request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow};
use axum::body::Bytes;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{OnceCell, oneshot};

use crate::config::Config;

pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Backstop for a member of the `changing` set left by a job that never
/// finishes (a redelivered job removes it): while any is left, pages are
/// built from the database instead of being cached.
pub const CHANGING_TTL_SECS: u64 = 120;

/// What a web server must check its cached page against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub version: u64,
    /// A change is being committed: do not serve or store a cached page.
    pub changing: bool,
}

#[derive(Clone)]
pub struct Cache(Arc<Inner>);

struct Inner {
    cfg: Config,
    conn: OnceCell<ConnectionManager>,
    checks: Mutex<Checks>,
}

#[derive(Default)]
struct Checks {
    /// Requests waiting for a stamp read after they arrived.
    waiting: Vec<oneshot::Sender<Result<Stamp, String>>>,
    /// A task is reading stamps (and will serve `waiting` next).
    running: bool,
}

/// A transaction that first seeds the version `key` if it is missing.
fn seeding(key: &str) -> redis::Pipeline {
    let mut p = redis::pipe();
    p.atomic().cmd("SET").arg(key).arg(seed()).arg("NX").ignore();
    p
}

/// A random, positive start for the version, far from u64/i64 overflow.
fn seed() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 >> 4
}

impl Cache {
    pub fn new(cfg: Config) -> Self {
        Cache(Arc::new(Inner {
            cfg,
            conn: OnceCell::new(),
            checks: Mutex::new(Checks::default()),
        }))
    }

    async fn conn(&self) -> Result<ConnectionManager> {
        // Lock-free once connected; a failed attempt leaves the cell empty
        // and the next call tries again.
        let c = self
            .0
            .conn
            .get_or_try_init(|| async {
                let cfg = &self.0.cfg;
                let client = redis::Client::open(cfg.redis_url.as_str())
                    .map_err(|e| anyhow!("invalid REDIS_URL: {}", cfg.secrets.scrub(&e.to_string())))?;
                let mcfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(1);
                tokio::time::timeout(TIMEOUT * 2, ConnectionManager::new_with_config(client, mcfg))
                    .await
                    .map_err(|_| anyhow!("connecting to Redis timed out"))?
                    .map_err(|e| anyhow!("connecting to Redis: {}", cfg.secrets.scrub(&e.to_string())))
            })
            .await?;
        Ok(c.clone())
    }

    fn err(&self, what: &str, e: redis::RedisError) -> anyhow::Error {
        anyhow!("Redis {what}: {}", self.0.cfg.secrets.scrub(&e.to_string()))
    }

    pub async fn ping(&self) -> Result<()> {
        let mut c = self.conn().await?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut c)
            .await
            .map_err(|e| self.err("PING", e))?;
        if pong != "PONG" {
            return Err(anyhow!("Redis PING answered {pong:?}"));
        }
        Ok(())
    }

    /// The index page's stamp now: one Redis round trip of two reads (a
    /// second one, rarely, to seed a missing version).
    pub async fn stamp(&self) -> Result<Stamp> {
        let cfg = &self.0.cfg;
        let (version_key, changing_key) = (cfg.index_version_key(), cfg.index_changing_key());
        let mut c = self.conn().await?;
        // SCARD before GET (in this order on one connection; no MULTI needed):
        // a change missing from `changing` when SCARD runs has bumped the
        // version already, in the same transaction that removed it.
        let (changing, version): (u64, Option<u64>) = redis::pipe()
            .scard(&changing_key)
            .get(&version_key)
            .query_async(&mut c)
            .await
            .map_err(|e| self.err("reading the page version", e))?;
        let version = match version {
            Some(v) => v,
            None => {
                let (v,): (u64,) = seeding(&version_key)
                    .get(&version_key)
                    .query_async(&mut c)
                    .await
                    .map_err(|e| self.err("seeding the page version", e))?;
                v
            }
        };
        Ok(Stamp {
            version,
            changing: changing > 0,
        })
    }

    /// A stamp read after this call began, shared with the other callers
    /// waiting at the same time (see the module doc). Errors (Redis down or
    /// slow) come back as text: the caller bypasses the cache.
    pub async fn fresh_stamp(&self) -> Result<Stamp, String> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut g = self.0.checks.lock().unwrap_or_else(|e| e.into_inner());
            g.waiting.push(tx);
            !std::mem::replace(&mut g.running, true)
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.serve_stamps().await });
        }
        rx.await.unwrap_or_else(|_| Err("page version check abandoned".into()))
    }

    async fn serve_stamps(&self) {
        // Whatever ends this task (even a panic), the next caller starts a
        // new one and nobody waits forever.
        struct Done<'a>(&'a Inner);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                let mut g = self.0.checks.lock().unwrap_or_else(|e| e.into_inner());
                g.running = false;
                g.waiting.clear();
            }
        }
        let done = Done(&self.0);
        loop {
            let batch = {
                let mut g = self.0.checks.lock().unwrap_or_else(|e| e.into_inner());
                if g.waiting.is_empty() {
                    g.running = false;
                    // Under the lock, and without the guard's drop: once the
                    // lock is released a new task may already be serving
                    // new waiters, which the guard would drop.
                    std::mem::forget(done);
                    return;
                }
                std::mem::take(&mut g.waiting)
            };
            let res = match tokio::time::timeout(TIMEOUT, self.stamp()).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err(format!("no answer from Redis within {TIMEOUT:?}")),
            };
            for w in batch {
                let _ = w.send(res.clone());
            }
        }
    }

    /// Before committing a change the page shows (worker).
    pub async fn begin_page_change(&self, photo: &str) -> Result<()> {
        let key = self.0.cfg.index_changing_key();
        let mut c = self.conn().await?;
        redis::pipe()
            .atomic()
            .sadd(&key, photo)
            .ignore()
            .expire(&key, CHANGING_TTL_SECS as i64)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| self.err("SADD", e))
    }

    /// After the change is committed (worker), before the job is done.
    /// Also right for a change that was never begun (SREM of no member).
    pub async fn end_page_change(&self, photo: &str) -> Result<()> {
        let cfg = &self.0.cfg;
        let version_key = cfg.index_version_key();
        let mut c = self.conn().await?;
        seeding(&version_key)
            .incr(&version_key, 1)
            .ignore()
            .srem(cfg.index_changing_key(), photo)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| self.err("bumping the page version", e))
    }

    /// The page shared by the web servers, if it was built at `version`.
    pub async fn get_page(&self, version: u64) -> Result<Option<Bytes>> {
        let mut c = self.conn().await?;
        let v: Option<Vec<u8>> = c
            .get(self.0.cfg.index_cache_key())
            .await
            .map_err(|e| self.err("GET", e))?;
        Ok(v.and_then(|v| {
            let nl = v.iter().position(|&b| b == b'\n')?;
            let tag: u64 = std::str::from_utf8(&v[..nl]).ok()?.parse().ok()?;
            (tag == version).then(|| Bytes::from(v).slice(nl + 1..))
        }))
    }

    pub async fn set_page(&self, version: u64, html: &[u8], ttl_secs: u64) -> Result<()> {
        let mut value = format!("{version}\n").into_bytes();
        value.extend_from_slice(html);
        let mut c = self.conn().await?;
        c.set_ex::<_, _, ()>(self.0.cfg.index_cache_key(), value, ttl_secs)
            .await
            .map_err(|e| self.err("SET", e))
    }
}
