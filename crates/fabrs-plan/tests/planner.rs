//! Properties of the planner, over many variants of the shipped environments.

use std::collections::BTreeMap;
use std::path::Path;

use fabrs_config::{Environment, Launch, RoleKind, Scaling};
use fabrs_plan::desired::{Desired, RoleLaunch, desired_state};
use fabrs_plan::plan::{Action, plan};
use fabrs_plan::resource::*;
use proptest::prelude::*;

fn load(name: &str) -> Environment {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../environments")
        .join(format!("{name}.yaml"));
    debian_resolved(&fabrs_config::load_file(&p).unwrap())
}

/// The shipped files name Debian 12's public parameter; discovery reads it.
fn debian_resolved(env: &Environment) -> Environment {
    let inventory = Inventory {
        image_parameters: [(
            "/aws/service/debian/release/12/latest/amd64".to_string(),
            "ami-0deb12a0b1c2d3e4f".to_string(),
        )]
        .into(),
        ..Inventory::default()
    };
    fabrs_plan::images::resolve(env, &inventory).unwrap().env
}

/// A variant of an environment: sizes, types, replicas, launch kinds, revision.
#[derive(Clone, Debug)]
struct Variant {
    web: (u32, u32, u32),
    worker_fixed: Option<u32>,
    template: bool,
    itype: usize,
    replicas: u32,
    db_class: usize,
    revision: usize,
    cache_ud: usize,
    extra_param: bool,
}

fn variant() -> impl Strategy<Value = Variant> {
    (
        (1u32..4, 0u32..4, 0u32..3),
        proptest::option::of(1u32..3),
        any::<bool>(),
        0usize..3,
        0u32..3,
        0usize..2,
        0usize..3,
        0usize..2,
        any::<bool>(),
    )
        .prop_map(
            |((min, extra, d), worker_fixed, template, itype, replicas, db_class, revision, cache_ud, extra_param)| {
                Variant {
                    web: (min, min + extra, min + d.min(extra)),
                    worker_fixed,
                    template,
                    itype,
                    replicas,
                    db_class,
                    revision,
                    cache_ud,
                    extra_param,
                }
            },
        )
}

fn apply_variant(base: &Environment, v: &Variant) -> (Environment, BTreeMap<RoleKind, RoleLaunch>) {
    let mut env = base.clone();
    let launch = if v.template {
        Launch::Template
    } else {
        Launch::Configuration
    };
    let web = env.roles.get_mut(&RoleKind::Web).unwrap();
    web.scaling = Scaling::Auto {
        min: v.web.0,
        max: v.web.1,
        desired: v.web.2,
        launch,
    };
    web.instance_type = ["t3.small", "t3.medium", "m6i.large"][v.itype].into();
    if let Some(n) = v.worker_fixed {
        env.roles.get_mut(&RoleKind::Worker).unwrap().scaling = Scaling::Fixed { count: n };
    }
    env.database.replicas = v.replicas;
    env.database.instance_class = ["db.t3.micro", "db.t3.small"][v.db_class].into();
    if v.extra_param {
        env.database
            .parameters
            .insert("log_min_duration_statement".into(), "500".into());
    }
    let rev = ["3f9c2e1", "a1b2c3d", "none"][v.revision];
    let launches = RoleKind::ALL
        .iter()
        .map(|r| {
            let ud = if *r == RoleKind::Cache {
                format!("cache-{}", v.cache_ud)
            } else {
                format!("{r}-{rev}")
            };
            (
                *r,
                RoleLaunch {
                    user_data_sha256: Some(ud),
                    revision: fabrs_config::Revision::parse_wire(rev).unwrap(),
                },
            )
        })
        .collect();
    (env, launches)
}

/// What the account would hold after applying a plan perfectly.
fn simulate(desired: &Desired, inventory: &Inventory, p: &fabrs_plan::plan::Plan) -> Inventory {
    let mut after = inventory.clone();
    for c in &p.changes {
        match c.action {
            Action::Create | Action::Update | Action::Replace | Action::CreateBeside => {
                let spec = desired.resources[&c.address].clone();
                after.resources.insert(
                    c.address.clone(),
                    Observed {
                        address: c.address.clone(),
                        id: format!("id-{}", c.address),
                        spec,
                        status: Status::default(),
                    },
                );
            }
            Action::Delete => {
                after.resources.remove(&c.address);
            }
        }
    }
    after
}

