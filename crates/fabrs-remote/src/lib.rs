//! fabrs-remote: run a command on many servers over SSH.
//!
//! The system `ssh` client does the connecting (the `openssh` crate starts one
//! ControlMaster per host and runs commands over its control socket), so the
//! user's `~/.ssh/config` (or `-F`), ProxyJump/bastions, agents and
//! known_hosts apply as they do for `ssh` itself.
//!
//! # What reaches a shell
//!
//! Nothing here runs a local shell. Host, port and user are separate `ssh`
//! arguments (`-p PORT -l USER HOST`), never interpolated into a command line;
//! they are also checked (a host such as `-oProxyCommand=…` is refused, see
//! [`Target::validate`]). The remote command is, as always with ssh, one string
//! that the remote user's login shell runs (`$SHELL -c COMMAND`): whoever
//! builds it quotes what goes into it ([`shell_quote`], as
//! [`maintenance_command`] does).
//!
//! # Host keys
//!
//! The `openssh` crate always passes `-o StrictHostKeyChecking=accept-new` and
//! `-o BatchMode=yes` on the command line, so those override the config file:
//! a new host's key is recorded, a changed one is refused, nothing prompts.
//!
//! This crate prints nothing; [`prefixed_lines`] is for the caller to print.

mod adapter;
mod endpoints;
mod output;
mod quote;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, SessionBuilder, Stdio};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use adapter::SshRemote;
pub use endpoints::{EndpointError, parse_endpoints};
pub use output::prefixed_lines;
pub use quote::{maintenance_command, shell_quote};

/// How many hosts [`run_all`] works on at once unless told otherwise.
pub const DEFAULT_PARALLEL: usize = 16;

/// One server to run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// What the output calls it (an instance id, say).
    pub label: String,
    /// Host name or IP address (no `user@`, no port: those are separate).
    pub host: String,
    pub port: u16,
    /// Login user; empty leaves it to the ssh config (`User`) or ssh's default.
    pub user: String,
}

impl Target {
    /// `user@host:port`, for messages.
    pub fn destination(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.user.is_empty() {
            format!("{host}:{}", self.port)
        } else {
            format!("{}@{host}:{}", self.user, self.port)
        }
    }

    /// Host and user must be plain names: ssh takes an argument that starts
    /// with `-` as an option (`-oProxyCommand=…` would run a local command),
    /// `@` in a host changes the user, and ssh expands `%r`/`%h` into
    /// ProxyCommand/LocalCommand shell lines.
    pub fn validate(&self) -> Result<(), String> {
        check_host(&self.host)?;
        let u = &self.user;
        if !u.is_empty()
            && (u.starts_with('-')
                || !u
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "invalid ssh user {u:?}: letters, digits, '.', '_' and '-' only, not starting with '-'"
            ));
        }
        if self.port == 0 {
            return Err("invalid ssh port 0".into());
        }
        Ok(())
    }
}

/// A host name, IPv4 or IPv6 address (without brackets).
pub(crate) fn check_host(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("empty host".into());
    }
    if h.starts_with('-') {
        return Err(format!("invalid host {h:?}: must not start with '-'"));
    }
    if !h
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'))
    {
        return Err(format!(
            "invalid host {h:?}: letters, digits, '.', '-', '_', ':' and '%' only"
        ));
    }
    Ok(())
}

