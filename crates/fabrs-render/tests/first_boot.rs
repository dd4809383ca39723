//! First-boot defects a real boot found (issue 12), checked on the rendered
//! files of every shipped environment. The boot test (`tests/boot.rs`) shows
//! the same points on a booted system; these run in milliseconds.
//!
//! cloud-init runs `runcmd` as one shell script; each case below runs the
//! rendered commands (or reads the rendered configs) the way the server does.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use fabrs_config::{Environment, RoleKind};
use fabrs_render::{Options, Renderer};

use fabrs_test_support::root;

fn shipped() -> Vec<Environment> {
    let root = root();
    let mut files: Vec<PathBuf> = ["environments", "examples"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    files
        .iter()
        .map(|f| fabrs_config::load_file(f).unwrap_or_else(|d| panic!("{}", d.render())))
        .collect()
}

/// (environment, role, parsed user-data) for every role of every shipped file.
fn user_data() -> Vec<(Environment, RoleKind, serde_json::Value)> {
    let mut out = Vec::new();
    for env in shipped() {
        let renderer = Renderer::new(&env.project_dir).unwrap();
        for role in renderer.render_all(&env, &Options::review(&env, "3f9c2e1")).unwrap() {
            let doc = yaml_to_json(&role.user_data);
            out.push((env.clone(), role.role, doc));
        }
    }
    assert!(out.len() >= 13);
    out
}

/// Parse YAML with PyYAML (cloud-init's own parser).
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

/// runcmd as argv lists (a string entry becomes `["sh", "-c", s]`-like `[s]`).
fn runcmd(doc: &serde_json::Value) -> Vec<Vec<String>> {
    doc["runcmd"]
        .as_array()
        .expect("runcmd")
        .iter()
        .map(|c| match c {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a.iter().map(|w| w.as_str().unwrap().to_string()).collect(),
            other => panic!("runcmd entry {other}"),
        })
        .collect()
}

fn position(cmds: &[Vec<String>], pred: impl Fn(&[String]) -> bool) -> Option<usize> {
    cmds.iter().position(|c| pred(c))
}

#[test]
fn snakeoil_certificate_is_regenerated_for_this_instance() {
    // Without --force-overwrite, make-ssl-cert keeps the certificate baked into
    // the image (same key on every server built from it, wrong host name).
    for (env, role, doc) in user_data() {
        if role != RoleKind::Web {
            continue;
        }
        let cmds = runcmd(&doc);
        let i = position(&cmds, |c| c.first().is_some_and(|w| w == "make-ssl-cert"))
            .unwrap_or_else(|| panic!("{} web: no make-ssl-cert", env.name));
        assert_eq!(
            cmds[i][1..],
            ["generate-default-snakeoil", "--force-overwrite"],
            "{} web",
            env.name
        );
    }
}

#[test]
fn locale_needs_no_generation() {
    // On Debian images en_US.UTF-8 (cloud-init's default) is not generated and
    // `update-locale` fails the config stage; C.UTF-8 is built into libc and
    // cloud-init skips generating it.
    for (env, role, doc) in user_data() {
        assert_eq!(doc["locale"], "C.UTF-8", "{} {role}", env.name);
    }
}

#[test]
fn host_name_resolves() {
    // cloud-init sets `hostname:`; nothing made it resolve, so RabbitMQ's CLI
    // could not reach its own node (`rabbit@<hostname>`) and the cache's setup
    // script failed. manage_etc_hosts writes `127.0.1.1 <hostname>`.
    for (env, role, doc) in user_data() {
        assert_eq!(doc["manage_etc_hosts"], true, "{} {role}", env.name);
        assert!(doc["hostname"].is_string());
    }
}

#[test]
fn srv_directory_exists_before_anything_needs_it() {
    // `fabrs maintenance on` touches /srv/<project>/maintenance.on: the folder
    // must exist from the first boot, release or not.
    for (env, role, doc) in user_data() {
        if role == RoleKind::Cache {
            continue;
        }
        let srv = format!("/srv/{}", env.project);
        let cmds = runcmd(&doc);
        let mk = position(&cmds, |c| {
            c.first().is_some_and(|w| w == "install") && c.contains(&"-d".to_string()) && c.contains(&srv)
        })
        .unwrap_or_else(|| panic!("{} {role}: nothing creates {srv}: {cmds:?}", env.name));
        let install = position(&cmds, |c| c[0] == "/usr/local/sbin/fabrs-install-release").unwrap();
        assert!(
            mk < install,
            "{} {role}: {srv} made after the release install",
            env.name
        );
        // And it really makes the folder, as root would (here in a temp root).
        let tmp = tempfile::tempdir().unwrap();
        let mut argv = cmds[mk].clone();
        for w in argv.iter_mut().skip(1) {
            if w.starts_with("/srv/") {
                *w = format!("{}{w}", tmp.path().display());
            }
        }
        let st = Command::new(&argv[0]).args(&argv[1..]).status().unwrap();
        assert!(st.success());
        assert!(tmp.path().join(&srv[1..]).is_dir());
    }
}

#[test]
fn a_failed_runcmd_step_fails_the_boot() {
    // cloud-init runs runcmd as one `sh` script and reports only its last
    // command's status: without `set -e` a failed CA download or release install
    // is followed by service restarts and the boot reports done.
    for (env, role, doc) in user_data() {
        let cmds = runcmd(&doc);
        assert_eq!(cmds[0], ["set -e"], "{} {role}: first runcmd entry", env.name);
        // cloud-init's own script writer (cloudinit.util.shellify) with the
        // rendered first entry, then a failing step: the script must stop there.
        let entries = serde_json::json!([doc["runcmd"][0], ["false"], ["echo", "reached"]]);
        // The system python: cloud-init is a Debian package (scripts/setup).
        let out = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import sys, json; from cloudinit.util import shellify; sys.stdout.write(shellify(json.loads(sys.argv[1])))",
            ])
            .arg(entries.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8(out.stdout).unwrap();
        let run = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(!run.status.success(), "{} {role}: {script}", env.name);
        assert!(!String::from_utf8_lossy(&run.stdout).contains("reached"), "{script}");
    }
}