fn observed_from(desired: &Desired) -> Inventory {
    let mut inv = Inventory::default();
    for (a, s) in &desired.resources {
        inv.resources.insert(
            a.clone(),
            Observed {
                address: a.clone(),
                id: format!("id-{a}"),
                spec: s.clone(),
                status: Status::default(),
            },
        );
    }
    inv
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Planning against the result of applying a plan yields an empty plan,
    /// from any starting point (empty, another variant, a partial one).
    #[test]
    fn applying_a_plan_converges(a in variant(), b in variant(), keep in proptest::collection::vec(any::<bool>(), 64)) {
        for base in [load("staging"), load("production")] {
            let (env_a, la) = apply_variant(&base, &a);
            let (env_b, lb) = apply_variant(&base, &b);
            let mut current = observed_from(&desired_state(&env_a, &la));
            // Some resources missing (never created, or deleted out of band).
            let addrs: Vec<Address> = current.resources.keys().cloned().collect();
            for (i, addr) in addrs.iter().enumerate() {
                if !keep[i % keep.len()] {
                    current.resources.remove(addr);
                }
            }
            let desired = desired_state(&env_b, &lb);
            let p = plan("myproject", &base.name, &desired, &current);
            prop_assert!(p.conflicts.iter().all(|c| c.address.kind == Kind::DbInstance), "{:?}", p.conflicts);
            if !p.conflicts.is_empty() { continue; }
            let after = simulate(&desired, &current, &p);
            let again = plan("myproject", &base.name, &desired, &after);
            prop_assert!(again.changes.is_empty(), "not converged: {:#?}", again.changes.iter().map(|c| (&c.address, c.action, &c.reason)).collect::<Vec<_>>());
            // Deterministic: the same inputs give the same plan, byte for byte.
            prop_assert_eq!(serde_json::to_string(&p).unwrap(), serde_json::to_string(&plan("myproject", &base.name, &desired, &current)).unwrap());
        }
    }

    /// A look-alike that fabrs cannot prove it owns is never changed or
    /// deleted: it becomes a conflict, and nothing acts on its address.
    #[test]
    fn foreign_resources_are_never_touched(a in variant(), pick in 0usize..40) {
        let base = load("staging");
        let (env, l) = apply_variant(&base, &a);
        let desired = desired_state(&env, &l);
        let addrs: Vec<&Address> = desired.resources.keys().filter(|a| a.kind != Kind::LaunchConfiguration).collect();
        let target = addrs[pick % addrs.len()].clone();
        let mut inv = observed_from(&desired);
        inv.resources.remove(&target);
        inv.foreign.push(Foreign { address: target.clone(), id: "foreign-1".into(), name: "look-alike".into() });
        let p = plan("myproject", "staging", &desired, &inv);
        prop_assert!(p.changes.iter().all(|c| c.address != target && c.id.as_deref() != Some("foreign-1")));
        prop_assert!(p.conflicts.iter().any(|c| c.address == target));
    }
}

#[test]
fn a_database_is_never_replaced() {
    let env = load("staging");
    let (_, l) = apply_variant(
        &env,
        &Variant {
            web: (2, 4, 2),
            worker_fixed: None,
            template: false,
            itype: 0,
            replicas: 1,
            db_class: 0,
            revision: 0,
            cache_ud: 0,
            extra_param: false,
        },
    );
    let desired = desired_state(&env, &l);
    let mut inv = observed_from(&desired);
    if let Some(Observed {
        spec: Spec::DbInstance(db),
        ..
    }) = inv.resources.get_mut(&fabrs_plan::addr::db_master())
    {
        db.username = "someone_else".into();
    }
    let p = plan("myproject", "staging", &desired, &inv);
    assert!(p.changes.iter().all(|c| c.address != fabrs_plan::addr::db_master()));
    assert_eq!(p.conflicts.len(), 1);
    assert!(
        p.conflicts[0].message.contains("never replaces a database"),
        "{}",
        p.conflicts[0].message
    );
}

