//! One test per target format: a value with every character class the format
//! treats specially goes through the renderer, and the real program reads back
//! exactly that value (nginx, pgbouncer + libpq, Redis, RabbitMQ, systemd, sh,
//! cloud-init). Values a format cannot hold are refused, with file:line:col
//! when they come from the environment file.
//!
//! The tools come from `scripts/setup`; a missing tool fails the test.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fabrs_config::formats::NginxServerName;
use fabrs_config::secrets::Secrets;
use fabrs_config::{Environment, RoleKind};
use fabrs_render::{Facts, Layout, Options, RenderError, Renderer, RoleFiles, SecretMode};

/// Every class of character that some format treats specially, on one line:
/// surrounding spaces, both quotes, backslash, shell expansions, comment and
/// separator characters, specifiers, URL delimiters, a tab, non-ASCII (2-, 3-
/// and 4-byte UTF-8).
const LINE: &str =
    "  sp \"dq\" 'sq' \\bs \\\\ $HOME ${X} `id` $(id) ;#%%n%:@/?&=+,[]{}<>|*~!^\tt\u{e9}\u{2603}\u{1F600} tail  ";

/// `LINE` plus line breaks and control characters, for formats that can hold them.
fn multiline() -> String {
    format!("{LINE}\nsecond\r\nthird\u{1}\u{7f}\u{85}\u{2028}end ")
}

fn render(env: &Environment, role: RoleKind, secrets: &Secrets, layout: Layout) -> RoleFiles {
    let opts = Options {
        revision: "3f9c2e1".into(),
        secrets: SecretMode::Values(secrets),
        facts: Facts {
            db_master_host: "127.0.0.1".into(),
            db_replica_host: Some("127.0.0.1".into()),
            cache_host: "127.0.0.1".into(),
        },
        layout,
    };
    Renderer::new(&root()).unwrap().render_role(env, role, &opts).unwrap()
}

fn secrets(db: &str, cache: &str, queue: &str) -> Secrets {
    Secrets::from_pairs([
        ("db_password", db),
        ("cache_password", cache),
        ("queue_password", queue),
    ])
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}: {}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn id_of(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, user]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

// ------------------------------------------------------------------- nginx