/// How to connect and how long to wait.
#[derive(Clone, Debug)]
pub struct SshOptions {
    /// `ssh -F FILE` (then `~/.ssh/config` is not read, as with ssh).
    pub config_file: Option<PathBuf>,
    /// `ssh -i FILE -o IdentitiesOnly=yes`.
    pub identity: Option<PathBuf>,
    /// Per host, for connecting: passed to ssh as `-o ConnectTimeout=` (whole
    /// seconds, at least 1; each TCP connect and banner exchange, jump hosts
    /// included), and the whole connection (authentication too) is given up
    /// 1 s after it, as `Failed("cannot connect to …: timed out after …")`.
    pub connect_timeout: Duration,
    /// Per host, from the moment the command starts (after connecting) to its
    /// exit. On expiry that host's outcome is `Failed("timed out after …")`
    /// with the output read so far; the connection is closed, but without a
    /// terminal the remote command gets no SIGHUP and may run on.
    pub command_timeout: Duration,
    /// Hosts worked on at once (at least 1).
    pub parallel: usize,
    /// Where the per-host control socket directories go. `None`: the openssh
    /// crate's default, `$XDG_STATE_HOME` or `~/.local/state`. Unix socket
    /// paths are limited to ~100 bytes, and this directory's path plus about
    /// 45 bytes must fit.
    pub control_dir: Option<PathBuf>,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            config_file: None,
            identity: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(600),
            parallel: DEFAULT_PARALLEL,
            control_dir: None,
        }
    }
}

/// What happened on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and exited with this status.
    Exited(i32),
    /// It did not run to an exit status: cannot connect, timed out, killed by
    /// a signal or the connection was lost. The text is one line.
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct HostResult {
    pub target: Target,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub outcome: Outcome,
}

impl HostResult {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.outcome == Outcome::Exited(0)
    }
}

/// Run `command` on every target at once (at most `opts.parallel` at a time).
/// `command` is one shell command line, run by each remote user's login shell.
/// The results are in the order of `targets`. Needs a tokio runtime (with the
/// time driver). Dropping the future aborts the hosts still running, which
/// closes their connections.
pub async fn run_all(targets: &[Target], command: &str, opts: &SshOptions) -> Vec<HostResult> {
    let limit = Arc::new(Semaphore::new(opts.parallel.max(1)));
    let command: Arc<str> = Arc::from(command);
    let opts = Arc::new(opts.clone());
    let mut set = JoinSet::new();
    let mut index = std::collections::HashMap::new();
    for (i, target) in targets.iter().enumerate() {
        let (limit, command, opts, target) = (limit.clone(), command.clone(), opts.clone(), target.clone());
        let handle = set.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("the semaphore is never closed");
            run_one(target, &command, &opts).await
        });
        index.insert(handle.id(), i);
    }
    let mut results: Vec<Option<HostResult>> = vec![None; targets.len()];
    while let Some(done) = set.join_next_with_id().await {
        match done {
            Ok((id, r)) => results[index[&id]] = Some(r),
            Err(e) => {
                let i = index[&e.id()];
                results[i] = Some(failed(&targets[i], format!("internal error: {e}")));
            }
        }
    }
    results.into_iter().map(|r| r.expect("every task reported")).collect()
}

fn failed(target: &Target, why: String) -> HostResult {
    HostResult {
        target: target.clone(),
        stdout: Vec::new(),
        stderr: Vec::new(),
        outcome: Outcome::Failed(why),
    }
}

/// `1s`, `1.5s`, `250ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() > 0 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// An error and its sources on one line; openssh's own top-level texts
/// ("failed to connect to the remote host") add nothing to ssh's message.
fn describe(e: &openssh::Error) -> String {
    use std::error::Error as _;
    let text = match (e, e.source()) {
        (openssh::Error::Connect(_) | openssh::Error::Master(_), Some(src)) => src.to_string(),
        _ => {
            let mut parts = vec![e.to_string()];
            let mut src = e.source();
            while let Some(s) = src {
                parts.push(s.to_string());
                src = s.source();
            }
            parts.join(": ")
        }
    };
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.join("; ")
}

