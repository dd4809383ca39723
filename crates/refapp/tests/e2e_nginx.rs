//! End to end, as a web server runs it: nginx with fabrs's rendered nginx.conf,
//! pgbouncer with fabrs's rendered pgbouncer.ini and userlist, and refapp web
//! and worker reading fabrs's rendered app.env, in front of the local
//! PostgreSQL, Redis, RabbitMQ and a moto S3. Only ports and paths are moved
//! (fabrs_render::Layout); every directive is the production one.
//!
//! fabrs-render is a dev-dependency only: the app itself depends on no fabrs crate.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fabrs_config::RoleKind;
use fabrs_config::secrets::Secrets;
use fabrs_render::{Facts, Layout, Options, Renderer, SecretMode};
use fabrs_test_support::{is_root, root};

const HOST: &str = "staging.myproject.example";

fn uid_gid(user: &str) -> (u32, u32) {
    let id = |f: &str| {
        String::from_utf8(Command::new("id").args([f, user]).output().unwrap().stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx stops on SIGTERM to its master, which takes its workers along
/// (SIGKILL would orphan them).
struct Nginx(Child);
impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// The whole web server, running.
struct Stack {
    env: Env,
    dir: tempfile::TempDir,
    http: u16,
    https: u16,
    srv: PathBuf,
    pgbouncer: Option<Killed>,
    _nginx: Nginx,
    _web: Killed,
    _worker: Killed,
    client: reqwest::Client,
}

impl Stack {
    async fn start() -> Stack {
        let env = Env::new().await;
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path().to_path_buf();

        // The environment: staging, pointed at this test's database with a
        // login role of its own (pgbouncer authenticates it with scram).
        let mut fenv = fabrs_config::load_file(&root().join("environments/staging.yaml")).unwrap();
        fenv.database.name = env.db.name.clone();
        fenv.database.username = format!("{}_app", env.db.name);
        fenv.app.port = free_port();
        // The app through nginx over plain HTTP: without an HTTPS listener
        // port 80 serves instead of redirecting to HTTPS (the redirect has
        // its own tests in fabrs-render's formats.rs and fabrs-remote's
        // maintenance.rs).
        fenv.load_balancer
            .listeners
            .retain(|l| l.protocol == fabrs_config::Protocol::Http);
        let password = format!("pw-{}", env.tag);
        let admin = env.db.client().await;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {u} LOGIN PASSWORD '{password}'; GRANT ALL ON SCHEMA public TO {u}; GRANT CREATE ON DATABASE {db} TO {u};",
                u = fenv.database.username,
                db = env.db.name
            ))
            .await
            .unwrap();

        // A release as fabrs-install-release lays it out: <srv>/current -> releases/<rev>.
        let srv = d.join("srv");
        let release = srv.join("releases/rev1");
        std::fs::create_dir_all(release.join("static")).unwrap();
        for f in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("static")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), release.join("static").join(f.file_name())).unwrap();
        }
        std::os::unix::fs::symlink(&release, srv.join("current")).unwrap();
        for p in [&srv, &srv.join("releases"), &release, &release.join("static")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        let (http, https) = (free_port(), free_port());
        let mut layout = Layout::production();
        layout.http_port = http;
        layout.https_port = https;
        layout.nginx_pid = d.join("nginx.pid").display().to_string();
        layout.nginx_error_log = d.join("nginx-error.log").display().to_string();
        layout.nginx_access_log = d.join("nginx-access.log").display().to_string();
        layout.nginx_temp_dir = Some(d.display().to_string());
        layout.pgbouncer_port = free_port();
        layout.pgbouncer_ini = d.join("pgbouncer.ini").display().to_string();
        layout.pgbouncer_auth_file = d.join("userlist.txt").display().to_string();
        layout.pgbouncer_unix_socket_dir = d.display().to_string();
        layout.pgbouncer_logfile = d.join("pgbouncer.log").display().to_string();
        layout.pgbouncer_pidfile = d.join("pgbouncer.pid").display().to_string();
        // The local server's certificate is self-signed: TLS required, not verified.
        layout.db_tls_mode = "require".into();
        layout.db_tls_ca_file = "/etc/ssl/certs/ca-certificates.crt".into();
        layout.srv = Some(srv.display().to_string());
        layout.etc = Some(d.display().to_string());
        let secrets = Secrets::from_pairs([
            ("db_password", password.as_str()),
            ("cache_password", "unused"),
            ("queue_password", "unused"),
        ]);
        let opts = Options {
            revision: "rev1".into(),
            secrets: SecretMode::Values(&secrets),
            facts: Facts {
                db_master_host: "127.0.0.1".into(),
                db_replica_host: Some("127.0.0.1".into()),
                cache_host: "127.0.0.1".into(),
            },
            layout,
        };
        let web = Renderer::new(&root())
            .unwrap()
            .render_role(&fenv, RoleKind::Web, &opts)
            .unwrap();
        let nginx_conf = d.join("nginx.conf");
        std::fs::write(&nginx_conf, &web.files["nginx.conf"].content).unwrap();
        for key in ["pgbouncer.ini", "pgbouncer-userlist.txt", "app.env"] {
            let f = &web.files[key];
            std::fs::write(&f.target, &f.content).unwrap();
        }
        if is_root() {
            let (uid, gid) = uid_gid("postgres");
            std::os::unix::fs::chown(&d, Some(uid), Some(gid)).unwrap();
        }

        // pgbouncer, as postgres (it refuses root).
        let mut cmd = Command::new("/usr/sbin/pgbouncer");
        cmd.arg(&web.files["pgbouncer.ini"].target)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            use std::os::unix::process::CommandExt;
            let (uid, gid) = uid_gid("postgres");
            cmd.uid(uid).gid(gid);
        }
        let pgbouncer = Killed(cmd.spawn().unwrap());
        assert!(
            wait_port(opts.layout.pgbouncer_port, Duration::from_secs(10)),
            "pgbouncer did not start"
        );

        // The app, configured by the rendered app.env; only what differs on
        // this machine is overridden (real variables win over the file):
        // local Redis/RabbitMQ credentials, moto S3, per-test names.
        let app_env = &web.files["app.env"].target;
        let overrides: Vec<(&str, String)> = [
            "REDIS_URL",
            "AMQP_URL",
            "S3_BUCKET",
            "S3_ENDPOINT_URL",
            "RENDITION_BASE_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "REFAPP_CACHE_PREFIX",
            "REFAPP_QUEUE_PREFIX",
        ]
        .into_iter()
        .map(|k| (k, env.vars[k].clone()))
        .collect();
        let app = |sub: &str| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_refapp"));
            c.args(["--env-file", app_env, sub])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            for (k, v) in &overrides {
                c.env(k, v);
            }
            c
        };
        assert!(app("migrate").status().unwrap().success(), "migrate through pgbouncer");
        let web_proc = Killed(app("web").spawn().unwrap());
        let worker = Killed(app("worker").spawn().unwrap());
        assert!(
            wait_port(fenv.app.port, Duration::from_secs(15)),
            "refapp web did not listen"
        );

        let nginx = Nginx(
            Command::new("/usr/sbin/nginx")
                .arg("-e")
                .arg(d.join("nginx-error.log"))
                .arg("-c")
                .arg(&nginx_conf)
                .args(["-g", "daemon off;"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        assert!(wait_port(http, Duration::from_secs(10)), "nginx did not start");
        Stack {
            env,
            dir,
            http,
            https,
            srv,
            pgbouncer: Some(pgbouncer),
            _nginx: nginx,
            _web: web_proc,
            _worker: worker,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let r = self
            .client
            .get(self.url(path))
            .header("Host", HOST)
            .send()
            .await
            .unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, h, r.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photo_upload_through_rendered_nginx_and_pgbouncer() {
    let stack = Stack::start().await;

    // The health check answers on the default server too (the ELB's Host is an address).
    let r = stack.client.get(stack.url("/healthcheck.html")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let (s, _, body) = stack.get("/healthcheck.html").await;
    assert_eq!(s, 200, "{body}");
    // Unknown hosts are dropped (444: the connection closes without an answer).
    assert!(
        stack
            .client
            .get(stack.url("/"))
            .header("Host", "evil.example")
            .send()
            .await
            .is_err()
    );
    // HTTPS with the instance's self-signed certificate, as the ELB talks to it.
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Host: {HOST}"),
        ])
        .arg(format!("https://127.0.0.1:{}/healthcheck.html", stack.https))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");

    // Static files come from disk, served by nginx (no app header).
    let (s, h, css) = stack.get("/static/style.css").await;
    assert_eq!(s, 200);
    assert!(
        !css.is_empty() && h.get("x-refapp-revision").is_none(),
        "nginx, not the app, serves /static/"
    );

    // Upload through nginx → rendered thumbnails in S3 → listed, through the cache.
    let jpeg = sample_image(1200, 900, 7, image::ImageFormat::Jpeg);
    let r = stack
        .client
        .post(stack.url("/photos"))
        .header("Host", HOST)
        .header("content-type", "image/jpeg")
        .body(jpeg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let mut status = serde_json::Value::Null;
    for _ in 0..150 {
        let (_, _, body) = stack.get(&format!("/photos/{id}")).await;
        status = serde_json::from_str(&body).unwrap();
        if status["status"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "rendered", "{status}");
    let keys = stack.env.s3_keys().await;
    assert_eq!(
        keys.iter().filter(|k| k.contains(&id)).count(),
        7,
        "original + 6 thumbnails: {keys:?}"
    );
    let (s, h1, page) = stack.get("/").await;
    assert_eq!(s, 200);
    assert!(page.contains(&id), "the page lists the photo");
    let (_, h2, _) = stack.get("/").await;
    assert_eq!(
        (h1["x-cache"].to_str().unwrap(), h2["x-cache"].to_str().unwrap()),
        ("MISS", "HIT")
    );

    // Maintenance (FabulAWS's trick): users get 503 and the maintenance page,
    // the health check keeps getting 200.
    let flag = stack.srv.join("maintenance.on");
    std::fs::write(&flag, "").unwrap();
    let (s, _, body) = stack.get("/").await;
    let maintenance =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("static/maintenance.html")).unwrap();
    assert_eq!((s, body.as_str()), (503, maintenance.as_str()));
    assert_eq!(stack.get("/healthcheck.html").await.0, 200);
    std::fs::remove_file(&flag).unwrap();
    assert_eq!(stack.get("/").await.0, 200);

    // PostgreSQL unreachable (pgbouncer gone): the health check through nginx fails.
    let mut stack = stack;
    drop(stack.pgbouncer.take());
    let (s, _, body) = stack.get("/healthcheck.html").await;
    assert_ne!(s, 200, "{body}");
    assert!(body.contains("database"), "{body}");
    drop(stack.dir);
}

/// `wrk` against nginx for 10 s: (requests/s, p99 latency as wrk prints it).
fn wrk(url: &str, host: &str) -> (f64, String) {
    let out = Command::new("wrk")
        .args(["-t2", "-c32", "-d10s", "--latency", "-H", &format!("Host: {host}"), url])
        .output()
        .expect("wrk is installed by scripts/setup");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0);
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let non2xx = text.lines().find(|l| l.contains("Non-2xx")).map(String::from);
    assert!(non2xx.is_none(), "every answer must be a 200: {non2xx:?}\n{text}");
    (rps, p99)
}

/// Benchmark, not a test (run by benches/stack.sh, never in CI): the cached
/// `GET /` through nginx vs nginx serving a static file of the same size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with benches/stack.sh"]
async fn bench_cached_index_vs_static_file() {
    let stack = Stack::start().await;
    let mut ids = Vec::new();
    for seed in 0..6 {
        let jpeg = sample_image(800, 600, seed, image::ImageFormat::Jpeg);
        let r = stack
            .client
            .post(stack.url("/photos"))
            .header("Host", HOST)
            .header("content-type", "image/jpeg")
            .body(jpeg)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    // Every render done before measuring: the page shows six rendered
    // photos, and no render competes with the benchmark for the CPU.
    for id in &ids {
        let start = std::time::Instant::now();
        while stack
            .get(&format!("/photos/{id}"))
            .await
            .2
            .contains(r#""status":"pending""#)
        {
            assert!(start.elapsed() < Duration::from_secs(60), "{id} still pending");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (_, _, page) = stack.get("/").await;
    let (_, h, _) = stack.get("/").await;
    assert_eq!(h["x-cache"].to_str().unwrap(), "HIT");
    // The same bytes, as a static file nginx serves from disk.
    let file = stack.srv.join("current/static/bench-index.html");
    std::fs::write(&file, &page).unwrap();
    let (app_rps, app_p99) = wrk(&stack.url("/"), HOST);
    let (static_rps, static_p99) = wrk(&stack.url("/static/bench-index.html"), HOST);
    println!(
        "\nbody: {} bytes; wrk -t2 -c32 -d10s, same machine (2 cores), one run",
        page.len()
    );
    println!("{:<34} {:>12} {:>10}", "", "requests/s", "p99");
    println!("{:<34} {:>12.0} {:>10}", "GET / (refapp, cache hit)", app_rps, app_p99);
    println!(
        "{:<34} {:>12.0} {:>10}",
        "static file of the same size", static_rps, static_p99
    );
    println!(
        "ratio app/static: {:.2} (target >= 0.50); p99 app {app_p99}, static {static_p99}",
        app_rps / static_rps
    );
}