fn http_get(port: u16, host: &str) -> String {
    http_head(port, host, "/x", &[])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// The response head of a plain-HTTP GET (empty when nginx closes without an answer).
fn http_head(port: u16, host: &str, path: &str, headers: &[&str]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split("\r\n\r\n").next().unwrap_or("").to_string()
}

/// The status of an HTTPS GET to nginx's self-signed certificate (curl).
fn https_status(port: u16, host: &str, path: &str) -> String {
    let out = Command::new(tool("curl"))
        .args([
            "-ksS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
        ])
        .arg(format!("Host: {host}"))
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Start nginx on a rendered web nginx.conf; stopped on drop.
fn start_nginx(dir: &Path, conf: &str, port: u16) -> Guard {
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(tool("nginx"))
        .args(["-e", "stderr", "-c"])
        .arg(&path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Guard(child);
    wait_listening(port, "nginx", || {
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    });
    guard
}

#[test]
fn port_80_redirects_to_https_where_an_https_listener_exists_and_443_serves() {
    // Staging: HTTP and HTTPS listeners, health check HTTPS:443.
    let dir = tempdir();
    let mut env = staging();
    env.app.port = free_port(); // nothing listens there: the app server answers 502
    let layout = unprivileged_nginx_layout(dir.path());
    let (http, https) = (layout.http_port, layout.https_port);
    let role = render(&env, RoleKind::Web, &secrets("d", "c", "q"), layout);
    let _nginx = start_nginx(dir.path(), &role.files["nginx.conf"].content, http);
    let host = "staging.myproject.example";
    let head = http_head(http, host, "/a/b?c=d&e=%20", &[]);
    assert!(head.starts_with("HTTP/1.1 301 "), "{head}");
    assert!(
        head.lines()
            .any(|l| l == format!("Location: https://{host}/a/b?c=d&e=%20")),
        "{head}"
    );
    // The health check is HTTPS:443: on 80 it is redirected too.
    assert!(http_head(http, host, "/healthcheck.html", &[]).starts_with("HTTP/1.1 301 "));
    // An ELB HTTPS listener that ends TLS and forwards to 80 says so: served, not looped.
    let head = http_head(http, host, "/x", &["X-Forwarded-Proto: https"]);
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    // Through the ELB's HTTP listener (X-Forwarded-Proto: http): redirected.
    let head = http_head(http, host, "/x", &["X-Forwarded-Proto: http"]);
    assert!(head.starts_with("HTTP/1.1 301 "), "{head}");
    // 443 still serves the app (502: no app behind it here) and its health check.
    assert_eq!(https_status(https, host, "/x"), "502");
    assert_eq!(https_status(https, "10.0.0.1", "/healthcheck.html"), "502");
    drop(_nginx);

    // Health check HTTP:80: that path answers on 80; the rest still redirects.
    let dir = tempdir();
    let text = std::fs::read_to_string(root().join("environments/staging.yaml")).unwrap();
    let text = text.replace("target: HTTPS:443/healthcheck.html", "target: HTTP:80/healthcheck.html");
    let mut env = fabrs_config::load_str(&text, Path::new("environments/staging.yaml"), &root()).unwrap();
    env.app.port = free_port();
    let layout = unprivileged_nginx_layout(dir.path());
    let http = layout.http_port;
    let role = render(&env, RoleKind::Web, &secrets("d", "c", "q"), layout);
    let _nginx = start_nginx(dir.path(), &role.files["nginx.conf"].content, http);
    for h in [host, "10.0.0.1"] {
        let head = http_head(http, h, "/healthcheck.html", &[]);
        assert!(head.starts_with("HTTP/1.1 502 "), "{h}: {head}");
    }
    assert!(http_head(http, host, "/x", &[]).starts_with("HTTP/1.1 301 "));
    drop(_nginx);

    // No HTTPS listener: port 80 serves.
    let dir = tempdir();
    let mut env = staging();
    env.load_balancer
        .listeners
        .retain(|l| l.protocol == fabrs_config::Protocol::Http);
    env.app.port = free_port();
    let layout = unprivileged_nginx_layout(dir.path());
    let http = layout.http_port;
    let role = render(&env, RoleKind::Web, &secrets("d", "c", "q"), layout);
    assert!(!role.files["nginx.conf"].content.contains("return 301"));
    let _nginx = start_nginx(dir.path(), &role.files["nginx.conf"].content, http);
    assert!(http_head(http, host, "/x", &[]).starts_with("HTTP/1.1 502 "));
}

#[test]
fn nginx_serves_exactly_the_server_names_of_the_file() {
    let nginx = tool("nginx");
    let dir = tempdir();
    let mut env = staging();
    // Every form nginx gives meaning to: exact, leading and trailing wildcards,
    // the leading-dot form, '_' and '-' inside labels.
    let names = [
        "exact-name.example",
        "*.wild.example",
        ".dot.example",
        "www.tail.*",
        "under_score.example",
    ];
    env.app.server_names = names.iter().map(|n| NginxServerName::parse(n).unwrap()).collect();
    env.app.port = free_port(); // nothing listens there: the app server answers 502
    let layout = unprivileged_nginx_layout(dir.path());
    let port = layout.http_port;
    let role = render(&env, RoleKind::Web, &secrets("d", "c", "q"), layout);
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, &role.files["nginx.conf"].content).unwrap();

    // nginx -T: the configuration as nginx parsed it holds the names verbatim.
    let out = Command::new(&nginx)
        .args(["-T", "-e", "stderr", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(dump.contains(&format!("server_name {};", names.join(" "))), "{dump}");

    let child = Command::new(&nginx)
        .args(["-e", "stderr", "-c"])
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Guard(child);
    wait_listening(port, "nginx", || {
        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
    });
    // Hosts the names match reach the app's server block (on port 80 it
    // redirects to HTTPS: staging has an HTTPS listener); anything else is
    // the default server's 444 (connection closed, no answer).
    for host in [
        "exact-name.example",
        "a.wild.example",
        "dot.example",
        "a.dot.example",
        "www.tail.org",
        "under_score.example",
    ] {
        assert!(
            http_get(port, host).contains(" 301 "),
            "{host} should match a server name"
        );
    }
    for host in [
        "other.example",
        "wild.example",
        "x.exact-name.example",
        "tail.org",
        "dq.example",
    ] {
        assert_eq!(http_get(port, host), "", "{host} must fall to the default server");
    }
}

#[test]
fn validate_refuses_a_server_name_nginx_would_misread_at_its_position() {
    let text = std::fs::read_to_string(root().join("environments/staging.yaml")).unwrap();
    let bad = text.replace(
        "server_names: [staging.myproject.example]",
        "server_names: [ok.example, \"a.com; return 200\", \"x y\"]",
    );
    let line = bad.lines().position(|l| l.contains("return 200")).unwrap() + 1;
    let col = bad.lines().nth(line - 1).unwrap().find("\"a.com").unwrap() + 1;
    let diags = fabrs_config::load_str(&bad, Path::new("environments/staging.yaml"), &root()).unwrap_err();
    let got: Vec<_> = diags
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.loc.line as usize,
                d.loc.col as usize,
                d.path.clone(),
                d.message.clone(),
            )
        })
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[0].0, got[0].1), (line, col), "{got:?}");
    assert_eq!(got[0].2, "app.server_names[1]");
    assert!(got[0].3.contains("`;` is not allowed"), "{got:?}");
    assert!(got[1].3.contains("a space is not allowed"), "{got:?}");
}

