//! `fabrs plan`, `create-env`, `status`, `destroy-env`: thin wrappers over
//! `fabrs_exec::ops` with the AWS cloud, the printer and progress bars.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, bail};
use fabrs_aws::{AwsCloud, ConnectOptions};
use fabrs_config::secrets::Secrets;
use fabrs_config::{Environment, Revision, RoleKind};
use fabrs_exec::apply::{ApplyOptions, Event, apply};
use fabrs_exec::ops::{self, OpError};
use fabrs_plan::desired::sha256_hex;
use fabrs_plan::plan::{Plan, fingerprint};
use fabrs_plan::resource::{Inventory, Kind, LaunchRef, Observed, Spec};
use fabrs_render::Renderer;
use serde::{Deserialize, Serialize};

use crate::Outcome;
use crate::args::{CreateEnvArgs, DestroyEnvArgs, GlobalArgs, OutputFormat, PlanArgs, PlanFormat, StatusArgs};
use crate::printer::{Printer, Progress, confirm};

/// A plan saved by `fabrs plan --out`: no secrets, only names and fingerprints.
#[derive(Serialize, Deserialize)]
struct SavedPlan {
    fabrs_saved_plan: u32,
    #[serde(with = "fabrs_config::revision::serde_or_none")]
    revision: Option<Revision>,
    environment_file_sha256: String,
    plan: Plan,
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) async fn connect(global: &GlobalArgs, env: &Environment) -> anyhow::Result<AwsCloud> {
    let opts = ConnectOptions {
        region: env.region.clone(),
        endpoint_url: global.endpoint_url.clone(),
        profile: global.profile.clone(),
    };
    Ok(AwsCloud::connect(opts).await?)
}

fn env_sha(env: &Environment) -> String {
    sha256_hex(&std::fs::read(&env.file).unwrap_or_default())
}

pub(crate) fn resolve_secrets(env: &Environment, printer: &mut Printer) -> Option<Secrets> {
    match fabrs_config::secrets::resolve(env, |k| std::env::var(k).ok()) {
        Ok(s) => Some(s),
        Err(d) => {
            super::report(&d, printer);
            None
        }
    }
}

/// What the file names but the account lacks: one line each, nothing changed.
fn preflight_failed(lines: &[String], printer: &mut Printer) -> Outcome {
    for l in lines {
        printer.error(&format!("preflight: {l}"));
    }
    printer.info("Nothing was changed: make these first (README: \"Before create-env\"), or fix the environment file.");
    Outcome::Failed
}

fn op_error(e: OpError) -> anyhow::Error {
    match e {
        OpError::Apply(a) => {
            let lines: Vec<String> = a.failures.iter().map(|(addr, e)| format!("{addr}: {e}")).collect();
            anyhow::anyhow!("{}", lines.join("\n       "))
        }
        other => anyhow::anyhow!("{other}"),
    }
}

