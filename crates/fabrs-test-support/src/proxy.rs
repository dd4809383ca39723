//! tests/peers/fault_proxy.py in front of a moto server: throttling, 5xx,
//! dropped connections, sick revisions.

use std::process::{Child, Command};

use serde_json::Value;

use crate::moto::Moto;
use crate::{free_port, root, wait_for_port};

pub struct Proxy {
    child: Child,
    pub port: u16,
    stats: tempfile::NamedTempFile,
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

    /// What the proxy did so far (its `--stats` file).
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
