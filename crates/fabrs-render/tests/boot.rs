//! The boot test: the user-data fabrs renders for a role, booted on a real
//! Debian system (systemd-nspawn on the cached rootfs of
//! `tests/peers/rootfs-build`) under cloud-init's NoCloud datasource, in a
//! private network made by `tests/peers/boot-peer` with real stand-ins (moto
//! behind TLS, an IMDSv2 stand-in, a PostgreSQL cluster with TLS and a test CA).
//!
//! The user-data is exactly what fabrs renders (secrets as tokens, read at
//! boot by `fabrs-fetch-secrets` with the instance role; the database and
//! cache addresses of the private network as facts); nothing in it is edited.
//! The account is made by fabrs: `fabrs create-env` against the network's moto
//! makes the instance roles, the SSM parameters and the buckets the servers
//! use, `fabrs release push` the release, `fabrs maintenance` goes over
//! SSH into the web container, and `fabrs deploy` of a second revision rolls
//! onto web servers booted from the user-data it sent, waiting for their own
//! health (`fault_proxy.py --elb-health-from`). Needs root, systemd-nspawn, debootstrap and the
//! project venv (scripts/setup installs them all): a missing piece fails the
//! test, it does not skip. The first run builds the rootfs (about 3 minutes,
//! cached outside the clone).
//!
//! Run alone: `cargo build -p refapp -p fabrs-cli && cargo test -p fabrs-render --test boot -- --nocapture`.
//! `FABRS_BOOT_KEEP=1` leaves the containers and network up for inspection
//! (`tests/peers/boot-peer exec DIR web systemctl status`, then `... down DIR`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fabrs_config::secrets::Secrets;
use fabrs_config::{Environment, RoleKind};
use fabrs_render::{Facts, Layout, Options, Renderer, SecretMode};

/// Test values for the secrets (never real).
const DB_PASSWORD: &str = "boot-db-Pw-7f3a";
const CACHE_PASSWORD: &str = "boot-cache-Pw-91bc";
const QUEUE_PASSWORD: &str = "boot-queue-Pw-44de";

/// A 64×48 PNG (stdlib only: zlib, struct), written to argv[1].
const PNG_PY: &str = r#"
import struct, sys, zlib
w, h = 64, 48
raw = b"".join(b"\x00" + b"".join(bytes((x * 4 % 256, y * 5 % 256, 128)) for x in range(w)) for y in range(h))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
"#;

/// Addresses of the private network (they exist only in the test's namespaces).
const DB_HOST: &str = "db.fabrs-boot.test";
fn role_index(role: RoleKind) -> u8 {
    match role {
        RoleKind::Web => 1,
        RoleKind::Worker => 2,
        RoleKind::Cache => 3,
    }
}
fn role_ip(role: RoleKind) -> String {
    format!("10.213.0.{}", 10 + role_index(role))
}

use fabrs_test_support::root;

fn script(name: &str) -> PathBuf {
    root().join("tests/peers").join(name)
}

/// Fails (never skips) when the boot peer cannot run here.
fn require_boot_peer() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the boot test needs root (namespaces, mounts, systemd-nspawn)"
    );
    for tool in [
        "/usr/bin/systemd-nspawn",
        "/usr/sbin/debootstrap",
        "/usr/bin/openssl",
        "/usr/sbin/nginx",
    ] {
        assert!(Path::new(tool).exists(), "{tool} is missing: run scripts/setup");
    }
    assert!(
        root().join(".venv/bin/moto_server").exists(),
        "moto is missing from .venv: run scripts/setup"
    );
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The private network and its containers; removed on drop (test passed or not).
struct BootPeer {
    dir: tempfile::TempDir,
}

impl BootPeer {
    fn up(env: &Environment) -> BootPeer {
        let dir = tempfile::Builder::new().prefix("fabrs-boot-").tempdir().unwrap();
        let pw = dir.path().join("db-password");
        std::fs::write(&pw, DB_PASSWORD).unwrap();
        let peer = BootPeer { dir };
        let artifacts = env.artifacts.bucket.clone();
        let photos = photos_bucket(env);
        let out = peer
            .cmd("up")
            .args(["--db-password-file", pw.to_str().unwrap()])
            .args(["--db-name", &env.database.name, "--db-user", &env.database.username])
            .args(["--host", &format!("{artifacts}.s3.amazonaws.com")])
            .args(["--host", &format!("{artifacts}.s3.{}.amazonaws.com", env.region)])
            .args(["--host", &format!("{photos}.s3.amazonaws.com")])
            .args(["--host", &format!("{photos}.s3.{}.amazonaws.com", env.region)])
            .output()
            .unwrap();
        assert!(out.status.success(), "boot-peer up: {}", text(&out));
        peer
    }

    fn cmd(&self, sub: &str) -> Command {
        let mut c = Command::new(script("boot-peer"));
        c.arg(sub).arg(self.dir.path());
        c
    }

