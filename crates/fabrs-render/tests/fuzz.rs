//! Fuzzing validate and render with mutated environment files, for a bounded
//! time (issue 13, item 5).
//!
//! Inputs are the shipped environment files (plus one with `app.env` and an
//! artifact prefix) mutated by a seeded generator: values replaced by hostile
//! strings (injections, YAML syntax, huge numbers, odd Unicode), lines
//! deleted, duplicated, re-indented or spliced, bytes changed, files cut.
//! Properties:
//! - `load_str` (what `fabrs validate` runs) never panics and takes under 2 s
//!   on any input;
//! - an accepted file renders, except for a secret value a format cannot hold
//!   (reported as such, never mangled);
//! - every distinct rendering is accepted by the real peers: `nginx -t` (in a
//!   private network namespace), cloud-init's schema check (the code
//!   `cloud-init schema -c` runs, batched in one process), cloud-init writes
//!   each `write_files` entry byte for byte, and pgbouncer loads its ini and
//!   auth file and listens.
//!
//! Budget: `FABRS_FUZZ_SECS` seconds of generation (default 40), then peer
//! checks of a uniform sample of `FABRS_FUZZ_PEERS` distinct renderings
//! (default 40, about 10 s).
//! `FABRS_FUZZ_SEED` picks the seed (default: fixed, so CI is reproducible;
//! `random` draws one). A failure prints the seed, the case number and writes
//! the input to `target/fuzz-failure.yaml`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fabrs_config::secrets::Secrets;
use fabrs_render::{Facts, Layout, Options, RenderError, Renderer, SecretMode};

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Hostile values: each is some format's special syntax or an edge of a rule.
const VALUES: &[&str] = &[
    "a.com; return 200",
    "a.com b.com",
    "*.example.com",
    ".example.com",
    "www.example.*",
    "~^regex$",
    "_",
    "x",
    "",
    "''",
    "\"\"",
    "~",
    "null",
    "yes",
    "off",
    "0x1F",
    "0o17",
    "1e400",
    "-1",
    "0",
    "18446744073709551616",
    "99999999999999999999999999",
    "0s",
    "5s",
    "1000000000000000d",
    "9223372036854775807s",
    "9999999999999999999h",
    "99999999999999999m1s",
    "4001s",
    "99999999s",
    "${HOME}",
    "$(id)",
    "`id`",
    "'; DROP TABLE x; --",
    "\\",
    "%n%%",
    "{{ project }}",
    "{% raw %}",
    "#comment",
    "a # b",
    "a: b",
    "- item",
    "[a, b]",
    "{a: 1}",
    "&anchor x",
    "*alias",
    "!!binary aGk=",
    "<<",
    "|",
    ">",
    "---",
    "...",
    "é☃😀",
    "  lead",
    "trail  ",
    "0.0.0.0/0",
    "::/0",
    "0.0.0.0/1",
    "10.0.0.0/8",
    "203.0.113.10/33",
    "ami-0123456789abcdef0",
    "ami-xyz",
    "vpc-1",
    "subnet-",
    "us-east-1",
    "us east-1",
    "a b-c-1",
    "t3.micro",
    "db.t3.micro",
    "HTTPS:443/healthcheck.html",
    "TCP:443/x",
    "HTTP:0",
    "arn:aws:iam::1:server-certificate/x",
    "ssh-ed25519 AAAA x\"y'z`$ #",
    "ssh-rsa",
    "env",
    "file",
    "/etc/passwd",
    "~/secret",
    "16.10",
    "{revision}",
    "sudo {revision}; rm -rf /",
    "web",
    "worker",
    "cache",
    "queue",
    "db",
    "lb",
    "redis",
    "memcached",
    "rabbitmq",
    "none",
    "configuration",
    "template",
    "UPPER_KEY",
    "lower-key",
    "a\u{0}b",
    "tab\there",
    "line\nbreak",
    "\u{85}\u{2028}\u{feff}",
];

