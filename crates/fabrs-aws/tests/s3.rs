//! `S3Store` against a real moto server: conditional writes, metadata,
//! streamed uploads, listing across pages, missing buckets. One moto per test
//! binary; each test its own bucket.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fabrs_aws::{AwsCloud, ConnectOptions, S3Store};
use fabrs_cloud::ErrorKind;
use fabrs_cloud::{ObjectMeta, PutOutcome, Store};
use futures::StreamExt;

// ------------------------------------------------------------------ moto

struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bin = root.join(".venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/setup (it installs moto into .venv)",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // A watchdog shell: moto goes away with this test binary even when
        // statics are never dropped.
        let script = format!(
            "'{}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; trap 'kill $m 2>/dev/null; exit 0' TERM INT; trap 'kill $m 2>/dev/null' EXIT; \
             while kill -0 {} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 1; done",
            bin.display(),
            std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn moto() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(Moto::start)
}

async fn cloud() -> AwsCloud {
    AwsCloud::connect_with_credentials(
        ConnectOptions {
            region: "us-east-1".into(),
            endpoint_url: Some(moto().url()),
            profile: None,
        },
        "testing",
        "testing",
    )
    .await
    .expect("connect")
}

async fn raw_s3() -> aws_sdk_s3::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto().url())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build())
}

