//! The environment's deploy lock: an object created only if absent
//! (`If-None-Match: *`) next to the artifacts.

use std::collections::BTreeMap;
use std::time::Duration;

use fabrs_cloud::{CloudError, PutOutcome, Store};
use fabrs_config::Environment;
use serde::{Deserialize, Serialize};

use super::clock::{Clock, epoch_of, human_duration};
use super::{DeployError, Note, Notes, Settings};

pub fn lock_key(env: &Environment) -> String {
    format!("{}/{}/{}/deploy.lock", env.artifacts.prefix, env.project, env.name)
}

/// The lock object's content.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockHolder {
    pub who: String,
    pub host: String,
    pub pid: u32,
    pub operation: String,
    pub revision: String,
    /// RFC 3339, UTC.
    pub since: String,
    pub since_epoch: u64,
}

impl LockHolder {
    pub fn describe(&self, now: u64) -> String {
        format!(
            "{}@{} (pid {}, {} of revision {}, since {}, {} ago)",
            self.who,
            self.host,
            self.pid,
            self.operation,
            self.revision,
            self.since,
            human_duration(Duration::from_secs(now.saturating_sub(self.since_epoch)))
        )
    }
}

pub struct Lock {
    key: String,
}

/// Take the environment's deploy lock: of two deploys exactly one gets it.
/// The other waits up to `settings.lock_wait`, then fails naming the holder.
/// A lock is only broken when asked (`break_lock`).
pub async fn acquire<S: Store, K: Clock>(
    clock: &K,
    store: &S,
    env: &Environment,
    holder: &LockHolder,
    settings: &Settings,
    notes: Notes<'_>,
) -> Result<Lock, DeployError> {
    let key = lock_key(env);
    let body = serde_json::to_vec_pretty(holder).expect("lock serializes");
    let started = clock.elapsed();
    let waited = || clock.elapsed().saturating_sub(started);
    let now = || epoch_of(clock.now());
    let mut told = false;
    if settings.break_lock {
        if let Some(old) = read_holder(store, &key).await? {
            notes(Note::Info(format!(
                "breaking the deploy lock held by {}",
                old.describe(now())
            )));
        }
        store.delete(&key).await?;
    }
    loop {
        if store.put_new(&key, body.clone(), BTreeMap::new()).await? == PutOutcome::Created {
            return Ok(Lock { key });
        }
        let held = read_holder(store, &key).await?;
        let who = held
            .as_ref()
            .map(|h| h.describe(now()))
            .unwrap_or_else(|| "another deploy (the lock was just released or is unreadable)".into());
        if waited() >= settings.lock_wait {
            return Err(DeployError::Locked(format!(
                "{} / {} is locked by {who}; waited {}. If that deploy is dead, re-run with --break-lock",
                env.project,
                env.name,
                human_duration(settings.lock_wait)
            )));
        }
        if !told {
            notes(Note::Info(format!(
                "waiting up to {} for the deploy lock held by {who}",
                human_duration(settings.lock_wait)
            )));
            told = true;
        }
        let left = settings.lock_wait.saturating_sub(waited());
        clock.sleep(left.min(Duration::from_millis(500))).await;
    }
}

async fn read_holder<S: Store>(store: &S, key: &str) -> Result<Option<LockHolder>, DeployError> {
    Ok(store
        .get(key)
        .await?
        .and_then(|b| serde_json::from_slice::<LockHolder>(&b).ok()))
}

impl Lock {
    pub async fn release<S: Store>(self, store: &S) -> Result<(), CloudError> {
        store.delete(&self.key).await
    }
}