#[test]
fn drift_is_an_update_with_the_attribute_named() {
    let env = load("staging");
    let (_, l) = apply_variant(
        &env,
        &Variant {
            web: (2, 4, 2),
            worker_fixed: None,
            template: false,
            itype: 0,
            replicas: 1,
            db_class: 0,
            revision: 0,
            cache_ud: 0,
            extra_param: false,
        },
    );
    let desired = desired_state(&env, &l);
    let mut inv = observed_from(&desired);
    if let Some(Observed {
        spec: Spec::SecurityGroup(sg),
        ..
    }) = inv.resources.get_mut(&fabrs_plan::addr::security_group("web"))
    {
        sg.ingress.insert(IngressRule {
            protocol: "tcp".into(),
            from_port: 22,
            to_port: 22,
            source: RuleSource::Cidr("0.0.0.0/0".into()),
        });
    }
    if let Some(Observed {
        spec: Spec::AutoScalingGroup(asg),
        ..
    }) = inv
        .resources
        .get_mut(&fabrs_plan::addr::autoscaling_group(RoleKind::Web))
    {
        asg.desired = 3;
    }
    inv.resources.remove(&fabrs_plan::addr::db_replica(0));
    let p = plan("myproject", "staging", &desired, &inv);
    let text = fabrs_plan::display::human(&p);
    insta::assert_snapshot!("drift_plan", text);
    assert_eq!(p.summary(), (1, 2, 0));
}

#[test]
fn plan_from_empty_account() {
    let env = load("staging");
    let launches: BTreeMap<RoleKind, RoleLaunch> = [(
        RoleKind::Cache,
        RoleLaunch {
            user_data_sha256: Some("c0ffee".into()),
            revision: None,
        },
    )]
    .into_iter()
    .collect();
    let desired = desired_state(&env, &launches);
    let p = plan("myproject", "staging", &desired, &Inventory::default());
    assert!(p.changes.iter().all(|c| c.action == Action::Create));
    let text = fabrs_plan::display::human(&p);
    assert!(
        text.contains("(known after apply)"),
        "web and worker user-data depend on the cache and database addresses"
    );
    assert!(text.contains("+ master_password = (sensitive)"));
    insta::assert_snapshot!("empty_account_plan", text);
    let json = fabrs_plan::display::json(&p);
    assert_eq!(json["format_version"], 2);
    assert_eq!(json["summary"]["add"].as_u64().unwrap() as usize, p.changes.len());
}

/// The staging plan with the observed master's engine version changed.
fn plan_with_observed_version(desired_version: &str, observed_version: &str) -> fabrs_plan::plan::Plan {
    let mut env = load("staging");
    env.database.engine_version = desired_version.into();
    let desired = desired_state(&env, &BTreeMap::new());
    let mut inv = observed_from(&desired);
    for a in [fabrs_plan::addr::db_master(), fabrs_plan::addr::db_replica(0)] {
        if let Some(Observed {
            spec: Spec::DbInstance(db),
            ..
        }) = inv.resources.get_mut(&a)
        {
            db.engine_version = observed_version.into();
        }
    }
    plan("myproject", "staging", &desired, &inv)
}

fn db_changes(p: &fabrs_plan::plan::Plan) -> Vec<(String, Action, String)> {
    p.changes
        .iter()
        .filter(|c| c.address.kind == Kind::DbInstance)
        .map(|c| (c.address.to_string(), c.action, c.reason.clone()))
        .collect()
}

#[test]
fn a_minor_upgrade_by_rds_is_not_a_change() {
    // A major asked for, any minor of it runs.
    for observed in ["16", "16.4", "16.9", "16.10"] {
        let p = plan_with_observed_version("16", observed);
        assert!(db_changes(&p).is_empty(), "16 vs {observed}: {:?}", db_changes(&p));
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    }
    // A full version asked for, the same or a newer minor runs (16.10 > 16.9).
    for observed in ["16.9", "16.10", "16.11"] {
        let p = plan_with_observed_version("16.9", observed);
        assert!(db_changes(&p).is_empty(), "16.9 vs {observed}: {:?}", db_changes(&p));
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    }
}

