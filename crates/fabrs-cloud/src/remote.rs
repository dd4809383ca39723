//! What deploy needs to run a command on a server (SSH in production; the
//! CLI implements it with `fabrs-remote`). No SSH types here.

use std::future::Future;

/// One host's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOutput {
    /// The command ran and exited 0.
    pub ok: bool,
    /// `exit 0`, `exit 3`, `connect failed: …`, `timed out after 600 s`.
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

pub trait Remote: Send + Sync {
    /// Run a shell command line on the server `instance_id` whose private
    /// address is `address` (the implementation may map the id elsewhere).
    fn run(&self, instance_id: &str, address: &str, command: &str) -> impl Future<Output = RemoteOutput> + Send;
}
