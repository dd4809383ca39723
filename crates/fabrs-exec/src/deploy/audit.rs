//! The audit trail: one object per run under `history/`, named so that they
//! sort by time (no read-modify-write, so no lost update).

use std::collections::BTreeMap;

use fabrs_cloud::{CloudError, Store};
use fabrs_config::{Environment, Revision};
use serde::{Deserialize, Serialize};

use super::DeployError;
use super::clock::compact_time;

pub fn history_prefix(env: &Environment) -> String {
    format!("{}/{}/{}/history/", env.artifacts.prefix, env.project, env.name)
}

/// One line of `fabrs history`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub operation: String,
    pub revision: String,
    pub from_revision: Option<String>,
    pub who: String,
    pub host: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub duration_secs: u64,
    /// `succeeded`, `rolled back`, `failed`, `interrupted`.
    pub result: String,
    pub message: String,
    /// Per role: the launch configuration / template version put in place.
    pub launches: BTreeMap<String, String>,
}

pub async fn append_record<S: Store>(
    store: &S,
    env: &Environment,
    r: &Record,
    started_epoch: u64,
) -> Result<(), CloudError> {
    let key = format!(
        "{}{}-{}-{}.json",
        history_prefix(env),
        compact_time(started_epoch),
        std::process::id(),
        r.revision
    );
    let body = serde_json::to_vec_pretty(r).expect("records serialize");
    store.put_new(&key, body, BTreeMap::new()).await.map(|_| ())
}

pub async fn history<S: Store>(store: &S, env: &Environment) -> Result<Vec<Record>, DeployError> {
    let keys = store.list(&history_prefix(env)).await?;
    let mut out = Vec::new();
    for k in keys {
        if let Some(b) = store.get(&k).await? {
            match serde_json::from_slice::<Record>(&b) {
                Ok(r) => out.push(r),
                Err(e) => {
                    return Err(DeployError::Refused(format!(
                        "audit record s3://{}/{k} is unreadable: {e}",
                        store.bucket()
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// The revision the current one replaced, from the audit trail.
pub async fn previous_revision<S: Store>(
    store: &S,
    env: &Environment,
    current: Option<&Revision>,
) -> Result<Revision, DeployError> {
    let records = history(store, env).await?;
    let current = current.ok_or_else(|| DeployError::Refused("nothing is deployed: nothing to roll back".into()))?;
    records
        .iter()
        .rev()
        .filter(|r| r.result == "succeeded" && r.revision == current.as_str())
        .find_map(|r| {
            r.from_revision
                .as_deref()
                .and_then(Revision::read_back)
                .filter(|f| f != current)
        })
        .ok_or_else(|| {
            DeployError::Refused(format!(
                "the audit trail names no revision before {current}: use `fabrs rollback {} --to REV`",
                env.name
            ))
        })
}
