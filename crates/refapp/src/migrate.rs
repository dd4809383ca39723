//! Versioned SQL migrations (crates/refapp/migrations/NNNN_name.sql, embedded
//! in the binary). Each one runs in its own transaction that first takes a
//! transaction-scoped advisory lock, so concurrent `refapp migrate` runs
//! serialise, and it works through PgBouncer in transaction mode (a
//! session-level lock would not: the session is not ours).

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use tokio_postgres::types::Type;

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($v:expr, $name:literal) => {
        Migration {
            version: $v,
            name: $name,
            sql: include_str!(concat!("../migrations/", $name, ".sql")),
        }
    };
}

/// Keep in step with the files in migrations/ (a test checks it).
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_create_photos"),
    migration!(2, "0002_rendered_index_and_enqueued_at"),
];

/// "refapp" in ASCII, the advisory lock key shared by all migrate runs.
pub const LOCK_KEY: i64 = 0x7265_6661_7070;

pub const TRACKING_TABLE: &str = "refapp_schema_migrations";

pub fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Apply pending migrations; returns the versions applied by this call.
pub async fn run(client: &mut Client) -> Result<Vec<i64>> {
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let tx = client.transaction().await.context("BEGIN")?;
        tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({LOCK_KEY}); \
             CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} ( \
               version bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, \
               applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .context("locking / creating the migrations table")?;
        let sum = checksum(m.sql);
        let existing = tx
            .query_typed_opt(
                &format!("SELECT checksum FROM {TRACKING_TABLE} WHERE version = $1"),
                &[(&m.version, Type::INT8)],
            )
            .await?;
        if let Some(row) = existing {
            let old: String = row.get(0);
            if old != sum {
                bail!(
                    "migration {} was changed after it was applied (checksum mismatch)",
                    m.name
                );
            }
            tx.commit().await?;
            continue;
        }
        tx.batch_execute(m.sql)
            .await
            .with_context(|| format!("applying migration {}", m.name))?;
        tx.execute_typed(
            &format!("INSERT INTO {TRACKING_TABLE} (version, name, checksum) VALUES ($1, $2, $3)"),
            &[(&m.version, Type::INT8), (&m.name, Type::TEXT), (&sum, Type::TEXT)],
        )
        .await?;
        tx.commit()
            .await
            .with_context(|| format!("committing migration {}", m.name))?;
        tracing::info!(migration = m.name, "applied");
        applied.push(m.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_matches_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS.iter().map(|m| format!("{}.sql", m.name)).collect();
        assert_eq!(files, embedded);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }
}