/// A fresh bucket (created with the SDK directly) and a store on it.
async fn bucket(name: &str) -> (AwsCloud, S3Store) {
    raw_s3()
        .await
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateBucket {name}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
    let cloud = cloud().await;
    let store = cloud.store(name);
    (cloud, store)
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A temporary file that removes itself.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, content: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("fabrs-s3-test-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bytes that are not all alike (so a truncated or shifted upload shows).
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_new_twice_keeps_the_first() {
    let (_cloud, store) = bucket("fabrs-put-twice").await;
    assert_eq!(store.bucket(), "fabrs-put-twice");
    let first = store
        .put_new("deploy/lock", b"first".to_vec(), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(first, PutOutcome::Created);
    let second = store
        .put_new("deploy/lock", b"second, longer".to_vec(), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(second, PutOutcome::AlreadyExists);
    assert_eq!(store.get("deploy/lock").await.unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(store.head("deploy/lock").await.unwrap().map(|m| m.size), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_is_none() {
    let (_cloud, store) = bucket("fabrs-missing-key").await;
    store.put_new("present", b"x".to_vec(), BTreeMap::new()).await.unwrap();
    assert_eq!(store.head("absent").await.unwrap(), None);
    assert_eq!(store.get("absent").await.unwrap(), None);
    assert!(store.head("present").await.unwrap().is_some());
    assert_eq!(store.get("present").await.unwrap(), Some(b"x".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_not_found_naming_the_bucket() {
    let cloud = cloud().await;
    let store = cloud.store("fabrs-no-such-bucket");
    let check = |op: &str, e: fabrs_cloud::CloudError| {
        assert_eq!(e.kind, ErrorKind::NotFound, "{op}: {e}");
        assert_eq!(e.resource, "s3 bucket fabrs-no-such-bucket", "{op}: {e}");
        assert_eq!(e.operation, op, "{e}");
        assert!(e.message.contains("does not exist"), "{op}: {e}");
        assert!(!e.message.contains('\n'), "{op}: {e}");
    };
    check("HeadObject", store.head("k").await.unwrap_err());
    check("GetObject", store.get("k").await.unwrap_err());
    check(
        "PutObject",
        store.put_new("k", b"x".to_vec(), BTreeMap::new()).await.unwrap_err(),
    );
    let f = TempFile::new("nobucket", b"abc");
    check(
        "PutObject",
        store.put_file_new("k", &f.0, BTreeMap::new()).await.unwrap_err(),
    );
    check("ListObjectsV2", store.list("").await.unwrap_err());
    check("DeleteObject", store.delete("k").await.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_round_trip() {
    let (_cloud, store) = bucket("fabrs-metadata").await;
    let m = meta(&[
        ("revision", "abc123"),
        ("Built-By", "fabrs release"),
        ("sha256", "0f1e2d"),
    ]);
    assert_eq!(
        store.put_new("rel/1.tar.gz", b"tarball".to_vec(), m).await.unwrap(),
        PutOutcome::Created
    );
    let got = store.head("rel/1.tar.gz").await.unwrap().expect("the object");
    assert_eq!(
        got,
        ObjectMeta {
            size: 7,
            metadata: meta(&[
                ("built-by", "fabrs release"),
                ("revision", "abc123"),
                ("sha256", "0f1e2d"),
            ]),
        }
    );
    // Without metadata: an empty map.
    store
        .put_new("rel/2.tar.gz", Vec::new(), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        store.head("rel/2.tar.gz").await.unwrap(),
        Some(ObjectMeta {
            size: 0,
            metadata: BTreeMap::new()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_file_new_streams_the_file_once() {
    let (_cloud, store) = bucket("fabrs-put-file").await;
    let content = pattern(3 * 1024 * 1024 + 4321, 7);
    let f = TempFile::new("artifact", &content);
    let key = "releases/app-1.2.3.tar.gz";
    assert_eq!(
        store
            .put_file_new(key, &f.0, meta(&[("revision", "r1")]))
            .await
            .unwrap(),
        PutOutcome::Created
    );
    let h = store.head(key).await.unwrap().expect("the object");
    assert_eq!(h.size, content.len() as u64);
    assert_eq!(h.metadata, meta(&[("revision", "r1")]));
    let body = store.get(key).await.unwrap().expect("the body");
    assert_eq!(body.len(), content.len());
    assert!(body == content, "the stored body differs from the file");

    let other = TempFile::new("artifact-2", &pattern(1000, 8));
    assert_eq!(
        store
            .put_file_new(key, &other.0, meta(&[("revision", "r2")]))
            .await
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    let h = store.head(key).await.unwrap().expect("the object");
    assert_eq!(h.size, content.len() as u64);
    assert_eq!(h.metadata, meta(&[("revision", "r1")]));

    // A file that cannot be read: an error naming it, nothing written.
    let e = store
        .put_file_new(
            "releases/none",
            &std::env::temp_dir().join("fabrs-no-such-file"),
            BTreeMap::new(),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("fabrs-no-such-file"), "{e}");
    assert_eq!(store.head("releases/none").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_missing_is_ok() {
    let (_cloud, store) = bucket("fabrs-delete").await;
    store.delete("never/was").await.unwrap();
    store.put_new("lock", b"me".to_vec(), BTreeMap::new()).await.unwrap();
    store.delete("lock").await.unwrap();
    assert_eq!(store.head("lock").await.unwrap(), None);
    store.delete("lock").await.unwrap();
    // Gone, so the lock can be taken again.
    assert_eq!(
        store.put_new("lock", b"you".to_vec(), BTreeMap::new()).await.unwrap(),
        PutOutcome::Created
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_reads_all_pages_sorted_under_the_prefix() {
    let (cloud, store) = bucket("fabrs-list").await;
    let mut inside: Vec<String> = (0..1050).map(|i| format!("audit/{i}")).collect();
    let outside = ["audit", "audit-old/1", "auditx", "a/udit/2", "zz"];
    let all: Vec<String> = inside
        .iter()
        .cloned()
        .chain(outside.iter().map(|s| s.to_string()))
        .collect();
    let results: Vec<_> = futures::stream::iter(all.iter())
        .map(|k| store.put_new(k, k.as_bytes().to_vec(), BTreeMap::new()))
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        assert_eq!(r.unwrap(), PutOutcome::Created);
    }

    cloud.reset_api_calls();
    let listed = store.list("audit/").await.unwrap();
    let (operations, _) = cloud.api_calls();
    assert!(operations >= 2, "1,050 keys need two pages, {operations} call(s) made");
    inside.sort();
    assert_eq!(listed.len(), 1050);
    assert_eq!(listed, inside);
    assert_eq!(listed[..3], ["audit/0", "audit/1", "audit/10"]);

    assert_eq!(
        store.list("audit/104").await.unwrap(),
        [
            "audit/104",
            "audit/1040",
            "audit/1041",
            "audit/1042",
            "audit/1043",
            "audit/1044",
            "audit/1045",
            "audit/1046",
            "audit/1047",
            "audit/1048",
            "audit/1049"
        ]
    );
    assert_eq!(store.list("nothing/").await.unwrap(), Vec::<String>::new());
    assert_eq!(store.list("").await.unwrap().len(), 1050 + outside.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_put_new_has_one_winner() {
    // S3 makes the conditional write atomic. moto (5.2) checks then writes
    // without a lock in a threaded server, so in theory it could let two
    // through; it has not in practice (8 requests, 40 runs).
    let (_cloud, store) = bucket("fabrs-race").await;
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let body = format!("holder {i}").into_bytes();
                (
                    i,
                    store
                        .put_new("deploy/lock", body, meta(&[("holder", &i.to_string())]))
                        .await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r.unwrap() {
            PutOutcome::Created => winners.push(i),
            PutOutcome::AlreadyExists => {}
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let w = winners[0];
    assert_eq!(
        store.get("deploy/lock").await.unwrap(),
        Some(format!("holder {w}").into_bytes())
    );
    assert_eq!(
        store.head("deploy/lock").await.unwrap().unwrap().metadata,
        meta(&[("holder", &w.to_string())])
    );
}
