//! fabrs's rendered nginx.conf running for real on loopback: only ports and
//! the log/pid/temp paths move (fabrs_render::Layout); the maintenance flag
//! stays at its production path, /srv/<project>/maintenance.on, so a test
//! gives the environment a project name of its own. Used by fabrs-remote's
//! and the CLI's tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fabrs_config::{Environment, RoleKind};
use fabrs_render::{Options, Renderer};

use crate::{free_port, wait_port};

pub const HOST: &str = "staging.myproject.example";

/// nginx stops on SIGTERM to its master, which takes its workers along.
pub struct Nginx(Child);
impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// Removes /srv/<project> (made by this test) at the end.
pub struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The application: 200 "page" to every request.
pub fn upstream(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\npage");
            });
        }
    });
}

/// GET `path` over plain HTTP with the application's Host: (status, the
/// `Location` header if any). Port 80 of a stack with an HTTPS listener
/// answers 301 to `https://<host><path>`.
pub fn get_plain(port: u16, path: &str) -> (u16, Option<String>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let head = resp.split_once("\r\n\r\n").map(|(h, _)| h).unwrap_or(&resp);
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").map(str::to_string));
    (status, location)
}

/// GET `path` over HTTPS (nginx's self-signed certificate, not verified) with
/// the application's Host: (status, body). `curl` from scripts/setup.
pub fn get_tls(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-ksS", "--max-time", "10", "-H"])
        .arg(format!("Host: {HOST}"))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// GET `path` from nginx with the application's Host: (status, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// The flag nginx.conf tests: the path in its `if (-f …)` lines, which must
/// all be the same.
pub fn flag_in(nginx_conf: &str) -> String {
    let flags: Vec<&str> = nginx_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("if (-f ")?.strip_suffix(") {"))
        .collect();
    assert!(
        flags.len() >= 3,
        "expected the maintenance checks in nginx.conf:\n{nginx_conf}"
    );
    assert!(flags.iter().all(|f| *f == flags[0]), "{flags:?}");
    flags[0].to_string()
}

/// nginx with the web role's rendered config, an upstream answering "page",
/// the release's maintenance page; all removed on drop.
pub struct WebStack {
    pub http: u16,
    pub https: u16,
    pub flag: String,
    _nginx: Nginx,
    _cleanup: RemoveDir,
    _dir: tempfile::TempDir,
}

impl WebStack {
    /// `env.project` must be unique to the test: /srv/<project> is made here.
    pub fn start(mut env: Environment, root: &Path) -> WebStack {
        let project = env.project.clone();
        let srv = Path::new("/srv").join(&project);
        assert!(
            !srv.exists(),
            "{} exists already: left over from another run?",
            srv.display()
        );
        std::fs::create_dir_all(&srv).unwrap_or_else(|e| {
            panic!(
                "cannot create {} ({e}): this test needs to write /srv (run as root)",
                srv.display()
            )
        });
        let cleanup = RemoveDir(srv.clone());
        env.app.port = free_port();
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        // nginx's workers run as www-data and use the temp paths in here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        let mut opts = Options::review(&env, "rev1");
        let (http, https) = (free_port(), free_port());
        opts.layout.http_port = http;
        opts.layout.https_port = https;
        opts.layout.nginx_pid = d.join("nginx.pid").display().to_string();
        opts.layout.nginx_error_log = d.join("nginx-error.log").display().to_string();
        opts.layout.nginx_access_log = d.join("nginx-access.log").display().to_string();
        opts.layout.nginx_temp_dir = Some(d.display().to_string());
        let web = Renderer::new(root)
            .unwrap()
            .render_role(&env, RoleKind::Web, &opts)
            .unwrap();
        let conf = &web.files["nginx.conf"].content;
        let flag = flag_in(conf);
        assert_eq!(
            flag,
            format!("/srv/{project}/maintenance.on"),
            "the production flag path"
        );
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();

        // The release's maintenance page, where nginx.conf looks for it.
        let static_dir = srv.join("current/static");
        std::fs::create_dir_all(&static_dir).unwrap();
        std::fs::write(static_dir.join("maintenance.html"), "<h1>down for maintenance</h1>\n").unwrap();
        for p in [srv.clone(), srv.join("current"), static_dir.clone()] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        upstream(env.app.port);
        let nginx = Command::new("nginx")
            .arg("-p")
            .arg(d)
            .args(["-e", "stderr", "-c"])
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("nginx-stderr.log")).unwrap())
            .spawn()
            .expect("start nginx");
        let _nginx = Nginx(nginx);
        assert!(
            wait_port(http, Duration::from_secs(10)),
            "nginx did not start: {}",
            std::fs::read_to_string(d.join("nginx-stderr.log")).unwrap_or_default()
        );

        assert!(
            wait_port(https, Duration::from_secs(10)),
            "nginx does not listen on its HTTPS port"
        );
        WebStack {
            http,
            https,
            flag,
            _nginx,
            _cleanup: cleanup,
            _dir: dir,
        }
    }
}