pub fn plan(global: &GlobalArgs, args: &PlanArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let Some(env) = super::load(&args.env, &global.dir, printer) else {
        return Ok(Outcome::Failed);
    };
    let renderer = Renderer::new(&env.project_dir)?;
    // With the secrets at hand, the user-data diff can show the current
    // user-data with its secret values hidden; without, it is withheld.
    let secrets = fabrs_config::secrets::resolve(&env, |k| std::env::var(k).ok()).ok();
    let revision = revision_arg(args.revision.as_deref())?;
    let rt = runtime()?;
    let (plan, inventory, rendered) = rt
        .block_on(async {
            let cloud = connect(global, &env).await?;
            let r = match ops::make_plan(&cloud, &env, &renderer, revision.as_ref(), secrets.as_ref()).await {
                Ok((p, inv, rendered)) => ops::check_engine_version(&cloud, &env, &p)
                    .await
                    .map(|()| (p, inv, rendered))
                    .map_err(op_error),
                Err(e) => Err(op_error(e)),
            };
            let (ops_n, attempts) = cloud.api_calls();
            Ok::<_, anyhow::Error>((r?, ops_n, attempts))
        })
        .map(|(r, ops_n, attempts)| {
            printer.detail(&format!("api calls: {ops_n} operations, {attempts} attempts"));
            r
        })?;
    printer.detail(&format!(
        "dependency depth: {} changes, {} round trips (the longest chain of changes that wait for one another; \
         in round trips: a round of discovery, a call per change, a look for each one waited on)",
        fabrs_plan::graph::depth(&plan),
        fabrs_plan::graph::round_trips(&plan)
    ));
    let extras = rendered.review_extras(&plan, &inventory);
    let format = match args.format {
        Some(f) => f,
        None if args.json || printer.format == OutputFormat::Json => PlanFormat::Json,
        None => PlanFormat::Human,
    };
    match format {
        PlanFormat::Json => printer.json(&fabrs_plan::review::json(&plan, &extras)),
        PlanFormat::Markdown => printer.data(&fabrs_plan::review::markdown::markdown(&plan, &extras)),
        PlanFormat::Human if args.concise => printer.data(&fabrs_plan::review::concise(&plan)),
        PlanFormat::Human => printer.data(&fabrs_plan::review::human(&plan, &extras)),
    }
    if let Some(out) = &args.out {
        let revision = plan_revision(&plan).or(revision);
        let saved = SavedPlan {
            fabrs_saved_plan: 1,
            revision,
            environment_file_sha256: env_sha(&env),
            plan: plan.clone(),
        };
        std::fs::write(out, serde_json::to_vec_pretty(&saved)?)
            .with_context(|| format!("writing {}", out.display()))?;
        printer.info(&format!(
            "Saved the plan to {}: apply it with `fabrs create-env {} --plan {}`",
            out.display(),
            args.env,
            out.display()
        ));
    }
    if !plan.conflicts.is_empty() {
        return Ok(Outcome::Failed);
    }
    Ok(if args.detailed_exitcode && !plan.is_empty() {
        Outcome::Changes
    } else {
        Outcome::Ok
    })
}

/// `--revision`, validated.
fn revision_arg(r: Option<&str>) -> anyhow::Result<Option<Revision>> {
    r.map(Revision::parse).transpose().map_err(|e| anyhow::anyhow!("{e}"))
}

/// The revision the plan's launch specs install.
fn plan_revision(plan: &Plan) -> Option<Revision> {
    plan.changes.iter().find_map(|c| match c.desired.as_ref()? {
        Spec::LaunchConfiguration(lc) => lc.launch.revision.clone(),
        Spec::LaunchTemplate(lt) => lt.launch.revision.clone(),
        Spec::Instance(i) if i.role != RoleKind::Cache => i.launch.revision.clone(),
        _ => None,
    })
}

