//! Shared by the CLI's integration tests: the fabrs binary with test
//! credentials and secrets, on top of fabrs-test-support (moto, the fault
//! proxy, awscli, free ports, the repository root).
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};

#[allow(unused_imports)] // each test binary uses its own subset
pub use fabrs_test_support::{Moto, Proxy, aws, base64_decode, root, tag};

pub const SECRETS: [(&str, &str); 3] = [
    ("FABRS_SECRET_DB_PASSWORD", "moto-db-Pa55word"),
    ("FABRS_SECRET_CACHE_PASSWORD", "moto-cache-Pa55word"),
    ("FABRS_SECRET_QUEUE_PASSWORD", "moto-queue-Pa55word"),
];

pub fn fabrs_cmd(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fabrs"));
    cmd.current_dir(root())
        .arg("--endpoint-url")
        .arg(endpoint)
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(Stdio::null());
    for (k, v) in SECRETS {
        cmd.env(k, v);
    }
    cmd
}

pub fn fabrs(endpoint: &str, args: &[&str]) -> Output {
    let out = fabrs_cmd(endpoint, args).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    for (_, v) in SECRETS {
        assert!(
            !o.contains(v) && !e.contains(v),
            "a secret reached the output of fabrs {args:?}"
        );
    }
    out
}

pub fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

pub fn env_filter(env: &str) -> Vec<String> {
    vec![
        "--filters".into(),
        format!("Name=tag:fabrs:environment,Values={env}"),
        "Name=tag:fabrs:project,Values=myproject".into(),
    ]
}

/// A proxy that checks every request against AWS's models and rules
/// (tests/peers/conformance.py), logging violations to `log` without
/// refusing them; its `stats()` count the calls per operation.
pub fn conformance_proxy(moto: &Moto, log: &std::path::Path) -> Proxy {
    Proxy::start(
        moto,
        &["--conformance", log.to_str().unwrap(), "--conformance-report-only"],
    )
}

/// The violations a conformance proxy logged, of one service (`rds`, `iam`…).
pub fn violations(log: &std::path::Path, service: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["service"] == service)
        .collect()
}

/// The operations a proxy saw that write (anything but Describe, List, Get, Head).
pub fn write_calls(stats: &serde_json::Value) -> Vec<String> {
    let ops = stats["operations"].as_object().cloned().unwrap_or_default();
    assert!(ops.len() > 1, "the run went through the proxy: {stats}");
    ops.keys().filter(|op| is_write(op)).cloned().collect()
}

/// `service.Operation` writes (anything but Describe, List, Get, Head).
fn is_write(op: &str) -> bool {
    let name = op.split_once('.').map_or(op, |(_, n)| n);
    !["Describe", "List", "Get", "Head"].iter().any(|p| name.starts_with(p))
}

/// How many write calls (see `write_calls`) a proxy with `--conformance`
/// forwarded so far.
pub fn write_call_count(stats: &serde_json::Value) -> u64 {
    let ops = stats["operations"].as_object().cloned().unwrap_or_default();
    ops.iter()
        .filter(|(op, _)| is_write(op))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

/// A project of its own whose staging asks for launch configurations (the
/// shipped one uses templates): pass its path as `--dir`.
pub fn staging_on_configurations() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("environments")).unwrap();
    let text = std::fs::read_to_string(root().join("environments/staging.yaml")).unwrap();
    assert_eq!(text.matches("launch: template").count(), 2);
    std::fs::write(
        dir.path().join("environments/staging.yaml"),
        text.replace("launch: template", "launch: configuration"),
    )
    .unwrap();
    dir
}
