//! The environment operations behind `plan`, `create-env`, `status` and
//! `destroy-env`, generic over the cloud.

use std::collections::BTreeMap;

use fabrs_cloud::{Cloud, CloudError, DbDelete, Fleet, Preconditions, Scope};
use fabrs_config::revision::or_none;
use fabrs_config::secrets::Secrets;
use fabrs_config::{Ami, Environment, Revision, RoleKind};
use fabrs_plan::addr;
use fabrs_plan::desired::{Desired, RoleLaunch, desired_state, launch_configuration_prefix, sha256_hex};
use fabrs_plan::plan::{Action, Change, Conflict, Plan, engine_major, engine_version_satisfied, plan};
use fabrs_plan::resource::{Address, Inventory, Kind, LaunchConfigurationSpec, Observed, Spec, Status, VpcRef};
use fabrs_render::{Facts, Options, Renderer, SecretMode};

use crate::apply::{ApplyError, ApplyOptions, ApplyReport, Event, apply};

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Render(#[from] fabrs_render::RenderError),
    /// Preconditions the account does not have, one line each (`AMI ami-…
    /// does not exist in us-east-1 (roles web, worker)`), all of them.
    #[error("preflight: {}", .0.join("; "))]
    Preflight(Vec<String>),
    #[error("the plan has conflicts: {0}")]
    Conflicts(String),
    #[error("{0}")]
    Other(String),
}

pub fn scope(env: &Environment, desired: &Desired) -> Scope {
    Scope {
        project: env.project.clone(),
        environment: env.name.clone(),
        region: env.region.clone(),
        vpc: match &env.network.vpc {
            fabrs_config::Vpc::Default => VpcRef::Default,
            fabrs_config::Vpc::Id(id) => VpcRef::Id(id.clone()),
        },
        names: desired.names(),
        launch_configuration_prefix: launch_configuration_prefix(env),
        image_parameters: fabrs_plan::images::parameters(env),
        db_identifiers: std::iter::once(fabrs_config::names::db_master(env))
            .chain((0..fabrs_config::MAX_REPLICAS).map(|n| fabrs_config::names::db_replica(env, n)))
            .collect(),
        kinds: None,
    }
}

/// Addresses the app servers' user-data needs, from what exists.
pub fn facts(env: &Environment, inventory: &Inventory) -> Option<Facts> {
    let endpoint = |a: &Address| inventory.resources.get(a).and_then(|o| o.status.endpoint.clone());
    let db_master_host = endpoint(&addr::db_master())?;
    let db_replica_host = if env.database.replicas > 0 {
        Some(endpoint(&addr::db_replica(0))?)
    } else {
        None
    };
    let cache_host = if env.roles.contains_key(&RoleKind::Cache) {
        inventory
            .resources
            .get(&addr::instance(RoleKind::Cache, 0))
            .and_then(|o| o.status.private_ip.clone())?
    } else {
        "127.0.0.1".into()
    };
    Some(Facts {
        db_master_host,
        db_replica_host,
        cache_host,
    })
}

/// The revision servers should install: the one asked for, else the one the
/// web role runs now, else none yet.
pub fn current_revision(inventory: &Inventory) -> Option<Revision> {
    let tag = inventory.resources.values().find_map(|o| match &o.spec {
        Spec::AutoScalingGroup(a) if a.role == RoleKind::Web => a.tags.get(addr::TAG_REVISION),
        Spec::Instance(i) if i.role == RoleKind::Web => i.tags.get(addr::TAG_REVISION),
        _ => None,
    })?;
    Revision::read_back(tag)
}

/// Per role: the user-data fingerprint (when knowable) and, when secrets are
/// given, the full user-data to launch with.
pub struct Rendered {
    pub launches: BTreeMap<RoleKind, RoleLaunch>,
    pub user_data: BTreeMap<RoleKind, String>,
    /// Per role, the review render (secrets as placeholders), when knowable:
    /// the "after" side of the plan's user-data diff.
    pub review: BTreeMap<RoleKind, String>,
    /// With secrets: every form each secret value takes in the rendered
    /// user-data (raw, URL-encoded, quoted…) and its placeholder, to hide
    /// the values in the observed user-data (`review::userdata::redact`).
    pub secret_forms: Option<Vec<(String, String)>>,
    /// How each `ami: resolve:ssm:…` was resolved (`images::Resolved::notes`).
    pub image_notes: Vec<String>,
}