pub fn create(global: &GlobalArgs, args: &CreateEnvArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let Some(env) = super::load(&args.env, &global.dir, printer) else {
        return Ok(Outcome::Failed);
    };
    // Every input is checked before the first API call.
    let Some(secrets) = resolve_secrets(&env, printer) else {
        return Ok(Outcome::Failed);
    };
    let saved: Option<SavedPlan> = match &args.plan {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let saved: SavedPlan = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a plan saved by `fabrs plan --out`", path.display()))?;
            if saved.plan.project != env.project || saved.plan.environment != env.name {
                bail!(
                    "{} is a plan for {} / {}, not {} / {}",
                    path.display(),
                    saved.plan.project,
                    saved.plan.environment,
                    env.project,
                    env.name
                );
            }
            if saved.environment_file_sha256 != env_sha(&env) {
                bail!(
                    "{} changed since the plan was made: run `fabrs plan --out` again",
                    env.file.display()
                );
            }
            Some(saved)
        }
        None => None,
    };
    let renderer = Renderer::new(&env.project_dir)?;
    let revision = revision_arg(args.revision.as_deref())?;
    let rt = runtime()?;
    let quiet = global.quiet;
    rt.block_on(async {
        let cloud = connect(global, &env).await?;
        let revision = saved.as_ref().and_then(|s| s.revision.clone()).or(revision);
        let (plan, inventory, rendered) = match ops::make_plan(&cloud, &env, &renderer, revision.as_ref(), Some(&secrets)).await {
            Err(OpError::Preflight(lines)) => return Ok(preflight_failed(&lines, printer)),
            r => r.map_err(op_error)?,
        };
        // Two read-only checks, at once: the database engine version RDS
        // offers (when the plan makes or changes the master), and, before the
        // first write (and for --dry-run, which shows what would be written),
        // what the file names but fabrs does not make.
        let (engine, preflight) = tokio::join!(ops::check_engine_version(&cloud, &env, &plan), async {
            if plan.is_empty() { Ok(()) } else { ops::preflight(&cloud, &env, &inventory).await }
        });
        engine.map_err(op_error)?;
        if let Some(saved) = &saved {
            let now = fingerprint(&inventory);
            if now != saved.plan.inventory_fingerprint {
                bail!(
                    "the account changed since the plan was made (inventory {} then, {} now): run `fabrs plan --out` again",
                    &saved.plan.inventory_fingerprint[..12],
                    &now[..12]
                );
            }
        }
        match preflight {
            Err(OpError::Preflight(lines)) => return Ok(preflight_failed(&lines, printer)),
            r => r.map_err(op_error)?,
        }
        printer.data(&fabrs_plan::review::human(&plan, &rendered.review_extras(&plan, &inventory)));
        if !plan.conflicts.is_empty() {
            return Ok(Outcome::Failed);
        }
        if plan.is_empty() || args.dry_run {
            return Ok(Outcome::Ok);
        }
        if !confirm("Do you want fabrs to perform these actions?", args.yes || saved.is_some(), printer)? {
            printer.info("Apply cancelled.");
            return Ok(Outcome::Failed);
        }
        let opts = ApplyOptions { concurrency: args.concurrency, instance_timeout: args.instance_timeout, database_timeout: args.database_timeout, ..Default::default() };
        let progress = Progress::new(quiet);
        let events = |e: Event| progress.event(e);
        let started = Instant::now();
        let reports = ops::converge(&cloud, &env, &renderer, revision.as_ref(), &secrets, &opts, Some((plan, inventory, rendered)), &events)
            .await
            .map_err(op_error);
        progress.bar.finish_and_clear();
        let (ops_n, attempts) = cloud.api_calls();
        printer.detail(&format!("api calls: {ops_n} operations, {attempts} attempts"));
        let reports = reports?;
        let applied: usize = reports.iter().map(|r| r.applied.len()).sum();
        printer.success(&format!(
            "Apply complete: {applied} change(s) in {} pass(es), {:.1}s. {} / {} matches its environment file.",
            reports.len(),
            started.elapsed().as_secs_f64(),
            env.project,
            env.name
        ));
        Ok(Outcome::Ok)
    })
}

pub fn destroy(global: &GlobalArgs, args: &DestroyEnvArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let Some(env) = super::load(&args.env, &global.dir, printer) else {
        return Ok(Outcome::Failed);
    };
    let renderer = Renderer::new(&env.project_dir)?;
    let rt = runtime()?;
    let quiet = global.quiet;
    rt.block_on(async {
        let cloud = connect(global, &env).await?;
        let (_, inventory, _) = ops::make_plan(&cloud, &env, &renderer, None, None)
            .await
            .map_err(op_error)?;
        let destroy_opts = ops::DestroyOptions {
            skip_final_snapshot: args.skip_final_snapshot,
            disable_deletion_protection: args.disable_deletion_protection,
            delete_bucket_contents: args.delete_bucket_contents,
            stamp: utc_stamp(),
        };
        let (plan, db_delete) = ops::destroy_plan(&env, &inventory, &destroy_opts);
        // Decided before anything is deleted: a protected database stops the whole run.
        if !plan.conflicts.is_empty() {
            let why: Vec<&str> = plan.conflicts.iter().map(|c| c.message.as_str()).collect();
            bail!("refusing to destroy {} / {}: {}", env.project, env.name, why.join("; "));
        }
        printer.data(&fabrs_plan::display::human(&plan));
        for f in &inventory.foreign {
            printer.warn(&format!(
                "{} `{}` ({}) is not fabrs's: it is left alone",
                f.address.kind.as_str().replace('_', " "),
                f.name,
                f.id
            ));
        }
        if plan.is_empty() {
            return Ok(Outcome::Ok);
        }
        let question = format!(
            "Do you really want to destroy everything fabrs owns in {} / {}? There is no undo.",
            env.project, env.name
        );
        if !confirm(&question, args.yes, printer)? {
            printer.info("Destroy cancelled.");
            return Ok(Outcome::Failed);
        }
        let opts = ApplyOptions {
            concurrency: args.concurrency,
            db_delete,
            empty_buckets: args.delete_bucket_contents,
            ..Default::default()
        };
        let progress = Progress::new(quiet);
        let events = |e: Event| progress.event(e);
        let result = apply(&cloud, &plan, &inventory, &opts, &events)
            .await
            .map_err(|e| op_error(OpError::Apply(e)));
        progress.bar.finish_and_clear();
        let report = result?;
        printer.success(&format!(
            "Destroy complete: {} resource(s) destroyed.",
            report.applied.len()
        ));
        Ok(Outcome::Ok)
    })
}

