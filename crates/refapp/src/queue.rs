//! RabbitMQ: topology, render jobs, a publisher with confirms.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::config::Config;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const ATTEMPT_HEADER: &str = "x-refapp-attempt";
const DEAD_ROUTING_KEY: &str = "dead";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RenderJob {
    pub photo_id: Uuid,
    pub key: String,
}

pub async fn connect(cfg: &Config, name: &str) -> Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(format!("refapp-{name}").into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&cfg.amqp_url, props)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => bail!("connecting to RabbitMQ: {}", cfg.secrets.scrub(&e.to_string())),
        Err(_) => bail!("connecting to RabbitMQ: timed out after {CONNECT_TIMEOUT:?}"),
    }
}

/// Declare (idempotently) the render queue with its dead-letter exchange and
/// queue. Both web and worker call this, so either may start first.
pub async fn declare_topology(ch: &Channel, cfg: &Config) -> Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        cfg.dead_letter_exchange().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .context("declaring dead-letter exchange")?;
    ch.queue_declare(cfg.dead_letter_queue().into(), durable, FieldTable::default())
        .await
        .context("declaring dead-letter queue")?;
    ch.queue_bind(
        cfg.dead_letter_queue().into(),
        cfg.dead_letter_exchange().into(),
        DEAD_ROUTING_KEY.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .context("binding dead-letter queue")?;
    ch.queue_declare(cfg.render_queue().into(), durable, render_queue_args(cfg))
        .await
        .context("declaring render queue")?;
    Ok(())
}

pub fn render_queue_args(cfg: &Config) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(cfg.dead_letter_exchange().into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(DEAD_ROUTING_KEY.into()),
    );
    args
}

/// Persistent JSON message with the attempt number in a header.
pub fn job_properties(attempt: u32) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"))
        .with_headers(headers)
}

pub fn attempt_of(props: &BasicProperties) -> u32 {
    props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongUInt(n) => Some(n),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            AMQPValue::ShortUInt(n) => Some(n as u32),
            AMQPValue::ShortShortUInt(n) => Some(n as u32),
            _ => None,
        })
        .unwrap_or(1)
}

/// Publish on a confirm-mode channel and wait for the broker's ack; the
/// message is `mandatory` so an unroutable job is an error, not a loss.
pub async fn publish_confirmed(ch: &Channel, queue: &str, payload: &[u8], props: BasicProperties) -> Result<()> {
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            payload,
            props,
        )
        .await
        .context("publishing")?
        .await
        .context("waiting for publisher confirm")?;
    if !confirm.is_ack() {
        bail!("broker did not confirm the message");
    }
    if confirm.take_message().is_some() {
        bail!("message was returned as unroutable");
    }
    Ok(())
}

/// Lazily connected publisher shared by the web handlers; reconnects after
/// any failure.
pub struct Publisher {
    cfg: Config,
    inner: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    pub fn new(cfg: Config) -> Self {
        Publisher {
            cfg,
            inner: Mutex::new(None),
        }
    }

    async fn channel(&self) -> Result<Channel> {
        let mut guard = self.inner.lock().await;
        if let Some((conn, ch)) = guard.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
            *guard = None;
        }
        let conn = connect(&self.cfg, "web").await?;
        let ch = conn.create_channel().await.context("opening channel")?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .context("confirm.select")?;
        declare_topology(&ch, &self.cfg).await?;
        *guard = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn reset(&self) {
        let old = self.inner.lock().await.take();
        if let Some((conn, _)) = old {
            let _ = conn.close(200, "reset".into()).await;
        }
    }

    pub async fn publish_job(&self, job: &RenderJob) -> Result<()> {
        let payload = serde_json::to_vec(job)?;
        let res = async {
            let ch = self.channel().await?;
            publish_confirmed(&ch, &self.cfg.render_queue(), &payload, job_properties(1)).await
        };
        match tokio::time::timeout(Duration::from_secs(10), res).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.reset().await;
                Err(e)
            }
            Err(_) => {
                self.reset().await;
                bail!("publishing the job timed out")
            }
        }
    }

    /// Healthcheck: the broker answers a passive declare of the queue.
    pub async fn ping(&self) -> Result<()> {
        let res = async {
            let ch = self.channel().await?;
            ch.queue_declare(
                self.cfg.render_queue().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .context("passive queue.declare")?;
            anyhow::Ok(())
        }
        .await;
        if res.is_err() {
            self.reset().await;
        }
        res
    }
}