/// Raw snippets spliced into the text (not values): YAML structure and bytes.
const SNIPPETS: &[&str] = &[
    "\n",
    "\t",
    " ",
    ":",
    ": ",
    "- ",
    "#",
    "\"",
    "'",
    "\\",
    "&a ",
    "*a",
    "<<: *a\n",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\u{feff}",
    "\u{a0}",
    "\u{85}",
    "\u{2028}",
    "\r\n",
    "\u{0}",
    "\u{1b}",
    "---\n",
    "%YAML 1.2\n",
    "!!str ",
    "? ",
];

/// Keys the format knows (and a few it does not), for inserted lines.
const KEYS: &[&str] = &[
    "version",
    "project",
    "environment",
    "region",
    "ami",
    "network",
    "vpc",
    "subnets",
    "admin_cidrs",
    "security_group_prefix",
    "ssh",
    "user",
    "key_name",
    "authorized_keys",
    "load_balancer",
    "listeners",
    "health_check",
    "target",
    "interval",
    "timeout",
    "idle_timeout",
    "cross_zone",
    "draining_timeout",
    "ingress_cidrs",
    "roles",
    "instance_type",
    "count",
    "autoscaling",
    "min",
    "max",
    "desired",
    "launch",
    "concurrency",
    "cache",
    "queue",
    "cache_password_secret",
    "queue_password_secret",
    "database",
    "name",
    "username",
    "password_secret",
    "replicas",
    "app",
    "server_names",
    "port",
    "env",
    "photos_bucket",
    "artifacts",
    "bucket",
    "prefix",
    "deploy",
    "batch_size",
    "healthy_floor",
    "migrate_command",
    "secrets",
    "firewall",
    "tags",
    "description",
    "GREETING",
    "bogus",
];

fn quote_yaml(v: &str) -> String {
    fabrs_config::formats::YamlScalar::quote(v).to_string()
}

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut t = text.to_string();
    for _ in 0..1 + rng.below(2) {
        let lines: Vec<&str> = t.split('\n').collect();
        let mut lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        // Most mutations aim at a line holding a value.
        let valued: Vec<usize> = (0..lines.len())
            .filter(|i| {
                !lines[*i].trim_start().starts_with('#') && (lines[*i].contains(": ") || lines[*i].contains("- "))
            })
            .collect();
        let i = if !valued.is_empty() && rng.below(4) != 0 {
            *rng.pick(&valued)
        } else {
            rng.below(lines.len())
        };
        match rng.below(12) {
            // A number inside the value made huge, zero or negative.
            10 | 11 => {
                let l = &lines[i];
                if let Some(p) = l.find(|c: char| c.is_ascii_digit()) {
                    let end = l[p..].find(|c: char| !c.is_ascii_digit()).map_or(l.len(), |e| p + e);
                    let n = *rng.pick(&[
                        "0",
                        "-1",
                        "99999999999999999999",
                        "9999999999999999999",
                        "4294967296",
                        "65536",
                        "4001",
                    ]);
                    lines[i] = format!("{}{n}{}", &l[..p], &l[end..]);
                }
            }
            // Replace a value (after `key:` or `- `), raw, double- or single-quoted.
            0..=3 => {
                let v = *rng.pick(VALUES);
                let v = match rng.below(3) {
                    0 => v.to_string(),
                    1 => quote_yaml(v),
                    _ => format!("'{}'", v.replace('\'', "''")),
                };
                let l = &lines[i];
                if let Some(p) = l.find(": ") {
                    lines[i] = format!("{}: {v}", &l[..p]);
                } else if let Some(p) = l.find("- ") {
                    lines[i] = format!("{}- {v}", &l[..p]);
                } else if l.ends_with(':') {
                    lines[i] = format!("{l} {v}");
                }
            }
            4 => {
                lines.remove(i);
            }
            5 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            6 => {
                let l = &lines[i];
                lines[i] = if rng.below(2) == 0 {
                    format!("  {l}")
                } else {
                    l.trim_start().to_string()
                };
            }
            7 => {
                let indent: String = lines[i].chars().take_while(|c| *c == ' ').collect();
                let line = format!("{indent}{}: {}", rng.pick(KEYS), quote_yaml(*rng.pick(VALUES)));
                lines.insert(i, line);
            }
            8 => {
                let l = &lines[i];
                let cut = (0..=l.len()).filter(|p| l.is_char_boundary(*p)).collect::<Vec<_>>();
                let p = *rng.pick(&cut);
                lines[i] = format!("{}{}{}", &l[..p], rng.pick(SNIPPETS), &l[p..]);
            }
            _ => {
                // Truncate the file.
                let keep = rng.below(lines.len()) + 1;
                lines.truncate(keep);
            }
        }
        t = lines.join("\n");
    }
    t
}

