//! The render worker.
//!
//! A job is acked only after the renditions are in S3, the row says
//! 'rendered' and the index page's version is bumped. The commit that
//! changes the page is bracketed for the web servers (cache.rs): announced
//! in Redis before it, counted in the page's version after it, so no web
//! server serves a page without the photo once its status says rendered.
//! Everything it writes is idempotent (deterministic S3 keys, `UPDATE ...
//! WHERE status <> 'rendered'`), so a job redelivered after a crash renders
//! once in effect.
//!
//! Failures: a poison job (undecodable image, missing original, malformed
//! message) is rejected without requeue, so RabbitMQ dead-letters it to
//! `<prefix>.render.dead`, and the row is marked 'failed'. A transient
//! failure (S3, PostgreSQL, Redis) is retried: after a backoff the job is
//! republished with its attempt counter + 1 and the original acked; after
//! REFAPP_MAX_JOB_ATTEMPTS attempts it is dead-lettered too.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::cache::Cache;
use crate::config::Config;
use crate::db::{self, Pool, Rendition};
use crate::imaging::{self, RenderError};
use crate::queue::{self, RenderJob};
use crate::storage::Storage;

struct Ctx {
    cfg: Config,
    db: Pool,
    storage: Storage,
    cache: Cache,
    /// Confirm-mode channel for retries and the sweeper.
    publish: Channel,
}

#[derive(Debug)]
enum JobError {
    /// Will never succeed: dead-letter and mark failed.
    Poison(String),
    /// May succeed later: retry with a bounded attempt count.
    Transient(anyhow::Error),
}

fn transient<E: Into<anyhow::Error>>(e: E) -> JobError {
    JobError::Transient(e.into())
}

pub fn rendition_key(original_key: &str, size: u32, ext: &str) -> String {
    let dir = original_key.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    if dir.is_empty() {
        format!("{size}.{ext}")
    } else {
        format!("{dir}/{size}.{ext}")
    }
}

/// The S3 keys a photo ends up with (original + every rendition).
pub fn expected_keys(original_key: &str) -> Vec<String> {
    let mut keys = vec![original_key.to_string()];
    for size in imaging::SIZES {
        for f in imaging::OutFormat::ALL {
            keys.push(rendition_key(original_key, size, f.ext()));
        }
    }
    keys.sort();
    keys
}

async fn process(ctx: &Ctx, data: &[u8]) -> Result<(), JobError> {
    let job: RenderJob =
        serde_json::from_slice(data).map_err(|e| JobError::Poison(format!("malformed job message: {e}")))?;
    let row = {
        let c = ctx.db.get().await.map_err(transient)?;
        db::get_photo(&c, job.photo_id).await.map_err(transient)?
    };
    let Some(row) = row else {
        // The upload was rolled back (publish failed after INSERT and the
        // row was deleted) or the photo was removed: nothing to do.
        tracing::warn!(photo_id = %job.photo_id, "job for unknown photo dropped");
        return Ok(());
    };
    match row.status.as_str() {
        "rendered" => {
            // Redelivered after the row update (e.g. the version bump failed
            // or the worker died before acking): finish the remaining step.
            let id = row.id.to_string();
            ctx.cache.end_page_change(&id).await.map_err(transient)?;
            return Ok(());
        }
        "failed" => return Ok(()),
        _ => {}
    }
    if row.original_key != job.key {
        tracing::warn!(photo_id = %job.photo_id, "job key differs from the row's; using the row's");
    }
    let original = ctx
        .storage
        .get(&row.original_key)
        .await
        .map_err(transient)?
        .ok_or_else(|| JobError::Poison(format!("original {} is missing", row.original_key)))?;
    let rendered = tokio::task::spawn_blocking(move || imaging::render(&original))
        .await
        .map_err(|e| transient(anyhow::anyhow!("render task: {e}")))?
        .map_err(|e: RenderError| JobError::Poison(e.to_string()))?;

    let mut renditions = Vec::with_capacity(rendered.len());
    for (i, r) in rendered.into_iter().enumerate() {
        let key = rendition_key(&row.original_key, r.size, r.format.ext());
        renditions.push(Rendition {
            size: r.size,
            format: r.format.ext().to_string(),
            key: key.clone(),
            width: r.width,
            height: r.height,
        });
        ctx.storage
            .put(&key, r.bytes, r.format.content_type())
            .await
            .map_err(transient)?;
        if i == 0 && ctx.cfg.test_render_delay_ms > 0 {
            // REFAPP_TEST_RENDER_DELAY_MS: tests kill the worker here, with
            // part of the renditions written and the row still pending.
            tracing::info!(photo_id = %row.id, "test render delay");
            tokio::time::sleep(Duration::from_millis(ctx.cfg.test_render_delay_ms)).await;
        }
    }
    let id = row.id.to_string();
    ctx.cache.begin_page_change(&id).await.map_err(transient)?;
    let marked = async {
        let c = ctx.db.get().await?;
        db::mark_rendered(&c, row.id, &renditions).await
    }
    .await;
    // Even after an error: the commit may have happened all the same.
    let ended = ctx.cache.end_page_change(&id).await;
    marked.map_err(transient)?;
    ended.map_err(transient)?;
    tracing::info!(photo_id = %row.id, renditions = renditions.len(), "rendered");
    Ok(())
}

