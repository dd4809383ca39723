//! `fabrs release push`, `deploy`, `rotate`, `rollback`, `history`, `ssh`,
//! `maintenance`: thin wrappers over `fabrs_exec::deploy` with AWS, S3 and
//! the system ssh client.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use fabrs_aws::{AwsCloud, S3Store};
use fabrs_cloud::{PutOutcome, Store};
use fabrs_config::{Environment, RoleKind};
use fabrs_exec::deploy::{self, Actor, DeployError, Deployer, Operation, Settings, SystemClock};
use fabrs_plan::desired::sha256_hex;
use fabrs_remote::{SshOptions, SshRemote};
use fabrs_render::{Layout, Renderer};

use super::deploy_events::Events;
use super::env::{connect, resolve_secrets, runtime};
use crate::Outcome;
use crate::args::{
    DeployArgs, GlobalArgs, HistoryArgs, MaintenanceArgs, OnOff, OutputFormat, ReleasePushArgs, RollArgs, RollbackArgs,
    RotateArgs, SshArgs, SshCmdArgs,
};
use crate::printer::{Printer, Progress};

// ------------------------------------------------------------------ release

pub fn release_push(global: &GlobalArgs, args: &ReleasePushArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let Some(env) = super::load(&args.env, &global.dir, printer) else {
        return Ok(Outcome::Failed);
    };
    deploy::check_revision(&args.revision)?;
    let bytes = std::fs::read(&args.path).with_context(|| format!("reading {}", args.path.display()))?;
    let sha = sha256_hex(&bytes);
    let key = env.artifact_key(&args.revision);
    let rt = runtime()?;
    rt.block_on(async {
        let cloud = connect(global, &env).await?;
        let store = cloud.store(&env.artifacts.bucket);
        let meta = BTreeMap::from([
            ("sha256".to_string(), sha.clone()),
            ("revision".to_string(), args.revision.clone()),
        ]);
        let url = format!("s3://{}/{key}", env.artifacts.bucket);
        match store.put_file_new(&key, &args.path, meta).await? {
            PutOutcome::Created => {
                printer.success(&format!(
                    "Pushed {} ({} bytes, sha256 {}) to {url}",
                    args.path.display(),
                    bytes.len(),
                    &sha[..12]
                ));
                Ok(Outcome::Ok)
            }
            PutOutcome::AlreadyExists => {
                let there = store.head(&key).await?.and_then(|m| m.metadata.get("sha256").cloned());
                if there.as_deref() == Some(sha.as_str()) {
                    printer.info(&format!(
                        "{url} already holds this artifact (sha256 {}): nothing to do",
                        &sha[..12]
                    ));
                    Ok(Outcome::Ok)
                } else {
                    bail!(
                        "{url} already holds a different artifact for revision {} (sha256 {}, this one {}): \
                         a revision's release never changes; build a new revision",
                        args.revision,
                        there.as_deref().map(|s| &s[..12.min(s.len())]).unwrap_or("unknown"),
                        &sha[..12]
                    )
                }
            }
        }
    })
}

// ------------------------------------------------------------------ ssh

