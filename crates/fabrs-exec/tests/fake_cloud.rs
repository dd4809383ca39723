//! The apply driver and the converge loop on the in-memory cloud: fast
//! scenarios, with AWS's ordering rules enforced (which moto does not).

use std::sync::Mutex;
use std::time::Duration;

use fabrs_config::secrets::Secrets;
use fabrs_config::{Environment, Revision, RoleKind};
use fabrs_exec::apply::{ApplyOptions, Event, apply};
use fabrs_exec::fake::FakeCloud;
use fabrs_exec::ops::{
    DestroyOptions, OpError, check_engine_version, converge, destroy_plan, make_plan, preconditions, preflight,
    resolve_images,
};
use fabrs_plan::addr;
use fabrs_plan::plan::Action;
use fabrs_plan::resource::Spec;
use fabrs_render::Renderer;
use fabrs_test_support::root;

fn env(name: &str) -> Environment {
    fabrs_config::load_file(&root().join(format!("environments/{name}.yaml"))).unwrap()
}

/// An environment file with its autoscaled roles on launch configurations
/// (the shipped files use templates).
fn with_configurations(name: &str) -> Environment {
    let file = root().join(format!("environments/{name}.yaml"));
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("launch: template", "launch: configuration");
    fabrs_config::load_str(&text, &file, &root()).unwrap()
}

async fn converged(env: &Environment) -> FakeCloud {
    let cloud = FakeCloud::new();
    converge(
        &cloud,
        env,
        &Renderer::new(&root()).unwrap(),
        Some(&rev("3f9c2e1")),
        &secrets(),
        &ApplyOptions::default(),
        None,
        &|_| {},
    )
    .await
    .unwrap();
    cloud
}

/// create-env of `env` on `cloud` with the test secrets and default options.
async fn converge_with(
    cloud: &FakeCloud,
    env: &Environment,
    revision: Option<&Revision>,
) -> Result<Vec<fabrs_exec::apply::ApplyReport>, fabrs_exec::ops::OpError> {
    converge(
        cloud,
        env,
        &Renderer::new(&root()).unwrap(),
        revision,
        &secrets(),
        &ApplyOptions::default(),
        None,
        &|_| {},
    )
    .await
}

fn secrets() -> Secrets {
    Secrets::from_pairs([
        ("db_password", "pw-db"),
        ("cache_password", "pw-cache"),
        ("queue_password", "pw-queue"),
    ])
}