#[test]
fn an_older_minor_or_major_is_an_upgrade_and_a_newer_major_a_conflict() {
    let p = plan_with_observed_version("16.9", "16.4");
    let changes = db_changes(&p);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes
            .iter()
            .all(|(_, a, r)| *a == Action::Update && r == "engine_version changed"),
        "{changes:?}"
    );
    let p = plan_with_observed_version("16", "15.7");
    assert!(db_changes(&p).iter().all(|(_, a, _)| *a == Action::Update));
    assert_eq!(db_changes(&p).len(), 2);
    // RDS cannot go back a major: no change, a conflict naming what to write.
    let p = plan_with_observed_version("16", "17.2");
    assert!(db_changes(&p).is_empty(), "{:?}", db_changes(&p));
    assert_eq!(p.conflicts.len(), 2, "{:?}", p.conflicts);
    assert!(
        p.conflicts[0].message.contains("runs postgres 17.2")
            && p.conflicts[0].message.contains("set engine_version to \"17\""),
        "{}",
        p.conflicts[0].message
    );
}

#[test]
fn engine_version_comparison() {
    use fabrs_plan::plan::{engine_version_downgrade, engine_version_satisfied};
    assert!(engine_version_satisfied("16.6", "16"));
    assert!(engine_version_satisfied("16.6", "16.4"));
    assert!(engine_version_satisfied("16.10", "16.9"));
    assert!(engine_version_satisfied("16.4", "16.4"));
    assert!(!engine_version_satisfied("16.4", "16.9"));
    assert!(!engine_version_satisfied("16.9", "16.10"));
    assert!(!engine_version_satisfied("15.7", "16"));
    assert!(!engine_version_satisfied("17.1", "16"));
    assert!(!engine_version_satisfied("", "16"));
    assert!(engine_version_downgrade("17.1", "16.9"));
    assert!(!engine_version_downgrade("16.10", "16.9"));
    assert!(!engine_version_downgrade("15.7", "16"));
}

#[test]
fn replicas_use_the_masters_parameter_group_and_only_the_master_is_protected() {
    let env = load("production");
    assert!(env.database.replicas > 0);
    let desired = desired_state(&env, &BTreeMap::new());
    let Some(Spec::DbInstance(master)) = desired.resources.get(&fabrs_plan::addr::db_master()) else {
        panic!("no master")
    };
    assert!(master.deletion_protection);
    for n in 0..env.database.replicas {
        let Some(Spec::DbInstance(r)) = desired.resources.get(&fabrs_plan::addr::db_replica(n)) else {
            panic!("no replica {n}")
        };
        assert_eq!(r.parameter_group, master.parameter_group);
        assert!(!r.deletion_protection);
    }
}