    /// Run an awscli command against moto, inside the private network.
    fn aws(&self, args: &[&str]) -> Output {
        let aws = root().join(".venv/bin/aws");
        self.cmd("host")
            .arg("env")
            .args([
                "AWS_ACCESS_KEY_ID=testing",
                "AWS_SECRET_ACCESS_KEY=testing",
                "AWS_DEFAULT_REGION=us-east-1",
            ])
            .arg(aws)
            .args(["--endpoint-url", "http://127.0.0.1:5000"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Run fabrs inside the private network against its moto, with the
    /// test's secret values (as `FABRS_SECRET_*`).
    fn fabrs(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.fabrs_cmd(MOTO, args, env).output().unwrap()
    }

    /// fabrs inside the private network, against `endpoint` there.
    fn fabrs_cmd(&self, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = self.cmd("host");
        c.arg("env").args([
            "AWS_ACCESS_KEY_ID=testing",
            "AWS_SECRET_ACCESS_KEY=testing",
            "AWS_DEFAULT_REGION=us-east-1",
            "NO_COLOR=1",
            "RUST_BACKTRACE=0",
        ]);
        for (name, v) in secrets().iter() {
            c.arg(format!("FABRS_SECRET_{}={}", name.to_ascii_uppercase(), v.expose()));
        }
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c.arg(fabrs_binary()).args(["--endpoint-url", endpoint]).args(args);
        c
    }

    /// Boot one role from its user-data; the result and what was collected.
    fn boot(&self, role: RoleKind, user_data: &str, instance_role: Option<&str>) -> Booted {
        self.boot_as(role.as_str(), role_index(role), user_data, instance_role)
    }

    /// Boot a container named `name` at 10.213.0.(10+n) from a user-data.
    fn boot_as(&self, name: &str, n: u8, user_data: &str, instance_role: Option<&str>) -> Booted {
        let role = name;
        let ud = self.dir.path().join(format!("{role}.user-data"));
        std::fs::write(&ud, user_data).unwrap();
        let out = self
            .cmd("boot")
            .arg(role)
            .arg(n.to_string())
            .arg(&ud)
            .arg(instance_role.unwrap_or(""))
            .output()
            .unwrap();
        let d = self.dir.path().join(role);
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
        Booted {
            ok: out.status.success(),
            harness: text(&out),
            status: read("status"),
            failed_units: read("failed-units"),
            failed_why: read("failed-why"),
            output_log: read("cloud-init-output.log"),
            seconds: read("boot-seconds").trim().parse().unwrap_or(0),
        }
    }

    fn exec(&self, role: RoleKind, args: &[&str]) -> Output {
        self.cmd("exec").arg(role.as_str()).args(args).output().unwrap()
    }

    fn host(&self, args: &[&str]) -> Output {
        self.cmd("host").args(args).output().unwrap()
    }
}

impl Drop for BootPeer {
    fn drop(&mut self) {
        if std::env::var_os("FABRS_BOOT_KEEP").is_some() {
            let keep = self.dir.path().to_path_buf();
            eprintln!("FABRS_BOOT_KEEP: left up in {}", keep.display());
            std::mem::forget(std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()));
            return;
        }
        let out = self.cmd("down").output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!("boot-peer down: {}", text(&out));
        }
    }
}

#[derive(Debug)]
struct Booted {
    ok: bool,
    harness: String,
    status: String,
    failed_units: String,
    /// Each failed unit's journal (the harness's `failed-why`).
    failed_why: String,
    output_log: String,
    seconds: u64,
}

impl Booted {
    fn report(&self) -> String {
        format!(
            "--- harness\n{}\n--- cloud-init status --long\n{}\n--- failed units\n{}\n{}\n--- cloud-init-output.log (tail)\n{}",
            self.harness,
            self.status,
            self.failed_units,
            self.failed_why,
            tail(&self.output_log, 60)
        )
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The shipped staging file, as a project of the test's own in `work`, with
/// two inputs of the test's: an SSH key it holds the private half of (in
/// `work/ssh_key`), and `ssh.user: debian`, the default user of the
/// debootstrapped Debian the test boots (Debian's AMIs name it `admin`, as
/// the shipped file does).
fn staging(work: &Path) -> (Environment, PathBuf) {
    let key = work.join("ssh_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "fabrs-boot-test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", text(&out));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let shipped = std::fs::read_to_string(root().join("environments/staging.yaml")).unwrap();
    let ours = shipped.replacen("  user: admin\n", "  user: debian\n", 1).replacen(
        "    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0qXkpTtYX3nQ2WcF1h0bM0a2x1Q5z0QmYVdJ2aLk1m ops@myproject\n",
        &format!("    - {}\n", public.trim()),
        1,
    );
    // The roll waits this long per web server it takes out (the shipped 300 s).
    let ours = ours.replacen("\nload_balancer:\n", "\nload_balancer:\n  draining_timeout: 3s\n", 1);
    assert!(
        ours.contains("user: debian") && ours.contains("fabrs-boot-test") && ours.contains("draining_timeout: 3s"),
        "the shipped file changed: {shipped}"
    );
    let file = work.join("project/environments/staging.yaml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, ours).unwrap();
    let env = fabrs_config::load_file(&file).unwrap_or_else(|d| panic!("{}", d.render()));
    (env, file)
}

fn secrets() -> Secrets {
    Secrets::from_pairs([
        ("db_password", DB_PASSWORD),
        ("cache_password", CACHE_PASSWORD),
        ("queue_password", QUEUE_PASSWORD),
    ])
}

/// What create-env would send for this role: production layout, secrets as
/// tokens fetched at boot, the private network's addresses as facts.
fn user_data(env: &Environment, role: RoleKind, revision: &str, secrets: &Secrets) -> String {
    let opts = Options {
        revision: revision.to_string(),
        secrets: SecretMode::Fetched(secrets),
        facts: Facts {
            db_master_host: DB_HOST.into(),
            db_replica_host: (env.database.replicas > 0).then(|| DB_HOST.into()),
            cache_host: role_ip(RoleKind::Cache),
        },
        layout: Layout::production(),
    };
    Renderer::new(&root())
        .unwrap()
        .render_role(env, role, &opts)
        .unwrap()
        .user_data
}

fn active(peer: &BootPeer, role: RoleKind, unit: &str) -> String {
    let out = peer.exec(role, &["systemctl", "is-active", unit]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The revision the worker boots with (web boots with none, as a fresh
/// create-env would, and gets it later as a deploy would install it).
const REVISION: &str = "boot1";
/// The revision `fabrs deploy` rolls out onto newly booted web servers.
const REVISION_2: &str = "boot2";
/// moto, inside the private network.
const MOTO: &str = "http://127.0.0.1:5000";

/// refapp as built by `cargo test --workspace` (or `cargo build -p refapp`):
/// next to this test's own executable's folder.
/// The instance ids of an auto scaling group, as moto has them.
fn group_members(peer: &BootPeer, group: &str) -> Vec<String> {
    let out = peer.aws(&[
        "autoscaling",
        "describe-auto-scaling-groups",
        "--auto-scaling-group-names",
        group,
        "--query",
        "AutoScalingGroups[0].Instances[].InstanceId",
        "--output",
        "text",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|s| *s != "None")
        .map(str::to_string)
        .collect()
}

/// The addresses moto gave the database and the cache server, which the
/// user-data create-env and deploy send holds: (moto's, the private network's).
fn moto_addresses(peer: &BootPeer) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dbs = peer.aws(&[
        "rds",
        "describe-db-instances",
        "--query",
        "DBInstances[].Endpoint.Address",
        "--output",
        "text",
    ]);
    assert!(dbs.status.success(), "{}", text(&dbs));
    for host in String::from_utf8_lossy(&dbs.stdout).split_whitespace() {
        out.push((host.to_string(), DB_HOST.to_string()));
    }
    let cache = peer.aws(&[
        "ec2",
        "describe-instances",
        "--filters",
        "Name=tag:fabrs:role,Values=cache",
        "Name=instance-state-name,Values=running",
        "--query",
        "Reservations[].Instances[].PrivateIpAddress",
        "--output",
        "text",
    ]);
    assert!(cache.status.success(), "{}", text(&cache));
    for ip in String::from_utf8_lossy(&cache.stdout).split_whitespace() {
        out.push((ip.to_string(), role_ip(RoleKind::Cache)));
    }
    assert!(out.len() >= 2, "moto has no database or cache address: {out:?}");
    out
}

/// The user-data moto holds for an instance (what fabrs sent in its launch
/// template version), decoded.
fn instance_user_data(peer: &BootPeer, id: &str) -> String {
    let out = peer.aws(&[
        "ec2",
        "describe-instance-attribute",
        "--instance-id",
        id,
        "--attribute",
        "userData",
        "--query",
        "UserData.Value",
        "--output",
        "text",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let b64 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b64.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "user-data of {id}: {b64:?}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The fabrs binary of this build (next to refapp's).
fn fabrs_binary() -> PathBuf {
    let bin = refapp_binary().with_file_name("fabrs");
    assert!(
        bin.exists(),
        "{} is missing: the boot test runs fabrs (`cargo build -p fabrs-cli` first, \
         or run the whole workspace's tests)",
        bin.display()
    );
    bin
}

fn refapp_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let bin = debug.join("refapp");
    assert!(
        bin.exists(),
        "{} is missing: the boot test installs a real refapp release (`cargo build -p refapp` first, \
         or run the whole workspace's tests)",
        bin.display()
    );
    bin
}

fn photos_bucket(env: &Environment) -> String {
    fabrs_config::names::photos_bucket(env)
}

/// Package refapp as a release (its own `package` command, as
/// crates/refapp/scripts/build-artifact does) and push it with
/// `fabrs release push` to the artifact bucket create-env made.
fn publish_release(peer: &BootPeer, file: &Path, revision: &str) {
    let out_dir = peer.dir.path().join("release");
    let out = Command::new(refapp_binary())
        .arg("package")
        .arg("--bin")
        .arg(refapp_binary())
        .args(["--revision", revision])
        .arg("--out")
        .arg(&out_dir)
        .arg("--source-dir")
        .arg(root().join("crates/refapp"))
        .output()
        .unwrap();
    assert!(out.status.success(), "refapp package: {}", text(&out));
    let tarball = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = peer.fabrs(
        &[
            "release",
            "push",
            file.to_str().unwrap(),
            "--revision",
            revision,
            &tarball,
        ],
        &[],
    );
    assert!(out.status.success(), "fabrs release push: {}", text(&out));
}

fn instance_role(role: RoleKind) -> String {
    format!("myproject-staging-{role}")
}

#[test]
fn every_role_boots_from_its_rendered_user_data() {
    require_boot_peer();
    let work = tempfile::Builder::new().prefix("fabrs-boot-work-").tempdir().unwrap();
    let (env, file) = staging(work.path());
    let secrets = secrets();
    let peer = BootPeer::up(&env);
    let roles = [RoleKind::Web, RoleKind::Worker, RoleKind::Cache];
    // What a user makes by hand (AMI, key pair, certificate), then
    // create-env: the instance roles, SSM parameters and buckets the
    // servers use are the ones fabrs makes.
    let out = peer.host(&[
        root().join(".venv/bin/python").to_str().unwrap(),
        root().join("tests/peers/moto-seed").to_str().unwrap(),
        "--endpoint",
        "http://127.0.0.1:5000",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "moto-seed: {}", text(&out));
    let out = peer.fabrs(&["create-env", file.to_str().unwrap(), "--yes"], &[]);
    assert!(out.status.success(), "fabrs create-env: {}", text(&out));
    publish_release(&peer, &file, REVISION);
    // All three at once: a boot is mostly waiting.
    let booted: Vec<(RoleKind, Booted)> = std::thread::scope(|s| {
        let handles: Vec<_> = roles
            .iter()
            .map(|&role| {
                let revision = if role == RoleKind::Worker { REVISION } else { "none" };
                let ud = user_data(&env, role, revision, &secrets);
                for (name, v) in secrets.iter() {
                    assert!(
                        !ud.contains(v.expose()),
                        "{role}: the value of {name} is in the user-data"
                    );
                }
                let peer = &peer;
                s.spawn(move || (role, peer.boot(role, &ud, Some(&instance_role(role)))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (role, b) in &booted {
        eprintln!("{role} booted in {} s\n{}", b.seconds, b.report());
    }
    // The OS the shipped file names (Debian's public parameter for a
    // release) is the one booted here: the file is the proof's subject.
    let release = match &env.ami {
        fabrs_config::Ami::Parameter(p) => p
            .strip_prefix("/aws/service/debian/release/")
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("the shipped file names {p}, not a Debian release: boot that OS here"))
            .to_string(),
        other => panic!("the shipped file names {other}, not Debian's parameter"),
    };
    for (role, _) in &booted {
        let os = text(&peer.exec(*role, &["cat", "/etc/os-release"]));
        assert!(
            os.contains("ID=debian") && os.contains(&format!("VERSION_ID=\"{release}\"")),
            "{role}: the file names Debian {release}, the container runs:\n{os}"
        );
    }
    for (role, b) in &booted {
        assert!(b.ok, "{role} did not reach cloud-init done:\n{}", b.report());
        assert!(b.status.contains("status: done"), "{role}:\n{}", b.report());
        assert_eq!(b.failed_units.trim(), "", "{role}: failed units:\n{}", b.report());
    }

    // --- every role fetched its secrets from SSM at boot, with its
    // instance role, into files that kept their owners and modes (the
    // checks below use the values: psql, redis-cli, rabbitmqctl).
    for (role, b) in &booted {
        let log = &b.output_log;
        assert!(
            log.contains("fabrs-fetch-secrets: ") && log.contains(" secrets from /myproject/staging into "),
            "{role}: no secret fetch at boot:\n{}",
            b.report()
        );
        for (name, v) in secrets.iter() {
            assert!(
                !log.contains(v.expose()),
                "{role}: the value of {name} is in the boot log"
            );
        }
    }
    for (role, file, want) in [
        (RoleKind::Web, "/etc/pgbouncer/userlist.txt", "600 postgres:postgres"),
        (RoleKind::Worker, "/etc/myproject/app.env", "640 root:myproject"),
        (RoleKind::Cache, "/etc/redis/redis.conf", "640 redis:redis"),
        (
            RoleKind::Cache,
            "/etc/myproject/rabbitmq-user.json",
            "400 rabbitmq:rabbitmq",
        ),
    ] {
        let out = peer.exec(role, &["stat", "-c", "%a %U:%G", file]);
        assert_eq!(text(&out).trim(), want, "{role} {file}");
        let out = peer.exec(role, &["grep", "-c", "fabrs-ssm\\.", file]);
        assert_eq!(text(&out).trim(), "0", "{role} {file}: a token is left");
    }

    // --- web
    for unit in ["nginx.service", "pgbouncer.service"] {
        assert_eq!(active(&peer, RoleKind::Web, unit), "active", "web {unit}");
    }
    // No release yet: the app's unit waits for one (inactive), instead of
    // restarting in a loop until systemd's start limit fails it, which made
    // the restart after the install below refuse ("start ... too often").
    // (The worker booted with a revision, so its release is installed.)
    assert_eq!(
        active(&peer, RoleKind::Web, "refapp-web.service"),
        "inactive",
        "web refapp-web.service before a release"
    );
    // The snakeoil certificate was made on this instance (for its host name),
    // not the one baked into the image.
    let cert = |out: Output| {
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let x509 = ["openssl", "x509", "-noout", "-subject", "-fingerprint", "-in"];
    let booted_cert = cert(peer.exec(
        RoleKind::Web,
        &[&x509[..], &["/etc/ssl/certs/ssl-cert-snakeoil.pem"]].concat(),
    ));
    let rootfs = String::from_utf8(Command::new(script("rootfs-build")).output().unwrap().stdout).unwrap();
    let image_cert = cert(
        Command::new(x509[0])
            .args(&x509[1..])
            .arg(format!("{}/etc/ssl/certs/ssl-cert-snakeoil.pem", rootfs.trim()))
            .output()
            .unwrap(),
    );
    assert_ne!(booted_cert, image_cert, "the image's snakeoil certificate was kept");
    let fqdn = String::from_utf8_lossy(&peer.exec(RoleKind::Web, &["hostname", "-f"]).stdout)
        .trim()
        .to_string();
    assert!(
        booted_cert.contains(&format!("CN = {fqdn}")),
        "snakeoil {booted_cert}, host {fqdn}"
    );
    // /srv/<project> exists, so `maintenance on` works before any release.
    // `fabrs maintenance` over SSH (as the file's ssh.user, with sudo), every
    // web server of the group mapped to the booted one.
    // (and the worker's to the worker container: deploy migrates there)
    let web_ids = group_members(&peer, "myproject-staging-web");
    assert!(!web_ids.is_empty(), "no web servers in the group");
    let endpoints = work.path().join("endpoints");
    std::fs::write(
        &endpoints,
        web_ids
            .iter()
            .map(|id| format!("{id} {}:22\n", role_ip(RoleKind::Web)))
            .chain(
                group_members(&peer, "myproject-staging-worker")
                    .iter()
                    .map(|id| format!("{id} {}:22\n", role_ip(RoleKind::Worker))),
            )
            .collect::<String>(),
    )
    .unwrap();
    let ssh_config = work.path().join("ssh_config");
    std::fs::write(
        &ssh_config,
        "Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
    )
    .unwrap();
    let ssh_env = [
        ("FABRS_SSH_ENDPOINTS", endpoints.to_str().unwrap().to_string()),
        (
            "FABRS_SSH_IDENTITY",
            work.path().join("ssh_key").to_str().unwrap().to_string(),
        ),
        ("FABRS_SSH_CONFIG", ssh_config.to_str().unwrap().to_string()),
    ];
    let ssh_env: Vec<(&str, &str)> = ssh_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let maintenance = |on: &str| {
        let out = peer.fabrs(&["maintenance", file.to_str().unwrap(), on], &ssh_env);
        assert!(out.status.success(), "fabrs maintenance {on}: {}", text(&out));
        text(&out)
    };
    let said = maintenance("on");
    assert!(said.contains("Maintenance on"), "{said}");
    let out = peer.exec(RoleKind::Web, &["test", "-f", "/srv/myproject/maintenance.on"]);
    assert!(
        out.status.success(),
        "no maintenance flag on the web server after: {said}"
    );
    let sshd = text(&peer.exec(RoleKind::Web, &["journalctl", "-u", "ssh", "--no-pager"]));
    assert!(
        sshd.contains("Accepted publickey for debian"),
        "fabrs did not come in over SSH as the file's user:\n{sshd}"
    );
    eprintln!("fabrs maintenance on, over SSH into the web container:\n{said}");
    // As the ELB checks it: HTTPS:443/healthcheck.html answers 200 in maintenance,
    // and users get 503.
    let code = |path: &str, host: &str| {
        let out = peer.host(&[
            "curl",
            "-ksS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Host: {host}"),
            &format!("https://{}{path}", role_ip(RoleKind::Web)),
        ]);
        text(&out).trim().to_string()
    };
    assert_eq!(
        code("/healthcheck.html", &role_ip(RoleKind::Web)),
        "200",
        "health check in maintenance"
    );
    assert_eq!(code("/", "staging.myproject.example"), "503", "users in maintenance");

    // --- web and worker: pgbouncer reaches the database with verify-full
    // against the CA bundle downloaded at boot.
    for role in [RoleKind::Web, RoleKind::Worker] {
        assert_eq!(active(&peer, role, "pgbouncer.service"), "active", "{role} pgbouncer");
        let out = peer.exec(
            role,
            &[
                "env",
                &format!("PGPASSWORD={DB_PASSWORD}"),
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                "6432",
                "-U",
                "myproject",
                "-d",
                "myproject",
                "-Atc",
                "select 'through pgbouncer'",
            ],
        );
        assert!(
            text(&out).contains("through pgbouncer"),
            "{role}: psql through pgbouncer: {}",
            text(&out)
        );
        // The instance role's credentials, through IMDSv2, reach moto.
        let out = peer.exec(role, &["aws", "sts", "get-caller-identity", "--region", "us-east-1"]);
        assert!(
            text(&out).contains(&format!("assumed-role/{}/", instance_role(role))),
            "{role}: {}",
            text(&out)
        );
    }

    // --- cache: Redis and RabbitMQ on the private address, with the passwords.
    for unit in ["redis-server.service", "rabbitmq-server.service"] {
        assert_eq!(active(&peer, RoleKind::Cache, unit), "active", "cache {unit}");
    }
    let cache_ip = role_ip(RoleKind::Cache);
    let redis = |args: &[&str]| {
        let mut argv = vec!["redis-cli", "--no-auth-warning", "-h", &cache_ip, "-a", CACHE_PASSWORD];
        argv.extend_from_slice(args);
        text(&peer.host(&argv)).trim().to_string()
    };
    assert_eq!(redis(&["ping"]), "PONG", "Redis from the private network");
    let maxmemory = redis(&["config", "get", "maxmemory"]);
    let bytes: u64 = maxmemory.lines().nth(1).unwrap_or("0").parse().unwrap_or(0);
    assert!(bytes > 0, "Redis maxmemory: {maxmemory}");
    let out = peer.exec(
        RoleKind::Cache,
        &["rabbitmqctl", "authenticate_user", "myproject", QUEUE_PASSWORD],
    );
    assert!(out.status.success(), "RabbitMQ user: {}", text(&out));
    let out = peer.host(&["bash", "-c", &format!("exec 3<>/dev/tcp/{cache_ip}/5672")]);
    assert!(out.status.success(), "RabbitMQ on the private address: {}", text(&out));

    // --- the release: the worker fetched it at boot with its instance role's
    // credentials (nothing else in the container holds any), runs its
    // migrations as `fabrs deploy` does on the migrate role, and runs it.
    let current = peer.exec(RoleKind::Worker, &["readlink", "/srv/myproject/current"]);
    assert_eq!(
        text(&current).trim(),
        format!("/srv/myproject/releases/{REVISION}"),
        "worker's current release"
    );
    let out = peer.exec(
        RoleKind::Worker,
        &["sh", "-c", "env | grep -c '^AWS_' || true; ls /root/.aws 2>&1"],
    );
    assert!(
        text(&out).starts_with("0\n") && text(&out).contains("No such file"),
        "keys in the worker: {}",
        text(&out)
    );
    let imds = std::fs::read_to_string(peer.dir.path().join("imds.log")).unwrap();
    assert!(
        imds.contains(&format!(
            "{} \"GET /latest/meta-data/iam/security-credentials/{} ",
            role_ip(RoleKind::Worker),
            instance_role(RoleKind::Worker)
        )),
        "the worker never asked for its role's credentials:\n{imds}"
    );
    let out = peer.exec(
        RoleKind::Worker,
        &["/usr/local/sbin/fabrs-install-release", "--migrate", REVISION],
    );
    assert!(out.status.success(), "migrate on the worker: {}", text(&out));
    // The worker's unit started at boot; it may have waited for the schema.
    let out = peer.exec(RoleKind::Worker, &["systemctl", "restart", "refapp-worker.service"]);
    assert!(out.status.success(), "{}", text(&out));

    // --- web: install the release as a deploy does, leave maintenance, and
    // the ELB's health check answers 200 from the app itself.
    let out = peer.exec(RoleKind::Web, &["/usr/local/sbin/fabrs-install-release", REVISION]);
    assert!(out.status.success(), "install on web: {}", text(&out));
    let out = peer.exec(RoleKind::Web, &["systemctl", "restart", "refapp-web.service"]);
    assert!(out.status.success(), "{}", text(&out));
    maintenance("off");
    let out = peer.exec(RoleKind::Web, &["test", "-e", "/srv/myproject/maintenance.on"]);
    assert!(!out.status.success(), "the maintenance flag is still there");
    // The app is up once it answers; wait on that (bounded), not on a sleep.
    let health = |path: &str| {
        let out = peer.host(&[
            "curl",
            "-ksS",
            "--retry",
            "30",
            "--retry-connrefused",
            "--retry-all-errors",
            "--retry-delay",
            "1",
            "-w",
            "\n%{http_code}",
            &format!("https://{}{path}", role_ip(RoleKind::Web)),
        ]);
        text(&out)
    };
    let body = health("/healthcheck.html");
    assert!(
        body.trim_end().ends_with("200"),
        "health check with the release: {body}"
    );
    // (The page shows REFAPP_REVISION from app.env, rendered at boot for
    // "none": an in-place install does not change it. Known, see the report.)
    assert!(body.contains("<p>ok</p>"), "{body}");
    let current = peer.exec(RoleKind::Web, &["readlink", "/srv/myproject/current"]);
    assert_eq!(text(&current).trim(), format!("/srv/myproject/releases/{REVISION}"));
    for role in [RoleKind::Web, RoleKind::Worker] {
        let unit = format!(
            "refapp-{}.service",
            if role == RoleKind::Web { "web" } else { "worker" }
        );
        assert_eq!(active(&peer, role, &unit), "active", "{role} {unit}");
    }

    // --- a photo uploaded through the web server's nginx: stored in S3 by
    // the web server (its instance role), rendered by the worker (the job
    // through RabbitMQ on the cache server), its renditions in S3, and the
    // page shows it.
    let png = peer.dir.path().join("photo.png");
    let out = Command::new("python3")
        .arg("-c")
        .arg(PNG_PY)
        .arg(&png)
        .output()
        .unwrap();
    assert!(out.status.success(), "make a PNG: {}", text(&out));
    let users = |args: &[&str]| {
        let mut argv = vec!["curl", "-ksS", "-H", "Host: staging.myproject.example"];
        argv.extend_from_slice(args);
        let out = peer.host(&argv);
        assert!(out.status.success(), "curl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let web = role_ip(RoleKind::Web);
    let created = users(&[
        "-F",
        &format!("photo=@{};type=image/png", png.display()),
        &format!("https://{web}/photos"),
    ]);
    let created: serde_json::Value =
        serde_json::from_str(&created).unwrap_or_else(|e| panic!("upload answered {created:?}: {e}"));
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("upload: {created}"))
        .to_string();
    // Rendered when the worker says so: poll the photo's state (bounded).
    let mut photo = serde_json::Value::Null;
    for _ in 0..90 {
        photo = serde_json::from_str(&users(&[&format!("https://{web}/photos/{id}")])).unwrap_or_default();
        if photo["status"] != "pending" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1)); // between looks at the state, not an ordering guess
    }
    assert_eq!(
        photo["status"],
        "rendered",
        "{photo}\nworker: {}",
        text(&peer.exec(
            RoleKind::Worker,
            &["journalctl", "-u", "refapp-worker", "--no-pager", "-n", "40"]
        ))
    );
    let renditions: Vec<String> = photo["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    assert!(!renditions.is_empty(), "{photo}");
    let listed = peer.aws(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        &photos_bucket(&env),
        "--prefix",
        &format!("photos/{id}/"),
        "--query",
        "Contents[].Key",
        "--output",
        "text",
    ]);
    assert!(listed.status.success(), "{}", text(&listed));
    let keys: Vec<&str> = std::str::from_utf8(&listed.stdout)
        .unwrap()
        .split_whitespace()
        .collect();
    for k in &renditions {
        assert!(keys.contains(&k.as_str()), "rendition {k} is not in S3: {keys:?}");
    }
    assert!(
        keys.iter().any(|k| k.starts_with(&format!("photos/{id}/original."))),
        "the original is not in S3: {keys:?}"
    );
    let imds = std::fs::read_to_string(peer.dir.path().join("imds.log")).unwrap();
    assert!(
        imds.contains(&format!(
            "{web} \"GET /latest/meta-data/iam/security-credentials/{} ",
            instance_role(RoleKind::Web)
        )),
        "the web server stored the photo without its role's credentials:\n{imds}"
    );
    let page = users(&[&format!("https://{web}/")]);
    assert!(page.contains(&id), "the page does not show photo {id}:\n{page}");
    eprintln!(
        "photo {id}: uploaded through the web server, rendered by the worker, {} renditions and the original in S3 ({} keys), on the page",
        renditions.len(),
        keys.len()
    );

    // --- fabrs deploy of a second revision onto booted servers. The roll
    // goes through a proxy that answers the load balancer's instance health
    // from real servers (`--elb-health-from`): each web instance moto
    // launches for the new revision is OutOfService until a container booted
    // from the user-data fabrs sent for it (moto's and the network's
    // addresses swapped, nothing else) answers /healthcheck.html with 200.
    publish_release(&peer, &file, REVISION_2);
    let health = work.path().join("elb-health");
    let health_url = |ip: &str| format!("https://{ip}/healthcheck.html");
    std::fs::write(
        &health,
        web_ids
            .iter()
            .map(|id| format!("{id} {}\n", health_url(&role_ip(RoleKind::Web))))
            .collect::<String>(),
    )
    .unwrap();
    let proxy_py = root().join("tests/peers/fault_proxy.py");
    let mut proxy = peer
        .cmd("host")
        .args(["timeout", "900", "python3"])
        .arg(&proxy_py)
        .args(["--port", "5100", "--upstream", MOTO, "--elb-health-from"])
        .arg(&health)
        .arg("--stats")
        .arg(work.path().join("proxy-stats.json"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = peer.host(&[
        "bash",
        "-c",
        "for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/5100) 2>/dev/null && exit 0; sleep 0.1; done; exit 1",
    ]);
    assert!(up.status.success(), "the health proxy did not start");
    let log = work.path().join("deploy.log");
    let mut deploy = peer
        .fabrs_cmd(
            "http://127.0.0.1:5100",
            &[
                "deploy",
                file.to_str().unwrap(),
                "--revision",
                REVISION_2,
                "--poll-interval",
                "1s",
                "--health-timeout",
                "300s",
            ],
            &ssh_env,
        )
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(work.path().join("deploy.err")).unwrap())
        .spawn()
        .unwrap();
    let swaps = moto_addresses(&peer);
    let mut known: std::collections::BTreeSet<String> = web_ids.iter().cloned().collect();
    let mut booted_web: Vec<(String, String)> = Vec::new(); // (instance id, container)
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = deploy.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(900),
            "deploy still running after 900 s"
        );
        for id in group_members(&peer, "myproject-staging-web") {
            if !known.insert(id.clone()) {
                continue;
            }
            let mut ud = instance_user_data(&peer, &id);
            assert!(
                ud.contains(REVISION_2),
                "{id}'s user-data does not install {REVISION_2}"
            );
            for (moto_addr, ours) in &swaps {
                ud = ud.replace(moto_addr.as_str(), ours);
            }
            let n = 4 + booted_web.len() as u8;
            let name = format!("web{n}");
            let b = peer.boot_as(&name, n, &ud, Some(&instance_role(RoleKind::Web)));
            assert!(b.ok, "{name} (for {id}) did not boot:\n{}", b.report());
            let ip = format!("10.213.0.{}", 10 + n);
            let mut h = std::fs::read_to_string(&health).unwrap();
            h.push_str(&format!("{id} {}\n", health_url(&ip)));
            std::fs::write(&health, h).unwrap();
            eprintln!(
                "deploy: web instance {id} stands in as {name} ({ip}), booted in {} s",
                b.seconds
            );
            booted_web.push((id, name));
        }
        std::thread::sleep(std::time::Duration::from_secs(1)); // between looks at the group
    };
    let _ = proxy.kill();
    let _ = peer.host(&["pkill", "-f", "fault_proxy.py --port 5100"]);
    let said = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(work.path().join("deploy.err")).unwrap_or_default()
    );
    assert!(status.success(), "fabrs deploy {REVISION_2}:\n{said}");
    assert_eq!(
        booted_web.len(),
        web_ids.len(),
        "one new web server per old one: {said}"
    );
    // The roll was held while the new servers booted: the proxy answered
    // OutOfService for them until their own health check passed.
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("proxy-stats.json")).unwrap()).unwrap();
    assert!(
        stats["held_out_of_service"].as_u64() > Some(0),
        "the roll never waited for a booted server: {stats}"
    );
    eprintln!(
        "the load balancer's view held the roll {} times while servers booted",
        stats["held_out_of_service"]
    );
    for (id, name) in &booted_web {
        let out = peer
            .cmd("exec")
            .arg(name)
            .args(["readlink", "/srv/myproject/current"])
            .output()
            .unwrap();
        assert_eq!(
            text(&out).trim(),
            format!("/srv/myproject/releases/{REVISION_2}"),
            "{name} ({id}) runs another release"
        );
    }
    let now = group_members(&peer, "myproject-staging-web");
    let ids: Vec<&String> = booted_web.iter().map(|(id, _)| id).collect();
    assert!(
        now.iter().all(|id| ids.contains(&id)),
        "the group holds servers the deploy did not boot: {now:?} vs {ids:?}\n{said}"
    );
    eprintln!("fabrs deploy {REVISION_2} onto booted web servers:\n{said}");
}