#[tokio::test]
async fn converges_from_empty_in_two_passes_then_has_nothing_to_do() {
    for name in ["staging", "production"] {
        let env = env(name);
        let renderer = Renderer::new(&root()).unwrap();
        let cloud = FakeCloud::new();
        let deferred = Mutex::new(Vec::new());
        let events = |e: Event| {
            if let Event::Deferred { address, .. } = e {
                deferred.lock().unwrap().push(address);
            }
        };
        let reports = converge(
            &cloud,
            &env,
            &renderer,
            Some(&rev("3f9c2e1")),
            &secrets(),
            &ApplyOptions::default(),
            None,
            &events,
        )
        .await
        .unwrap();
        assert_eq!(
            reports.len(),
            2,
            "{name}: infrastructure first, then the app servers that need its addresses"
        );
        assert!(
            deferred
                .lock()
                .unwrap()
                .contains(&addr::autoscaling_group(RoleKind::Web))
        );
        let (p, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
        assert!(
            p.is_empty(),
            "{name}: {:?}",
            p.changes.iter().map(|c| (&c.address, &c.reason)).collect::<Vec<_>>()
        );
        assert!(inv.resources.contains_key(&addr::db_replica(0)));
        // A second converge makes no mutating call.
        let before = cloud.calls().len();
        let reports = converge_with(&cloud, &env, None).await.unwrap();
        assert!(reports.is_empty());
        assert_eq!(cloud.calls().len(), before);
    }
}

#[tokio::test]
async fn drift_is_planned_and_repaired() {
    let env = env("staging");
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = FakeCloud::new();
    converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    cloud.tamper(&addr::autoscaling_group(RoleKind::Worker), |s| {
        if let Spec::AutoScalingGroup(a) = s {
            a.max = 9;
        }
    });
    let (p, _, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    assert_eq!(p.changes.len(), 1);
    assert_eq!(
        (p.changes[0].address.clone(), p.changes[0].action),
        (addr::autoscaling_group(RoleKind::Worker), Action::Update)
    );
    assert_eq!(p.changes[0].diffs[0].attribute, "max");
    converge_with(&cloud, &env, None).await.unwrap();
    assert!(
        make_plan(&cloud, &env, &renderer, None, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

#[tokio::test]
async fn a_new_revision_makes_a_new_launch_configuration_and_keeps_the_old() {
    let env = with_configurations("staging");
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = FakeCloud::new();
    converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    let (p, _, _) = make_plan(&cloud, &env, &renderer, Some(&rev("a1b2c3d")), None)
        .await
        .unwrap();
    let lc = p
        .changes
        .iter()
        .find(|c| c.address == addr::launch_configuration(RoleKind::Web))
        .unwrap();
    assert_eq!(lc.action, Action::CreateBeside);
    converge_with(&cloud, &env, Some(&rev("a1b2c3d"))).await.unwrap();
    let (_, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    let web_lcs: Vec<&String> = inv
        .launch_configurations
        .keys()
        .filter(|n| n.contains("-web-"))
        .collect();
    assert_eq!(web_lcs.len(), 2, "{web_lcs:?}");
    assert!(web_lcs.iter().any(|n| n.contains("-web-a1b2c3d-")) && web_lcs.iter().any(|n| n.contains("-web-3f9c2e1-")));
}

#[tokio::test]
async fn destroy_removes_everything_in_an_order_aws_accepts() {
    let env = env("production");
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = FakeCloud::new();
    converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    assert!(!cloud.is_empty());
    let (_, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    // The master is protected (the file's default): refused, nothing deleted.
    let (p, _) = destroy_plan(&env, &inv, &DestroyOptions::default());
    assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
    assert_eq!(p.conflicts[0].address, addr::db_master());
    assert!(p.conflicts[0].message.contains("--disable-deletion-protection"));
    let o = DestroyOptions {
        disable_deletion_protection: true,
        stamp: "20261127T221500Z".into(),
        ..DestroyOptions::default()
    };
    let (p, how) = destroy_plan(&env, &inv, &o);
    assert!(p.conflicts.is_empty());
    assert!(p.changes.iter().all(|c| c.action == Action::Delete));
    assert_eq!(
        how.final_snapshot.as_deref(),
        Some("myproject-production-db-final-20261127t221500z")
    );
    let opts = ApplyOptions {
        db_delete: how,
        ..ApplyOptions::default()
    };
    apply(&cloud, &p, &inv, &opts, &|_| {}).await.unwrap();
    assert_eq!(cloud.snapshots(), ["myproject-production-db-final-20261127t221500z"]);
    // The project's artifact bucket outlives the environment.
    assert_eq!(cloud.addresses(), ["bucket.artifacts"]);
    let calls = cloud.calls();
    let pos = |s: &str| {
        calls
            .iter()
            .position(|(op, a)| op == "delete" && a.contains(s))
            .unwrap()
    };
    assert!(pos("db_instance.replica") < pos("db_instance.master"));
    assert!(pos("autoscaling_group.web") < pos("security_group.web"));
}

/// Issue 11: deletions follow the dependency graph backwards, not the
/// kinds' order: with the auto scaling groups' deletes held, the databases
/// (which nothing held needs) are deleted meanwhile, and the groups are
/// released from the master's Finished event. A driver deleting by kind
/// (groups first) waits forever: the guard fires.
#[tokio::test]
async fn destroy_deletes_what_nothing_needs_without_waiting_for_the_groups() {
    let env = env("staging");
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = FakeCloud::new();
    converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    let (_, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    let o = DestroyOptions {
        disable_deletion_protection: true,
        stamp: "20261128T101500Z".into(),
        ..DestroyOptions::default()
    };
    let (p, how) = destroy_plan(&env, &inv, &o);
    assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    let opts = ApplyOptions {
        db_delete: how,
        ..ApplyOptions::default()
    };
    cloud.hold_deletes(fabrs_plan::resource::Kind::AutoScalingGroup);
    let events = |e: Event| {
        if let Event::Finished { address, .. } = &e
            && *address == addr::db_master()
        {
            cloud.release(fabrs_plan::resource::Kind::AutoScalingGroup);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), apply(&cloud, &p, &inv, &opts, &events))
        .await
        .expect("the databases waited for the held groups: deletions are ordered by kind, not by need")
        .unwrap();
    assert_eq!(cloud.addresses(), ["bucket.artifacts"]);
    let calls = cloud.calls();
    let pos = |pred: &dyn Fn(&str) -> bool| {
        calls
            .iter()
            .position(|(op, a)| op == "delete" && pred(a))
            .unwrap_or_else(|| panic!("no such delete in {calls:?}"))
    };
    let master = pos(&|a| a == "db_instance.master");
    let group = pos(&|a| a.starts_with("autoscaling_group."));
    assert!(master < group, "{calls:?}");
    // What needs another still went first: replicas before their master,
    // the groups before their launches, every user before its security
    // group, the launches before their instance roles.
    assert!(pos(&|a| a.starts_with("db_instance.replica")) < master);
    let web_group = pos(&|a| a == "autoscaling_group.web");
    let web_launch = pos(&|a| a == "launch_template.web" || a == "launch_configuration.web");
    assert!(web_group < web_launch, "{calls:?}");
    assert!(web_launch < pos(&|a| a == "security_group.web"), "{calls:?}");
    assert!(web_launch < pos(&|a| a == "instance_role.web"), "{calls:?}");
    assert!(pos(&|a| a == "instance.cache[0]") < pos(&|a| a == "security_group.cache"));
    assert!(web_group < pos(&|a| a == "load_balancer.main"), "{calls:?}");
    assert!(master < pos(&|a| a == "db_subnet_group.main"), "{calls:?}");
}

#[tokio::test]
async fn a_run_killed_among_the_groups_converges_on_rerun() {
    // The shape a SIGKILL leaves: some groups made without their rules,
    // others not made at all, nothing else.
    let env = env("staging");
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = FakeCloud::new();
    converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    let (_, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    for (a, _) in inv
        .resources
        .iter()
        .filter(|(a, _)| a.kind != fabrs_plan::resource::Kind::SecurityGroup)
    {
        cloud.remove(a);
    }
    for lc in inv.launch_configurations.keys() {
        cloud.remove(&fabrs_plan::resource::Address::new(
            fabrs_plan::resource::Kind::LaunchConfiguration,
            lc.clone(),
        ));
    }
    cloud.remove(&addr::security_group("worker"));
    cloud.remove(&addr::security_group("web"));
    cloud.tamper(&addr::security_group("cache"), |s| {
        if let Spec::SecurityGroup(sg) = s {
            sg.ingress.clear();
        }
    });
    converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    assert!(
        make_plan(&cloud, &env, &renderer, None, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

fn rev(r: &str) -> Revision {
    Revision::parse(r).unwrap()
}

#[tokio::test]
async fn an_engine_version_rds_does_not_offer_stops_the_plan_before_any_write() {
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = FakeCloud::new();
    cloud.offer_engine_versions(&["15.13", "16.9", "16.10", "17.5"]);
    for (version, offered) in [
        ("16", true),
        ("16.9", true),
        ("16.10", true),
        ("16.4", false),
        ("14", false),
    ] {
        let mut env = env("staging");
        env.database.engine_version = version.into();
        let (p, _, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
        let r = check_engine_version(&cloud, &env, &p).await;
        assert_eq!(r.is_ok(), offered, "{version}: {r:?}");
        if let Err(e) = r {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(
                line.contains(&format!("database.engine_version \"{version}\"")) && line.contains("us-east-1"),
                "{line}"
            );
        }
    }
    assert!(cloud.calls().is_empty(), "no write: {:?}", cloud.calls());
    // Once the master exists (say at 16.10), its version is not asked again
    // while the file's version is satisfied.
    let env = env("staging");
    converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    cloud.offer_engine_versions(&[]);
    let (p, _, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    check_engine_version(&cloud, &env, &p).await.unwrap();
}

/// What an instance is launched with, hardened: IMDSv2 only with one hop,
/// an encrypted gp3 root volume.
fn unharden(l: &mut fabrs_plan::resource::LaunchSpec) {
    l.metadata_http_tokens = "optional".into();
    l.metadata_hop_limit = 2;
    l.volume_encrypted = false;
}

#[tokio::test]
async fn an_unhardened_launch_template_or_instance_is_planned_as_a_change_and_repaired() {
    let env = env("staging");
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = converged(&env).await;
    let (_, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    // Every launch fabrs made is hardened.
    let mut seen = 0;
    for o in inv.resources.values() {
        let l = match &o.spec {
            Spec::LaunchTemplate(t) => &t.launch,
            Spec::LaunchConfiguration(c) => &c.launch,
            Spec::Instance(i) => &i.launch,
            _ => continue,
        };
        seen += 1;
        assert_eq!(
            (
                l.metadata_http_tokens.as_str(),
                l.metadata_hop_limit,
                l.volume_type.as_str(),
                l.volume_encrypted
            ),
            ("required", 1, "gp3", true),
            "{}",
            o.address
        );
    }
    assert_eq!(seen, 3, "web and worker templates, the cache server");
    // As a template or instance made before fabrs hardened them reads back.
    cloud.tamper(&addr::launch_template(RoleKind::Web), |s| {
        if let Spec::LaunchTemplate(t) = s {
            unharden(&mut t.launch);
        }
    });
    cloud.tamper(&addr::instance(RoleKind::Cache, 0), |s| {
        if let Spec::Instance(i) = s {
            unharden(&mut i.launch);
        }
    });
    let (p, _, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    let change = |a: &fabrs_plan::resource::Address| {
        p.changes
            .iter()
            .find(|c| &c.address == a)
            .unwrap_or_else(|| panic!("{a} changes: {:?}", p.changes))
    };
    let lt = change(&addr::launch_template(RoleKind::Web));
    assert_eq!(lt.action, Action::Update, "a new template version: {}", lt.reason);
    let attrs: Vec<&str> = lt.diffs.iter().map(|d| d.attribute.as_str()).collect();
    assert_eq!(
        attrs,
        [
            "launch.metadata_hop_limit",
            "launch.metadata_http_tokens",
            "launch.volume_encrypted"
        ]
    );
    let cache = change(&addr::instance(RoleKind::Cache, 0));
    assert_eq!(
        cache.action,
        Action::Replace,
        "an instance's launch cannot change in place"
    );
    converge_with(&cloud, &env, None).await.unwrap();
    let (p, _, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    assert!(p.is_empty(), "{:?}", p.changes);
}

#[tokio::test]
async fn a_load_balancer_without_draining_or_tls_policy_is_updated_in_place() {
    let env = env("staging");
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = converged(&env).await;
    let (_, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    let Spec::LoadBalancer(lb) = &inv.resources[&addr::load_balancer()].spec else {
        panic!()
    };
    assert_eq!(lb.connection_draining_secs, Some(300));
    assert_eq!(
        lb.tls_policies
            .iter()
            .map(|(p, r)| (*p, r.as_str()))
            .collect::<Vec<_>>(),
        [(443, fabrs_plan::resource::TLS_SECURITY_POLICY)]
    );
    cloud.tamper(&addr::load_balancer(), |s| {
        if let Spec::LoadBalancer(lb) = s {
            lb.connection_draining_secs = None;
            lb.tls_policies.clear();
        }
    });
    let (p, _, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    assert_eq!(p.changes.len(), 1, "{:?}", p.changes);
    let c = &p.changes[0];
    assert_eq!((c.address.clone(), c.action), (addr::load_balancer(), Action::Update));
    let attrs: Vec<&str> = c.diffs.iter().map(|d| d.attribute.as_str()).collect();
    assert!(attrs.contains(&"connection_draining_secs"), "{attrs:?}");
    assert!(attrs.iter().any(|a| a.starts_with("tls_policies")), "{attrs:?}");
    converge_with(&cloud, &env, None).await.unwrap();
    assert!(
        make_plan(&cloud, &env, &renderer, None, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

#[tokio::test]
async fn a_fixed_web_instance_is_deregistered_and_drained_before_it_is_replaced() {
    // famigo: two fixed web servers on the load balancer, draining 300 s (the default).
    let file = root().join("examples/famigo.yaml");
    let mut env = fabrs_config::load_file(&file).unwrap();
    let secrets = Secrets::from_pairs([("db_password", "pw-db"), ("redis_password", "pw-redis")]);
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = FakeCloud::new();
    let clock = std::sync::Arc::new(fabrs_exec::fake_fleet::VirtualClock::new());
    let opts = ApplyOptions {
        sleeper: fabrs_exec::apply::Sleeper::of(clock.clone()),
        ..ApplyOptions::default()
    };
    converge(
        &cloud,
        &env,
        &renderer,
        Some(&rev("3f9c2e1")),
        &secrets,
        &opts,
        None,
        &|_| {},
    )
    .await
    .unwrap();
    use fabrs_exec::deploy::Clock;
    assert_eq!(clock.elapsed(), Duration::ZERO, "creating drains nothing");
    // A new instance type replaces both web servers.
    env.roles.get_mut(&RoleKind::Web).unwrap().instance_type = "m5.xlarge".into();
    let before = cloud.calls().len();
    converge(&cloud, &env, &renderer, None, &secrets, &opts, None, &|_| {})
        .await
        .unwrap();
    let calls = cloud.calls()[before..].to_vec();
    for i in 0..2 {
        let a = addr::instance(RoleKind::Web, i).to_string();
        let pos = |op: &str| {
            calls
                .iter()
                .position(|(o, x)| o == op && *x == a)
                .unwrap_or_else(|| panic!("{op} {a}: {calls:?}"))
        };
        assert!(
            pos("update") < pos("delete"),
            "{a} leaves the load balancer first: {calls:?}"
        );
        assert!(pos("delete") < pos("create"), "{calls:?}");
    }
    assert!(
        clock.elapsed() >= Duration::from_secs(300),
        "the draining timeout passed (on the virtual clock): {:?}",
        clock.elapsed()
    );
    assert!(
        make_plan(&cloud, &env, &renderer, None, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

/// Issue 10, item 2: the photo bucket is the app's data. destroy-env refuses
/// it while it holds objects (nothing at all deleted); told to, it empties
/// it, then deletes it.
#[tokio::test]
async fn destroy_refuses_a_bucket_holding_data_unless_told_to_delete_its_contents() {
    let env = env("staging");
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = converged(&env).await;
    let (_, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    let Some(Spec::Bucket(b)) = inv.resources.get(&addr::photos_bucket()).map(|o| &o.spec) else {
        panic!("no photo bucket: {:?}", inv.resources.keys().collect::<Vec<_>>())
    };
    assert_eq!(b.name, "myproject-staging-photos");
    assert!(b.block_public_access && b.encryption == "AES256" && b.object_ownership == "BucketOwnerEnforced");
    cloud.put_data(&addr::photos_bucket());
    let (_, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    let o = DestroyOptions {
        disable_deletion_protection: true,
        ..DestroyOptions::default()
    };
    let (p, _) = destroy_plan(&env, &inv, &o);
    assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
    assert_eq!(p.conflicts[0].address, addr::photos_bucket());
    assert!(
        p.conflicts[0].message.contains("myproject-staging-photos")
            && p.conflicts[0].message.contains("--delete-bucket-contents"),
        "{}",
        p.conflicts[0].message
    );
    // Without the flag the driver would not empty it: S3 refuses the delete.
    let plain = DestroyOptions {
        disable_deletion_protection: true,
        skip_final_snapshot: true,
        delete_bucket_contents: true,
        ..DestroyOptions::default()
    };
    let (p, how) = destroy_plan(&env, &inv, &plain);
    assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    let refused = apply(
        &cloud,
        &p,
        &inv,
        &ApplyOptions {
            db_delete: how.clone(),
            ..ApplyOptions::default()
        },
        &|_| {},
    )
    .await;
    assert!(
        refused.is_err(),
        "a bucket holding data is not deleted without emptying"
    );
    let (_, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    let (p, how) = destroy_plan(&env, &inv, &plain);
    apply(
        &cloud,
        &p,
        &inv,
        &ApplyOptions {
            db_delete: how,
            empty_buckets: true,
            ..ApplyOptions::default()
        },
        &|_| {},
    )
    .await
    .unwrap();
    // The project's artifact bucket outlives the environment.
    assert_eq!(cloud.addresses(), ["bucket.artifacts"]);
    let calls = cloud.calls();
    let empty = calls.iter().position(|(op, a)| op == "empty" && a == "bucket.photos");
    let delete = calls.iter().position(|(op, a)| op == "delete" && a == "bucket.photos");
    assert!(empty.is_some() && empty < delete, "{calls:?}");
}

#[tokio::test]
async fn secrets_go_to_ssm_never_into_user_data_and_a_rotation_updates_one_parameter() {
    let env = env("staging");
    let renderer = Renderer::new(&root()).unwrap();
    let cloud = FakeCloud::new();
    let values = [
        ("db_password", "Zq7-db-s3cret@:/%\"'\\ $"),
        ("cache_password", "Zq7-cache-s3cret"),
        ("queue_password", "Zq7-queue-s3cret"),
    ];
    let secrets = Secrets::from_pairs(values);
    converge(
        &cloud,
        &env,
        &renderer,
        Some(&rev("3f9c2e1")),
        &secrets,
        &ApplyOptions::default(),
        None,
        &|_| {},
    )
    .await
    .unwrap();
    for (name, v) in values {
        assert_eq!(
            cloud.ssm_value(&format!("/myproject/staging/{name}")).as_deref(),
            Some(v),
            "{name}"
        );
    }
    let sent = cloud.user_data_sent();
    assert!(!sent.is_empty());
    for ud in &sent {
        assert!(ud.contains(fabrs_render::FETCH_SECRETS));
        for (name, v) in values {
            assert!(!ud.contains(v), "the value of {name} is in a user-data");
        }
    }

    // Rotating the database password: its parameter, in place, and nothing else.
    let mut rotated = values;
    rotated[0].1 = "Zq7-db-rotated";
    let rotated_secrets = Secrets::from_pairs(rotated);
    let (p, _, _) = make_plan(&cloud, &env, &renderer, None, Some(&rotated_secrets))
        .await
        .unwrap();
    let changes: Vec<_> = p.changes.iter().map(|c| (c.address.clone(), c.action)).collect();
    assert_eq!(changes, [(addr::ssm_parameter("db_password"), Action::Update)]);
    converge(
        &cloud,
        &env,
        &renderer,
        None,
        &rotated_secrets,
        &ApplyOptions::default(),
        None,
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        cloud.ssm_value("/myproject/staging/db_password").as_deref(),
        Some("Zq7-db-rotated")
    );
    assert_eq!(
        cloud.user_data_sent().len(),
        sent.len(),
        "a rotation sends no new user-data"
    );

    // destroy-env deletes them.
    let (_, inv, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    let o = DestroyOptions {
        disable_deletion_protection: true,
        skip_final_snapshot: true,
        ..DestroyOptions::default()
    };
    let (p, how) = destroy_plan(&env, &inv, &o);
    assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    let opts = ApplyOptions {
        db_delete: how,
        ..ApplyOptions::default()
    };
    apply(&cloud, &p, &inv, &opts, &|_| {}).await.unwrap();
    for (name, _) in values {
        assert_eq!(cloud.ssm_value(&format!("/myproject/staging/{name}")), None);
    }
}

/// Staging with its worker on an AMI of its own (`ami:` per role).
fn staging_with_worker_ami(ami: &str) -> Environment {
    let file = root().join("environments/staging.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let from = "  worker:\n    instance_type: t3.small\n";
    assert!(text.contains(from));
    let text = text.replacen(from, &format!("{from}    ami: {ami}\n"), 1);
    fabrs_config::load_str(&text, &file, &root()).unwrap()
}

/// Debian 12's public parameter, as the shipped files name it, and the
/// image the fake region's parameter names.
const DEBIAN_12: &str = "/aws/service/debian/release/12/latest/amd64";
const DEBIAN_12_AMI: &str = "ami-0deb12a0b1c2d3e4f";

/// The file with its `ami:` parameters resolved against `cloud`.
async fn resolved(cloud: &FakeCloud, env: &Environment) -> Environment {
    let (_, inventory, _) = make_plan(cloud, env, &Renderer::new(&root()).unwrap(), None, None)
        .await
        .unwrap();
    resolve_images(env, &inventory).unwrap().env
}

/// Preflight (issue 10 item 9): what the file names but fabrs does not make,
/// each missing one a line naming it, all at once, before any write; once
/// the account has them, create-env goes ahead. Debian's public image (the
/// shipped `ami:` parameter) exists in every account.
#[tokio::test]
async fn preflight_names_every_missing_precondition_at_once_and_nothing_is_written() {
    const WORKER_AMI: &str = "ami-0123456789abcdef0";
    const CERT: &str = "arn:aws:iam::123456789012:server-certificate/myproject-staging";
    let renderer = Renderer::new(&root()).unwrap();
    let env = staging_with_worker_ami(WORKER_AMI);
    let cloud = FakeCloud::new();
    assert!(
        preconditions(&env).images.keys().all(|i| i == WORKER_AMI),
        "a parameter is checked once resolved"
    );
    let p = preconditions(&resolved(&cloud, &env).await);
    assert_eq!(p.region, "us-east-1");
    assert_eq!(
        p.images
            .iter()
            .map(|(k, v)| (k.as_str(), v.join(",")))
            .collect::<Vec<_>>(),
        [
            (WORKER_AMI, "worker".to_string()),
            (DEBIAN_12_AMI, "web,cache".to_string())
        ]
    );
    assert_eq!(p.key_pair.as_deref(), Some("myproject-admin"));
    assert_eq!(p.certificates.get(CERT), Some(&vec![443]));

    // An empty account: every precondition is missing, each named once.
    let (plan, inventory, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    assert!(!plan.is_empty());
    let lines = match preflight(&cloud, &env, &inventory).await {
        Err(OpError::Preflight(lines)) => lines,
        other => panic!("expected the preflight to fail: {other:?}"),
    };
    assert_eq!(
        lines,
        [
            format!("AMI {WORKER_AMI} does not exist in us-east-1 (role worker)"),
            "key pair myproject-admin does not exist in us-east-1 (ssh.key_name)".to_string(),
            format!("IAM server certificate {CERT} does not exist (load balancer listener 443)"),
        ]
    );

    // Some made: only the rest is named.
    cloud.account_has(&[], &[], &[CERT]);
    let lines = match preflight(&cloud, &env, &inventory).await {
        Err(OpError::Preflight(lines)) => lines,
        other => panic!("expected the preflight to fail: {other:?}"),
    };
    assert_eq!(
        lines,
        [
            format!("AMI {WORKER_AMI} does not exist in us-east-1 (role worker)"),
            "key pair myproject-admin does not exist in us-east-1 (ssh.key_name)".to_string(),
        ]
    );
    assert!(cloud.calls().is_empty(), "no write: {:?}", cloud.calls());
    assert!(cloud.is_empty(), "nothing was made");

    // All there: the preflight passes and the environment converges.
    cloud.account_has(&[WORKER_AMI], &["myproject-admin"], &[]);
    preflight(&cloud, &env, &inventory).await.unwrap();
    converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    assert!(!cloud.is_empty());
}

/// Production's preconditions: one AMI for every role (Debian's, resolved),
/// its own certificate; a file without a key pair or a secure listener has
/// none to check.
#[tokio::test]
async fn preconditions_come_from_the_file_and_its_resolved_images() {
    let p = preconditions(&resolved(&FakeCloud::new(), &env("production")).await);
    assert_eq!(p.images.len(), 1);
    assert_eq!(p.images[DEBIAN_12_AMI], ["web", "worker", "cache"].map(String::from));
    assert_eq!(
        p.certificates.keys().collect::<Vec<_>>(),
        ["arn:aws:iam::123456789012:server-certificate/myproject-production"]
    );
    let mut bare = env("production");
    bare.ssh.key_name = None;
    bare.load_balancer.listeners.retain(|l| l.certificate_arn.is_none());
    let p = preconditions(&resolved(&FakeCloud::new(), &bare).await);
    assert!(p.key_pair.is_none() && p.certificates.is_empty() && !p.images.is_empty());
}

/// `ami: resolve:ssm:…` (issue 12 item 3): the plan launches the image the
/// parameter names, and the review says where it came from. When the
/// parameter moves to a new image, the groups' launches follow (a new
/// template version, rolled by deploy or rotate) while the fixed cache
/// server keeps its image: replacing it would lose what it holds, so the
/// review names the new image and how to move the server to it.
#[tokio::test]
async fn image_parameters_resolve_at_plan_time_and_a_fixed_server_keeps_its_image() {
    let renderer = Renderer::new(&root()).unwrap();
    let env = env("staging");
    assert_eq!(env.ami, fabrs_config::Ami::Parameter(DEBIAN_12.into()));
    let cloud = FakeCloud::new();
    converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    let (plan, inventory, rendered) = make_plan(&cloud, &env, &renderer, None, Some(&secrets()))
        .await
        .unwrap();
    assert!(plan.is_empty(), "{}", fabrs_plan::review::concise(&plan));
    assert_eq!(inventory.image_parameters[DEBIAN_12], DEBIAN_12_AMI);
    let images_of = |inv: &fabrs_plan::resource::Inventory| -> Vec<(String, String)> {
        inv.resources
            .values()
            .filter_map(|o| match &o.spec {
                Spec::Instance(i) => Some((o.address.to_string(), i.launch.image_id.clone())),
                Spec::LaunchTemplate(lt) => Some((o.address.to_string(), lt.launch.image_id.clone())),
                _ => None,
            })
            .collect()
    };
    assert!(
        images_of(&inventory).iter().all(|(_, id)| id == DEBIAN_12_AMI),
        "{:?}",
        images_of(&inventory)
    );
    let review = fabrs_plan::review::human(&plan, &rendered.review_extras(&plan, &inventory));
    assert!(
        review.contains(&format!("web, worker, cache: {DEBIAN_12_AMI} (from {DEBIAN_12})")),
        "{review}"
    );

    // Debian publishes a new image.
    const NEXT: &str = "ami-0deb12a0b1c2d3e50";
    cloud.publish_image(DEBIAN_12, NEXT);
    let (plan, inventory, rendered) = make_plan(&cloud, &env, &renderer, None, Some(&secrets()))
        .await
        .unwrap();
    let changed: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("{} {:?}", c.address, c.action))
        .collect();
    assert_eq!(
        changed,
        ["launch_template.web Update", "launch_template.worker Update"],
        "only the groups' launches change"
    );
    for c in &plan.changes {
        let Some(Spec::LaunchTemplate(lt)) = &c.desired else {
            panic!("{c:?}")
        };
        assert_eq!(lt.launch.image_id, NEXT);
    }
    let review = fabrs_plan::review::human(&plan, &rendered.review_extras(&plan, &inventory));
    assert!(
        review.contains(&format!(
            "cache: keeps {DEBIAN_12_AMI}, the image its fixed server runs; {DEBIAN_12} now names {NEXT}"
        )),
        "{review}"
    );
    converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    let (_, inventory, _) = make_plan(&cloud, &env, &renderer, None, None).await.unwrap();
    for (address, id) in images_of(&inventory) {
        let want = if address.starts_with("instance.") {
            DEBIAN_12_AMI
        } else {
            NEXT
        };
        assert_eq!(id, want, "{address}");
    }
}

/// A parameter that does not exist in the region: one line naming the role
/// and the parameter, before any write.
#[tokio::test]
async fn a_missing_image_parameter_is_named_and_nothing_is_written() {
    let file = root().join("environments/staging.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(DEBIAN_12, "/aws/service/debian/release/99/latest/amd64");
    let env = fabrs_config::load_str(&text, &file, &root()).unwrap();
    let cloud = FakeCloud::new();
    let lines = match make_plan(&cloud, &env, &Renderer::new(&root()).unwrap(), None, None).await {
        Err(OpError::Preflight(lines)) => lines,
        other => panic!(
            "expected a preflight error: {:?}",
            other.map(|(p, _, _)| p.changes.len())
        ),
    };
    assert!(
        lines
            == [
                "SSM parameter /aws/service/debian/release/99/latest/amd64 (ami:) does not exist in us-east-1 (roles web, worker, cache)"
            ],
        "{lines:?}"
    );
    assert!(converge_with(&cloud, &env, None).await.is_err());
    assert!(cloud.calls().is_empty() && cloud.is_empty());
}

/// Issue 11: the apply driver follows the plan's dependency graph. With the
/// database held (RDS takes 10–20 minutes on AWS), what does not need it (the
/// cache server, the load balancer, roles, parameters and buckets) is made
/// meanwhile: the database is let through only once the cache server runs.
/// A driver ordering by kind (the database before every server) never gets
/// there; the guard ends the test instead of hanging. No sleep decides the
/// order: the events do.
#[tokio::test]
async fn nothing_waits_for_the_database_but_what_needs_it() {
    let cloud = FakeCloud::new();
    cloud.hold(fabrs_plan::resource::Kind::DbInstance);
    let env = env("staging");
    let is_cache = |a: &fabrs_plan::resource::Address| {
        a.kind == fabrs_plan::resource::Kind::Instance && a.name.starts_with("cache")
    };
    let events = |e: Event| {
        if let Event::Finished { address, .. } = &e
            && is_cache(address)
        {
            cloud.release(fabrs_plan::resource::Kind::DbInstance);
        }
    };
    let (renderer, revision, secrets, opts) = (
        Renderer::new(&root()).unwrap(),
        rev("3f9c2e1"),
        secrets(),
        ApplyOptions::default(),
    );
    let run = converge(&cloud, &env, &renderer, Some(&revision), &secrets, &opts, None, &events);
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the cache server waited for the held database: creates are ordered by kind, not by need")
        .unwrap();
    let calls = cloud.calls();
    let first = |pred: &dyn Fn(&str) -> bool| {
        calls
            .iter()
            .position(|(op, a)| op == "create" && pred(a))
            .unwrap_or_else(|| panic!("no such create in {calls:?}"))
    };
    let db = first(&|a| a.starts_with("db_instance."));
    let cache = first(&|a| a.starts_with("instance.cache"));
    let lb = first(&|a| a.starts_with("load_balancer."));
    assert!(
        cache < db && lb < db,
        "made before the database: the cache server and the load balancer\n{calls:?}"
    );
    // What needs the database still waited for it: the replica and the app
    // servers' launches (their user-data names its address).
    let replica = first(&|a| a.starts_with("db_instance.replica"));
    let master = first(&|a| a == "db_instance.master");
    let web = first(&|a| a.starts_with("launch_template.web"));
    assert!(master < replica && master < web, "{calls:?}");
}

/// The depth of the plan's dependency graph: the fewest rounds of writes a
/// create-env of staging can take (the benchmark's yardstick).
#[tokio::test]
async fn the_dependency_depth_of_staging() {
    let cloud = FakeCloud::new();
    let env = env("staging");
    let (plan, _, _) = make_plan(&cloud, &env, &Renderer::new(&root()).unwrap(), None, Some(&secrets()))
        .await
        .unwrap();
    // Parameter group, master, replica, then the app servers' launch
    // template (its user-data names the database) and group.
    assert_eq!(
        fabrs_plan::graph::depth(&plan),
        5,
        "{}",
        fabrs_plan::review::concise(&plan)
    );
    // In round trips: the discovery's one round; a call each for the
    // parameter group, launch template and group; a call and a look each
    // for the master and the replica (what follows needs their endpoints).
    assert_eq!(
        fabrs_plan::graph::round_trips(&plan),
        8,
        "{}",
        fabrs_plan::review::concise(&plan)
    );
}

/// One discovery per command (issue 11): create-env of an empty account
/// takes two passes (the app servers' user-data waits for the cache server
/// and the database), and the second plans against the inventory the first
/// left, carried forward with what apply made, not a new discovery. What it
/// carried is what is there: a fresh plan afterwards has nothing to do.
#[tokio::test]
async fn create_env_discovers_the_account_once() {
    let env = env("staging");
    let cloud = FakeCloud::new();
    let reports = converge_with(&cloud, &env, Some(&rev("3f9c2e1"))).await.unwrap();
    assert_eq!(reports.len(), 2, "two passes");
    assert_eq!(cloud.discoveries(), 1, "discovered once for {} passes", reports.len());
    let (plan, _, _) = make_plan(
        &cloud,
        &env,
        &Renderer::new(&root()).unwrap(),
        Some(&rev("3f9c2e1")),
        Some(&secrets()),
    )
    .await
    .unwrap();
    assert!(plan.is_empty(), "{}", fabrs_plan::review::concise(&plan));
}