fn photo_id_of(data: &[u8]) -> Option<Uuid> {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()?
        .get("photo_id")?
        .as_str()?
        .parse()
        .ok()
}

async fn mark_failed(ctx: &Ctx, data: &[u8], why: &str) -> Result<()> {
    if let Some(id) = photo_id_of(data) {
        // The page shows failed photos too. Best effort, as recording the
        // failure matters more (with Redis down the web servers bypass
        // their caches anyway).
        let key = id.to_string();
        let _ = ctx.cache.begin_page_change(&key).await;
        let marked = async {
            let c = ctx.db.get().await?;
            db::mark_failed(&c, id, why).await
        }
        .await;
        let _ = ctx.cache.end_page_change(&key).await;
        marked?;
    }
    Ok(())
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(6)).min(10_000))
}

async fn handle(ctx: Arc<Ctx>, d: Delivery) {
    let attempt = queue::attempt_of(&d.properties);
    let result = process(&ctx, &d.data).await;
    let outcome: Result<&str> = async {
        match result {
            Ok(()) => {
                d.ack(BasicAckOptions::default()).await?;
                Ok("done")
            }
            Err(JobError::Poison(why)) => {
                tracing::error!(attempt, error = %why, "poison job: dead-lettering");
                if let Err(e) = mark_failed(&ctx, &d.data, &why).await {
                    // Could not record the failure: try again later.
                    tracing::warn!(error = %ctx.cfg.secrets.scrub(&format!("{e:#}")), "marking failed");
                    tokio::time::sleep(backoff(attempt)).await;
                    d.nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
                    return Ok("requeued");
                }
                d.reject(BasicRejectOptions { requeue: false }).await?;
                Ok("dead-lettered")
            }
            Err(JobError::Transient(e)) => {
                let msg = ctx.cfg.secrets.scrub(&format!("{e:#}"));
                if attempt >= ctx.cfg.max_job_attempts {
                    tracing::error!(attempt, error = %msg, "giving up after transient failures: dead-lettering");
                    let _ = mark_failed(&ctx, &d.data, &format!("gave up after {attempt} attempts: {msg}")).await;
                    d.reject(BasicRejectOptions { requeue: false }).await?;
                    return Ok("dead-lettered");
                }
                tracing::warn!(attempt, error = %msg, "transient failure: retrying");
                tokio::time::sleep(backoff(attempt)).await;
                let retried = queue::publish_confirmed(
                    &ctx.publish,
                    &ctx.cfg.render_queue(),
                    &d.data,
                    queue::job_properties(attempt + 1),
                )
                .await;
                match retried {
                    Ok(()) => {
                        d.ack(BasicAckOptions::default()).await?;
                        Ok("retry scheduled")
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "republish failed: requeueing");
                        d.nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await?;
                        Ok("requeued")
                    }
                }
            }
        }
    }
    .await;
    match outcome {
        Ok(what) => tracing::debug!(what, "job finished"),
        // The channel is gone: the broker redelivers the job.
        Err(e) => tracing::error!(error = %format!("{e:#}"), "could not settle job"),
    }
}

