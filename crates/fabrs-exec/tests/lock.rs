//! The deploy lock and the audit trail over the in-memory store (S3's
//! `If-None-Match: *` semantics); the same code runs against moto in the
//! CLI's deploy tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabrs_cloud::Store;
use fabrs_exec::deploy::{self, DeployError, LockHolder, Note, Record, Settings};
use fabrs_exec::fake::MemStore;

fn env() -> fabrs_config::Environment {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    fabrs_config::load_file(&root.join("environments/staging.yaml")).unwrap()
}

fn holder(who: &str) -> LockHolder {
    LockHolder {
        who: who.into(),
        host: "ci-1".into(),
        pid: 42,
        operation: "deploy".into(),
        revision: "r1".into(),
        since: deploy::rfc3339(deploy::epoch()),
        since_epoch: deploy::epoch(),
    }
}

fn settings(wait: Duration) -> Settings {
    let mut s = Settings::from_env(&env());
    s.lock_wait = wait;
    s
}

fn quiet(_: Note) {}

#[tokio::test]
async fn of_two_takers_one_gets_the_lock_and_the_other_is_told_who_holds_it() {
    let env = env();
    let store = Arc::new(MemStore::new("b"));
    let a = deploy::acquire(&*store, &env, &holder("alice"), &settings(Duration::ZERO), &quiet)
        .await
        .unwrap();
    let err = match deploy::acquire(&*store, &env, &holder("bob"), &settings(Duration::ZERO), &quiet).await {
        Err(DeployError::Locked(m)) => m,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("two holders"),
    };
    assert!(
        err.contains("locked by alice@ci-1 (pid 42, deploy of revision r1"),
        "{err}"
    );
    assert!(err.contains("--break-lock"), "{err}");
    a.release(&*store).await.unwrap();
    assert!(store.keys().is_empty());
    // Free again.
    deploy::acquire(&*store, &env, &holder("bob"), &settings(Duration::ZERO), &quiet)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_waiter_gets_the_lock_once_it_is_released_and_a_stale_one_is_broken_only_on_request() {
    let env = env();
    let store = Arc::new(MemStore::new("b"));
    let a = deploy::acquire(&*store, &env, &holder("alice"), &settings(Duration::ZERO), &quiet)
        .await
        .unwrap();
    let s2 = store.clone();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        a.release(&*s2).await.unwrap();
    });
    let t = Instant::now();
    let notes = std::sync::Mutex::new(Vec::new());
    let note = |n: Note| notes.lock().unwrap().push(format!("{n:?}"));
    deploy::acquire(&*store, &env, &holder("bob"), &settings(Duration::from_secs(30)), &note)
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(600));
    assert!(notes.lock().unwrap()[0].contains("waiting up to 30s for the deploy lock held by alice@"));
    release.await.unwrap();
    // bob's lock is now "stale" (bob died): carol is refused, then breaks it on request.
    assert!(
        deploy::acquire(&*store, &env, &holder("carol"), &settings(Duration::ZERO), &quiet)
            .await
            .is_err()
    );
    let mut s = settings(Duration::ZERO);
    s.break_lock = true;
    deploy::acquire(&*store, &env, &holder("carol"), &s, &quiet)
        .await
        .unwrap();
    let body = store.get(&deploy::lock_key(&env)).await.unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<LockHolder>(&body).unwrap().who, "carol");
}

#[tokio::test]
async fn history_lists_records_in_time_order() {
    let env = env();
    let store = MemStore::new("b");
    for (i, rev) in ["r1", "r2", "r3"].iter().enumerate() {
        let r = Record {
            operation: "deploy".into(),
            revision: rev.to_string(),
            from_revision: None,
            who: "ci".into(),
            host: "h".into(),
            started: deploy::rfc3339(1_700_000_000 + i as u64 * 60),
            duration_secs: 3,
            result: "succeeded".into(),
            message: String::new(),
            launches: Default::default(),
        };
        deploy::append_record(&store, &env, &r, 1_700_000_000 + i as u64 * 60)
            .await
            .unwrap();
    }
    let h = deploy::history(&store, &env).await.unwrap();
    let revs: Vec<&str> = h.iter().map(|r| r.revision.as_str()).collect();
    assert_eq!(revs, ["r1", "r2", "r3"]);
}
