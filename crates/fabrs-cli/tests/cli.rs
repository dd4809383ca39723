//! The `fabrs` binary as a user runs it: exit statuses, the bad-input corpus
//! (tests/bad), rendering, and secrets never reaching the output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fabrs_test_support::root;

/// `fabrs` run from the repository root, with no FABRS_SECRET_* inherited.
fn fabrs(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fabrs"));
    cmd.current_dir(root())
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0");
    for (k, _) in std::env::vars() {
        if k.starts_with("FABRS_SECRET_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The corpus's per-case assertions (exact line:col, rule, message, no library
/// internals) are fabrs-config's `tests/corpus.rs`. Here, the binary as a user
/// runs it: every bad file exits 1 with at least one positioned error for that
/// file, never panics, and needs no network: each run is in an empty network
/// namespace (`unshare -n`) where the machine allows it.
#[test]
fn every_bad_file_exits_1_without_network() {
    let dir = root().join("tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 111, "the corpus has {} files", files.len());
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut failures = Vec::new();
    for path in &files {
        let rel = format!("tests/bad/{}", path.file_name().unwrap().to_string_lossy());
        let sidecar = path.with_extension("expect");
        let head = match std::fs::read_to_string(&sidecar) {
            Ok(h) => h,
            Err(_) => String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned(),
        };
        let mut cmd = if isolated {
            let mut c = Command::new("unshare");
            c.arg("-n").arg(env!("CARGO_BIN_EXE_fabrs"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_fabrs"))
        };
        cmd.current_dir(root())
            .arg("validate")
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "0");
        for (k, _) in std::env::vars() {
            if k.starts_with("FABRS_SECRET_") {
                cmd.env_remove(k);
            }
        }
        let mut values = Vec::new();
        for line in head.lines().take_while(|l| l.starts_with('#')) {
            if let Some(a) = line.strip_prefix("# args: ") {
                cmd.args(a.split_whitespace());
            } else if let Some(e) = line.strip_prefix("# env: ") {
                let (k, v) = e.split_once('=').unwrap();
                cmd.env(k, v);
                values.push(v.to_string());
            }
        }
        let out = cmd.arg(&rel).output().unwrap();
        let (stdout, stderr) = text(&out);
        let positioned = stderr.lines().any(|l| {
            l.strip_prefix(&format!("{rel}:"))
                .is_some_and(|rest| rest.split(':').take(2).all(|n| n.parse::<u32>().is_ok()))
        });
        if out.status.code() != Some(1) || !positioned || stderr.contains("panicked") {
            failures.push(format!("{rel}: exit {:?}\n{stderr}", out.status.code()));
        }
        for v in &values {
            assert!(
                !stdout.contains(v.as_str()) && !stderr.contains(v.as_str()),
                "{rel}: a secret value reached the output"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn shipped_environments_and_examples_validate() {
    let out = fabrs(&["validate"], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let (_, err) = text(&out);
    assert!(
        err.contains("myproject / staging is valid") && err.contains("myproject / production is valid"),
        "{err}"
    );
    for ex in ["examples/scoot.yaml", "examples/lifesum.yaml", "examples/famigo.yaml"] {
        let out = fabrs(&["validate", ex], &[]);
        assert_eq!(out.status.code(), Some(0), "{ex}: {:?}", text(&out));
    }
}

#[test]
fn validate_json_lists_diagnostics_on_stdout() {
    let out = fabrs(&["validate", "--output", "json", "tests/bad/cidr-host-bits.yaml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &all[0];
    let d = &v["diagnostics"][0];
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(9), Some(7)));
    assert_eq!(d["path"], "network.admin_cidrs[0]");
    assert_eq!(d["hint"], "did you mean `203.0.113.0/24`?");
}

#[test]
fn validate_json_is_one_document_for_many_files() {
    let out = fabrs(
        &[
            "validate",
            "--output",
            "json",
            "staging",
            "tests/bad/cidr-host-bits.yaml",
            "tests/bad/lint-db-public.yaml",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let valid: Vec<bool> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["valid"].as_bool().unwrap())
        .collect();
    assert_eq!(valid, vec![true, false, false]);
    assert_eq!(all[2]["diagnostics"][0]["rule"], "db-not-public");
}

#[test]
fn a_missing_file_is_one_clear_error() {
    let out = fabrs(&["validate", "nosuchenv"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, err) = text(&out);
    assert!(
        err.contains("environments/nosuchenv.yaml:1:1: error: cannot read the file"),
        "{err}"
    );
}

#[test]
fn render_lists_files_with_placeholders_and_writes_them() {
    let out = fabrs(&["render", "staging", "--role", "web"], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    for f in [
        "web/nginx.conf",
        "web/pgbouncer.ini",
        "web/app.env",
        "web/refapp-web.service",
        "web/user-data.yaml",
    ] {
        assert!(stdout.contains(&format!("==> {f} <==")), "{f} missing");
    }
    assert!(stdout.contains("__secret_db_password__"));

    let dir = tempfile::tempdir().unwrap();
    let out = fabrs(&["render", "production", "--out", dir.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    for role in ["web", "worker", "cache"] {
        assert!(dir.path().join(role).join("user-data.yaml").is_file(), "{role}");
    }
    let ud = std::fs::read_to_string(dir.path().join("web/user-data.yaml")).unwrap();
    assert!(ud.starts_with("#cloud-config\n"));
}

#[test]
fn render_unknown_role_is_an_error() {
    let out = fabrs(&["render", "staging", "--role", "db"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("unknown role `db`"));
}

const SECRETS: [(&str, &str); 3] = [
    ("FABRS_SECRET_DB_PASSWORD", "db-Sekr1t-7f3a"),
    ("FABRS_SECRET_CACHE_PASSWORD", "cache-Sekr1t-91bc"),
    ("FABRS_SECRET_QUEUE_PASSWORD", "queue-Sekr1t-44de"),
];

#[test]
fn resolved_secrets_go_to_files_never_to_output() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let out = fabrs(&["render", "staging", "--resolve-secrets", "--out", out_dir], &SECRETS);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let (stdout, stderr) = text(&out);
    let env = std::fs::read_to_string(dir.path().join("web/app.env")).unwrap();
    assert!(
        env.contains("db-Sekr1t-7f3a") && env.contains("cache-Sekr1t-91bc") && env.contains("queue-Sekr1t-44de"),
        "{env}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("web/app.env"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "files holding secrets are private");
    for (_, v) in SECRETS {
        assert!(!stdout.contains(v) && !stderr.contains(v), "secret in output");
    }

    // JSON output with resolved secrets carries no content.
    let out = fabrs(
        &[
            "render",
            "staging",
            "--resolve-secrets",
            "--out",
            out_dir,
            "--output",
            "json",
        ],
        &SECRETS,
    );
    assert_eq!(out.status.code(), Some(0));
    let (stdout, stderr) = text(&out);
    for (_, v) in SECRETS {
        assert!(!stdout.contains(v) && !stderr.contains(v), "secret in JSON output");
    }

    // Printing resolved files to the terminal is refused.
    let out = fabrs(&["render", "staging", "--resolve-secrets"], &SECRETS);
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = text(&out);
    assert!(stderr.contains("needs --out"), "{stderr}");
    for (_, v) in SECRETS {
        assert!(!stdout.contains(v) && !stderr.contains(v));
    }
}

#[test]
fn a_missing_secret_is_named_and_the_others_are_not_shown() {
    let out = fabrs(
        &[
            "render",
            "staging",
            "--resolve-secrets",
            "--out",
            "/nonexistent-never-written",
        ],
        &SECRETS[1..],
    );
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = text(&out);
    assert!(
        stderr.contains("secret `db_password` is not set") && stderr.contains("export FABRS_SECRET_DB_PASSWORD"),
        "{stderr}"
    );
    for (_, v) in SECRETS {
        assert!(!stdout.contains(v) && !stderr.contains(v));
    }
    assert!(!Path::new("/nonexistent-never-written").exists(), "nothing half-made");
}

#[test]
fn completions_are_generated() {
    let out = fabrs(&["completions", "bash"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains("fabrs"));
}