async fn run_one(target: Target, command: &str, opts: &SshOptions) -> HostResult {
    if let Err(why) = target.validate() {
        return failed(&target, why);
    }

    let connect_timeout = opts.connect_timeout.max(Duration::from_secs(1));
    let mut b = SessionBuilder::default();
    b.port(target.port)
        .connect_timeout(connect_timeout)
        .known_hosts_check(KnownHosts::Add)
        // A master whose owner died (this process killed) goes away by
        // itself once no command uses it; a live owner closes it when done.
        .control_persist(ControlPersist::IdleFor(std::num::NonZeroUsize::new(60).unwrap()));
    if !target.user.is_empty() {
        b.user(target.user.clone());
    }
    if let Some(f) = &opts.config_file {
        b.config_file(f);
    }
    if let Some(k) = &opts.identity {
        b.keyfile(k);
    }
    if let Some(d) = &opts.control_dir {
        b.control_directory(d);
    }

    // Connecting runs as its own task: when our deadline passes first, the
    // task still finishes, and dropping the session it got closes the master
    // instead of leaving a half-started `ssh -M` behind. ssh's own
    // ConnectTimeout usually fires first, with a better message.
    let host = target.host.clone();
    let mut connecting = tokio::spawn(async move { b.connect_mux(host).await });
    let session = match tokio::time::timeout(connect_timeout + Duration::from_secs(1), &mut connecting).await {
        Err(_) => {
            return failed(
                &target,
                format!(
                    "cannot connect to {}: timed out after {}",
                    target.destination(),
                    human(connect_timeout)
                ),
            );
        }
        Ok(Err(e)) => return failed(&target, format!("internal error: {e}")),
        Ok(Ok(Err(e))) => {
            return failed(
                &target,
                format!("cannot connect to {}: {}", target.destination(), describe(&e)),
            );
        }
        Ok(Ok(Ok(s))) => s,
    };

    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let run = async {
        let mut child = session
            .raw_command(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await?;
        let mut out = child.stdout().take().expect("piped");
        let mut err = child.stderr().take().expect("piped");
        let (o, e) = tokio::join!(out.read_to_end(&mut stdout), err.read_to_end(&mut stderr));
        o.and(e).map_err(openssh::Error::ChildIo)?;
        child.wait().await
    };
    let outcome = match tokio::time::timeout(opts.command_timeout, run).await {
        Err(_) => Outcome::Failed(format!("timed out after {}", human(opts.command_timeout))),
        Ok(Ok(status)) => match status.code() {
            Some(code) => Outcome::Exited(code),
            None => Outcome::Failed("the remote command ended without an exit status".into()),
        },
        // openssh reports exit status 127 as this error.
        Ok(Err(openssh::Error::Remote(e))) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Exited(127),
        Ok(Err(openssh::Error::RemoteProcessTerminated)) => {
            Outcome::Failed("the remote command was killed by a signal, or the connection was lost".into())
        }
        Ok(Err(e)) => Outcome::Failed(describe(&e)),
    };
    // Stops the master now (dropping would too, with a blocking write).
    let _ = session.close().await;
    HostResult {
        target,
        stdout,
        stderr,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, user: &str) -> Target {
        Target {
            label: "x".into(),
            host: host.into(),
            port: 22,
            user: user.into(),
        }
    }

    #[test]
    fn hosts_and_users_that_ssh_would_misread_are_refused() {
        assert!(t("10.0.0.1", "ubuntu").validate().is_ok());
        assert!(t("web-1.example.com", "").validate().is_ok());
        assert!(t("fe80::1%eth0", "deploy_user").validate().is_ok());
        let err = t("-oProxyCommand=touch /tmp/x", "ubuntu").validate().unwrap_err();
        assert!(err.contains("must not start with '-'"), "{err}");
        assert!(t("root@host", "ubuntu").validate().is_err());
        assert!(t("a b", "ubuntu").validate().is_err());
        assert!(t("host", "-oFoo").validate().is_err());
        assert!(t("host", "a;id").validate().is_err());
        assert!(t("host", "a$(id)").validate().is_err());
        assert!(t("", "a").validate().is_err());
    }

    #[test]
    fn destinations() {
        assert_eq!(t("10.0.0.1", "ubuntu").destination(), "ubuntu@10.0.0.1:22");
        assert_eq!(t("::1", "").destination(), "[::1]:22");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(1)), "1s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_invalid_target_fails_without_running_ssh() {
        let r = run_all(&[t("-oProxyCommand=x", "u")], "true", &SshOptions::default()).await;
        assert_eq!(r.len(), 1);
        assert!(matches!(&r[0].outcome, Outcome::Failed(m) if m.contains("must not start")));
        assert!(!r[0].success());
    }
}
