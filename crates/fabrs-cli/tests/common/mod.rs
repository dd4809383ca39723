//! Shared by the CLI's integration tests: a moto server per test, the fault
//! proxy, the fabrs binary with test credentials and secrets, awscli.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn venv(bin: &str) -> PathBuf {
    let p = root().join(".venv/bin").join(bin);
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A moto server of this test's own, on a free loopback port.
pub struct Moto {
    pub child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(venv("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdout(Stdio::null())
            // FABRS_TEST_MOTO_LOG=DIR keeps each moto's log (tracebacks of its 500s).
            .stderr(match std::env::var_os("FABRS_TEST_MOTO_LOG") {
                Some(d) => Stdio::from(std::fs::File::create(Path::new(&d).join(format!("moto-{port}.log"))).unwrap()),
                None => Stdio::null(),
            })
            .spawn()
            .unwrap();
        wait_for_port(port, "moto");
        Moto { child, port }
    }
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tests/peers/fault_proxy.py in front of a moto server.
pub struct Proxy {
    pub child: Child,
    pub port: u16,
    pub stats: tempfile::NamedTempFile,
}

impl Proxy {
    pub fn start(upstream: &Moto, faults: &[&str]) -> Proxy {
        let port = free_port();
        let stats = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("python3")
            .arg(root().join("tests/peers/fault_proxy.py"))
            .args(["--port", &port.to_string(), "--upstream", &upstream.url(), "--stats"])
            .arg(stats.path())
            .args(faults)
            .spawn()
            .unwrap();
        wait_for_port(port, "the fault proxy");
        Proxy { child, port, stats }
    }
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn stats(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.stats.path()).unwrap_or_default()).unwrap_or(Value::Null)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// awscli, the independent client: JSON out.
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

pub fn env_filter(env: &str) -> Vec<String> {
    vec![
        "--filters".into(),
        format!("Name=tag:fabrs:environment,Values={env}"),
        "Name=tag:fabrs:project,Values=myproject".into(),
    ]
}

pub fn tag<'a>(tags: &'a Value, key: &str) -> Option<&'a str> {
    tags.as_array()?
        .iter()
        .find(|t| t["Key"] == key)
        .and_then(|t| t["Value"].as_str())
}

/// Ingress of a group as (port, source) pairs, sources as CIDRs or group names.

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
