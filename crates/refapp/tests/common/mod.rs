//! Test harness: every test gets its own PostgreSQL database, moto S3
//! server, Redis key prefix and RabbitMQ queue names, so tests run in
//! parallel against the real local services:
//!   PostgreSQL 127.0.0.1:5432 (user postgres, trust) — override with
//!     REFAPP_TEST_PG_ADMIN_URL (a URL to the maintenance database);
//!   Redis redis://127.0.0.1:6379 — REFAPP_TEST_REDIS_URL;
//!   RabbitMQ amqp://guest:guest@127.0.0.1:5672/%2f — REFAPP_TEST_AMQP_URL;
//!   moto: fabrs-test-support's launcher (.venv/bin/moto_server, started per test).
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use refapp::config::Config;
use refapp::storage::Storage;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn pg_admin_url() -> String {
    std::env::var("REFAPP_TEST_PG_ADMIN_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}
pub fn redis_url() -> String {
    std::env::var("REFAPP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}
pub fn amqp_url() -> String {
    std::env::var("REFAPP_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub use fabrs_test_support::{Moto, free_port, wait_port};

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn admin_client() -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&pg_admin_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the local PostgreSQL (REFAPP_TEST_PG_ADMIN_URL)");
    tokio::spawn(conn);
    c
}

/// A uniquely named database, dropped (WITH FORCE) at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let name = unique("refapp_t_");
        admin_client()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut u = url::Url::parse(&pg_admin_url()).unwrap();
        u.set_path(&format!("/{name}"));
        TestDb {
            name,
            url: u.to_string(),
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let rows = self.client().await.simple_query(sql).await.unwrap();
        for m in rows {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                return r.get(0).unwrap().parse().unwrap();
            }
        }
        panic!("no row from {sql}")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(&pg_admin_url(), tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Everything one test needs.
pub struct Env {
    pub db: TestDb,
    pub moto: Moto,
    pub vars: HashMap<String, String>,
    pub tag: String,
}

impl Env {
    pub async fn new() -> Env {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut HashMap<String, String>)) -> Env {
        let db = TestDb::new().await;
        let moto = Moto::start();
        let tag = unique("t");
        let mut vars: HashMap<String, String> = [
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", redis_url()),
            ("AMQP_URL", amqp_url()),
            ("S3_BUCKET", format!("refapp-{tag}")),
            ("S3_PREFIX", "photos/".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("S3_ENDPOINT_URL", moto.url()),
            ("RENDITION_BASE_URL", format!("{}/refapp-{tag}/", moto.url())),
            (
                "REFAPP_STATIC_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/static").into(),
            ),
            ("REFAPP_REVISION", format!("rev-{tag}")),
            ("REFAPP_CACHE_PREFIX", format!("refapp-test:{tag}:")),
            ("REFAPP_QUEUE_PREFIX", format!("refapp-test.{tag}")),
            ("WORKER_CONCURRENCY", "2".into()),
            ("REFAPP_SHUTDOWN_GRACE_SECS", "10".into()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        tweak(&mut vars);
        let env = Env { db, moto, vars, tag };
        env.storage()
            .await
            .client
            .create_bucket()
            .bucket(env.vars["S3_BUCKET"].clone())
            .send()
            .await
            .unwrap();
        env
    }

    pub fn config(&self) -> Config {
        Config::from_map(&self.vars).unwrap()
    }

    pub async fn migrate(&self) {
        let pool = refapp::db::Pool::new(&self.vars["DATABASE_URL"], 1, Default::default()).unwrap();
        let mut c = pool.get().await.unwrap();
        refapp::migrate::run(&mut c).await.unwrap();
    }

    pub async fn storage(&self) -> Storage {
        Storage::new(&self.config()).await
    }

    pub async fn s3_keys(&self) -> Vec<String> {
        self.storage().await.list("").await.unwrap()
    }

    pub async fn start_web(&self) -> Web {
        start_web(self.config()).await
    }

    pub fn start_worker(&self) -> Worker {
        let cfg = self.config();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            refapp::worker::run(cfg, async {
                let _ = rx.await;
            })
            .await
        });
        Worker { stop: Some(tx), task }
    }

    /// Spawn the real binary with this env (and extra vars).
    pub fn spawn_bin(&self, sub: &str, extra: &[(&str, &str)]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_refapp"))
            .arg(sub)
            .envs(&self.vars)
            .envs(extra.iter().copied())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning refapp")
    }

    pub async fn amqp(&self) -> (lapin::Connection, lapin::Channel) {
        let cfg = self.config();
        let conn = refapp::queue::connect(&cfg, "test").await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        refapp::queue::declare_topology(&ch, &cfg).await.unwrap();
        (conn, ch)
    }

    /// (render queue, dead-letter queue) message counts (ready messages).
    pub async fn queue_counts(&self) -> (u32, u32) {
        let cfg = self.config();
        let (conn, ch) = self.amqp().await;
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare(
                cfg.render_queue().into(),
                passive,
                refapp::queue::render_queue_args(&cfg),
            )
            .await
            .unwrap();
        let d = ch
            .queue_declare(cfg.dead_letter_queue().into(), passive, Default::default())
            .await
            .unwrap();
        let _ = conn.close(200, "bye".into()).await;
        (q.message_count(), d.message_count())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let cfg = self.config();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(conn) = refapp::queue::connect(&cfg, "cleanup").await
                    && let Ok(ch) = conn.create_channel().await
                {
                    for q in [cfg.render_queue(), cfg.dead_letter_queue()] {
                        let _ = ch.queue_delete(q.into(), Default::default()).await;
                    }
                    let _ = ch
                        .exchange_delete(cfg.dead_letter_exchange().into(), Default::default())
                        .await;
                    let _ = conn.close(200, "bye".into()).await;
                }
                if let Ok(c) = redis::Client::open(cfg.redis_url.as_str())
                    && let Ok(mut c) = c.get_multiplexed_async_connection().await
                {
                    let _: Result<(), _> = redis::cmd("DEL")
                        .arg(cfg.index_cache_key())
                        .arg(cfg.index_version_key())
                        .arg(cfg.index_changing_key())
                        .query_async(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct Web {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    pub http: reqwest::Client,
}

pub async fn start_web(cfg: Config) -> Web {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(refapp::web::serve(cfg, listener, async {
        let _ = rx.await;
    }));
    Web {
        base,
        stop: Some(tx),
        task,
        http: reqwest::Client::new(),
    }
}

impl Web {
    pub async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (s, _, body) = self.get(path).await;
        (s, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")))
    }

    pub async fn upload(&self, body: Vec<u8>, content_type: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/photos", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        )
    }

    pub async fn upload_multipart(&self, field: &str, file: &[u8]) -> (u16, serde_json::Value) {
        let boundary = "XrefappBoundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--{boundary}\r\n\
                 Content-Disposition: form-data; name=\"{field}\"; filename=\"x.bin\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.upload(body, &format!("multipart/form-data; boundary={boundary}"))
            .await
    }

    /// Poll GET /photos/{id} until its status is not 'pending'.
    pub async fn wait_status(&self, id: &str, timeout: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let (s, v) = self.get_json(&format!("/photos/{id}")).await;
            assert_eq!(s, 200, "{v}");
            if v["status"] != "pending" {
                return v;
            }
            assert!(start.elapsed() < timeout, "photo {id} still pending after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

pub struct Worker {
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("worker did not stop")
            .unwrap()
    }
}

/// Deterministic test images.
pub fn sample_image(w: u32, h: u32, seed: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = x
            .wrapping_mul(7)
            .wrapping_add(y.wrapping_mul(13))
            .wrapping_add(seed.wrapping_mul(101));
        image::Rgb([(v % 256) as u8, ((x ^ y ^ seed) % 256) as u8, ((x + seed) % 256) as u8])
    });
    let mut buf = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img).write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

/// A PNG whose header is valid (so the upload is accepted) but whose pixel
/// data is corrupt (so rendering fails).
pub fn corrupt_png() -> Vec<u8> {
    let mut png = sample_image(200, 150, 3, image::ImageFormat::Png);
    let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
    for b in &mut png[idat + 8..idat + 64] {
        *b ^= 0x5a;
    }
    png
}

pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PgBouncer 1.18 of our own in TRANSACTION pooling mode in front of the
/// local PostgreSQL, with a tiny server pool so that consecutive
/// transactions of one client land on different server connections.
pub struct PgBouncer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn id_of(flag: &str, user: &str) -> Option<u32> {
    let mut cmd = Command::new("id");
    cmd.arg(flag);
    if !user.is_empty() {
        cmd.arg(user);
    }
    let out = cmd.output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

impl PgBouncer {
    pub fn start(dbname: &str, pool_size: u32) -> PgBouncer {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("pgbouncer not installed: run the project's setup script (apt-get install pgbouncer)");
        let admin = url::Url::parse(&pg_admin_url()).unwrap();
        let (host, pg_port) = (admin.host_str().unwrap().to_string(), admin.port().unwrap_or(5432));
        let user = if admin.username().is_empty() {
            "postgres".to_string()
        } else {
            admin.username().to_string()
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("userlist.txt"), format!("\"{user}\" \"\"\n")).unwrap();
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\n{dbname} = host={host} port={pg_port} dbname={dbname} user={user}\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 default_pool_size = {pool_size}\nmin_pool_size = 0\nmax_client_conn = 200\n\
                 ignore_startup_parameters = extra_float_digits,options\nquery_wait_timeout = 15\n",
                dir.path().join("userlist.txt").display()
            ),
        )
        .unwrap();
        for f in ["", "userlist.txt", "pgbouncer.ini"] {
            let p = dir.path().join(f);
            let mode = if f.is_empty() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let mut cmd = Command::new(bin);
        cmd.arg(dir.path().join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // PgBouncer refuses to run as root.
        if id_of("-u", "").is_none_or(|me| me == 0) {
            let uid = id_of("-u", "postgres").expect("no postgres user to run pgbouncer as");
            let gid = id_of("-g", "postgres").unwrap();
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().expect("starting pgbouncer");
        assert!(
            wait_port(port, Duration::from_secs(10)),
            "pgbouncer did not start on port {port}"
        );
        PgBouncer { child, port, _dir: dir }
    }

    pub fn url(&self, dbname: &str) -> String {
        let admin = url::Url::parse(&pg_admin_url()).unwrap();
        let user = if admin.username().is_empty() {
            "postgres"
        } else {
            admin.username()
        };
        format!("postgres://{user}@127.0.0.1:{}/{dbname}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop();
    }
}
