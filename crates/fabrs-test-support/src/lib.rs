//! What fabrs's tests share: the repository root and its `.venv`, free
//! loopback ports, a moto server of the test's own ([`moto`]), awscli as the
//! independent client that reads back what fabrs did ([`aws`]), the
//! fault-injecting proxy in front of moto ([`proxy`]), and — behind features
//! — real sshds ([`sshd`]) and fabrs's nginx.conf running on loopback
//! ([`nginx`]). Test peers only ever listen on 127.0.0.0/8.

pub mod aws;
pub mod moto;
#[cfg(feature = "nginx")]
pub mod nginx;
pub mod proxy;
#[cfg(feature = "sshd")]
pub mod sshd;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use aws::{aws, base64_decode, tag};
pub use moto::Moto;
pub use proxy::Proxy;

/// The repository's root directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A program of the repository's Python venv (moto_server, aws), which
/// `scripts/setup` creates.
pub fn venv(bin: &str) -> PathBuf {
    let p = root().join(".venv/bin").join(bin);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it creates .venv with moto[server] and awscli)",
        p.display()
    );
    p
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether something accepts connections on 127.0.0.1:`port` within `within`.
pub fn wait_port(port: u16, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Like [`wait_port`], failing the test (naming `what`) after 60 s.
pub fn wait_for_port(port: u16, what: &str) {
    assert!(
        wait_port(port, Duration::from_secs(60)),
        "{what} did not start on port {port}"
    );
}

/// Whether the tests run as root (some peers need it: /srv, sshd, nginx's www-data).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
