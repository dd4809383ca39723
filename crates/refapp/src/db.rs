//! PostgreSQL access, planned for PgBouncer in transaction pooling mode:
//! every query goes through `query_typed*`/`execute_typed` (unnamed
//! statement, parse+bind+execute in one round trip) or the simple query
//! protocol (`simple_query`/`batch_execute`). Nothing here calls `prepare`
//! or `query`, which create NAMED statements (s0, s1, ...) that break when
//! PgBouncer hands the next transaction to another server connection.
//! Only built-in types are sent or read (uuid and jsonb are cast to text),
//! so tokio-postgres never runs its own (named) type-lookup statements.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};
use uuid::Uuid;

use crate::redact::Secrets;

/// A small connection pool. Connections are opened lazily, so a process
/// starts even when the database is down (the healthcheck then says so).
#[derive(Clone)]
pub struct Pool(Arc<PoolInner>);

struct PoolInner {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
    secrets: Secrets,
}

pub struct PooledClient {
    client: Option<Client>,
    pool: Arc<PoolInner>,
    _permit: OwnedSemaphorePermit,
}

impl Deref for PooledClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("client present until drop")
    }
}
impl DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("client present until drop")
    }
}
impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            self.pool.idle.lock().unwrap().push(c);
        }
    }
}

impl Pool {
    pub fn new(url: &str, max_size: usize, secrets: Secrets) -> Result<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            anyhow::anyhow!("invalid database URL: {}", secrets.scrub(&e.to_string()))
        })?;
        config.connect_timeout(Duration::from_secs(3));
        config.application_name("refapp");
        Ok(Pool(Arc::new(PoolInner {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_size.max(1))),
            secrets,
        })))
    }

    pub async fn get(&self) -> Result<PooledClient> {
        let permit = self
            .0
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        loop {
            let c = self.0.idle.lock().unwrap().pop();
            match c {
                Some(c) if !c.is_closed() => {
                    return Ok(PooledClient {
                        client: Some(c),
                        pool: self.0.clone(),
                        _permit: permit,
                    });
                }
                Some(_) => continue,
                None => break,
            }
        }
        let (client, conn) = self
            .0
            .config
            .connect(NoTls)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {}", self.0.secrets.scrub(&e.to_string())))?;
        let secrets = self.0.secrets.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %secrets.scrub(&e.to_string()), "postgres connection ended");
            }
        });
        Ok(PooledClient {
            client: Some(client),
            pool: self.0.clone(),
            _permit: permit,
        })
    }
}

/// Cheap liveness query via the simple protocol.
pub async fn ping(pool: &Pool) -> Result<()> {
    let c = pool.get().await?;
    c.simple_query("SELECT 1").await.context("SELECT 1")?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rendition {
    pub size: u32,
    pub format: String,
    pub key: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone)]
pub struct PhotoRow {
    pub id: Uuid,
    pub status: String,
    pub original_key: String,
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub renditions: Vec<Rendition>,
    pub error: Option<String>,
    pub created_at: String,
}

const PHOTO_COLUMNS: &str = "id::text, status, original_key, content_type, width, height, \
     renditions::text, error, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

fn photo_from_row(r: &Row) -> Result<PhotoRow> {
    let id: String = r.try_get(0)?;
    let renditions: Option<String> = r.try_get(6)?;
    Ok(PhotoRow {
        id: id.parse().context("photo id")?,
        status: r.try_get(1)?,
        original_key: r.try_get(2)?,
        content_type: r.try_get(3)?,
        width: r.try_get(4)?,
        height: r.try_get(5)?,
        renditions: match renditions {
            Some(j) => serde_json::from_str(&j).context("renditions json")?,
            None => Vec::new(),
        },
        error: r.try_get(7)?,
        created_at: r.try_get(8)?,
    })
}

type P<'a> = (&'a (dyn ToSql + Sync), Type);

