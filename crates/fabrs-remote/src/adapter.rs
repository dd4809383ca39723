//! `SshRemote`: fabrs-cloud's `Remote` (run a command on one server, as the
//! deploy's migration step does) over this crate's SSH, with the optional
//! endpoint map that sends an instance id elsewhere (tests, bastions).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fabrs_cloud::{Remote, RemoteOutput};

use crate::{Outcome, SshOptions, Target, parse_endpoints, run_all};

/// Instance id → (host, port).
type Endpoints = BTreeMap<String, (String, u16)>;

/// Instance id → where to SSH, and how.
pub struct SshRemote {
    /// The endpoint map and the file it came from (named in errors).
    endpoints: Option<(PathBuf, Endpoints)>,
    pub opts: SshOptions,
    user: String,
}

impl SshRemote {
    /// `endpoints`: an endpoint map file (`instance-id host:port` lines),
    /// read now; `user`: the login user (the file's `ssh.user`).
    pub fn new(endpoints: Option<&Path>, opts: SshOptions, user: &str) -> Result<SshRemote, String> {
        let endpoints = match endpoints {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
                Some((p.to_path_buf(), parse_endpoints(p, &text).map_err(|e| e.to_string())?))
            }
            None => None,
        };
        Ok(SshRemote {
            endpoints,
            opts,
            user: user.to_string(),
        })
    }

    /// Where to reach instance `id` (private `address`). With an endpoint
    /// map, every instance must be in it (an address is never guessed).
    pub fn target(&self, id: &str, address: Option<&str>) -> Result<Target, String> {
        let (host, port) = match (&self.endpoints, address) {
            (Some((file, map)), _) => map
                .get(id)
                .cloned()
                .ok_or_else(|| format!("instance {id} is not in the endpoint map {}", file.display()))?,
            (None, Some(a)) => (a.to_string(), 22),
            (None, None) => return Err(format!("instance {id} has no private address")),
        };
        Ok(Target {
            label: id.to_string(),
            host,
            port,
            user: self.user.clone(),
        })
    }

    /// Commands that need root go through sudo unless the user is root.
    pub fn sudo(&self) -> bool {
        self.user != "root"
    }
}

impl Remote for SshRemote {
    async fn run(&self, instance_id: &str, address: &str, command: &str) -> RemoteOutput {
        let target = match self.target(instance_id, Some(address)) {
            Ok(t) => t,
            Err(e) => {
                return RemoteOutput {
                    ok: false,
                    status: e,
                    stdout: String::new(),
                    stderr: String::new(),
                };
            }
        };
        let r = run_all(&[target], command, &self.opts)
            .await
            .pop()
            .expect("one result per target");
        RemoteOutput {
            ok: r.success(),
            status: match &r.outcome {
                Outcome::Exited(n) => format!("exit {n}"),
                Outcome::Failed(e) => e.clone(),
            },
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        }
    }
}