/// Issue 10, item 1: each role gets an instance role whose policy allows
/// exactly the release read, the photos prefix and the environment's SSM
/// parameters; every launch names the role's instance profile.
#[test]
fn instance_roles_are_least_privilege_and_every_launch_names_its_profile() {
    let env = load("staging");
    let d = desired_state(&env, &BTreeMap::new());
    let policy_of = |role: RoleKind| match d.resources.get(&fabrs_plan::addr::instance_role(role)) {
        Some(Spec::InstanceRole(r)) => r.clone(),
        other => panic!("no instance role for {role}: {other:?}"),
    };
    let web = policy_of(RoleKind::Web);
    assert_eq!(web.name, "myproject-staging-web");
    assert_eq!(web.profile, "myproject-staging-web");
    assert_eq!(web.path, "/fabrs/myproject/staging/");
    let flat = |r: &InstanceRoleSpec| -> Vec<(String, Vec<String>, Vec<String>)> {
        r.policy
            .iter()
            .map(|s| {
                (
                    s.sid.clone(),
                    s.actions.iter().cloned().collect(),
                    s.resources.iter().cloned().collect(),
                )
            })
            .collect()
    };
    let ssm = (
        "ReadSecrets".to_string(),
        vec![
            "ssm:GetParameter".to_string(),
            "ssm:GetParameters".into(),
            "ssm:GetParametersByPath".into(),
        ],
        vec![
            format!("arn:aws:ssm:{}:*:parameter/myproject/staging", env.region),
            format!("arn:aws:ssm:{}:*:parameter/myproject/staging/*", env.region),
        ],
    );
    let releases = format!(
        "arn:aws:s3:::{}/{}/myproject/*",
        env.artifacts.bucket,
        env.artifacts.prefix.trim_matches('/')
    );
    let app = vec![
        (
            "ReadReleases".to_string(),
            vec!["s3:GetObject".to_string()],
            vec![releases],
        ),
        (
            "ReadWritePhotos".to_string(),
            vec![
                "s3:DeleteObject".to_string(),
                "s3:GetObject".into(),
                "s3:PutObject".into(),
            ],
            vec![format!(
                "arn:aws:s3:::{}/photos/*",
                fabrs_config::names::photos_bucket(&env)
            )],
        ),
    ];
    // Sorted by sid, as the planner keeps them.
    let app = vec![app[0].clone(), ssm.clone(), app[1].clone()];
    assert_eq!(flat(&web), app);
    assert_eq!(flat(&policy_of(RoleKind::Worker)), app);
    assert_eq!(flat(&policy_of(RoleKind::Cache)), vec![ssm]);
    for s in d.resources.values() {
        let launch = match s {
            Spec::Instance(i) => &i.launch,
            Spec::LaunchConfiguration(l) => &l.launch,
            Spec::LaunchTemplate(l) => &l.launch,
            _ => continue,
        };
        assert_eq!(
            launch.instance_profile.as_deref(),
            Some(format!("myproject-staging-{}", launch.role).as_str())
        );
    }
    // The owned tags are on the role like on everything else.
    assert_eq!(
        web.tags.get(fabrs_plan::addr::TAG_PROJECT).map(String::as_str),
        Some("myproject")
    );
}

/// Issue 10, item 7: a web group without a release is judged by EC2 status
/// (its servers fail the load balancer's check until a release exists, and
/// would be replaced forever); with a release, by the load balancer.
#[test]
fn web_groups_use_elb_health_only_once_they_install_a_release() {
    let env = load("staging");
    let with = |rev: Option<&str>| {
        let launches: BTreeMap<RoleKind, RoleLaunch> = env
            .roles
            .keys()
            .map(|k| {
                (
                    *k,
                    RoleLaunch {
                        user_data_sha256: Some("ab".repeat(32)),
                        revision: rev.map(|r| fabrs_config::Revision::parse_wire(r).unwrap().unwrap()),
                    },
                )
            })
            .collect();
        let d = desired_state(&env, &launches);
        let ty = |role: RoleKind| match d.resources.get(&fabrs_plan::addr::autoscaling_group(role)) {
            Some(Spec::AutoScalingGroup(g)) => g.health_check_type.clone(),
            other => panic!("{other:?}"),
        };
        (ty(RoleKind::Web), ty(RoleKind::Worker))
    };
    assert_eq!(with(None), ("EC2".to_string(), "EC2".to_string()));
    assert_eq!(with(Some("3f9c2e1")), ("ELB".to_string(), "EC2".to_string()));
}

/// Staging's desired state with every user-data known.
fn known_staging(template: bool) -> Desired {
    let env = load("staging");
    let (mut env, l) = apply_variant(
        &env,
        &Variant {
            web: (2, 4, 2),
            worker_fixed: None,
            template,
            itype: 0,
            replicas: 1,
            db_class: 0,
            revision: 0,
            cache_ud: 0,
            extra_param: false,
        },
    );
    if let Scaling::Auto { launch, .. } = &mut env.roles.get_mut(&RoleKind::Worker).unwrap().scaling {
        *launch = if template {
            Launch::Template
        } else {
            Launch::Configuration
        };
    }
    desired_state(&env, &l)
}

