//! Helpers shared by the tests that run real programs on rendered files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use fabrs_config::Environment;
use fabrs_render::Layout;

pub use fabrs_test_support::{free_port, is_root, root};

pub fn staging() -> Environment {
    fabrs_config::load_file(&root().join("environments/staging.yaml")).unwrap_or_else(|d| panic!("{}", d.render()))
}

/// A tool from `scripts/setup`; a missing one fails the test, saying so.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("`{name}` is not installed: run scripts/setup");
}

/// A temp dir other users (pgbouncer's, rabbitmq's) can traverse.
pub fn tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    d
}

/// nginx paths and ports moved into `dir` (test-peers.md), same directives.
pub fn unprivileged_nginx_layout(dir: &Path) -> Layout {
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

pub fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A unique suffix for names the test creates in shared servers.
pub fn tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}{}", std::process::id(), nanos % 100_000)
}

/// Parse YAML with cloud-init's own loader and decode every `write_files`
/// entry with cloud-init's own `extract_contents` (base64 included):
/// path → exact bytes, as cloud-init would write them.
pub fn cloud_init_write_files(user_data: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Write;
    let script = r#"
import sys, json, base64
from cloudinit import util
from cloudinit.config.cc_write_files import extract_contents, canonicalize_extraction
cfg = util.load_yaml(sys.stdin.read())
out = {}
for f in cfg["write_files"]:
    data = extract_contents(f.get("content", ""), canonicalize_extraction(f.get("encoding")))
    if isinstance(data, str):
        data = data.encode("utf-8")
    out[f["path"]] = base64.b64encode(data).decode()
json.dump(out, sys.stdout)
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cloud-init's python3");
    child.stdin.take().unwrap().write_all(user_data.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cloud-init could not load the user-data: {}",
        text(&out)
    );
    let map: std::collections::BTreeMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
    map.into_iter().map(|(k, v)| (k, b64decode(&v))).collect()
}

pub fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= val(*b) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

/// `cloud-init schema -c` on a user-data; panics with its output unless valid.
pub fn cloud_init_schema(user_data: &str, dir: &Path, name: &str) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, user_data).unwrap();
    let out = Command::new(tool("cloud-init"))
        .args(["schema", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success() && t.contains("Valid cloud-config"), "{name}: {t}");
}