/// Re-enqueue pending photos whose job was lost (see web.rs).
async fn sweep(ctx: &Ctx) -> Result<usize> {
    let claimed = {
        let c = ctx.db.get().await?;
        db::claim_stale_pending(&c, ctx.cfg.requeue_after_secs as i64).await?
    };
    for (photo_id, key) in &claimed {
        let job = RenderJob {
            photo_id: *photo_id,
            key: key.clone(),
        };
        queue::publish_confirmed(
            &ctx.publish,
            &ctx.cfg.render_queue(),
            &serde_json::to_vec(&job)?,
            queue::job_properties(1),
        )
        .await?;
        tracing::info!(%photo_id, "re-enqueued stale pending photo");
    }
    Ok(claimed.len())
}

pub async fn run(cfg: Config, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let conn: Connection = queue::connect(&cfg, "worker").await?;
    let consume = conn.create_channel().await.context("opening channel")?;
    queue::declare_topology(&consume, &cfg).await?;
    let prefetch = u16::try_from(cfg.worker_concurrency).context("WORKER_CONCURRENCY")?;
    consume
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .context("basic.qos")?;
    let publish = conn.create_channel().await.context("opening channel")?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("confirm.select")?;

    let ctx = Arc::new(Ctx {
        db: Pool::new(&cfg.database_url, cfg.worker_concurrency + 1, cfg.secrets.clone())?,
        storage: Storage::new(&cfg).await,
        cache: Cache::new(cfg.clone()),
        publish,
        cfg: cfg.clone(),
    });

    let tag = format!("refapp-worker-{}", Uuid::new_v4());
    let mut consumer = consume
        .basic_consume(
            cfg.render_queue().into(),
            tag.clone().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("basic.consume")?;
    tracing::info!(queue = %cfg.render_queue(), concurrency = cfg.worker_concurrency, "worker consuming");

    let sweeper = {
        let ctx = ctx.clone();
        let every = Duration::from_secs(cfg.requeue_after_secs.clamp(1, 60));
        tokio::spawn(async move {
            loop {
                match sweep(&ctx).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(n, "sweeper re-enqueued photos"),
                    Err(e) => {
                        tracing::warn!(error = %ctx.cfg.secrets.scrub(&format!("{e:#}")), "sweeper failed")
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    };

    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    let stopped_by: Result<()> = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(d)) => { tasks.spawn(handle(ctx.clone(), d)); }
                Some(Err(e)) => break Err(anyhow::anyhow!("consumer failed: {}", cfg.secrets.scrub(&e.to_string()))),
                None => break Err(anyhow::anyhow!("consumer was cancelled by the broker")),
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done { tracing::error!(error = %e, "job task panicked"); }
            }
        }
    };
    sweeper.abort();
    tracing::info!(in_flight = tasks.len(), "worker stopping: no new jobs");
    if stopped_by.is_ok() {
        // Stop deliveries, hand back the ones prefetched but not started.
        let _ = consume
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
            let _ = d
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
        }
    }
    let grace = Duration::from_secs(cfg.shutdown_grace_secs);
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(
            left = tasks.len(),
            "grace period over: abandoning jobs (the broker requeues them)"
        );
        tasks.abort_all();
    }
    let _ = consume.close(200, "shutdown".into()).await;
    let _ = conn.close(200, "shutdown".into()).await;
    tracing::info!("worker stopped");
    stopped_by
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendition_keys_sit_next_to_the_original() {
        assert_eq!(
            rendition_key("photos/abc/original.png", 320, "jpg"),
            "photos/abc/320.jpg"
        );
        assert_eq!(rendition_key("original.png", 64, "webp"), "64.webp");
        let keys = expected_keys("p/x/original.jpg");
        assert_eq!(keys.len(), 7);
        assert!(keys.contains(&"p/x/1024.webp".to_string()));
    }

    #[test]
    fn backoff_is_bounded() {
        assert!(backoff(1) < backoff(2));
        assert_eq!(backoff(50), Duration::from_millis(10_000));
    }
}