/// Now in UTC as `20261127T221500Z` (the final snapshot's suffix): RFC 3339
/// to the second, without the separators an RDS identifier cannot hold.
fn utc_stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

pub fn status(global: &GlobalArgs, args: &StatusArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let Some(env) = super::load(&args.env, &global.dir, printer) else {
        return Ok(Outcome::Failed);
    };
    let renderer = Renderer::new(&env.project_dir)?;
    let rt = runtime()?;
    let (_, inventory, _) = rt.block_on(async {
        let cloud = connect(global, &env).await?;
        ops::make_plan(&cloud, &env, &renderer, None, None)
            .await
            .map_err(op_error)
    })?;
    let report = status_report(&env, &inventory);
    if args.json || printer.format == OutputFormat::Json {
        printer.json(&report);
    } else {
        printer.data(&status_text(&env, &report));
    }
    Ok(Outcome::Ok)
}

/// What `status` shows, built from the inventory. Fields are in alphabetical
/// order: that is the order of the JSON keys (`status --json`).
#[derive(Serialize)]
struct StatusReport {
    database: DatabaseStatus,
    environment: String,
    launch_configurations: Vec<String>,
    load_balancer: Option<LoadBalancerStatus>,
    project: String,
    region: String,
    /// By role name (`cache`, `web`, `worker`).
    roles: BTreeMap<&'static str, RoleStatus>,
}

#[derive(Serialize)]
struct LoadBalancerStatus {
    dns_name: Option<String>,
    name: String,
}

