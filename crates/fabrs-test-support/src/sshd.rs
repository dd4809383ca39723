//! Real sshds on loopback addresses, started by tests/peers/sshd-up.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use fabrs_remote::{SshOptions, Target, parse_endpoints};

use crate::root;

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// One sshd per address; stopped on drop (and by the script's watchdog if
/// this process dies first).
pub struct Sshd {
    pub dir: tempfile::TempDir,
    /// srv-N → (address, port), read with fabrs-remote's own parser.
    pub endpoints: BTreeMap<String, (String, u16)>,
}

impl Sshd {
    pub fn start(addrs: &[&str]) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(root().join("tests/peers/sshd-up"))
            .arg("--watch")
            .arg(std::process::id().to_string())
            .arg(dir.path())
            .args(addrs)
            .output()
            .expect("run tests/peers/sshd-up");
        assert!(
            out.status.success(),
            "sshd-up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().join("endpoints");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            text,
            "sshd-up prints the endpoints"
        );
        let endpoints = parse_endpoints(&path, &text).unwrap();
        assert_eq!(endpoints.len(), addrs.len());
        Sshd { dir, endpoints }
    }

    /// Target `srv-N` (1-based), labelled `label`, as the current user.
    pub fn target(&self, n: usize, label: &str) -> Target {
        let (host, port) = self.endpoints[&format!("srv-{n}")].clone();
        Target {
            label: label.into(),
            host,
            port,
            user: current_user(),
        }
    }

    /// The script's ssh_config; control sockets inside the test's directory.
    pub fn options(&self, command_timeout: Duration) -> SshOptions {
        SshOptions {
            config_file: Some(self.dir.path().join("ssh_config")),
            identity: Some(self.dir.path().join("client_key")),
            connect_timeout: Duration::from_secs(5),
            command_timeout,
            control_dir: Some(self.dir.path().to_path_buf()),
            ..SshOptions::default()
        }
    }

    /// Waits (up to `within`) until no process mentions this directory on its
    /// command line other than the sshd listeners: the ssh masters are gone.
    pub fn assert_no_ssh_clients_left(&self, within: Duration) {
        let start = Instant::now();
        let dir = self.dir.path().display().to_string();
        loop {
            let left: Vec<String> = std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .filter(|c| c.contains(&dir) && !c.contains("sshd"))
                .collect();
            if left.is_empty() {
                return;
            }
            assert!(start.elapsed() < within, "ssh processes left behind: {left:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new(root().join("tests/peers/sshd-down"))
            .arg(self.dir.path())
            .status();
    }
}
