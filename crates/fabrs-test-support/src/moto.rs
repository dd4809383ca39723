//! A moto server of the test's own on a free loopback port: the one
//! launcher of the tree.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::{free_port, root, venv, wait_for_port};

pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Start moto with what a user makes by hand before `create-env` (the
    /// preconditions its preflight checks): EC2 with the images of
    /// `tests/peers/moto-amis.json` instead of moto's defaults, then
    /// `tests/peers/moto-seed` (the key pairs and IAM server certificates the
    /// repository's environment files and examples name). It runs under a watchdog
    /// shell, so it goes away with the test binary even when it is never
    /// dropped (a static). `FABRS_TEST_MOTO_LOG=DIR` keeps each moto's log
    /// (tracebacks of its 500s) as `DIR/moto-PORT.log`.
    pub fn start() -> Moto {
        let bin = venv("moto_server");
        let port = free_port();
        let log = match std::env::var_os("FABRS_TEST_MOTO_LOG") {
            Some(d) => Path::new(&d).join(format!("moto-{port}.log")).display().to_string(),
            None => "/dev/null".into(),
        };
        let script = format!(
            "'{}' -H 127.0.0.1 -p {port} >/dev/null 2>>'{log}' & m=$!; \
             trap 'kill $m 2>/dev/null; exit 0' TERM INT; trap 'kill $m 2>/dev/null' EXIT; \
             while kill -0 {} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 1 & wait $!; done",
            bin.display(),
            std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .env("MOTO_AMIS_PATH", root().join("tests/peers/moto-amis.json"))
            .env(
                "MOTO_SSM_PUBLIC_PARAMETERS",
                root().join("tests/peers/moto-public-parameters.json"),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("start moto_server");
        wait_for_port(port, "moto_server");
        let moto = Moto { child, port };
        moto.seed();
        moto
    }

    /// `tests/peers/moto-seed`: the preconditions, made the way a user makes them.
    fn seed(&self) {
        let out = Command::new(venv("python"))
            .arg(root().join("tests/peers/moto-seed"))
            .args(["--endpoint", &self.url()])
            .stdin(Stdio::null())
            .output()
            .expect("run tests/peers/moto-seed");
        assert!(
            out.status.success(),
            "tests/peers/moto-seed failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One moto for the whole test binary (each test uses its own names).
    pub fn shared() -> &'static Moto {
        static M: OnceLock<Moto> = OnceLock::new();
        M.get_or_init(Moto::start)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // The watchdog's trap stops moto.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
