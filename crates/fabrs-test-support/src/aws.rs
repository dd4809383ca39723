//! awscli, the independent client: what fabrs did, read back.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::moto::Moto;
use crate::venv;

/// `aws --endpoint-url <moto> --region us-east-1 --output json ARGS`; JSON
/// out (`Null` for an empty answer). Fails the test when awscli does.
pub fn aws(moto: &Moto, args: &[&str]) -> Value {
    let out = Command::new(venv("aws"))
        .args([
            "--endpoint-url",
            &moto.url(),
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_PAGER", "")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(|b| b.is_ascii_whitespace()) {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of tag `key` in an AWS `Tags` list.
pub fn tag<'a>(tags: &'a Value, key: &str) -> Option<&'a str> {
    tags.as_array()?
        .iter()
        .find(|t| t["Key"] == key)
        .and_then(|t| t["Value"].as_str())
}

/// `base64 -d` (user-data comes back encoded).
pub fn base64_decode(s: &str) -> Vec<u8> {
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        });
    out.unwrap().stdout
}