#[test]
fn rds_ca_download_retries_and_pgbouncer_needs_the_bundle() {
    for (env, role, doc) in user_data() {
        if role == RoleKind::Cache {
            continue;
        }
        let cmds = runcmd(&doc);
        let curl = position(&cmds, |c| {
            c[0] == "curl" && c.iter().any(|w| w.contains("truststore.pki.rds"))
        })
        .unwrap_or_else(|| panic!("{} {role}: no CA download", env.name));
        let c = &cmds[curl];
        assert!(c.contains(&"--retry".to_string()), "{} {role}: {c:?}", env.name);
        assert!(
            c.contains(&"--retry-all-errors".to_string()),
            "{} {role}: {c:?}",
            env.name
        );
        let restart = position(&cmds, |c| c.ends_with(&["restart".into(), "pgbouncer.service".into()])).unwrap();
        assert!(curl < restart);
        // pgbouncer itself refuses to start without the bundle (a reboot, a
        // manual restart): a drop-in asserts the file.
        let files = doc["write_files"].as_array().unwrap();
        let dropin = files
            .iter()
            .find(|f| {
                f["path"]
                    .as_str()
                    .unwrap()
                    .starts_with("/etc/systemd/system/pgbouncer.service.d/")
            })
            .unwrap_or_else(|| panic!("{} {role}: no pgbouncer drop-in", env.name));
        // Written after the packages: on an image without pgbouncer, its
        // installation starts it (before the bundle exists) and an assert
        // already in place would fail the package install.
        assert_eq!(dropin["defer"], true, "{} {role}: drop-in not deferred", env.name);
        assert!(
            dropin["content"]
                .as_str()
                .unwrap()
                .lines()
                .any(|l| l == "AssertFileNotEmpty=/etc/pgbouncer/rds-ca.pem"),
            "{}",
            dropin["content"]
        );
    }
}

#[test]
fn redis_has_a_memory_limit_for_its_eviction_policy() {
    // An eviction policy without maxmemory never evicts: Redis grows until the
    // kernel kills it. The limit is computed at boot from the instance's memory.
    let mut checked = 0;
    for env in shipped() {
        let Some(cache) = env.role(RoleKind::Cache) else {
            continue;
        };
        let renderer = Renderer::new(&env.project_dir).unwrap();
        let files = renderer
            .render_role(&env, RoleKind::Cache, &Options::review(&env, "x"))
            .unwrap()
            .files;
        let Some(conf) = files.get("redis.conf") else { continue };
        let directive = |name: &str| {
            conf.content
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
        };
        let policy = directive("maxmemory-policy").expect("maxmemory-policy");
        assert_eq!(directive("maxmemory").as_deref(), Some("MAXMEMORY"), "{}", env.name);
        if cache.queue == fabrs_config::QueueEngine::Redis {
            assert_eq!(
                policy, "noeviction",
                "{}: the queue's jobs must never be evicted",
                env.name
            );
        }
        // The boot script fills it in: run its line on a copy of the config.
        let setup = &files["fabrs-setup-cache"].content;
        let line = setup
            .lines()
            .find(|l| l.contains("MAXMEMORY"))
            .expect("setup-cache fills in MAXMEMORY");
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("redis.conf");
        std::fs::write(&copy, &conf.content).unwrap();
        let mem_line = setup
            .lines()
            .find(|l| l.starts_with("mem_kb="))
            .expect("setup-cache reads the memory size");
        let script = format!(
            "set -eu\nip=10.0.0.9\n{mem_line}\n{}\n",
            line.replace("/etc/redis/redis.conf", &copy.display().to_string())
        );
        let st = Command::new("sh").arg("-c").arg(&script).status().unwrap();
        assert!(st.success(), "{script}");
        let done = std::fs::read_to_string(&copy).unwrap();
        let value = done.lines().find_map(|l| l.strip_prefix("maxmemory ")).unwrap();
        let kb: u64 = value.strip_suffix("kb").expect("in kb").parse().unwrap();
        assert!(kb > 10_000, "{value}");
        checked += 1;
    }
    assert!(checked >= 2, "checked {checked}");
}