#[test]
fn validate_refuses_values_no_rendered_file_can_hold() {
    let text = std::fs::read_to_string(root().join("environments/staging.yaml")).unwrap();
    // (replace, with, the key path reported, text on the reported line)
    for (from, to, path, needle) in [
        ("region: us-east-1", "region: \"us-east\\u0085-1\"", "region", "region:"),
        ("region: us-east-1", "region: \"us east-1\"", "region", "region:"),
        // Rendered into nginx's keepalive_timeout, which refuses a huge value (found by tests/fuzz.rs).
        (
            "  health_check:\n",
            "  idle_timeout: 9999999999999999999s\n  health_check:\n",
            "load_balancer.idle_timeout",
            "idle_timeout:",
        ),
        (
            "  port: 8000\n",
            "  port: 8000\n  env:\n    GREETING: \"a\\0b\"\n",
            "app.env.GREETING",
            "GREETING",
        ),
        (
            "  bucket: myproject-staging-artifacts",
            "  bucket: myproject-staging-artifacts\n  prefix: \"x\\0\"",
            "artifacts.prefix",
            "prefix:",
        ),
    ] {
        let bad = text.replacen(from, to, 1);
        assert_ne!(bad, text);
        let diags = fabrs_config::load_str(&bad, Path::new("environments/staging.yaml"), &root()).unwrap_err();
        let d = &diags.diagnostics[0];
        let line = bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
        assert_eq!(
            (d.path.as_str(), d.loc.line as usize),
            (path, line),
            "{to}: {:?}",
            diags.diagnostics
        );
    }
}

// --------------------------------------------------------- pgbouncer + URL

fn psql(args: &[&str], password: Option<&str>) -> std::process::Output {
    let mut c = Command::new(tool("psql"));
    c.args(args);
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    c.env("PGCONNECT_TIMEOUT", "5").output().unwrap()
}

