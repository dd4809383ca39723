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