fn launch_of(spec: &mut Spec) -> Option<&mut LaunchSpec> {
    match spec {
        Spec::LaunchTemplate(t) => Some(&mut t.launch),
        Spec::LaunchConfiguration(c) => Some(&mut c.launch),
        Spec::Instance(i) => Some(&mut i.launch),
        _ => None,
    }
}

#[test]
fn every_launch_requires_imdsv2_with_one_hop_and_an_encrypted_gp3_root_volume() {
    for template in [true, false] {
        let mut desired = known_staging(template);
        let mut n = 0;
        for (a, s) in desired.resources.iter_mut() {
            let Some(l) = launch_of(s) else { continue };
            n += 1;
            assert_eq!(
                (l.metadata_http_tokens.as_str(), l.metadata_hop_limit),
                (IMDS_HTTP_TOKENS, IMDS_HOP_LIMIT),
                "{a}"
            );
            assert_eq!((IMDS_HTTP_TOKENS, IMDS_HOP_LIMIT), ("required", 1));
            assert_eq!((l.volume_type.as_str(), l.volume_encrypted), ("gp3", true), "{a}");
        }
        assert_eq!(n, 3, "web and worker launches, the cache server");
    }
}

#[test]
fn an_unhardened_launch_is_a_change_template_in_place_configuration_and_instance_replaced() {
    for template in [true, false] {
        let desired = known_staging(template);
        let mut inv = observed_from(&desired);
        assert!(plan("myproject", "staging", &desired, &inv).is_empty());
        // As launches made before fabrs hardened them read back: IMDSv1
        // allowed (no metadata options), an unencrypted volume.
        for o in inv.resources.values_mut() {
            if let Some(l) = launch_of(&mut o.spec) {
                l.metadata_http_tokens = String::new();
                l.metadata_hop_limit = 0;
                l.volume_encrypted = false;
            }
        }
        let p = plan("myproject", "staging", &desired, &inv);
        let mut got: Vec<(String, Action, Vec<String>)> = p
            .changes
            .iter()
            .map(|c| {
                (
                    c.address.to_string(),
                    c.action,
                    c.diffs.iter().map(|d| d.attribute.clone()).collect(),
                )
            })
            .collect();
        got.sort();
        let attrs: Vec<String> = [
            "launch.metadata_hop_limit",
            "launch.metadata_http_tokens",
            "launch.volume_encrypted",
        ]
        .map(String::from)
        .to_vec();
        let (kind, action) = if template {
            ("launch_template", Action::Update)
        } else {
            ("launch_configuration", Action::CreateBeside)
        };
        assert_eq!(
            got,
            vec![
                ("instance.cache[0]".to_string(), Action::Replace, attrs.clone()),
                (format!("{kind}.web"), action, attrs.clone()),
                (format!("{kind}.worker"), action, attrs.clone()),
            ],
            "template: {template}"
        );
    }
}

