//! Rendered files checked by the real tools: cloud-init's own schema check on
//! every user-data, `nginx -t` on every nginx.conf, and a live pgbouncer started
//! with the rendered config in front of the local PostgreSQL.
//!
//! The tools come from `scripts/setup`; a missing tool fails the test (it does
//! not skip), saying so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, is_root, root};
use fabrs_config::secrets::Secrets;
use fabrs_config::{Environment, RoleKind};
use fabrs_render::{Facts, Layout, Options, Renderer, SecretMode};

/// Every environment file the project ships: environments/ and examples/.
fn shipped() -> Vec<Environment> {
    let root = root();
    let mut files: Vec<PathBuf> = ["environments", "examples"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "staging, production and three examples: {files:?}");
    files
        .iter()
        .map(|f| fabrs_config::load_file(f).unwrap_or_else(|d| panic!("{}", d.render())))
        .collect()
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("`{name}` is not installed: run scripts/setup");
}

fn tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    // Readable by the unprivileged user pgbouncer runs as.
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    d
}

#[test]
fn every_user_data_passes_cloud_init_schema() {
    let cloud_init = tool("cloud-init");
    let dir = tempdir();
    let mut checked = 0;
    for env in shipped() {
        let renderer = Renderer::new(&env.project_dir).unwrap();
        for role in renderer.render_all(&env, &Options::review(&env, "3f9c2e1")).unwrap() {
            let path = dir
                .path()
                .join(format!("{}-{}-{}.yaml", env.project, env.name, role.role));
            std::fs::write(&path, &role.user_data).unwrap();
            let out = Command::new(&cloud_init)
                .args(["schema", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && text.contains("Valid cloud-config"),
                "{}: {text}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 13, "checked {checked} user-data files");
}

#[test]
fn cloud_init_schema_check_catches_a_broken_user_data() {
    // The check above can fail: a wrong type in a rendered file is reported.
    let cloud_init = tool("cloud-init");
    let env = fabrs_config::load_file(&root().join("environments/staging.yaml")).unwrap();
    let role = Renderer::new(&root())
        .unwrap()
        .render_role(&env, RoleKind::Web, &Options::review(&env, "x"))
        .unwrap();
    let broken = role.user_data.replace("package_upgrade: true", "package_upgrade: [1]");
    let dir = tempdir();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, broken).unwrap();
    let out = Command::new(cloud_init)
        .args(["schema", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken user-data must fail the schema check");
}

#[test]
fn every_embedded_file_round_trips_through_the_user_data_yaml() {
    // What cloud-init writes to disk (its own YAML loader and write_files
    // decoding, base64 included) is byte for byte the rendered file.
    for env in shipped() {
        let renderer = Renderer::new(&env.project_dir).unwrap();
        for role in renderer.render_all(&env, &Options::review(&env, "3f9c2e1")).unwrap() {
            let written = common::cloud_init_write_files(&role.user_data);
            assert_eq!(written.len(), role.files.len());
            for f in role.files.values() {
                assert_eq!(
                    String::from_utf8_lossy(&written[&f.target]),
                    f.content,
                    "{} {}",
                    env.name,
                    f.target
                );
            }
            let doc: serde_json::Value = yaml_to_json(&role.user_data);
            for w in doc["write_files"].as_array().unwrap() {
                let f = role.files.values().find(|f| w["path"] == f.target.as_str()).unwrap();
                assert_eq!(w["permissions"].as_str().unwrap(), f.mode);
                assert_eq!(w["owner"].as_str().unwrap(), f.owner);
            }
        }
    }
}

/// Parse YAML with Python's PyYAML (cloud-init's own parser), not our code.
fn yaml_to_json(yaml: &str) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML could not parse the user-data");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_nginx_conf_passes_nginx_t() {
    let nginx = tool("nginx");
    let dir = tempdir();
    let mut checked = 0;
    for env in shipped() {
        let Some(_) = env.role(RoleKind::Web) else {
            continue;
        };
        let renderer = Renderer::new(&env.project_dir).unwrap();
        let mut opts = Options::review(&env, "3f9c2e1");
        let root_run = is_root();
        if !root_run {
            // Unprivileged: same directives, paths and ports moved (test-peers.md).
            opts.layout = unprivileged_nginx_layout(dir.path());
        }
        let role = renderer.render_role(&env, RoleKind::Web, &opts).unwrap();
        let conf = dir.path().join(format!("{}-{}-nginx.conf", env.project, env.name));
        std::fs::write(&conf, &role.files["nginx.conf"].content).unwrap();
        let mut cmd = if root_run {
            // `nginx -t` binds the listen ports: do it in a private network namespace.
            let mut c = Command::new("unshare");
            c.arg("-n").arg(&nginx);
            c
        } else {
            Command::new(&nginx)
        };
        let out = cmd.args(["-t", "-e", "stderr", "-c"]).arg(&conf).output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("test is successful"),
            "{}: {text}",
            conf.display()
        );
        checked += 1;
    }
    assert!(checked >= 5, "checked {checked} nginx configs");
}

fn unprivileged_nginx_layout(dir: &Path) -> Layout {
    let mut l = Layout::production();
    let d = dir.display();
    l.http_port = free_port();
    l.https_port = free_port();
    l.nginx_pid = format!("{d}/nginx.pid");
    l.nginx_error_log = format!("{d}/error.log");
    l.nginx_access_log = format!("{d}/access.log");
    l.nginx_temp_dir = Some(d.to_string());
    l
}

fn psql(args: &[&str], password: Option<&str>) -> std::process::Output {
    let mut c = Command::new(tool("psql"));
    c.args(args);
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    c.env("PGCONNECT_TIMEOUT", "5").output().unwrap()
}

struct Pgbouncer(Child);

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pgbouncer_runs_the_rendered_config_and_proxies_queries() {
    let pgbouncer = tool("pgbouncer");
    let root = root();
    let mut env = fabrs_config::load_file(&root.join("environments/staging.yaml")).unwrap();
    let tag = format!(
        "{}_{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() % 100000
    );
    env.database.name = format!("fabrs_pgb_{tag}");
    env.database.username = format!("fabrs_pgb_{tag}");
    let password = "pgb 'test' pa:ss\"word";
    let admin = ["-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc"];
    let sql_pw = password.replace('\'', "''");
    let setup = format!(
        "CREATE ROLE {u} LOGIN PASSWORD '{sql_pw}'; CREATE DATABASE {d} OWNER {u};",
        u = env.database.username,
        d = env.database.name
    );
    for stmt in setup.split_inclusive(';') {
        let out = psql(&[&admin[..], &[stmt]].concat(), None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let cleanup = || {
        let _ = psql(
            &[
                &admin[..],
                &[&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", env.database.name)],
            ]
            .concat(),
            None,
        );
        let _ = psql(
            &[&admin[..], &[&format!("DROP ROLE IF EXISTS {}", env.database.username)]].concat(),
            None,
        );
    };

    let dir = tempdir();
    if is_root() {
        // pgbouncer refuses to run as root; its user writes its log and pid here.
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
    // The local server's certificate is self-signed for the host name: require
    // TLS without verifying it (RDS gets verify-full with its CA bundle).
    layout.db_tls_mode = "require".into();
    layout.db_tls_ca_file = "/etc/ssl/certs/ca-certificates.crt".into();
    let secrets = Secrets::from_pairs([
        ("db_password", password),
        ("cache_password", "c"),
        ("queue_password", "q"),
    ]);
    let opts = Options {
        revision: "3f9c2e1".into(),
        secrets: SecretMode::Values(&secrets),
        facts: Facts {
            db_master_host: "127.0.0.1".into(),
            db_replica_host: Some("127.0.0.1".into()),
            cache_host: "127.0.0.1".into(),
        },
        layout,
    };
    let role = Renderer::new(&root)
        .unwrap()
        .render_role(&env, RoleKind::Web, &opts)
        .unwrap();
    for key in ["pgbouncer.ini", "pgbouncer-userlist.txt"] {
        let f = &role.files[key];
        std::fs::write(&f.target, &f.content).unwrap();
    }
    let ini = &role.files["pgbouncer.ini"].target;
    let mut cmd = Command::new(&pgbouncer);
    cmd.arg(ini).stdout(Stdio::null()).stderr(Stdio::null());
    if is_root() {
        // pgbouncer refuses to run as root: run it (itself, so the guard kills it) as postgres.
        use std::os::unix::process::CommandExt;
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, "postgres"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        cmd.gid(id("-g")).uid(id("-u"));
    }
    let child = cmd.spawn().unwrap();
    let _guard = Pgbouncer(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "pgbouncer did not listen on {port}: {}",
            std::fs::read_to_string(format!("{d}/pgbouncer.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let port_s = port.to_string();
    let through = |db: &str, pw: &str, sql: &str| {
        psql(
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port_s,
                "-U",
                &env.database.username,
                "-d",
                db,
                "-Atc",
                sql,
            ],
            Some(pw),
        )
    };
    let out = through(&env.database.name, password, "SELECT 40 + 2");
    let result = (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    let replica = through(
        &format!("{}_replica", env.database.name),
        password,
        "SELECT current_database()",
    );
    let tls = through(
        &env.database.name,
        password,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    let wrong = through(&env.database.name, "not-the-password", "SELECT 1");
    cleanup();

    assert_eq!(result.0, "42", "query through pgbouncer failed: {}", result.1);
    assert_eq!(
        String::from_utf8_lossy(&replica.stdout).trim(),
        env.database.name,
        "the _replica alias reaches the database"
    );
    assert_eq!(
        String::from_utf8_lossy(&tls.stdout).trim(),
        "t",
        "pgbouncer talks TLS to the server"
    );
    assert!(
        !wrong.status.success(),
        "pgbouncer must refuse a wrong password (scram)"
    );
}
