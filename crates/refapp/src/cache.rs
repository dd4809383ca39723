//! Redis cache of rendered pages. Lazily connected so the web starts (and
//! reports 503 on its healthcheck) when Redis is down.

use std::time::Duration;

use anyhow::{Result, anyhow};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

use crate::config::Config;

pub const TIMEOUT: Duration = Duration::from_secs(1);

pub struct Cache {
    cfg: Config,
    conn: Mutex<Option<ConnectionManager>>,
}

impl Cache {
    pub fn new(cfg: Config) -> Self {
        Cache {
            cfg,
            conn: Mutex::new(None),
        }
    }

    async fn conn(&self) -> Result<ConnectionManager> {
        let mut g = self.conn.lock().await;
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let client = redis::Client::open(self.cfg.redis_url.as_str())
            .map_err(|e| anyhow!("invalid REDIS_URL: {}", self.cfg.secrets.scrub(&e.to_string())))?;
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let c = tokio::time::timeout(TIMEOUT * 2, ConnectionManager::new_with_config(client, mcfg))
            .await
            .map_err(|_| anyhow!("connecting to Redis timed out"))?
            .map_err(|e| anyhow!("connecting to Redis: {}", self.cfg.secrets.scrub(&e.to_string())))?;
        *g = Some(c.clone());
        Ok(c)
    }

    fn err(&self, what: &str, e: redis::RedisError) -> anyhow::Error {
        anyhow!("Redis {what}: {}", self.cfg.secrets.scrub(&e.to_string()))
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

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        let mut c = self.conn().await?;
        c.get(key).await.map_err(|e| self.err("GET", e))
    }

    pub async fn set_ex(&self, key: &str, value: &str, ttl_secs: u64) -> Result<()> {
        let mut c = self.conn().await?;
        c.set_ex::<_, _, ()>(key, value, ttl_secs)
            .await
            .map_err(|e| self.err("SET", e))
    }

    pub async fn del(&self, key: &str) -> Result<()> {
        let mut c = self.conn().await?;
        c.del::<_, ()>(key).await.map_err(|e| self.err("DEL", e))
    }
}