fn seeds() -> Vec<(PathBuf, String)> {
    let root = root();
    let mut out = Vec::new();
    for dir in ["environments", "examples"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            out.push((f, text));
        }
    }
    // One seed with more values that reach files: app.env, a prefix, the idle timeout.
    let staging = root.join("environments/staging.yaml");
    let text = std::fs::read_to_string(&staging).unwrap();
    let rich = text
        .replace(
            "  port: 8000\n",
            "  port: 8000\n  env:\n    GREETING: \"hello world\"\n    FEATURE_FLAG: \"on\"\n",
        )
        .replace("  health_check:\n", "  idle_timeout: 60s\n  health_check:\n")
        .replace(
            "  bucket: myproject-staging-artifacts",
            "  prefix: releases/main\n  bucket: myproject-staging-artifacts",
        );
    assert_ne!(rich, text);
    out.push((staging, rich));
    out
}

/// Every declared secret, with values drawn from the hostile values.
fn secrets(rng: &mut Rng, env: &fabrs_config::Environment) -> Secrets {
    let values: Vec<(String, &'static str)> = env
        .secrets
        .keys()
        .map(|name| {
            let v = match rng.below(8) {
                0 | 1 => "  pass word \"' \\ $x `y` é  ",
                // pgbouncer's auth file cannot hold a line break: refused, never mangled.
                2 => "line\nbreak",
                _ => *rng.pick(VALUES),
            };
            (name.clone(), v)
        })
        .collect();
    Secrets::from_pairs(values.iter().map(|(k, v)| (k.as_str(), *v)))
}

fn budget(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fail(seed: u64, case: u64, input: &str, what: String) -> ! {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failure.yaml");
    let _ = std::fs::write(&path, input);
    panic!(
        "FABRS_FUZZ_SEED={seed}, case {case}: {what}\n(the input is in {})",
        path.display()
    );
}

/// A distinct rendering to show to the peers.
struct Rendered {
    seed_case: (u64, u64),
    input: String,
    roles: Vec<fabrs_render::RoleFiles>,
}

#[test]
fn validate_and_render_hold_on_mutated_environment_files() {
    let secs = budget("FABRS_FUZZ_SECS", 40);
    let max_peers = budget("FABRS_FUZZ_PEERS", 40) as usize;
    let seed = match std::env::var("FABRS_FUZZ_SEED").as_deref() {
        Ok("random") => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        }
        Ok(s) => s.parse().expect("FABRS_FUZZ_SEED is a number or `random`"),
        Err(_) => 0x5eed_f00d_13,
    };
    let mut rng = Rng(seed);
    let seeds = seeds();
    let renderer = Renderer::new(&root()).unwrap();
    let start = Instant::now();
    let (mut cases, mut accepted, mut refused_secret) = (0u64, 0u64, 0u64);
    let mut seen = BTreeSet::new();
    let mut distinct: Vec<Rendered> = Vec::new();
    // Silence the default hook's message for caught panics; we report them.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    while start.elapsed() < Duration::from_secs(secs) {
        cases += 1;
        let (file, text) = rng.pick(&seeds).clone();
        let input = if cases <= seeds.len() as u64 {
            text
        } else {
            mutate(&mut rng, &text)
        };
        let project_dir = fabrs_config::project_dir_of(&file);
        let t0 = Instant::now();
        let loaded = std::panic::catch_unwind(AssertUnwindSafe(|| fabrs_config::load_str(&input, &file, &project_dir)));
        let took = t0.elapsed();
        let loaded = match loaded {
            Ok(l) => l,
            Err(p) => {
                std::panic::set_hook(hook);
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                fail(seed, cases, &input, format!("validate panicked: {msg:?}"));
            }
        };
        if took > Duration::from_secs(2) {
            std::panic::set_hook(hook);
            fail(seed, cases, &input, format!("validate took {took:?}"));
        }
        let env = match loaded {
            Ok(env) => env,
            Err(diags) => {
                // Every diagnostic has a position inside the file.
                let lines = input.split('\n').count() as u32 + 1;
                if let Some(d) = diags.diagnostics.iter().find(|d| d.loc.line == 0 || d.loc.line > lines) {
                    std::panic::set_hook(hook);
                    fail(seed, cases, &input, format!("diagnostic outside the file: {d:?}"));
                }
                continue;
            }
        };
        accepted += 1;
        let s = secrets(&mut rng, &env);
        let opts = Options {
            revision: "3f9c2e1".into(),
            secrets: SecretMode::Values(&s),
            facts: Facts {
                db_master_host: "127.0.0.1".into(),
                db_replica_host: (env.database.replicas > 0).then(|| "127.0.0.1".into()),
                cache_host: "127.0.0.1".into(),
            },
            layout: Layout::production(),
        };
        let rendered = std::panic::catch_unwind(AssertUnwindSafe(|| renderer.render_all(&env, &opts)));
        let roles = match rendered {
            Ok(Ok(roles)) => roles,
            Ok(Err(RenderError::Value { what, .. })) if what.starts_with("secret ") => {
                refused_secret += 1;
                continue;
            }
            Ok(Err(e)) => {
                std::panic::set_hook(hook);
                fail(
                    seed,
                    cases,
                    &input,
                    format!("validate accepted a file that does not render: {e}"),
                );
            }
            Err(_) => {
                std::panic::set_hook(hook);
                fail(seed, cases, &input, "render panicked".into());
            }
        };
        let key: String = roles.iter().map(|r| r.user_data.as_str()).collect();
        if seen.insert(key) {
            // Reservoir sampling: the peers see a uniform sample of every distinct rendering.
            let r = Rendered {
                seed_case: (seed, cases),
                input,
                roles,
            };
            if distinct.len() < max_peers {
                distinct.push(r);
            } else {
                let slot = rng.below(seen.len());
                if slot < max_peers {
                    distinct[slot] = r;
                }
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "fuzz: seed {seed}, {cases} inputs in {:?}: {accepted} accepted ({refused_secret} with a secret a format refuses), {} distinct renderings, {} shown to the peers",
        start.elapsed(),
        seen.len(),
        distinct.len()
    );
    assert!(accepted > 0 && cases > 100, "the generator must reach both outcomes");
    let t = Instant::now();
    peers(&distinct);
    eprintln!("fuzz: peers checked {} renderings in {:?}", distinct.len(), t.elapsed());
}

fn peers(distinct: &[Rendered]) {
    let dir = tempdir();
    // cloud-init: schema (its own validate_cloudconfig_file) and write_files decoding, one process.
    let mut index = Vec::new();
    for (n, r) in distinct.iter().enumerate() {
        for role in &r.roles {
            let path = dir.path().join(format!("{n}-{}.yaml", role.role));
            std::fs::write(&path, &role.user_data).unwrap();
            let expected: BTreeMap<&str, &str> = role
                .files
                .values()
                .map(|f| (f.target.as_str(), f.content.as_str()))
                .collect();
            index.push(serde_json::json!({ "path": path, "case": n, "files": expected }));
        }
    }
    let index_path = dir.path().join("index.json");
    std::fs::write(&index_path, serde_json::to_string(&index).unwrap()).unwrap();
    let script = r#"
import sys, json
from cloudinit import util
from cloudinit.config.schema import validate_cloudconfig_file, get_schema
from cloudinit.config.cc_write_files import extract_contents, canonicalize_extraction
schema = get_schema()
bad = []
for item in json.load(open(sys.argv[1])):
    try:
        validate_cloudconfig_file(item["path"], schema)
    except Exception as e:
        bad.append({"case": item["case"], "path": item["path"], "error": "schema: %s" % e}); continue
    cfg = util.load_yaml(open(item["path"]).read())
    got = {}
    for f in cfg.get("write_files", []):
        data = extract_contents(f.get("content", ""), canonicalize_extraction(f.get("encoding")))
        got[f["path"]] = data.decode("utf-8") if isinstance(data, bytes) else data
    if got != item["files"]:
        diff = [p for p in set(got) | set(item["files"]) if got.get(p) != item["files"].get(p)]
        bad.append({"case": item["case"], "path": item["path"], "error": "write_files differ: %s" % diff})
json.dump(bad, sys.stdout)
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&index_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let bad: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    if let Some(b) = bad.first() {
        let r = &distinct[b["case"].as_u64().unwrap() as usize];
        fail(r.seed_case.0, r.seed_case.1, &r.input, format!("cloud-init: {b}"));
    }
    // The CLI itself on one of them (the batch above is its code path).
    if let Some(r) = distinct.first() {
        cloud_init_schema(&r.roles[0].user_data, dir.path(), "cli");
    }

    let nginx = tool("nginx");
    let pgbouncer = tool("pgbouncer");
    let root_run = is_root();
    for (n, r) in distinct.iter().enumerate() {
        for role in &r.roles {
            if let Some(conf) = role.files.get("nginx.conf") {
                let path = dir.path().join(format!("{n}-nginx.conf"));
                std::fs::write(&path, &conf.content).unwrap();
                let mut cmd = if root_run {
                    let mut c = Command::new("unshare");
                    c.arg("-n").arg(&nginx);
                    c
                } else {
                    // Unprivileged, production paths cannot be opened: check the syntax only.
                    Command::new(&nginx)
                };
                let out = cmd
                    .args(["-t", "-q", "-e", "stderr", "-c"])
                    .arg(&path)
                    .output()
                    .unwrap();
                if !out.status.success() {
                    fail(
                        r.seed_case.0,
                        r.seed_case.1,
                        &r.input,
                        format!("nginx -t: {}", text(&out)),
                    );
                }
            }
            if let (Some(ini), Some(users)) = (
                role.files.get("pgbouncer.ini"),
                role.files.get("pgbouncer-userlist.txt"),
            ) {
                pgbouncer_loads(
                    &pgbouncer,
                    dir.path(),
                    &format!("{n}-{}", role.role),
                    &ini.content,
                    &users.content,
                    root_run,
                )
                .unwrap_or_else(|e| fail(r.seed_case.0, r.seed_case.1, &r.input, format!("pgbouncer: {e}")));
            }
        }
    }
}

/// pgbouncer has no check mode: start it on the rendered ini (paths moved to
/// a temp dir) and auth file; it must listen.
fn pgbouncer_loads(
    pgbouncer: &Path,
    dir: &Path,
    n: &str,
    ini: &str,
    users: &str,
    root_run: bool,
) -> Result<(), String> {
    let d = dir.join(format!("pgb{n}"));
    std::fs::create_dir(&d).unwrap();
    if root_run {
        assert!(
            Command::new("chown")
                .arg("postgres")
                .arg(&d)
                .status()
                .unwrap()
                .success()
        );
    }
    let ds = d.display().to_string();
    let port = free_port();
    let l = Layout::production();
    let ini = ini
        .replace(
            &format!("listen_port = {}", l.pgbouncer_port),
            &format!("listen_port = {port}"),
        )
        .replace(&l.pgbouncer_auth_file, &format!("{ds}/userlist.txt"))
        .replace(&l.pgbouncer_unix_socket_dir, &ds)
        .replace(&l.pgbouncer_logfile, &format!("{ds}/pgbouncer.log"))
        .replace(&l.pgbouncer_pidfile, &format!("{ds}/pgbouncer.pid"))
        .replace(&l.db_tls_ca_file, "/etc/ssl/certs/ca-certificates.crt");
    std::fs::write(d.join("pgbouncer.ini"), ini).unwrap();
    std::fs::write(d.join("userlist.txt"), users).unwrap();
    let mut cmd = Command::new(pgbouncer);
    cmd.arg(d.join("pgbouncer.ini"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if root_run {
        use std::os::unix::process::CommandExt;
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, "postgres"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        cmd.gid(id("-g")).uid(id("-u"));
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let result = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!(
                "exited with {status}: {}",
                std::fs::read_to_string(d.join("pgbouncer.log")).unwrap_or_default()
            ));
        }
        if Instant::now() > deadline {
            break Err("did not listen within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}