#[test]
fn pgbouncer_and_libpq_read_back_a_password_full_of_specials() {
    let pgbouncer = tool("pgbouncer");
    let mut env = staging();
    let t = tag();
    env.database.name = format!("fabrs_fmt_{t}");
    env.database.username = format!("fabrs_fmt_{t}");
    let password = LINE;
    let admin = ["-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc"];
    let setup = [
        format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}'",
            env.database.username,
            password.replace('\'', "''")
        ),
        format!("CREATE DATABASE {} OWNER {}", env.database.name, env.database.username),
    ];
    for stmt in &setup {
        let out = psql(&[&admin[..], &[stmt.as_str()]].concat(), None);
        assert!(out.status.success(), "{}", text(&out));
    }
    struct Cleanup(String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let admin = ["-h", "127.0.0.1", "-U", "postgres", "-Atc"];
            let _ = psql(
                &[
                    &admin[..],
                    &[&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0)],
                ]
                .concat(),
                None,
            );
            let _ = psql(
                &[&admin[..], &[&format!("DROP ROLE IF EXISTS {}", self.1)]].concat(),
                None,
            );
        }
    }
    let _cleanup = Cleanup(env.database.name.clone(), env.database.username.clone());

    let dir = tempdir();
    if is_root() {
        assert!(
            Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .unwrap()
                .success()
        );
    }
    let d = dir.path().display().to_string();
    let port = free_port();
    let mut layout = Layout::production();
    layout.pgbouncer_port = port;
    layout.pgbouncer_ini = format!("{d}/pgbouncer.ini");
    layout.pgbouncer_auth_file = format!("{d}/userlist.txt");
    layout.pgbouncer_unix_socket_dir = d.clone();
    layout.pgbouncer_logfile = format!("{d}/pgbouncer.log");
    layout.pgbouncer_pidfile = format!("{d}/pgbouncer.pid");
    layout.db_tls_mode = "require".into();
    layout.db_tls_ca_file = "/etc/ssl/certs/ca-certificates.crt".into();
    let role = render(&env, RoleKind::Web, &secrets(password, "c", "q"), layout);
    // The files as cloud-init writes them, not as rendered.
    let written = cloud_init_write_files(&role.user_data);
    for key in ["pgbouncer.ini", "pgbouncer-userlist.txt"] {
        let f = &role.files[key];
        std::fs::write(&f.target, &written[&f.target]).unwrap();
    }
    let mut cmd = Command::new(&pgbouncer);
    cmd.arg(&role.files["pgbouncer.ini"].target)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if is_root() {
        use std::os::unix::process::CommandExt;
        let (uid, gid) = id_of("postgres");
        cmd.gid(gid).uid(uid);
    }
    let _guard = Guard(cmd.spawn().unwrap());
    wait_listening(port, "pgbouncer", || {
        std::fs::read_to_string(format!("{d}/pgbouncer.log")).unwrap_or_default()
    });

    let port_s = port.to_string();
    let through = |pw: &str| {
        psql(
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port_s,
                "-U",
                &env.database.username,
                "-d",
                &env.database.name,
                "-Atc",
                "SELECT 40 + 2",
            ],
            Some(pw),
        )
    };
    let ok = through(password);
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "42", "{}", text(&ok));
    let trimmed = through(password.trim());
    assert!(!trimmed.status.success(), "pgbouncer must refuse the trimmed password");

    // The app's DATABASE_URL (percent-encoded userinfo), read by libpq.
    let app_env = String::from_utf8(written[&role.files["app.env"].target].clone()).unwrap();
    let url = app_env
        .lines()
        .find_map(|l| l.strip_prefix("DATABASE_URL="))
        .expect("DATABASE_URL")
        .replace(":6432/", &format!(":{port}/"));
    let out = psql(&[&url, "-Atc", "SELECT current_user"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        env.database.username,
        "{}",
        text(&out)
    );
}

