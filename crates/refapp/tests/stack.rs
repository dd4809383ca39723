//! Integration tests against the real local PostgreSQL, Redis, RabbitMQ and
//! a per-test moto S3 server (see common/mod.rs for how they are found).

mod common;

use std::time::Duration;

use common::*;
use image::ImageFormat;
use refapp::worker::expected_keys;

const RENDER_TIMEOUT: Duration = Duration::from_secs(90);

async fn schema_dump(db: &TestDb) -> String {
    let c = db.client().await;
    let mut out = String::new();
    for sql in [
        "SELECT table_name || '.' || column_name || ':' || data_type || ':' || is_nullable || ':' || \
           coalesce(column_default, '') FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1",
        "SELECT indexname || ':' || indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        "SELECT conrelid::regclass::text || ':' || conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint \
           WHERE connamespace = 'public'::regnamespace ORDER BY 1",
        "SELECT version::text || ':' || name || ':' || checksum FROM refapp_schema_migrations ORDER BY version",
    ] {
        for m in c.simple_query(sql).await.unwrap() {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                out.push_str(r.get(0).unwrap());
                out.push('\n');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_twice_and_concurrently_leave_schema_unchanged() {
    let db = TestDb::new().await;
    // Three concurrent runs on an empty database: all succeed, each
    // migration is applied exactly once (the advisory lock serialises).
    let mut runs = Vec::new();
    for _ in 0..3 {
        let url = db.url.clone();
        runs.push(tokio::spawn(async move {
            let pool = refapp::db::Pool::new(&url, 1, Default::default()).unwrap();
            let mut c = pool.get().await.unwrap();
            refapp::migrate::run(&mut c).await.unwrap()
        }));
    }
    let mut applied: Vec<i64> = Vec::new();
    for r in runs {
        applied.extend(r.await.unwrap());
    }
    applied.sort();
    let all: Vec<i64> = refapp::migrate::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all, "each migration applied once across concurrent runs");

    let before = schema_dump(&db).await;
    assert!(before.contains("photos.status:text:NO"), "{before}");
    assert!(before.contains("photos_pending_enqueued_idx"), "{before}");

    // Second run through the real binary, configured by an env file (the
    // way systemd's EnvironmentFile is laid out), with a real environment
    // variable overriding one of its values: nothing applied, schema
    // identical.
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("app.env");
    std::fs::write(
        &env_file,
        format!(
            "# rendered by fabrs\nDATABASE_URL=postgres://nobody@127.0.0.1:1/nothing\nREDIS_URL={}\n\
             AMQP_URL={}\nS3_BUCKET=unused\n",
            redis_url(),
            amqp_url()
        ),
    )
    .unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_refapp"))
        .arg("--env-file")
        .arg(&env_file)
        .arg("migrate")
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap();
    assert!(status.success());
    let after = schema_dump(&db).await;
    assert_eq!(before, after);
    assert_eq!(
        db.count("SELECT count(*) FROM refapp_schema_migrations").await,
        all.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_render_list_and_cache() {
    let env = Env::new().await;
    env.migrate().await;
    let web = env.start_web().await;
    let worker = env.start_worker();

    // Raw-body upload.
    let (s, v) = web
        .upload(sample_image(1600, 1200, 1, ImageFormat::Jpeg), "image/jpeg")
        .await;
    assert_eq!(s, 202, "{v}");
    let id1 = v["id"].as_str().unwrap().to_string();

    let p = web.wait_status(&id1, RENDER_TIMEOUT).await;
    assert_eq!(p["status"], "rendered", "{p}");
    let renditions = p["renditions"].as_array().unwrap();
    assert_eq!(renditions.len(), 6, "{p}");
    let base = &env.vars["RENDITION_BASE_URL"];
    for r in renditions {
        let url = r["url"].as_str().unwrap();
        assert!(url.starts_with(base.as_str()), "{url}");
        assert!(url.ends_with(r["key"].as_str().unwrap()));
    }
    let original_key = format!("photos/{id1}/original.jpg");
    assert_eq!(env.s3_keys().await, expected_keys(&original_key));
    // The rendition really is a 320 px WebP (objects are private: read via the API).
    let r320 = renditions
        .iter()
        .find(|r| r["size"] == 320 && r["format"] == "webp")
        .unwrap();
    let bytes = env
        .storage()
        .await
        .get(r320["key"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let thumb = image::load_from_memory_with_format(&bytes, ImageFormat::WebP).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));

    // Index page: MISS, then HIT.
    let (s, h, body) = web.get("/").await;
    assert_eq!(s, 200);
    assert_eq!(h["x-cache"], "MISS");
    assert_eq!(h["x-refapp-revision"], env.vars["REFAPP_REVISION"].as_str());
    assert!(body.contains(&id1));
    let (_, h, body2) = web.get("/").await;
    assert_eq!(h["x-cache"], "HIT");
    assert_eq!(body, body2);

    // Another render completes (multipart upload this time): MISS again,
    // well before the cache TTL could explain it.
    let (s, v) = web
        .upload_multipart("photo", &sample_image(500, 700, 2, ImageFormat::Png))
        .await;
    assert_eq!(s, 202, "{v}");
    let id2 = v["id"].as_str().unwrap().to_string();
    assert_eq!(web.wait_status(&id2, RENDER_TIMEOUT).await["status"], "rendered");
    let start = std::time::Instant::now();
    let last = loop {
        let (_, h, body) = web.get("/").await;
        if h["x-cache"] == "MISS" {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "index cache not invalidated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(last.contains(&id1) && last.contains(&id2));
    let (_, h, _) = web.get("/").await;
    assert_eq!(h["x-cache"], "HIT");

    // Unknown photo: 404. Static assets are served.
    let (s, _) = web.get_json(&format!("/photos/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(s, 404);
    let (s, _) = web.get_json("/photos/not-a-uuid").await;
    assert_eq!(s, 404);
    let (s, _, css) = web.get("/static/style.css").await;
    assert_eq!(s, 200);
    assert!(css.contains(".photos"));
    let (s, _, m) = web.get("/static/maintenance.html").await;
    assert_eq!(s, 200);
    assert!(m.contains("maintenance"));

    assert_eq!(env.db.count("SELECT count(*) FROM photos").await, 2);
    worker.stop().await.unwrap();
    web.stop().await;
}

/// A web process of the real binary, killed at the end.
struct WebProcess {
    child: std::process::Child,
    base: String,
}
impl Drop for WebProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_page(http: &reqwest::Client, base: &str) -> (String, String) {
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let x_cache = r.headers()["x-cache"].to_str().unwrap().to_string();
    (x_cache, r.text().await.unwrap())
}

fn rendered_item(id: &str) -> String {
    format!(r#"<li class="photo" data-id="{id}"><a href="#)
}

/// Exact invalidation of the cached page across web servers: two web
/// processes share one Redis (and the database), each with the page cached
/// in memory; the moment GET /photos/{id} says a new photo is rendered, the
/// very next GET / on EITHER server shows it rendered. Meanwhile both
/// servers are kept busy serving and refilling their caches, so a page
/// built from the database during the render (before its commit) is
/// exercised too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_photo_on_every_web_server_right_after_its_render() {
    let env = Env::new().await;
    env.migrate().await;
    let webs: Vec<WebProcess> = (0..2)
        .map(|_| {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            WebProcess {
                child: env.spawn_bin("web", &[("REFAPP_LISTEN", listen.as_str()), ("RUST_LOG", "warn")]),
                base: format!("http://{listen}"),
            }
        })
        .collect();
    for w in &webs {
        let port: u16 = w.base.rsplit(':').next().unwrap().parse().unwrap();
        assert!(wait_port(port, Duration::from_secs(15)), "web did not listen");
    }
    let bases: Vec<String> = webs.iter().map(|w| w.base.clone()).collect();
    let worker = env.start_worker();
    let http = reqwest::Client::new();

    // The page is cached on both servers before anything changes.
    for b in &bases {
        get_page(&http, b).await;
        assert_eq!(get_page(&http, b).await.0, "HIT", "{b}");
    }

    // Both servers busy with GET / throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammers: Vec<_> = bases
        .iter()
        .flat_map(|b| [b.clone(), b.clone()])
        .map(|b| {
            let (http, stop) = (http.clone(), stop.clone());
            tokio::spawn(async move {
                let mut hits = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if get_page(&http, &b).await.0 == "HIT" {
                        hits += 1;
                    }
                }
                hits
            })
        })
        .collect();

    let mut ids = Vec::new();
    for round in 0..3 {
        let (upload_to, poll_on) = (&bases[round % 2], &bases[(round + 1) % 2]);
        let r = http
            .post(format!("{upload_to}/photos"))
            .header("content-type", "image/jpeg")
            .body(sample_image(640, 480, 40 + round as u32, ImageFormat::Jpeg))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        let start = std::time::Instant::now();
        loop {
            let r = http.get(format!("{poll_on}/photos/{id}")).send().await.unwrap();
            let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            if v["status"] != "pending" {
                assert_eq!(v["status"], "rendered", "{v}");
                break;
            }
            assert!(start.elapsed() < RENDER_TIMEOUT, "{id} still pending");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Right after: every server, no waiting.
        for b in &bases {
            let (x_cache, page) = get_page(&http, b).await;
            assert!(
                page.contains(&rendered_item(&id)),
                "round {round}: {b} answered a page ({x_cache}) without the photo rendered right after its render:\n{page}"
            );
        }
        ids.push(id);
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut hits = 0;
    for h in hammers {
        hits += h.await.unwrap();
    }
    assert!(hits > 0, "the servers answered from their caches meanwhile");
    // And the page is cached again, complete, on both.
    for b in &bases {
        get_page(&http, b).await;
        let (x_cache, page) = get_page(&http, b).await;
        assert_eq!(x_cache, "HIT", "{b}");
        for id in &ids {
            assert!(page.contains(&rendered_item(id)), "{b}: {id}");
        }
    }
    worker.stop().await.unwrap();
    drop(webs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_reports_each_dependency() {
    let env = Env::new().await;
    env.migrate().await;
    let web = env.start_web().await;
    let (s, h, body) = web.get("/healthcheck.html").await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("ok") && body.contains(&env.vars["REFAPP_REVISION"]),
        "{body}"
    );
    assert_eq!(h["x-refapp-revision"], env.vars["REFAPP_REVISION"].as_str());
    web.stop().await;

    // PostgreSQL unreachable (closed port), with a password in the URL.
    let port = free_port();
    let mut cfg_vars = env.vars.clone();
    cfg_vars.insert(
        "DATABASE_URL".into(),
        format!("postgres://app:Sekr1tPw@127.0.0.1:{port}/app"),
    );
    let web = start_web(refapp::config::Config::from_map(&cfg_vars).unwrap()).await;
    let t = std::time::Instant::now();
    let (s, _, body) = web.get("/healthcheck.html").await;
    assert_eq!(s, 503, "{body}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(body.contains("database"), "{body}");
    assert!(
        !body.contains("cache") && !body.contains("queue:"),
        "only the database failed: {body}"
    );
    assert!(!body.contains("Sekr1tPw"), "password leaked: {body}");
    web.stop().await;

    // Redis unreachable: shared by every web server, so degraded, not down
    // (a cache outage must not make the group replace the web tier).
    let mut cfg_vars = env.vars.clone();
    cfg_vars.insert(
        "REDIS_URL".into(),
        format!("redis://:R3disPw@127.0.0.1:{}/0", free_port()),
    );
    let web = start_web(refapp::config::Config::from_map(&cfg_vars).unwrap()).await;
    let (s, _, body) = web.get("/healthcheck.html").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("ok (degraded: cache)"), "{body}");
    // The page still serves, from the database, bypassing the cache.
    let (s, h, _) = web.get("/").await;
    assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, "BYPASS"));
    assert!(!body.contains("R3disPw"), "{body}");
    web.stop().await;

    // RabbitMQ unreachable: degraded too.
    let mut cfg_vars = env.vars.clone();
    cfg_vars.insert(
        "AMQP_URL".into(),
        format!("amqp://u:AmqpPw99@127.0.0.1:{}/%2f", free_port()),
    );
    let web = start_web(refapp::config::Config::from_map(&cfg_vars).unwrap()).await;
    let (s, _, body) = web.get("/healthcheck.html").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("ok (degraded: queue)"), "{body}");
    assert!(!body.contains("AmqpPw99"), "{body}");
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_job_renders_exactly_once() {
    let env = Env::new().await;
    env.migrate().await;
    let web = env.start_web().await;
    // The first worker sleeps 60 s after writing its first rendition.
    let mut w1 = env.spawn_bin("worker", &[("REFAPP_TEST_RENDER_DELAY_MS", "60000")]);

    let (s, v) = web
        .upload(sample_image(1200, 900, 5, ImageFormat::Png), "image/png")
        .await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let original_key = format!("photos/{id}/original.png");
    let first = format!("photos/{id}/1024.jpg");
    wait_until("the first rendition", RENDER_TIMEOUT, || {
        let env = &env;
        let first = first.clone();
        async move { env.s3_keys().await.contains(&first) }
    })
    .await;
    // Mid-job: part of the renditions written, row still pending.
    assert_eq!(web.get_json(&format!("/photos/{id}")).await.1["status"], "pending");
    assert!(env.s3_keys().await.len() < expected_keys(&original_key).len());
    w1.kill().unwrap(); // SIGKILL
    w1.wait().unwrap();

    let mut w2 = env.spawn_bin("worker", &[]);
    let p = web.wait_status(&id, RENDER_TIMEOUT).await;
    assert_eq!(p["status"], "rendered", "{p}");
    assert_eq!(p["renditions"].as_array().unwrap().len(), 6);
    assert_eq!(env.db.count("SELECT count(*) FROM photos").await, 1);
    assert_eq!(env.s3_keys().await, expected_keys(&original_key));
    // The job was acked once: nothing left to redeliver, nothing dead.
    wait_until("an empty queue", Duration::from_secs(10), || async {
        env.queue_counts().await == (0, 0)
    })
    .await;

    // Graceful shutdown on SIGTERM: exits 0.
    let pid = w2.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = w2.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "worker ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}");
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_image_is_dead_lettered_and_marked_failed() {
    let env = Env::new().await;
    env.migrate().await;
    let web = env.start_web().await;
    let worker = env.start_worker();

    let (s, v) = web.upload(corrupt_png(), "image/png").await;
    assert_eq!(s, 202, "header is valid, so the upload is accepted: {v}");
    let id = v["id"].as_str().unwrap().to_string();
    let p = web.wait_status(&id, RENDER_TIMEOUT).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert!(p["error"].as_str().unwrap().contains("decode"), "{p}");
    assert!(p["renditions"].as_array().unwrap().is_empty());

    wait_until("the dead-lettered job", Duration::from_secs(10), || async {
        env.queue_counts().await == (0, 1)
    })
    .await;
    // The dead letter is our job.
    let (conn, ch) = env.amqp().await;
    let got = ch
        .basic_get(
            env.config().dead_letter_queue().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("a dead letter");
    let job: refapp::queue::RenderJob = serde_json::from_slice(&got.delivery.data).unwrap();
    assert_eq!(job.photo_id.to_string(), id);
    let _ = conn.close(200, "bye".into()).await;

    // Only the original is in S3; the web is still healthy and lists it.
    assert_eq!(env.s3_keys().await, vec![format!("photos/{id}/original.png")]);
    let (s, _, body) = web.get("/healthcheck.html").await;
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = web.get("/").await;
    assert_eq!(s, 200);
    assert!(body.contains(&id) && body.contains("failed"));

    // A good photo still renders after the poison one.
    let (s, v) = web
        .upload(sample_image(300, 200, 9, ImageFormat::WebP), "image/webp")
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(
        web.wait_status(v["id"].as_str().unwrap(), RENDER_TIMEOUT).await["status"],
        "rendered"
    );
    worker.stop().await.unwrap();
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_oversized_uploads_store_nothing() {
    let env = Env::with(|v| {
        v.insert("REFAPP_MAX_UPLOAD_BYTES".into(), "50000".into());
    })
    .await;
    env.migrate().await;
    let web = env.start_web().await;
    let _ = env.queue_counts().await; // declares the queues

    let big = sample_image(800, 800, 4, ImageFormat::Png);
    assert!(big.len() > 50_000);
    let png = sample_image(64, 48, 1, ImageFormat::Png);
    let gif_header = b"GIF89a\x10\x00\x10\x00\x00\x00\x00;".to_vec();
    let cases: Vec<(&str, u16, Vec<u8>, bool)> = vec![
        ("plain text", 415, b"definitely not an image".to_vec(), false),
        ("gif", 415, gif_header, false),
        ("truncated png header", 422, png[..20].to_vec(), false),
        ("empty body", 422, Vec::new(), false),
        ("oversized png", 413, big.clone(), false),
        ("oversized png, multipart", 413, big.clone(), true),
        ("text, multipart", 415, b"hello".to_vec(), true),
    ];
    for (what, want, body, multipart) in cases {
        let (s, v) = if multipart {
            web.upload_multipart("photo", &body).await
        } else {
            web.upload(body, "application/octet-stream").await
        };
        assert_eq!(s, want, "{what}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {v}");
    }
    // A multipart body without a file field.
    let r = web
        .http
        .post(format!("{}/photos", web.base))
        .header("content-type", "multipart/form-data; boundary=b")
        .body("--b\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nx\r\n--b--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    // Oversized with a lying small Content-Length is impossible over HTTP/1.1,
    // but a huge declared length is refused before reading.
    let r = web
        .http
        .post(format!("{}/photos", web.base))
        .header("content-type", "image/png")
        .body(vec![0u8; 50_001])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    assert_eq!(env.db.count("SELECT count(*) FROM photos").await, 0);
    assert!(env.s3_keys().await.is_empty());
    assert_eq!(env.queue_counts().await, (0, 0));

    // Control: an acceptable upload is visible in all three places, so the
    // checks above could have seen a stored rejection.
    let (s, v) = web.upload(png, "image/png").await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(env.db.count("SELECT count(*) FROM photos").await, 1);
    assert_eq!(env.s3_keys().await.len(), 1);
    assert_eq!(env.queue_counts().await, (1, 0));
    web.stop().await;
}

/// The app's real queries through a real PgBouncer in transaction mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_work_through_pgbouncer_transaction_mode() {
    let mut env = Env::new().await;
    let mut bouncer = PgBouncer::start(&env.db.name, 2);
    let url = bouncer.url(&env.db.name);
    eprintln!("pgbouncer at {url}");

    // Control: named prepared statements (tokio-postgres `query`/`prepare`)
    // DO break through this PgBouncer, so the checks below are meaningful.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        clients.push(std::sync::Arc::new(c));
    }
    let mut tasks = Vec::new();
    for c in &clients {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for i in 0..40i32 {
                if let Err(e) = c.query("SELECT $1::int4 + 1", &[&i]).await {
                    errors.push(format!("{e:?}"));
                }
            }
            errors
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(t.await.unwrap());
    }
    eprintln!("control: {} errors", errors.len());
    assert!(
        errors.iter().any(|e| e.contains("prepared statement")),
        "expected named prepared statements to fail through pgbouncer (transaction mode); errors: {errors:?}"
    );
    drop(clients);

    // The app, entirely through the bouncer: migrate, web (primary and
    // replica URLs), worker.
    env.vars.insert("DATABASE_URL".into(), url.clone());
    env.vars.insert("DATABASE_REPLICA_URL".into(), url.clone());
    env.migrate().await;
    env.migrate().await;

    // Every query function, concurrently from several pooled connections.
    let pool = refapp::db::Pool::new(&url, 6, Default::default()).unwrap();
    let mut tasks = Vec::new();
    for n in 0..6u32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                refapp::db::ping(&pool).await?; // holds no other connection: no pool deadlock
                let id = uuid::Uuid::new_v4();
                let key = format!("x/{id}/original.png");
                let c = pool.get().await?;
                refapp::db::insert_photo(&c, id, &key, "image/png", 10 + n, 20, 300).await?;
                let row = refapp::db::get_photo(&c, id).await?.expect("row");
                assert_eq!(row.width, 10 + n as i32);
                drop(c);
                let c = pool.get().await?;
                let r = refapp::db::Rendition {
                    size: 64,
                    format: "jpg".into(),
                    key: "k".into(),
                    width: 1,
                    height: 2,
                };
                assert_eq!(refapp::db::mark_rendered(&c, id, std::slice::from_ref(&r)).await?, 1);
                assert_eq!(refapp::db::mark_rendered(&c, id, std::slice::from_ref(&r)).await?, 0);
                assert_eq!(refapp::db::get_photo(&c, id).await?.unwrap().renditions, vec![r]);
                assert_eq!(refapp::db::mark_failed(&c, id, "no").await?, 0);
                refapp::db::recent_photos(&c, 10).await?;
                refapp::db::claim_stale_pending(&c, 0).await?;
                assert_eq!(refapp::db::delete_photo(&c, id).await?, 1);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }

    let web = env.start_web().await;
    let worker = env.start_worker();
    let mut ids = Vec::new();
    let uploads: Vec<_> = (0..4u32)
        .map(|i| {
            let (http, base) = (web.http.clone(), web.base.clone());
            tokio::spawn(async move {
                let r = http
                    .post(format!("{base}/photos"))
                    .header("content-type", "image/jpeg")
                    .body(sample_image(400 + i * 10, 300, 20 + i, ImageFormat::Jpeg))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 202);
                let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                v["id"].as_str().unwrap().to_string()
            })
        })
        .collect();
    for u in uploads {
        ids.push(u.await.unwrap());
    }
    for id in &ids {
        assert_eq!(web.wait_status(id, RENDER_TIMEOUT).await["status"], "rendered");
    }
    let (s, _, body) = web.get("/").await;
    assert_eq!(s, 200);
    assert!(ids.iter().all(|id| body.contains(id.as_str())));
    let (s, _, body) = web.get("/healthcheck.html").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(env.db.count("SELECT count(*) FROM photos").await, 4);

    // PgBouncer goes away: the healthcheck says the database is down.
    bouncer.stop();
    let (s, _, body) = web.get("/healthcheck.html").await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("unavailable: database"), "{body}");
    let _ = worker.stop().await;
    web.stop().await;
}