pub async fn insert_photo(
    c: &Client,
    id: Uuid,
    original_key: &str,
    content_type: &str,
    width: u32,
    height: u32,
    bytes: usize,
) -> Result<()> {
    let id = id.to_string();
    let (w, h, b) = (width as i32, height as i32, bytes as i64);
    let params: [P; 6] = [
        (&id, Type::TEXT),
        (&original_key, Type::TEXT),
        (&content_type, Type::TEXT),
        (&w, Type::INT4),
        (&h, Type::INT4),
        (&b, Type::INT8),
    ];
    c.execute_typed(
        "INSERT INTO photos (id, original_key, content_type, width, height, bytes) \
         VALUES ($1::uuid, $2, $3, $4, $5, $6)",
        &params,
    )
    .await
    .context("inserting photo row")?;
    Ok(())
}

pub async fn get_photo(c: &Client, id: Uuid) -> Result<Option<PhotoRow>> {
    let id = id.to_string();
    let sql = format!("SELECT {PHOTO_COLUMNS} FROM photos WHERE id = $1::uuid");
    let row = c
        .query_typed_opt(&sql, &[(&id, Type::TEXT)])
        .await
        .context("reading photo")?;
    row.as_ref().map(photo_from_row).transpose()
}

pub async fn recent_photos(c: &Client, limit: i64) -> Result<Vec<PhotoRow>> {
    let sql = format!("SELECT {PHOTO_COLUMNS} FROM photos ORDER BY created_at DESC, id LIMIT $1");
    let rows = c
        .query_typed(&sql, &[(&limit, Type::INT8)])
        .await
        .context("listing photos")?;
    rows.iter().map(photo_from_row).collect()
}

/// Idempotent: a second call (redelivered job) changes nothing and returns 0.
pub async fn mark_rendered(c: &Client, id: Uuid, renditions: &[Rendition]) -> Result<u64> {
    let id = id.to_string();
    let json = serde_json::to_string(renditions)?;
    let n = c
        .execute_typed(
            "UPDATE photos SET status = 'rendered', renditions = $2::jsonb, error = NULL, \
             rendered_at = now() WHERE id = $1::uuid AND status <> 'rendered'",
            &[(&id, Type::TEXT), (&json, Type::TEXT)],
        )
        .await
        .context("marking photo rendered")?;
    Ok(n)
}

/// Only a pending photo can fail; a rendered one stays rendered.
pub async fn mark_failed(c: &Client, id: Uuid, error: &str) -> Result<u64> {
    let id = id.to_string();
    let n = c
        .execute_typed(
            "UPDATE photos SET status = 'failed', error = $2 WHERE id = $1::uuid AND status = 'pending'",
            &[(&id, Type::TEXT), (&error, Type::TEXT)],
        )
        .await
        .context("marking photo failed")?;
    Ok(n)
}

pub async fn delete_photo(c: &Client, id: Uuid) -> Result<u64> {
    let id = id.to_string();
    c.execute_typed("DELETE FROM photos WHERE id = $1::uuid", &[(&id, Type::TEXT)])
        .await
        .context("deleting photo row")
}

/// Claim pending photos whose job may have been lost (e.g. the web process
/// died between INSERT and publish): bumps `enqueued_at` so that concurrent
/// sweepers do not claim the same rows, and returns (id, original_key).
pub async fn claim_stale_pending(c: &Client, older_than_secs: i64) -> Result<Vec<(Uuid, String)>> {
    let rows = c
        .query_typed(
            "UPDATE photos SET enqueued_at = now() WHERE id IN ( \
               SELECT id FROM photos WHERE status = 'pending' \
               AND enqueued_at < now() - make_interval(secs => $1) \
               ORDER BY enqueued_at LIMIT 100 FOR UPDATE SKIP LOCKED) \
             RETURNING id::text, original_key",
            &[(&(older_than_secs as f64), Type::FLOAT8)],
        )
        .await
        .context("claiming stale pending photos")?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get(0)?;
            Ok((id.parse()?, r.try_get(1)?))
        })
        .collect()
}