#[test]
fn a_password_pgbouncer_cannot_hold_is_refused_not_mangled() {
    let env = staging();
    let s = secrets("line\nbreak", "c", "q");
    let opts = Options {
        secrets: SecretMode::Values(&s),
        ..Options::review(&env, "x")
    };
    match Renderer::new(&root()).unwrap().render_role(&env, RoleKind::Web, &opts) {
        Err(RenderError::Value { what, message, .. }) => {
            assert_eq!(what, "secret db_password");
            assert!(message.contains("line break"), "{message}");
            assert!(!message.contains("break\n"), "the secret is not echoed");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ------------------------------------------------------------------- Redis

#[test]
fn redis_reads_back_the_password_of_the_rendered_config() {
    let dir = tempdir();
    let env = staging();
    let password = multiline();
    let role = render(
        &env,
        RoleKind::Cache,
        &secrets("d", &password, "q"),
        Layout::production(),
    );
    let written = cloud_init_write_files(&role.user_data);
    let conf = String::from_utf8(written["/etc/redis/redis.conf"].clone()).unwrap();
    // As fabrs-setup-cache does at boot: the private address and the memory limit filled in.
    let conf = conf
        .replace("PRIVATE_IP", "127.0.0.1")
        .replace("maxmemory MAXMEMORY", "maxmemory 64mb");
    let path = dir.path().join("redis.conf");
    std::fs::write(&path, conf).unwrap();
    let port = free_port();
    let d = dir.path().display().to_string();
    let child = Command::new(tool("redis-server"))
        .arg(&path)
        // Later arguments win: a free port and this test's directory.
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &d,
            "--logfile",
            "",
            "--supervised",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Guard(child);
    wait_listening(port, "redis-server", String::new);
    let cli = |auth: &str, extra: &[&str]| {
        Command::new(tool("redis-cli"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(extra)
            .arg("PING")
            .env("REDISCLI_AUTH", auth)
            .output()
            .unwrap()
    };
    let ok = cli(&password, &[]);
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "PONG", "{}", text(&ok));
    let wrong = cli(password.trim(), &[]);
    assert_ne!(
        String::from_utf8_lossy(&wrong.stdout).trim(),
        "PONG",
        "a trimmed password must fail"
    );

    // The app's REDIS_URL (percent-encoded), read by redis-cli. redis-cli 7.0
    // skips AUTH for an empty user name (`redis://:pw@`, which the app's client
    // reads as the default user): name it for redis-cli.
    let web = render(&env, RoleKind::Web, &secrets("d", &password, "q"), Layout::production());
    let app_env =
        String::from_utf8(cloud_init_write_files(&web.user_data)[&web.files["app.env"].target].clone()).unwrap();
    let url = app_env
        .lines()
        .find_map(|l| l.strip_prefix("REDIS_URL="))
        .unwrap()
        .replace(":6379/", &format!(":{port}/"))
        .replace("redis://:", "redis://default:");
    let out = Command::new(tool("redis-cli"))
        .args(["--no-auth-warning", "-u", &url, "PING"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG", "{}", text(&out));
}

// ---------------------------------------------------------------- RabbitMQ

/// Run the rendered fabrs-setup-cache for real, with only the steps that would
/// reconfigure this machine's services replaced (metadata, sed on /etc, restarts):
/// `rabbitmqctl` is the real one, against the local RabbitMQ.
#[test]
fn rabbitmq_authenticates_the_user_the_rendered_setup_creates() {
    assert!(is_root(), "rabbitmqctl talks to the local node as root or rabbitmq");
    let dir = tempdir();
    let mut env = staging();
    env.project = format!("fabrsq{}", tag());
    let user = env.project.clone();
    let password = multiline();
    let mut layout = Layout::production();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::set_permissions(&etc, PermissionsExt::from_mode(0o755)).unwrap();
    layout.etc = Some(etc.display().to_string());
    let role = render(&env, RoleKind::Cache, &secrets("d", "c", &password), layout);
    // The definitions file exactly as cloud-init writes it (owner and mode too).
    let written = cloud_init_write_files(&role.user_data);
    let defs = &role.files["rabbitmq-user.json"];
    assert_eq!((defs.owner.as_str(), defs.mode.as_str()), ("rabbitmq:rabbitmq", "0400"));
    std::fs::write(&defs.target, &written[&defs.target]).unwrap();
    let (uid, gid) = id_of("rabbitmq");
    std::os::unix::fs::chown(&defs.target, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&defs.target, PermissionsExt::from_mode(0o400)).unwrap();

    let stubs = dir.path().join("stubs");
    std::fs::create_dir(&stubs).unwrap();
    // `sed -i` edits /etc; other seds (the rabbitmqctl wrapper's) are the real one.
    let sed = "case \"$1\" in -i) exit 0 ;; esac\nexec /bin/sed \"$@\"";
    for (name, body) in [("curl", "echo 127.0.0.1"), ("sed", sed), ("systemctl", "exit 0")] {
        let p = stubs.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, PermissionsExt::from_mode(0o755)).unwrap();
    }
    let script = dir.path().join("fabrs-setup-cache");
    std::fs::write(&script, &written["/usr/local/sbin/fabrs-setup-cache"]).unwrap();
    let delete = || {
        let _ = Command::new(tool("rabbitmqctl")).args(["delete_user", &user]).output();
    };
    let run = Command::new("sh")
        .arg(&script)
        .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", stubs.display()))
        .output()
        .unwrap();
    if !run.status.success() {
        delete();
        panic!("fabrs-setup-cache failed: {}", text(&run));
    }
    // authenticate_user through the CLI itself (as the rabbitmq user): the
    // Debian wrapper would re-evaluate the password in a shell.
    let auth = |pw: &str| {
        Command::new("runuser")
            .args([
                "-u",
                "rabbitmq",
                "--",
                "env",
                "HOME=/var/lib/rabbitmq",
                "/usr/lib/rabbitmq/bin/rabbitmqctl",
                "authenticate_user",
                "--",
                &user,
                pw,
            ])
            .current_dir("/var/lib/rabbitmq")
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = loop {
        // The import is applied by the node; poll until it has been.
        let out = auth(&password);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let trimmed = auth(password.trim());
    let perms = Command::new(tool("rabbitmqctl"))
        .args(["list_user_permissions", &user, "--silent"])
        .output()
        .unwrap();
    delete();
    assert!(
        ok.status.success(),
        "the exact password must authenticate: {}",
        text(&ok)
    );
    assert!(!trimmed.status.success(), "the trimmed password must not");
    assert!(
        String::from_utf8_lossy(&perms.stdout).contains("/\t.*\t.*\t.*"),
        "{}",
        text(&perms)
    );
}

// ----------------------------------------------------------------- systemd

/// Runs `script` in a private mount namespace where a systemd user manager is
/// started (this machine's PID 1 is not systemd), with its configuration
/// (`<dir>/config/systemd/user`) and runtime directories inside `dir`.
fn with_systemd(dir: &Path, script: &str) -> std::process::Output {
    let rt = dir.join("runtime");
    std::fs::create_dir(&rt).unwrap();
    std::fs::set_permissions(&rt, PermissionsExt::from_mode(0o700)).unwrap();
    let full = format!(
        r#"set -eu
mount -t tmpfs tmpfs /run/systemd 2>/dev/null || {{ mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd; }}
mkdir -p /run/systemd/system
export XDG_RUNTIME_DIR={rt} XDG_CONFIG_HOME={config} HOME={home}
mkdir -p "$HOME"
/lib/systemd/systemd --user >{rt}/manager.log 2>&1 &
manager=$!
trap 'kill $manager' EXIT
i=0
until systemctl --user is-system-running >/dev/null 2>&1 || [ "$(systemctl --user is-system-running 2>/dev/null)" = degraded ]; do
    i=$((i+1)); [ $i -lt 200 ] || {{ echo "no systemd user manager: $(cat {rt}/manager.log)" >&2; exit 1; }}
    sleep 0.05
done
{script}
"#,
        rt = rt.display(),
        config = dir.join("config").display(),
        home = dir.join("home").display(),
    );
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &full])
        .output()
        .unwrap()
}

#[test]
fn systemd_reads_back_the_app_environment_and_unit_values() {
    assert!(is_root(), "a private mount namespace needs root");
    let dir = tempdir();
    let mut env = staging();
    let value = multiline();
    env.app.env = BTreeMap::from([
        ("NASTY".to_string(), value.clone()),
        ("EMPTY".to_string(), String::new()),
        ("PLAIN".to_string(), "plain-value".to_string()),
        ("SPACES".to_string(), "   ".to_string()),
    ]);
    let mut layout = Layout::production();
    layout.srv = Some(dir.path().join("srv").display().to_string());
    layout.etc = Some(dir.path().join("etc").display().to_string());
    let role = render(&env, RoleKind::Web, &secrets(LINE, LINE, LINE), layout);
    let written = cloud_init_write_files(&role.user_data);
    let env_file = &role.files["app.env"].target;
    std::fs::create_dir_all(Path::new(env_file).parent().unwrap()).unwrap();
    std::fs::write(env_file, &written[env_file]).unwrap();
    let unit_name = "refapp-web.service";
    let units = dir.path().join("config/systemd/user");
    std::fs::create_dir_all(&units).unwrap();
    let unit = units.join(unit_name);
    std::fs::write(&unit, &written[&role.files[unit_name].target]).unwrap();
    // ExecStart must name an executable for `verify`.
    let bin = dir.path().join("srv/current/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("refapp"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(bin.join("refapp"), PermissionsExt::from_mode(0o755)).unwrap();

    let verify = Command::new(tool("systemd-analyze"))
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    assert!(verify.status.success() && verify.stderr.is_empty(), "{}", text(&verify));

    let out = with_systemd(
        dir.path(),
        &format!(
            "systemd-run --user --quiet --wait --pipe -p EnvironmentFile={env_file} /usr/bin/env -0 > {d}/env.out\n\
             systemctl --user show -p Description -p WorkingDirectory -p EnvironmentFiles -p User {unit_name} > {d}/show.out",
            d = dir.path().display(),
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let raw = std::fs::read(dir.path().join("env.out")).unwrap();
    let got: BTreeMap<String, String> = raw
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let e = String::from_utf8(e.to_vec()).unwrap();
            e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(got.get("NASTY"), Some(&value), "a value with every special class");
    assert_eq!(got.get("EMPTY").map(String::as_str), Some(""));
    assert_eq!(got.get("SPACES").map(String::as_str), Some("   "));
    assert_eq!(got.get("PLAIN").map(String::as_str), Some("plain-value"));
    let url = fabrs_config::formats::UrlPart::encode(LINE);
    assert_eq!(
        got.get("DATABASE_URL"),
        Some(&format!("postgres://myproject:{url}@127.0.0.1:6432/myproject"))
    );
    let show = std::fs::read_to_string(dir.path().join("show.out")).unwrap();
    assert!(show.contains("Description=myproject refapp web (staging)\n"), "{show}");
    assert!(
        show.contains(&format!("WorkingDirectory={}/srv/current\n", dir.path().display())),
        "{show}"
    );
    assert!(
        show.contains(&format!("EnvironmentFiles={env_file} (ignore_errors=no)")),
        "{show}"
    );
    assert!(show.contains("User=myproject\n"), "{show}");
}

// ------------------------------------------------------------------- shell

#[test]
fn shell_scripts_parse_and_pass_values_through_exactly() {
    let dir = tempdir();
    let mut env = staging();
    env.artifacts.prefix = LINE.to_string();
    let mut layout = Layout::production();
    layout.srv = Some(dir.path().join("srv").display().to_string());
    let web = render(&env, RoleKind::Web, &secrets("d", "c", "q"), layout.clone());
    let cache = render(&env, RoleKind::Cache, &secrets("d", "c", "q"), layout);
    let installer = dir.path().join("install");
    std::fs::write(
        &installer,
        &cloud_init_write_files(&web.user_data)["/usr/local/sbin/fabrs-install-release"],
    )
    .unwrap();
    let setup = dir.path().join("setup");
    std::fs::write(
        &setup,
        &cloud_init_write_files(&cache.user_data)["/usr/local/sbin/fabrs-setup-cache"],
    )
    .unwrap();
    for shell in ["sh", "dash", "bash"] {
        for script in [&installer, &setup] {
            let out = Command::new(tool(shell)).arg("-n").arg(script).output().unwrap();
            assert!(out.status.success(), "{shell} -n {}: {}", script.display(), text(&out));
        }
    }
    // Run the installer with an `aws` that records its arguments and fails (so
    // nothing is installed): the S3 address carries the prefix exactly.
    let stubs = dir.path().join("stubs");
    std::fs::create_dir(&stubs).unwrap();
    let record = dir.path().join("aws.args");
    std::fs::write(
        stubs.join("aws"),
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > {}\nexit 7\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(stubs.join("aws"), PermissionsExt::from_mode(0o755)).unwrap();
    for shell in ["dash", "bash"] {
        let _ = std::fs::remove_file(&record);
        let out = Command::new(tool(shell))
            .arg(&installer)
            .env("PATH", format!("{}:/usr/bin:/bin", stubs.display()))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7), "{shell}: {}", text(&out));
        let args = std::fs::read(&record).unwrap();
        let args: Vec<String> = args
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8(a.to_vec()).unwrap())
            .collect();
        assert_eq!(
            args.iter().find(|a| a.starts_with("s3://")).map(String::as_str),
            Some(format!("s3://myproject-staging-artifacts/{LINE}/myproject/3f9c2e1/refapp.tar.gz").as_str()),
            "{shell}: {args:?}"
        );
        assert!(
            args.windows(2).any(|w| w[0] == "--region" && w[1] == "us-east-1"),
            "{args:?}"
        );
    }
}

// -------------------------------------------------------------- cloud-init

#[test]
fn cloud_init_writes_secrets_with_surrounding_spaces_exactly() {
    let dir = tempdir();
    let mut env = staging();
    env.ssh.authorized_keys.push(format!(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0qXkpTtYX3nQ2WcF1h0bM0a2x1Q5z0QmYVdJ2aLk1m {LINE}"
    ));
    env.app.env.insert("MULTI".into(), multiline());
    let pw = "  spaces around  ";
    for (role, s) in [
        (RoleKind::Web, secrets(pw, pw, pw)),
        (RoleKind::Cache, secrets(pw, pw, pw)),
        (RoleKind::Cache, secrets("d", &multiline(), &multiline())),
    ] {
        let files = render(&env, role, &s, Layout::production());
        cloud_init_schema(&files.user_data, dir.path(), role.as_str());
        let written = cloud_init_write_files(&files.user_data);
        assert_eq!(written.len(), files.files.len());
        for f in files.files.values() {
            assert_eq!(
                String::from_utf8_lossy(&written[&f.target]),
                f.content,
                "{role} {}: cloud-init writes exactly the rendered file",
                f.target
            );
        }
        // The queue's password in the definitions equals the one in the app's URL.
        if let Some(defs) = files.files.get("rabbitmq-user.json") {
            let v: serde_json::Value = serde_json::from_slice(&written[&defs.target]).unwrap();
            assert_eq!(
                v["users"][0]["password"].as_str(),
                s.get("queue_password").map(|p| p.expose())
            );
        }
    }
    // The authorized key, comment included, as cloud-init reads it.
    let web = render(&env, RoleKind::Web, &secrets("d", "c", "q"), Layout::production());
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import sys, json; from cloudinit import util; json.dump(util.load_yaml(sys.stdin.read())['ssh_authorized_keys'], sys.stdout)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(web.user_data.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let keys: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys, env.ssh.authorized_keys);
}