#[test]
fn connection_draining_and_the_tls_policy_are_load_balancer_attributes_updated_in_place() {
    let desired = known_staging(true);
    let Spec::LoadBalancer(lb) = &desired.resources[&fabrs_plan::addr::load_balancer()] else {
        panic!()
    };
    assert_eq!(lb.connection_draining_secs, Some(300), "the file's default");
    // Staging: HTTP on 80, HTTPS on 443: only the HTTPS listener gets the policy.
    assert_eq!(
        lb.tls_policies.clone().into_iter().collect::<Vec<_>>(),
        [(443, "ELBSecurityPolicy-TLS-1-2-2017-01".to_string())]
    );
    let mut inv = observed_from(&desired);
    if let Some(Observed {
        spec: Spec::LoadBalancer(lb),
        ..
    }) = inv.resources.get_mut(&fabrs_plan::addr::load_balancer())
    {
        lb.connection_draining_secs = None;
        lb.tls_policies.insert(443, "ELBSecurityPolicy-2016-08".into());
    }
    let p = plan("myproject", "staging", &desired, &inv);
    assert_eq!(p.changes.len(), 1);
    let c = &p.changes[0];
    assert_eq!(c.action, Action::Update);
    let diffs: Vec<(&str, String, String)> = c
        .diffs
        .iter()
        .map(|d| {
            (
                d.attribute.as_str(),
                d.before.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                d.after.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        diffs,
        [
            ("connection_draining_secs", "null".into(), "300".into()),
            (
                "tls_policies.443",
                "\"ELBSecurityPolicy-2016-08\"".into(),
                "\"ELBSecurityPolicy-TLS-1-2-2017-01\"".into()
            ),
        ]
    );
    assert!(c.diffs.iter().all(|d| !d.forces_replacement));
}

#[test]
fn the_draining_timeout_comes_from_the_file() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../environments/staging.yaml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("load_balancer:\n", "load_balancer:\n  draining_timeout: 45s\n");
    let env = fabrs_config::load_str(&text, &p, &p.parent().unwrap().join("..")).unwrap();
    let desired = desired_state(&env, &BTreeMap::new());
    let Spec::LoadBalancer(lb) = &desired.resources[&fabrs_plan::addr::load_balancer()] else {
        panic!()
    };
    assert_eq!(lb.connection_draining_secs, Some(45));
}

#[test]
fn a_plan_with_tls_policies_round_trips_through_json_as_a_saved_plan_does() {
    let desired = known_staging(true);
    let p = plan("myproject", "staging", &desired, &Inventory::default());
    let text = serde_json::to_string(&p).unwrap();
    assert!(text.contains(r#""tls_policies":{"443":"ELBSecurityPolicy-TLS-1-2-2017-01"}"#));
    let back: fabrs_plan::plan::Plan = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
    let lb = |p: &fabrs_plan::plan::Plan| {
        p.changes
            .iter()
            .find(|c| c.address == fabrs_plan::addr::load_balancer())
            .and_then(|c| c.desired.clone())
    };
    assert_eq!(lb(&back), lb(&p));
}

/// Issue 10, item 2: the photo bucket is the environment's: private,
/// encrypted, ACLs off, tagged like everything else.
#[test]
fn the_photo_bucket_is_private_encrypted_and_owned() {
    let env = load("staging");
    let d = desired_state(&env, &BTreeMap::new());
    let Some(Spec::Bucket(b)) = d.resources.get(&fabrs_plan::addr::photos_bucket()) else {
        panic!("no photo bucket")
    };
    assert_eq!(b.name, "myproject-staging-photos");
    assert!(b.block_public_access);
    assert_eq!(
        (b.encryption.as_str(), b.object_ownership.as_str()),
        ("AES256", "BucketOwnerEnforced")
    );
    assert_eq!(
        b.tags.get(fabrs_plan::addr::TAG_ENVIRONMENT).map(String::as_str),
        Some("staging")
    );
}

/// Values with every character some format treats specially.
const AWKWARD: &str = "p@ss:w/o%rd\"'\\ $x";

fn staging_secrets(db: &str) -> fabrs_config::secrets::Secrets {
    let env = load("staging");
    let values: Vec<(String, String)> = env
        .secrets
        .keys()
        .map(|k| {
            let v = if k == &env.database.password_secret {
                db.to_string()
            } else {
                format!("{k}-{AWKWARD}")
            };
            (k.clone(), v)
        })
        .collect();
    fabrs_config::secrets::Secrets::from_pairs(values.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn desired_with(env: &Environment, secrets: Option<&fabrs_config::secrets::Secrets>, inv: &Inventory) -> Desired {
    let mut d = desired_state(env, &BTreeMap::new());
    fabrs_plan::ssm::fill_fingerprints(&mut d, secrets, inv);
    d
}

#[test]
fn every_secret_is_a_secure_string_parameter_under_the_environments_path() {
    let env = load("staging");
    let secrets = staging_secrets(&format!("db-{AWKWARD}"));
    let d = desired_with(&env, Some(&secrets), &Inventory::default());
    assert!(!env.secrets.is_empty());
    for name in env.secrets.keys() {
        let Some(Spec::SsmParameter(p)) = d.resources.get(&fabrs_plan::addr::ssm_parameter(name)) else {
            panic!("no ssm_parameter.{name}");
        };
        assert_eq!(p.name, format!("/{}/{}/{name}", env.project, env.name));
        assert_eq!(p.parameter_type, "SecureString");
        assert_eq!(p.tags.get("fabrs:project"), Some(&env.project));
        assert_eq!(p.tags.get("fabrs:environment"), Some(&env.name));
        assert_eq!(p.tags.get("managed-by").map(String::as_str), Some("fabrs"));
        let f = p.fingerprint.clone().expect("a fingerprint from the value");
        let value = secrets.get(name).unwrap().expose();
        assert_eq!(f, fabrs_plan::ssm::fingerprint(&p.name, value));
        assert_ne!(f, value);
        assert!(!f.contains(value) && !value.contains(&f));
        // The instance roles' policy covers exactly this path.
        let role = match d.resources.get(&fabrs_plan::addr::instance_role(RoleKind::Web)) {
            Some(Spec::InstanceRole(r)) => r.clone(),
            other => panic!("{other:?}"),
        };
        let path = fabrs_config::names::ssm_path(&env.project, &env.name);
        assert!(p.name.starts_with(&format!("{path}/")));
        assert!(
            role.policy
                .iter()
                .any(|s| s.resources.iter().any(|r| r.ends_with(&format!(":parameter{path}/*"))))
        );
    }
}

#[test]
fn a_rotated_secret_is_an_update_in_place_of_its_parameter_only_and_no_value_is_shown() {
    let env = load("staging");
    let old = staging_secrets("old-db-password-1");
    let new = staging_secrets("new-db-password-2");
    let inv = observed_from(&desired_with(&env, Some(&old), &Inventory::default()));

    // Unchanged values, or no values at all: nothing to do.
    assert!(plan("myproject", "staging", &desired_with(&env, Some(&old), &inv), &inv).is_empty());
    assert!(plan("myproject", "staging", &desired_with(&env, None, &inv), &inv).is_empty());

    let p = plan("myproject", "staging", &desired_with(&env, Some(&new), &inv), &inv);
    assert_eq!(p.changes.len(), 1, "{}", fabrs_plan::display::human(&p));
    let c = &p.changes[0];
    assert_eq!(
        c.address,
        fabrs_plan::addr::ssm_parameter(&env.database.password_secret)
    );
    assert_eq!(c.action, Action::Update);
    let attrs: Vec<&str> = c.diffs.iter().map(|d| d.attribute.as_str()).collect();
    assert_eq!(attrs, ["fingerprint"]);
    let text = fabrs_plan::display::human(&p);
    let json = fabrs_plan::display::json(&p).to_string();
    for v in ["old-db-password-1", "new-db-password-2"] {
        assert!(!text.contains(v) && !json.contains(v), "a value in the plan:\n{text}");
    }
}

#[test]
fn creating_parameters_without_the_values_shows_the_fingerprint_as_unknown() {
    let env = load("staging");
    let d = desired_with(&env, None, &Inventory::default());
    let p = plan("myproject", "staging", &d, &Inventory::default());
    let c = p
        .changes
        .iter()
        .find(|c| c.address.kind == Kind::SsmParameter)
        .expect("a parameter to create");
    let f = c.diffs.iter().find(|d| d.attribute == "fingerprint").unwrap();
    assert!(f.known_after_apply && f.after.is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// The fingerprint is never the value, never holds it, and changes with it.
    #[test]
    fn a_fingerprint_never_shows_its_value(v in "[ -~]{8,40}", w in "[ -~]{8,40}") {
        let f = fabrs_plan::ssm::fingerprint("/p/e/db_password", &v);
        prop_assert_eq!(f.len(), 32);
        prop_assert!(f != v && !f.contains(&v));
        if v != w {
            prop_assert_ne!(f, fabrs_plan::ssm::fingerprint("/p/e/db_password", &w));
        }
    }
}