impl Rendered {
    /// What a review shows beside the plan: the user-data diffs.
    pub fn review_extras(&self, plan: &Plan, inventory: &Inventory) -> fabrs_plan::review::Extras {
        fabrs_plan::review::Extras {
            user_data: fabrs_plan::review::userdata::changes(
                plan,
                &inventory.user_data,
                &self.review,
                self.secret_forms.as_deref(),
            ),
            images: self.image_notes.clone(),
        }
    }
}

pub fn render_launches(
    env: &Environment,
    renderer: &Renderer,
    inventory: &Inventory,
    revision: Option<&Revision>,
    secrets: Option<&Secrets>,
) -> Result<Rendered, OpError> {
    let known = facts(env, inventory);
    let mut launches = BTreeMap::new();
    let mut user_data = BTreeMap::new();
    let mut review_texts = BTreeMap::new();
    let mut forms: Option<Vec<(String, String)>> = secrets.map(|s| {
        s.iter()
            .map(|(name, v)| (v.expose().to_string(), fabrs_render::placeholder(name)))
            .collect()
    });
    for role in env.roles.keys() {
        // The cache server's files use no addresses of other resources.
        let role_facts = match (role, &known) {
            (RoleKind::Cache, _) => Some(Facts::placeholders(env)),
            (_, Some(f)) => Some(f.clone()),
            (_, None) => None,
        };
        // The cache server installs no release: a new revision must not replace it.
        let revision = if *role == RoleKind::Cache { None } else { revision };
        let Some(f) = role_facts else {
            launches.insert(
                *role,
                RoleLaunch {
                    user_data_sha256: None,
                    revision: revision.cloned(),
                },
            );
            continue;
        };
        let mut opts = Options::review(env, or_none(revision));
        opts.facts = f;
        let review = renderer.render_role(env, *role, &opts)?;
        let sha = sha256_hex(review.user_data.as_bytes());
        review_texts.insert(*role, review.user_data.clone());
        if let Some(secrets) = secrets {
            // The forms the values take in files (to hide them in user-data
            // made before secrets moved to SSM); this render is never sent.
            opts.secrets = SecretMode::Values(secrets);
            let with_values = renderer.render_role(env, *role, &opts)?;
            if let Some(forms) = forms.as_mut() {
                forms.extend(fabrs_plan::review::userdata::secret_forms(
                    &review.user_data,
                    &with_values.user_data,
                ));
            }
            // What servers get: tokens, which they replace at boot with the
            // values from SSM Parameter Store (the `ssm_parameter` resources).
            opts.secrets = SecretMode::Fetched(secrets);
            let full = renderer.render_role(env, *role, &opts)?;
            if let Some(forms) = forms.as_mut() {
                forms.extend(fabrs_plan::review::userdata::secret_forms(
                    &review.user_data,
                    &full.user_data,
                ));
            }
            user_data.insert(*role, with_markers(&full.user_data, env, &sha, revision));
        }
        launches.insert(
            *role,
            RoleLaunch {
                user_data_sha256: Some(sha),
                revision: revision.cloned(),
            },
        );
    }
    Ok(Rendered {
        launches,
        user_data,
        review: review_texts,
        secret_forms: forms,
        image_notes: Vec::new(),
    })
}

/// The marker lines after `#cloud-config` that let fabrs recognise its
/// launch configurations (which cannot carry tags).
pub fn with_markers(user_data: &str, env: &Environment, sha: &str, revision: Option<&Revision>) -> String {
    let (first, rest) = user_data.split_once('\n').unwrap_or((user_data, ""));
    let revision = or_none(revision);
    format!(
        "{first}\n{}{}\n{}{sha}\n{}{revision}\n{rest}",
        addr::UD_OWNER,
        addr::owner_value(&env.project, &env.name),
        addr::UD_SHA,
        addr::UD_REVISION
    )
}