/// The SSH adapter of the file and the command line's `--ssh-*` flags.
fn ssh_remote(args: &SshArgs, env: &Environment) -> anyhow::Result<SshRemote> {
    let opts = SshOptions {
        config_file: args.ssh_config.clone(),
        identity: args.ssh_identity.clone(),
        command_timeout: args.ssh_timeout,
        ..SshOptions::default()
    };
    SshRemote::new(args.ssh_endpoints.as_deref(), opts, &env.ssh.user).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Run on every server of a role; print per-host output; Ok(all succeeded).
async fn run_on_role(
    cloud: &AwsCloud,
    env: &Environment,
    role: RoleKind,
    ssh: &SshRemote,
    command: &str,
    printer: &mut Printer,
) -> anyhow::Result<bool> {
    let instances = fabrs_exec::ops::role_servers(cloud, env, role).await?;
    if instances.is_empty() {
        bail!("{} / {} has no running {role} server", env.project, env.name);
    }
    let mut targets = Vec::new();
    for (id, a) in &instances {
        targets.push(ssh.target(id, a.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let results = fabrs_remote::run_all(&targets, command, &ssh.opts).await;
    for line in fabrs_remote::prefixed_lines(&results) {
        printer.data(&line);
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.success())
        .map(|r| r.target.label.as_str())
        .collect();
    if !failed.is_empty() {
        printer.error(&format!(
            "{} of {} {role} server(s) failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        ));
    }
    Ok(failed.is_empty())
}

pub fn ssh(global: &GlobalArgs, args: &SshCmdArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let Some(env) = super::load(&args.env, &global.dir, printer) else {
        return Ok(Outcome::Failed);
    };
    let role = RoleKind::parse(&args.role)
        .filter(|r| env.roles.contains_key(r))
        .ok_or_else(|| anyhow::anyhow!("{} has no role `{}`", env.file.display(), args.role))?;
    let ssh = ssh_remote(&args.ssh, &env)?;
    let command = args.command.join(" ");
    let rt = runtime()?;
    let ok = rt.block_on(async {
        let cloud = connect(global, &env).await?;
        run_on_role(&cloud, &env, role, &ssh, &command, printer).await
    })?;
    Ok(if ok { Outcome::Ok } else { Outcome::Failed })
}

pub fn maintenance(global: &GlobalArgs, args: &MaintenanceArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let Some(env) = super::load(&args.env, &global.dir, printer) else {
        return Ok(Outcome::Failed);
    };
    let ssh = ssh_remote(&args.ssh, &env)?;
    let on = args.state == OnOff::On;
    let flag = Layout::production().maintenance_flag(&env);
    let command = fabrs_remote::maintenance_command(&flag, on, ssh.sudo());
    let rt = runtime()?;
    let ok = rt.block_on(async {
        let cloud = connect(global, &env).await?;
        run_on_role(&cloud, &env, RoleKind::Web, &ssh, &command, printer).await
    })?;
    if ok {
        printer.success(&format!(
            "Maintenance {} on every web server of {} / {}{}",
            if on { "on" } else { "off" },
            env.project,
            env.name,
            if on {
                " (pages answer 503; the load balancer's health check still passes)"
            } else {
                ""
            }
        ));
        Ok(Outcome::Ok)
    } else {
        Ok(Outcome::Failed)
    }
}

// ------------------------------------------------------------------ deploy

fn settings(env: &Environment, roll: &RollArgs) -> Settings {
    let mut s = Settings::from_env(env);
    if let Some(b) = roll.batch_size {
        s.batch_size = b;
    }
    if let Some(f) = roll.healthy_floor {
        s.healthy_floor = f;
    }
    if let Some(t) = roll.health_timeout {
        s.health_timeout = t;
    }
    if let Some(w) = roll.lock_wait {
        s.lock_wait = w;
    }
    s.break_lock = roll.break_lock;
    s.poll = roll.poll_interval;
    s
}

fn actor() -> Actor {
    let who = std::env::var("FABRS_ACTOR")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    Actor { who, host }
}

pub fn deploy(global: &GlobalArgs, args: &DeployArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let operation = deploy::check_revision(&args.revision).map(|revision| Operation::Deploy { revision });
    roll(global, &args.env, operation, &args.roll, &args.ssh, printer)
}

pub fn rotate(global: &GlobalArgs, args: &RotateArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let mut roles = Vec::new();
    for r in &args.role {
        match RoleKind::parse(r) {
            Some(k @ (RoleKind::Web | RoleKind::Worker)) => roles.push(k),
            _ => bail!("--role {r}: only the autoscaled roles web and worker are rotated"),
        }
    }
    roll(
        global,
        &args.env,
        Ok(Operation::Rotate { roles }),
        &args.roll,
        &args.ssh,
        printer,
    )
}

pub fn rollback(global: &GlobalArgs, args: &RollbackArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    roll(
        global,
        &args.env,
        args.to
            .as_deref()
            .map(deploy::check_revision)
            .transpose()
            .map(|to| Operation::Rollback { to }),
        &args.roll,
        &args.ssh,
        printer,
    )
}

fn roll(
    global: &GlobalArgs,
    env_arg: &str,
    // A bad revision is reported after the environment file's problems, as before.
    operation: Result<Operation, DeployError>,
    roll: &RollArgs,
    ssh_args: &SshArgs,
    printer: &mut Printer,
) -> anyhow::Result<Outcome> {
    let Some(env) = super::load(env_arg, &global.dir, printer) else {
        return Ok(Outcome::Failed);
    };
    let operation = operation?;
    // `--output json`: one JSON object per event on stdout; the human
    // progress still goes to stderr.
    let events = (printer.format == OutputFormat::Json).then(|| Events::new(printer.json_lines()));
    if let Some(ev) = &events {
        ev.started(operation.verb(), &env.project, &env.name);
    }
    let result = roll_inner(global, &env, operation, roll, ssh_args, printer, events.as_ref());
    if let (Some(ev), Err(e)) = (&events, &result) {
        ev.result("failed", serde_json::json!({ "error": format!("{e:#}") }));
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn roll_inner(
    global: &GlobalArgs,
    env: &Environment,
    operation: Operation,
    roll: &RollArgs,
    ssh_args: &SshArgs,
    printer: &mut Printer,
    events: Option<&Events>,
) -> anyhow::Result<Outcome> {
    let env = env.clone();
    let Some(secrets) = resolve_secrets(&env, printer) else {
        return Ok(Outcome::Failed);
    };
    let ssh = ssh_remote(ssh_args, &env)?;
    let settings = settings(&env, roll);
    let renderer = Renderer::new(&env.project_dir)?;
    let rt = runtime()?;
    rt.block_on(async {
        let cloud = connect(global, &env).await?;
        let store: S3Store = cloud.store(&env.artifacts.bucket);
        let clock = SystemClock::new();
        // The preflight says nothing; its refusals are the error.
        let silent = |_: deploy::Note| {};
        let preflight = Deployer {
            cloud: &cloud,
            store: &store,
            remote: &ssh,
            clock: &clock,
            env: &env,
            renderer: &renderer,
            secrets: &secrets,
            settings: &settings,
            notes: &silent,
        };
        // Preflight without the lock: fail fast, or show the steps.
        let prepared = preflight.prepare(&operation).await.map_err(deploy_error)?;
        if roll.dry_run {
            for s in prepared.steps(&env, &settings) {
                match events {
                    Some(ev) => ev.planned(&s),
                    None => printer.data(&s),
                }
            }
            if let Some(ev) = events {
                ev.result("dry_run", serde_json::json!({ "revision": prepared.revision, "from_revision": prepared.from_revision }));
            }
            printer.info("Dry run: nothing was changed.");
            return Ok(Outcome::Ok);
        }
        if prepared.is_empty() {
            if let Some(ev) = events {
                ev.result("no_changes", serde_json::json!({ "revision": prepared.revision, "from_revision": prepared.from_revision }));
            }
            printer.info(&format!(
                "No changes: {} / {} already runs revision {} with these launch settings.",
                env.project, env.name, prepared.revision
            ));
            return Ok(Outcome::Ok);
        }
        let progress = Progress::new(printer_quiet(printer));
        let notes = |n: deploy::Note| {
            if let Some(ev) = events {
                ev.note(n.clone());
            }
            progress.note(n)
        };
        let deployer = Deployer {
            notes: &notes,
            ..preflight
        };
        let cancel = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let r = deployer.run(prepared, &actor(), cancel).await;
        progress.bar.finish_and_clear();
        match r {
            Ok(report) if !report.changed => {
                if let Some(ev) = events {
                    ev.result("no_changes", serde_json::json!({ "revision": report.record.revision, "from_revision": report.record.from_revision }));
                }
                printer.info(&format!(
                    "No changes: {} / {} already runs revision {} (another deploy got there first).",
                    env.project, env.name, report.record.revision
                ));
                Ok(Outcome::Ok)
            }
            Ok(report) => {
                let rec = &report.record;
                if let Some(ev) = events {
                    ev.result(
                        "ok",
                        serde_json::json!({ "revision": rec.revision, "from_revision": rec.from_revision, "duration_secs": rec.duration_secs }),
                    );
                }
                printer.success(&format!(
                    "{} {} / {}: revision {} -> {} in {}s",
                    operation.verb(),
                    env.project,
                    env.name,
                    rec.from_revision
                        .as_deref()
                        .unwrap_or(fabrs_config::revision::NO_REVISION),
                    rec.revision,
                    rec.duration_secs
                ));
                Ok(Outcome::Ok)
            }
            Err(e) => Err(deploy_error(e)),
        }
    })
}

fn printer_quiet(printer: &Printer) -> bool {
    printer.is_quiet()
}

fn deploy_error(e: DeployError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub fn history(global: &GlobalArgs, args: &HistoryArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let Some(env) = super::load(&args.env, &global.dir, printer) else {
        return Ok(Outcome::Failed);
    };
    let rt = runtime()?;
    let records = rt.block_on(async {
        let cloud = connect(global, &env).await?;
        let store = cloud.store(&env.artifacts.bucket);
        deploy::history(&store, &env).await.map_err(deploy_error)
    })?;
    if args.json || printer.format == OutputFormat::Json {
        printer.json(&serde_json::to_value(&records)?);
        return Ok(Outcome::Ok);
    }
    if records.is_empty() {
        printer.info(&format!("No deploys recorded for {} / {}.", env.project, env.name));
        return Ok(Outcome::Ok);
    }
    let mut lines = vec![format!(
        "{:<20}  {:<8}  {:<12}  {:<12}  {:<11}  {:>6}  WHO",
        "STARTED", "OP", "FROM", "REVISION", "RESULT", "TOOK"
    )];
    for r in &records {
        lines.push(format!(
            "{:<20}  {:<8}  {:<12}  {:<12}  {:<11}  {:>5}s  {}@{}",
            r.started,
            r.operation,
            r.from_revision.as_deref().unwrap_or("none"),
            r.revision,
            r.result,
            r.duration_secs,
            r.who,
            r.host
        ));
        if !r.message.is_empty() && r.result != "succeeded" {
            lines.push(format!("    {}", r.message));
        }
    }
    printer.data(&lines.join("\n"));
    Ok(Outcome::Ok)
}