#[derive(Serialize)]
struct RoleStatus {
    instances: Vec<InstanceStatus>,
    /// The group's launch configuration or template version (fixed instances: none).
    launch: Option<LaunchRef>,
    /// The role's `fabrs:revision` tag, as found.
    revision: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum InstanceStatus {
    /// A member of an autoscaling group.
    Member {
        health: String,
        id: String,
        launch: String,
        state: String,
    },
    /// A fixed instance.
    Fixed {
        health: String,
        id: String,
        private_ip: Option<String>,
        state: String,
    },
}

impl InstanceStatus {
    fn id_state_health(&self) -> (&str, &str, &str) {
        match self {
            InstanceStatus::Member { id, state, health, .. } | InstanceStatus::Fixed { id, state, health, .. } => {
                (id, state, health)
            }
        }
    }
}

#[derive(Serialize)]
struct DatabaseStatus {
    master: Option<DbStatus>,
    replicas: Vec<DbStatus>,
}

#[derive(Serialize)]
struct DbStatus {
    endpoint: Option<String>,
    id: String,
    replica_of: Option<String>,
    state: String,
}

fn status_report(env: &Environment, inv: &Inventory) -> StatusReport {
    let mut roles = BTreeMap::new();
    for role in env.roles.keys() {
        let mut r = RoleStatus {
            instances: Vec::new(),
            launch: None,
            revision: None,
        };
        for o in inv.resources.values() {
            match &o.spec {
                Spec::AutoScalingGroup(a) if a.role == *role => {
                    r.launch = Some(a.launch.clone());
                    r.revision = a.tags.get(fabrs_plan::addr::TAG_REVISION).cloned();
                    r.instances
                        .extend(o.status.members.iter().map(|m| InstanceStatus::Member {
                            health: m.health.clone(),
                            id: m.id.clone(),
                            launch: m.launch.clone(),
                            state: m.state.clone(),
                        }));
                }
                Spec::Instance(i) if i.role == *role => {
                    r.revision = i.tags.get(fabrs_plan::addr::TAG_REVISION).cloned();
                    r.instances.push(InstanceStatus::Fixed {
                        health: lb_health(inv, &o.id),
                        id: o.id.clone(),
                        private_ip: o.status.private_ip.clone(),
                        state: o.status.state.clone(),
                    });
                }
                _ => {}
            }
        }
        roles.insert(role.as_str(), r);
    }
    let db = |o: &Observed| DbStatus {
        endpoint: o.status.endpoint.clone(),
        id: o.id.clone(),
        replica_of: match &o.spec {
            Spec::DbInstance(d) => d.replica_of.clone(),
            _ => None,
        },
        state: o.status.state.clone(),
    };
    let replicas = inv
        .resources
        .iter()
        .filter(|(a, _)| a.kind == Kind::DbInstance && a.name != "master")
        .map(|(_, o)| db(o))
        .collect();
    StatusReport {
        database: DatabaseStatus {
            master: inv.resources.get(&fabrs_plan::addr::db_master()).map(db),
            replicas,
        },
        environment: env.name.clone(),
        launch_configurations: inv.launch_configurations.keys().cloned().collect(),
        load_balancer: inv
            .resources
            .get(&fabrs_plan::addr::load_balancer())
            .map(|o| LoadBalancerStatus {
                dns_name: o.status.endpoint.clone(),
                name: o.id.clone(),
            }),
        project: env.project.clone(),
        region: env.region.clone(),
        roles,
    }
}

fn lb_health(inv: &Inventory, instance: &str) -> String {
    inv.resources
        .get(&fabrs_plan::addr::load_balancer())
        .and_then(|o| o.status.members.iter().find(|m| m.id == instance))
        .map(|m| m.health.clone())
        .unwrap_or_default()
}

fn status_text(env: &Environment, r: &StatusReport) -> String {
    use std::fmt::Write;
    let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let _ = writeln!(out, "{} / {} ({})", env.project, env.name, env.region);
    match &r.load_balancer {
        Some(lb) => {
            let _ = writeln!(out, "load balancer  {}  {}", lb.name, s(&lb.dns_name));
        }
        None => {
            let _ = writeln!(out, "load balancer  (none)");
        }
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:<22} {:<12} {:<14} {}",
        "ROLE", "INSTANCE", "STATE", "ELB HEALTH", "LAUNCH"
    );
    for (role, info) in &r.roles {
        let launch = match &info.launch {
            Some(LaunchRef::Configuration(name)) => name.clone().unwrap_or_else(|| "-".into()),
            Some(LaunchRef::Template { name, version }) => {
                format!("{name} v{}", version.as_deref().unwrap_or("?"))
            }
            None => "-".into(),
        };
        if info.instances.is_empty() {
            let _ = writeln!(out, "{:<8} {:<22} {:<12} {:<14} {}", role, "(none)", "-", "-", launch);
        }
        for i in &info.instances {
            let (id, state, health) = i.id_state_health();
            let health = if health.is_empty() { "-" } else { health };
            let l = match i {
                InstanceStatus::Member { launch: l, .. } if !l.is_empty() => l.clone(),
                _ => launch.clone(),
            };
            let _ = writeln!(out, "{:<8} {:<22} {:<12} {:<14} {}", role, id, state, health, l);
        }
        // The cache server runs no release.
        if let Some(rev) = info.revision.as_ref().filter(|_| *role != RoleKind::Cache.as_str()) {
            let _ = writeln!(out, "{:<8} revision {rev}", "");
        }
    }
    let _ = writeln!(out, "\nDATABASE");
    if let Some(m) = &r.database.master {
        let _ = writeln!(out, "master   {:<32} {:<10} {}", m.id, m.state, s(&m.endpoint));
    } else {
        let _ = writeln!(out, "master   (none)");
    }
    for rep in &r.database.replicas {
        let _ = writeln!(
            out,
            "replica  {:<32} {:<10} {}  (of {})",
            rep.id,
            rep.state,
            s(&rep.endpoint),
            s(&rep.replica_of)
        );
    }
    out
}