/// Discover, render what can be rendered, and plan.
/// The running servers of a role, (id, private address): the group's
/// members in service and the role's fixed instances (`fabrs ssh`,
/// `fabrs maintenance`).
pub async fn role_servers<C: Cloud + Fleet>(
    cloud: &C,
    env: &Environment,
    role: RoleKind,
) -> Result<Vec<(String, Option<String>)>, CloudError> {
    let names_only = desired_state(env, &BTreeMap::new());
    let inv = cloud.discover(&scope(env, &names_only)).await?;
    let mut ids: Vec<String> = Vec::new();
    if let Some(g) = inv.resources.get(&addr::autoscaling_group(role)) {
        let now = cloud.group(&g.id).await?;
        ids.extend(
            now.members
                .iter()
                .filter(|m| m.state == "InService")
                .map(|m| m.id.clone()),
        );
    }
    ids.extend(inv.resources.values().filter_map(|o| match &o.spec {
        Spec::Instance(i) if i.role == role => Some(o.id.clone()),
        _ => None,
    }));
    ids.sort();
    ids.dedup();
    let mut addrs = cloud.addresses(&ids).await?;
    Ok(ids
        .into_iter()
        .map(|id| {
            let a = addrs.remove(&id);
            (id, a)
        })
        .collect())
}

pub async fn make_plan<C: Cloud>(
    cloud: &C,
    env: &Environment,
    renderer: &Renderer,
    revision: Option<&Revision>,
    secrets: Option<&Secrets>,
) -> Result<(Plan, Inventory, Rendered), OpError> {
    // Names are needed for discovery; they do not depend on the inventory.
    let names_only = desired_state(env, &BTreeMap::new());
    let inventory = cloud.discover(&scope(env, &names_only)).await?;
    let revision = revision.cloned().or_else(|| current_revision(&inventory));
    let (p, rendered) = plan_from(env, renderer, &inventory, revision.as_ref(), secrets)?;
    Ok((p, inventory, rendered))
}

/// Render and plan against an inventory already discovered.
pub fn plan_from(
    env: &Environment,
    renderer: &Renderer,
    inventory: &Inventory,
    revision: Option<&Revision>,
    secrets: Option<&Secrets>,
) -> Result<(Plan, Rendered), OpError> {
    let resolved = resolve_images(env, inventory)?;
    let env = &resolved.env;
    let mut rendered = render_launches(env, renderer, inventory, revision, secrets)?;
    rendered.image_notes = resolved.notes;
    let mut desired = desired_state(env, &rendered.launches);
    fabrs_plan::ssm::fill_fingerprints(&mut desired, secrets, inventory);
    Ok((plan(&env.project, &env.name, &desired, inventory), rendered))
}

/// The file with its `ami: resolve:ssm:…` resolved against what discovery
/// read; a parameter that does not exist is a preflight line.
pub fn resolve_images(env: &Environment, inventory: &Inventory) -> Result<fabrs_plan::images::Resolved, OpError> {
    fabrs_plan::images::resolve(env, inventory).map_err(OpError::Preflight)
}

/// Apply until the account matches the file: each pass discovers, plans and
/// applies what is fully known (app servers' user-data needs the addresses of
/// the cache server and the database, which the first pass creates).
pub async fn converge<C: Cloud>(
    cloud: &C,
    env: &Environment,
    renderer: &Renderer,
    revision: Option<&Revision>,
    secrets: &Secrets,
    base: &ApplyOptions,
    first: Option<(Plan, Inventory, Rendered)>,
    events: &(dyn Fn(Event) + Send + Sync),
) -> Result<Vec<ApplyReport>, OpError> {
    let mut reports = Vec::new();
    let mut next = first;
    // One discovery per command: each later pass plans against the
    // inventory the last one left, carried forward with what apply made.
    let mut carried: Option<Inventory> = None;
    for _pass in 0..4 {
        let (p, inventory, rendered) = match (next.take(), carried.take()) {
            (Some(x), _) => x,
            (None, Some(inventory)) => {
                let revision = revision.cloned().or_else(|| current_revision(&inventory));
                let (p, rendered) = plan_from(env, renderer, &inventory, revision.as_ref(), Some(secrets))?;
                (p, inventory, rendered)
            }
            (None, None) => make_plan(cloud, env, renderer, revision, Some(secrets)).await?,
        };
        if !p.conflicts.is_empty() {
            return Err(OpError::Conflicts(
                p.conflicts
                    .iter()
                    .map(|c| format!("{}: {}", c.address, c.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        if p.is_empty() {
            return Ok(reports);
        }
        let mut opts = base.clone();
        opts.user_data = rendered.user_data;
        opts.db_password = secrets.get(&env.database.password_secret).cloned();
        opts.draining = env.load_balancer.draining_timeout;
        opts.secrets = secrets.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let report = apply(cloud, &p, &inventory, &opts, events).await?;
        carried = Some(carry(inventory, &report));
        let progressed = !report.applied.is_empty();
        reports.push(report);
        if !progressed {
            return Err(OpError::Other(
                "no change could be made: every remaining change waits on another".into(),
            ));
        }
    }
    Err(OpError::Other("the environment did not converge after 4 passes".into()))
}

/// The inventory after an apply: what it created or updated as the cloud
/// answered (instances and databases as the wait saw them running, with
/// their addresses and endpoints), what it deleted gone. What the next
/// converge pass plans against instead of discovering the account again.
pub fn carry(mut inventory: Inventory, report: &ApplyReport) -> Inventory {
    for (address, action) in &report.applied {
        if *action == Action::Delete {
            inventory.resources.remove(address);
        }
    }
    for (address, o) in &report.made {
        if let Spec::LaunchConfiguration(lc) = &o.spec
            && let Some(name) = &lc.name
        {
            inventory.launch_configurations.insert(name.clone(), lc.clone());
        }
        inventory.resources.insert(address.clone(), o.clone());
    }
    inventory
}

/// What the environment file names that fabrs does not make: the AMI of
/// every role (`ami:` may differ per role), the key pair `ssh.key_name`, each
/// secure listener's certificate. Pure. An `ami:` still naming an SSM
/// parameter is not listed: resolve the file first (`resolve_images`).
///
/// Not here: whether the account may create launch configurations (accounts
/// created since 2024-10-01 may not). No read-only call tells; the create
/// call's refusal becomes the one-line `LC_UNSUPPORTED` error, and the
/// shipped files use launch templates.
pub fn preconditions(env: &Environment) -> Preconditions {
    let mut p = Preconditions {
        region: env.region.clone(),
        key_pair: env.ssh.key_name.clone(),
        ..Default::default()
    };
    for (kind, role) in &env.roles {
        let Ami::Id(id) = &role.ami else { continue };
        p.images.entry(id.clone()).or_default().push(kind.as_str().to_string());
    }
    for l in &env.load_balancer.listeners {
        if let Some(arn) = &l.certificate_arn {
            p.certificates.entry(arn.clone()).or_default().push(l.port);
        }
    }
    p
}

/// Before the first write of `create-env`: the preconditions of
/// [`preconditions`], checked with read-only calls (`Cloud::preflight`).
/// Every one that does not hold is a line of `OpError::Preflight`.
pub async fn preflight<C: Cloud>(cloud: &C, env: &Environment, inventory: &Inventory) -> Result<(), OpError> {
    let p = preconditions(&resolve_images(env, inventory)?.env);
    if p.is_empty() {
        return Ok(());
    }
    let mut missing = cloud.preflight(&p).await?;
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort();
    Err(OpError::Preflight(missing.iter().map(|m| p.line(m)).collect()))
}

/// Before any write: when the plan creates the database master or changes
/// its engine version, is the file's `database.engine_version` one the cloud
/// offers (RDS: DescribeDBEngineVersions, read-only)? A major (`16`) needs
/// some `16.x`; a full version needs itself. One line naming the versions
/// offered otherwise. Skipped when the cloud cannot tell (`None`).
pub async fn check_engine_version<C: Cloud>(cloud: &C, env: &Environment, p: &Plan) -> Result<(), OpError> {
    let master = addr::db_master();
    let wanted = p.changes.iter().any(|c| {
        c.address == master
            && match c.action {
                Action::Create => true,
                _ => c.diffs.iter().any(|d| d.attribute == "engine_version"),
            }
    });
    if !wanted {
        return Ok(());
    }
    let db = &env.database;
    let major = engine_major(&db.engine_version);
    let Some(offered) = cloud.engine_versions(&db.engine, major).await? else {
        return Ok(());
    };
    let full = db.engine_version.contains('.');
    let ok = offered.iter().any(|v| {
        if full {
            *v == db.engine_version
        } else {
            engine_version_satisfied(v, &db.engine_version)
        }
    });
    if ok {
        return Ok(());
    }
    let list = if offered.is_empty() {
        format!("none of major {major}")
    } else {
        offered.join(", ")
    };
    Err(OpError::Other(format!(
        "database.engine_version \"{}\": RDS does not offer {} {} for new databases in {} (offered: {list}); write the major version (\"{major}\") or one of these",
        db.engine_version, db.engine, db.engine_version, env.region
    )))
}

/// The final snapshot of a database master deleted by `destroy-env`:
/// `<identifier>-final-<stamp>` (`stamp` such as `20261127T221500Z`, made
/// lower case and hyphen-free so the name stays a valid RDS snapshot
/// identifier: letters, digits, single hyphens, at most 255).
pub fn final_snapshot_name(identifier: &str, stamp: &str) -> String {
    let stamp: String = stamp
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("{identifier}-final-{stamp}")
}

/// How `destroy-env` deletes the database master, from its flags.
#[derive(Clone, Debug, Default)]
pub struct DestroyOptions {
    /// `--skip-final-snapshot`.
    pub skip_final_snapshot: bool,
    /// `--disable-deletion-protection`.
    pub disable_deletion_protection: bool,
    /// `--delete-bucket-contents`: empty the environment's buckets and
    /// delete them; without it a bucket holding data stops destroy-env.
    pub delete_bucket_contents: bool,
    /// The final snapshot's unique suffix (a timestamp).
    pub stamp: String,
}

/// What the destroy plan does to the database master, decided before any
/// delete: its final snapshot (`None`: skipped or no master), and a conflict
/// when the master is protected and the flag to turn protection off was not
/// given.
pub fn destroy_database(inventory: &Inventory, o: &DestroyOptions) -> (DbDelete, Option<Conflict>) {
    let master = inventory.resources.get(&addr::db_master());
    let how = DbDelete {
        final_snapshot: match master.map(|m| &m.spec) {
            Some(Spec::DbInstance(db)) if !o.skip_final_snapshot => Some(final_snapshot_name(&db.identifier, &o.stamp)),
            _ => None,
        },
        disable_deletion_protection: o.disable_deletion_protection,
    };
    let conflict = match master {
        Some(
            m @ Observed {
                spec: Spec::DbInstance(db),
                ..
            },
        ) if db.deletion_protection && !o.disable_deletion_protection => Some(Conflict {
            address: m.address.clone(),
            message: format!(
                "the database {} has deletion protection on: nothing was deleted; pass --disable-deletion-protection to turn it off and delete it{}",
                db.identifier,
                if o.skip_final_snapshot {
                    ""
                } else {
                    " (a final snapshot is taken unless --skip-final-snapshot)"
                }
            ),
        }),
        _ => None,
    };
    (how, conflict)
}

/// Everything the environment owns, as a plan of deletions, every owned
/// launch configuration included (not only the ones in use). A protected
/// database master without `disable_deletion_protection` is a conflict: the
/// plan must not be applied (nothing at all is deleted).
pub fn destroy_plan(env: &Environment, inventory: &Inventory, o: &DestroyOptions) -> (Plan, DbDelete) {
    let (how, conflict) = destroy_database(inventory, o);
    let mut p = plan(&env.project, &env.name, &Desired::default(), inventory);
    p.conflicts.extend(conflict);
    // What the project's other environments share (the artifact bucket,
    // with their releases and deploy history) outlives this one.
    p.changes.retain(|c| !addr::is_project_scoped(&c.address));
    // Buckets hold the app's data: never emptied unless asked.
    for b in inventory.resources.values() {
        if let Spec::Bucket(spec) = &b.spec
            && !addr::is_project_scoped(&b.address)
            && b.status.holds_data
            && !o.delete_bucket_contents
        {
            p.conflicts.push(Conflict {
                address: b.address.clone(),
                message: format!(
                    "the bucket {} holds data: nothing was deleted; pass --delete-bucket-contents to delete its objects and the bucket",
                    spec.name
                ),
            });
        }
    }
    // Launch configurations are listed by name, once each, in use or not.
    p.changes.retain(|c| c.address.kind != Kind::LaunchConfiguration);
    for (name, lc) in &inventory.launch_configurations {
        let address = Address::new(Kind::LaunchConfiguration, name.clone());
        let spec = Spec::LaunchConfiguration(LaunchConfigurationSpec {
            name: Some(name.clone()),
            launch: lc.launch.clone(),
        });
        let current = Observed {
            address: address.clone(),
            id: name.clone(),
            spec,
            status: Status::default(),
        };
        p.changes.push(Change {
            address,
            action: Action::Delete,
            reason: String::new(),
            id: Some(name.clone()),
            diffs: vec![],
            desired: None,
            current: Some(current),
        });
    }
    for c in &mut p.changes {
        c.reason = "destroying the environment".into();
        if c.address == addr::db_master() {
            if let Some(snap) = &how.final_snapshot {
                c.reason = format!("destroying the environment (final snapshot {snap})");
            }
        }
    }
    (p, how)
}
