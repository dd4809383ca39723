//! fabrs-aws against a real moto server: every kind is created, discovered
//! (the observed spec must equal the desired one), updated, re-discovered,
//! deleted. One moto per test binary; each test its own environment name.

use std::collections::BTreeSet;
use std::time::Duration;

use fabrs_aws::{AwsCloud, ConnectOptions, LC_UNSUPPORTED};
use fabrs_cloud::{ApplyCtx, Cloud, CloudError, ErrorKind, Scope};
use fabrs_config::secrets::SecretValue;
use fabrs_config::{Revision, RoleKind};
use fabrs_plan::addr;
use fabrs_plan::addr::{MANAGED_BY, TAG_ENVIRONMENT, TAG_MANAGED_BY, TAG_PROJECT, TAG_ROLE};
use fabrs_plan::resource::*;
use fabrs_test_support::{Moto, aws};

fn moto() -> &'static Moto {
    Moto::shared()
}

async fn cloud_at(url: &str, key: &str, secret: &str) -> AwsCloud {
    AwsCloud::connect_with_credentials(
        ConnectOptions {
            region: "us-east-1".into(),
            endpoint_url: Some(url.into()),
            profile: None,
        },
        key,
        secret,
    )
    .await
    .expect("connect")
}

async fn cloud() -> AwsCloud {
    cloud_at(&moto().url(), "testing", "testing").await
}

async fn raw_ec2(url: &str) -> aws_sdk_ec2::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_ec2::Client::new(&conf)
}

// ------------------------------------------------------------------ specs

struct Env {
    p: String,
    e: String,
}

impl Env {
    fn new(e: &str) -> Env {
        Env {
            p: "myproject".into(),
            e: e.into(),
        }
    }
    fn name(&self, what: &str) -> String {
        format!("{}-{}-{what}", self.p, self.e)
    }
    fn tags(&self, extra: &[(&str, &str)]) -> Tags {
        let mut t = Tags::new();
        t.insert(TAG_PROJECT.into(), self.p.clone());
        t.insert(TAG_ENVIRONMENT.into(), self.e.clone());
        t.insert(TAG_MANAGED_BY.into(), MANAGED_BY.into());
        for (k, v) in extra {
            t.insert(k.to_string(), v.to_string());
        }
        t
    }
    fn scope(&self, names: &[(Address, String)]) -> Scope {
        Scope {
            project: self.p.clone(),
            environment: self.e.clone(),
            region: "us-east-1".into(),
            vpc: VpcRef::Default,
            names: names.iter().cloned().collect(),
            launch_configuration_prefix: format!("{}-{}-", self.p, self.e),
            image_parameters: Vec::new(),
            db_identifiers: Vec::new(),
            kinds: None,
        }
    }
    fn sg(&self, key: &str, rules: &[(&str, u16, u16, RuleSource)]) -> Spec {
        let name = self.name(&format!("{key}-sg"));
        Spec::SecurityGroup(SecurityGroupSpec {
            key: key.into(),
            name: name.clone(),
            description: format!("fabrs {key} group"),
            vpc: VpcRef::Default,
            ingress: rules
                .iter()
                .map(|(p, f, t, s)| IngressRule {
                    protocol: p.to_string(),
                    from_port: *f,
                    to_port: *t,
                    source: s.clone(),
                })
                .collect(),
            tags: self.tags(&[(addr::TAG_GROUP, key), (addr::TAG_NAME, &name)]),
        })
    }
    fn user_data(&self, role: &str, rev: &str) -> String {
        format!(
            "#cloud-config\n{}{}/{}\n{}{}\n{}{}\nhostname: {role}\n",
            addr::UD_OWNER,
            self.p,
            self.e,
            addr::UD_SHA,
            sha_of(role, rev),
            addr::UD_REVISION,
            rev
        )
    }
    fn launch(&self, role: &str, rev: &str, groups: &[&str]) -> LaunchSpec {
        LaunchSpec {
            role: RoleKind::parse(role).unwrap(),
            image_id: "ami-12c6146b".into(),
            instance_type: "t3.micro".into(),
            security_groups: groups.iter().map(|g| g.to_string()).collect(),
            key_name: Some("deploy".into()),
            volume_gb: 20,
            instance_profile: None,
            volume_type: "gp3".into(),
            volume_encrypted: true,
            metadata_http_tokens: "required".into(),
            metadata_hop_limit: 1,
            user_data_sha256: Some(sha_of(role, rev)),
            revision: Revision::parse_wire(rev).unwrap(),
        }
    }
    fn lb(&self) -> Spec {
        Spec::LoadBalancer(LoadBalancerSpec {
            name: self.name("lb"),
            listeners: vec![ListenerSpec {
                port: 80,
                protocol: "HTTP".into(),
                instance_port: 80,
                instance_protocol: "HTTP".into(),
                certificate_arn: None,
            }],
            health_check: HealthCheckSpec {
                target: "HTTP:80/healthcheck.html".into(),
                interval_secs: 30,
                timeout_secs: 5,
                healthy_threshold: 2,
                unhealthy_threshold: 3,
            },
            security_groups: vec!["lb".into()],
            subnets: vec![],
            cross_zone: true,
            idle_timeout_secs: 60,
            connection_draining_secs: Some(300),
            tls_policies: Default::default(),
            tags: self.tags(&[(TAG_ROLE, "lb")]),
        })
    }
}

fn sha_of(role: &str, rev: &str) -> String {
    format!("{:0>64}", format!("{role}{rev}").len())
}

fn ctx(ids: &[(Address, String)]) -> ApplyCtx {
    ApplyCtx {
        ids: ids.iter().cloned().collect(),
        user_data: None,
        db_password: None,
        secret_value: None,
    }
}

fn assert_one_line(e: &CloudError) {
    let s = e.to_string();
    assert!(!s.contains('\n'), "error is not one line: {s}");
    assert!(
        !s.contains("Error {") && !s.contains("ServiceError {"),
        "error is a Debug dump: {s}"
    );
}

async fn discover(c: &AwsCloud, env: &Env, names: &[(Address, String)]) -> Inventory {
    c.discover(&env.scope(names)).await.expect("discover")
}

fn spec_at<'a>(inv: &'a Inventory, a: &Address) -> &'a Spec {
    &inv.resources
        .get(a)
        .unwrap_or_else(|| {
            panic!(
                "{a} not discovered; have {:?}",
                inv.resources.keys().collect::<Vec<_>>()
            )
        })
        .spec
}

fn rule(p: &str, f: u16, t: u16, s: RuleSource) -> (&'static str, u16, u16, RuleSource) {
    (if p == "tcp" { "tcp" } else { "udp" }, f, t, s)
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_groups_create_discover_update_delete() {
    let c = cloud().await;
    let env = Env::new("sgs");
    let (a_lb, a_web) = (addr::security_group("lb"), addr::security_group("web"));
    let lb = env.sg(
        "lb",
        &[
            rule("tcp", 80, 80, RuleSource::Cidr("0.0.0.0/0".into())),
            rule("tcp", 443, 443, RuleSource::Cidr("::/0".into())),
        ],
    );
    let web = env.sg(
        "web",
        &[
            rule("tcp", 80, 80, RuleSource::Group("lb".into())),
            rule("tcp", 22, 22, RuleSource::Cidr("10.0.0.0/8".into())),
            rule("tcp", 9000, 9001, RuleSource::Group("web".into())),
        ],
    );
    // web first: its rule from `lb` cannot exist yet and is left for update().
    let web_o = c.create(&a_web, &web, &ctx(&[])).await.expect("create web");
    assert!(web_o.id.starts_with("sg-"));
    let Spec::SecurityGroup(w) = &web_o.spec else { panic!() };
    assert_eq!(
        w.ingress.len(),
        2,
        "the self rule and the CIDR rule are made at create: {:?}",
        w.ingress
    );
    let lb_o = c
        .create(&a_lb, &lb, &ctx(&[(a_web.clone(), web_o.id.clone())]))
        .await
        .expect("create lb");
    let ids = [(a_lb.clone(), lb_o.id.clone()), (a_web.clone(), web_o.id.clone())];
    let web_o = c.update(&web_o, &web, &ctx(&ids)).await.expect("update web");
    assert_eq!(web_o.spec, web);

    let names = [(a_lb.clone(), "x".to_string())];
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a_lb), &lb);
    assert_eq!(spec_at(&inv, &a_web), &web);
    assert!(inv.foreign.is_empty());

    // create again: adopted, same id
    let again = c.create(&a_lb, &lb, &ctx(&ids)).await.expect("adopt");
    assert_eq!(again.id, lb_o.id);

    // update: one rule removed, one added
    let web2 = env.sg(
        "web",
        &[
            rule("tcp", 8080, 8080, RuleSource::Group("lb".into())),
            rule("tcp", 22, 22, RuleSource::Cidr("10.0.0.0/8".into())),
            rule("udp", 53, 53, RuleSource::Cidr("10.1.0.0/16".into())),
        ],
    );
    let cur = inv.resources[&a_web].clone();
    c.update(&cur, &web2, &ctx(&ids)).await.expect("update rules");
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a_web), &web2);

    // delete (web still references lb: its group rules are revoked first)
    c.delete(&inv.resources[&a_web]).await.expect("delete web");
    c.delete(&inv.resources[&a_lb]).await.expect("delete lb");
    c.delete(&inv.resources[&a_web])
        .await
        .expect("deleting what is gone succeeds");
    let inv = discover(&c, &env, &names).await;
    assert!(
        inv.resources.is_empty(),
        "{:?}",
        inv.resources.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookalike_security_group_is_foreign_and_never_adopted() {
    let c = cloud().await;
    let env = Env::new("lookalike");
    let raw = raw_ec2(&moto().url()).await;
    let name = env.name("web-sg");
    let vpc = raw
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("isDefault")
                .values("true")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_string();
    // Same name, but only some of fabrs's tags (no managed-by): not provably ours.
    let made = raw
        .create_security_group()
        .group_name(&name)
        .description("hand made")
        .vpc_id(vpc)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(TAG_PROJECT)
                        .value(&env.p)
                        .build(),
                )
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(TAG_ENVIRONMENT)
                        .value(&env.e)
                        .build(),
                )
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(addr::TAG_GROUP)
                        .value("web")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let a = addr::security_group("web");
    let inv = discover(&c, &env, &[(a.clone(), name.clone())]).await;
    assert!(inv.resources.is_empty(), "{:?}", inv.resources);
    assert_eq!(
        inv.foreign,
        vec![Foreign {
            address: a.clone(),
            id: made.group_id().unwrap().to_string(),
            name: name.clone()
        }]
    );

    let e = c
        .create(&a, &env.sg("web", &[]), &ctx(&[]))
        .await
        .expect_err("must not adopt");
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains(&name), "{e}");
    assert_one_line(&e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_create_discover_update_delete() {
    let c = cloud().await;
    let env = Env::new("elb");
    let a_sg = addr::security_group("lb");
    let sg = c.create(&a_sg, &env.sg("lb", &[]), &ctx(&[])).await.unwrap();
    let ids = [(a_sg.clone(), sg.id.clone())];
    let a = addr::load_balancer();
    let lb = env.lb();
    let o = c.create(&a, &lb, &ctx(&ids)).await.expect("create lb");
    // Created: the spec as made, no read-back; discovery reads the rest.
    assert_eq!(o.spec, lb);
    let names = [(a.clone(), env.name("lb"))];
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a), &lb);
    let status = &inv.resources[&a].status;
    assert!(status.endpoint.is_some(), "DNS name: {status:?}");
    let again = c.create(&a, &lb, &ctx(&ids)).await.expect("adopt");
    assert_eq!(again.id, o.id);

    let Spec::LoadBalancer(mut lb2) = lb.clone() else {
        panic!()
    };
    lb2.health_check.target = "HTTP:80/up".into();
    lb2.health_check.interval_secs = 10;
    lb2.idle_timeout_secs = 120;
    lb2.connection_draining_secs = Some(45);
    lb2.listeners.push(ListenerSpec {
        port: 8080,
        protocol: "HTTP".into(),
        instance_port: 8080,
        instance_protocol: "HTTP".into(),
        certificate_arn: None,
    });
    // A new HTTPS listener gets the TLS 1.2 policy (CreateLoadBalancerPolicy
    // + SetLoadBalancerPoliciesOfListener), read back through the listener's
    // policy names and DescribeLoadBalancerPolicies.
    lb2.listeners.push(ListenerSpec {
        port: 443,
        protocol: "HTTPS".into(),
        instance_port: 443,
        instance_protocol: "HTTPS".into(),
        certificate_arn: Some("arn:aws:iam::123456789012:server-certificate/fabrs-test".into()),
    });
    lb2.listeners.sort();
    lb2.tls_policies
        .insert(443, fabrs_plan::resource::TLS_SECURITY_POLICY.to_string());
    lb2.tags.insert("team".into(), "web".into());
    let lb2 = Spec::LoadBalancer(lb2);
    c.update(&inv.resources[&a], &lb2, &ctx(&ids)).await.expect("update");
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a), &lb2);

    let w = c
        .wait(&inv.resources[&a], false, Duration::from_secs(10), &|_| {})
        .await
        .expect("wait");
    assert!(w.status.endpoint.is_some());
    c.delete(&inv.resources[&a]).await.expect("delete");
    let msgs = std::sync::Mutex::new(Vec::new());
    c.wait(&inv.resources[&a], true, Duration::from_secs(10), &|m| {
        msgs.lock().unwrap().push(m.to_string())
    })
    .await
    .expect("wait gone");
    assert!(
        msgs.lock().unwrap()[0].starts_with("waiting for load balancer"),
        "{:?}",
        msgs.lock().unwrap()
    );
    c.delete(&inv.resources[&a]).await.expect("delete again");
    let inv = discover(&c, &env, &names).await;
    assert!(!inv.resources.contains_key(&a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_configuration_and_group_with_load_balancer() {
    let c = cloud().await;
    let env = Env::new("lcasg");
    let (a_lbsg, a_web) = (addr::security_group("lb"), addr::security_group("web"));
    let lbsg = c.create(&a_lbsg, &env.sg("lb", &[]), &ctx(&[])).await.unwrap();
    let websg = c.create(&a_web, &env.sg("web", &[]), &ctx(&[])).await.unwrap();
    let mut ids = vec![(a_lbsg.clone(), lbsg.id.clone()), (a_web.clone(), websg.id.clone())];
    let lb = c.create(&addr::load_balancer(), &env.lb(), &ctx(&ids)).await.unwrap();

    let a_lc = addr::launch_configuration(RoleKind::Web);
    let lc_name = env.name("web-r1-0123abcd");
    let lc = Spec::LaunchConfiguration(LaunchConfigurationSpec {
        name: Some(lc_name.clone()),
        launch: env.launch("web", "r1", &["web", "lb"]),
    });
    let mut lctx = ctx(&ids);
    lctx.user_data = Some(env.user_data("web", "r1"));
    let lc_o = c.create(&a_lc, &lc, &lctx).await.expect("create lc");
    let Spec::LaunchConfiguration(mut sorted) = lc.clone() else {
        panic!()
    };
    sorted.launch.security_groups.sort();
    let lc_sorted = Spec::LaunchConfiguration(sorted.clone());
    assert_eq!(lc_o.spec, lc, "created: the spec as made (no read-back)");
    // again: adopted (moto would silently overwrite a duplicate)
    assert_eq!(c.create(&a_lc, &lc, &lctx).await.expect("adopt lc").id, lc_name);
    ids.push((a_lc.clone(), lc_name.clone()));

    let a_asg = addr::autoscaling_group(RoleKind::Web);
    let asg = AutoScalingGroupSpec {
        name: env.name("web-asg"),
        role: RoleKind::Web,
        min: 1,
        max: 4,
        desired: 2,
        launch: LaunchRef::Configuration(None),
        load_balancers: vec![env.name("lb")],
        subnets: vec![],
        health_check_type: "ELB".into(),
        health_check_grace_secs: 300,
        tags: env.tags(&[(TAG_ROLE, "web"), (addr::TAG_NAME, &env.name("web"))]),
    };
    let o = c
        .create(&a_asg, &Spec::AutoScalingGroup(asg.clone()), &ctx(&ids))
        .await
        .expect("create asg");
    let mut want = asg.clone();
    want.launch = LaunchRef::Configuration(Some(lc_name.clone()));
    assert_eq!(o.spec, Spec::AutoScalingGroup(want.clone()));
    let w = c
        .wait(&o, false, Duration::from_secs(20), &|_| {})
        .await
        .expect("wait asg");
    assert_eq!(w.status.members.len(), 2, "{:?}", w.status);

    let names = [
        (a_asg.clone(), want.name.clone()),
        (addr::load_balancer(), env.name("lb")),
    ];
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a_asg), &Spec::AutoScalingGroup(want.clone()));
    assert_eq!(spec_at(&inv, &a_lc), &lc_sorted);
    assert_eq!(inv.launch_configurations.get(&lc_name), Some(&sorted));
    let members = &inv.resources[&a_asg].status.members;
    assert_eq!(members.len(), 2);
    assert!(
        members
            .iter()
            .all(|m| m.state == "InService" && m.health == "InService" && m.launch == lc_name),
        "{members:?}"
    );
    // ASG instances are members, never resources; the LB sees them too.
    assert!(!inv.resources.keys().any(|a| a.kind == Kind::Instance));
    assert_eq!(inv.resources[&addr::load_balancer()].status.members.len(), 2);

    // update sizes
    let mut want2 = want.clone();
    want2.min = 2;
    want2.max = 6;
    want2.desired = 3;
    want2.health_check_grace_secs = 120;
    c.update(
        &inv.resources[&a_asg],
        &Spec::AutoScalingGroup(want2.clone()),
        &ctx(&ids),
    )
    .await
    .expect("update asg");
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a_asg), &Spec::AutoScalingGroup(want2.clone()));

    c.delete(&inv.resources[&a_asg]).await.expect("delete asg");
    c.wait(&inv.resources[&a_asg], true, Duration::from_secs(20), &|_| {})
        .await
        .expect("asg gone");
    c.delete(&inv.resources[&a_lc]).await.expect("delete lc");
    c.delete(&inv.resources[&a_lc]).await.expect("delete lc again");
    c.delete(&lb).await.unwrap();
    let inv = discover(&c, &env, &names).await;
    assert!(!inv.resources.contains_key(&a_asg) && !inv.resources.contains_key(&a_lc));
    assert!(inv.launch_configurations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_template_and_group() {
    let c = cloud().await;
    let env = Env::new("ltasg");
    let a_w = addr::security_group("worker");
    let sg = c.create(&a_w, &env.sg("worker", &[]), &ctx(&[])).await.unwrap();
    let ids = vec![(a_w.clone(), sg.id.clone())];
    let a_lt = addr::launch_template(RoleKind::Worker);
    let lt = LaunchTemplateSpec {
        name: env.name("worker"),
        launch: env.launch("worker", "r1", &["worker"]),
        tags: env.tags(&[(TAG_ROLE, "worker")]),
    };
    let mut lctx = ctx(&ids);
    lctx.user_data = Some(env.user_data("worker", "r1"));
    let o = c
        .create(&a_lt, &Spec::LaunchTemplate(lt.clone()), &lctx)
        .await
        .expect("create lt");
    assert_eq!(o.spec, Spec::LaunchTemplate(lt.clone()));
    assert_eq!(
        c.create(&a_lt, &Spec::LaunchTemplate(lt.clone()), &lctx)
            .await
            .expect("adopt")
            .id,
        o.id
    );

    let a_asg = addr::autoscaling_group(RoleKind::Worker);
    let asg = AutoScalingGroupSpec {
        name: env.name("worker-asg"),
        role: RoleKind::Worker,
        min: 1,
        max: 2,
        desired: 1,
        launch: LaunchRef::Template {
            name: lt.name.clone(),
            version: None,
        },
        load_balancers: vec![],
        subnets: vec![],
        health_check_type: "EC2".into(),
        health_check_grace_secs: 60,
        tags: env.tags(&[(TAG_ROLE, "worker")]),
    };
    c.create(&a_asg, &Spec::AutoScalingGroup(asg.clone()), &ctx(&ids))
        .await
        .expect("create asg");
    let mut want = asg.clone();
    want.launch = LaunchRef::Template {
        name: lt.name.clone(),
        version: Some("$Latest".into()),
    };
    let names = [(a_lt.clone(), lt.name.clone())];
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a_lt), &Spec::LaunchTemplate(lt.clone()));
    assert_eq!(spec_at(&inv, &a_asg), &Spec::AutoScalingGroup(want.clone()));
    assert!(
        inv.resources[&a_asg].status.members.iter().all(|m| m.health.is_empty()),
        "not on a load balancer"
    );

    // a new revision: a new template version
    let mut lt2 = lt.clone();
    lt2.launch = env.launch("worker", "r2", &["worker"]);
    lctx.user_data = Some(env.user_data("worker", "r2"));
    let o2 = c
        .update(&inv.resources[&a_lt], &Spec::LaunchTemplate(lt2.clone()), &lctx)
        .await
        .expect("update lt");
    assert_eq!(o2.spec, Spec::LaunchTemplate(lt2.clone()));
    assert_eq!(o2.status.state, "version 2");
    assert_eq!(o2.status.template_version, Some(2));
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a_lt), &Spec::LaunchTemplate(lt2.clone()));

    c.delete(&inv.resources[&a_asg]).await.unwrap();
    c.delete(&inv.resources[&a_lt]).await.unwrap();
    c.delete(&inv.resources[&a_lt]).await.expect("again");
    let inv = discover(&c, &env, &names).await;
    assert!(!inv.resources.contains_key(&a_lt) && !inv.resources.contains_key(&a_asg));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_instance_on_the_load_balancer() {
    let c = cloud().await;
    let env = Env::new("inst");
    let (a_lbsg, a_web) = (addr::security_group("lb"), addr::security_group("web"));
    let lbsg = c.create(&a_lbsg, &env.sg("lb", &[]), &ctx(&[])).await.unwrap();
    let websg = c.create(&a_web, &env.sg("web", &[]), &ctx(&[])).await.unwrap();
    let ids = vec![(a_lbsg.clone(), lbsg.id.clone()), (a_web.clone(), websg.id.clone())];
    let lb = c.create(&addr::load_balancer(), &env.lb(), &ctx(&ids)).await.unwrap();

    let a = addr::instance(RoleKind::Web, 0);
    let name = env.name("web-0");
    let spec = InstanceSpec {
        role: RoleKind::Web,
        index: 0,
        launch: env.launch("web", "r1", &["web"]),
        load_balancer: Some(env.name("lb")),
        subnet: None,
        tags: env.tags(&[
            (TAG_ROLE, "web"),
            (addr::TAG_INDEX, "0"),
            (addr::TAG_NAME, &name),
            (addr::TAG_REVISION, "r1"),
        ]),
    };
    let mut ictx = ctx(&ids);
    ictx.user_data = Some(env.user_data("web", "r1"));
    let o = c
        .create(&a, &Spec::Instance(spec.clone()), &ictx)
        .await
        .expect("create instance");
    assert_eq!(o.spec, Spec::Instance(spec.clone()));
    assert_eq!(
        c.create(&a, &Spec::Instance(spec.clone()), &ictx)
            .await
            .expect("adopt")
            .id,
        o.id,
        "a rerun launches no second instance"
    );
    let w = c.wait(&o, false, Duration::from_secs(30), &|_| {}).await.expect("wait");
    assert_eq!(w.status.state, "running");
    assert!(w.status.private_ip.is_some());

    let names = [(a.clone(), name.clone())];
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a), &Spec::Instance(spec.clone()));
    let lbm = &inv.resources[&addr::load_balancer()].status.members;
    assert_eq!(lbm.len(), 1, "registered once: {lbm:?}");
    assert_eq!(lbm[0].health, "InService");

    let mut spec2 = spec.clone();
    spec2.tags.insert("team".into(), "web".into());
    spec2.load_balancer = None;
    spec2.launch.security_groups = vec!["lb".into(), "web".into()];
    c.update(&inv.resources[&a], &Spec::Instance(spec2.clone()), &ictx)
        .await
        .expect("update");
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a), &Spec::Instance(spec2.clone()));
    assert!(inv.resources[&addr::load_balancer()].status.members.is_empty());

    c.delete(&inv.resources[&a]).await.expect("terminate");
    c.wait(&inv.resources[&a], true, Duration::from_secs(30), &|_| {})
        .await
        .expect("gone");
    c.delete(&lb).await.unwrap();
    let inv = discover(&c, &env, &names).await;
    assert!(!inv.resources.contains_key(&a));
    assert!(
        inv.foreign.is_empty(),
        "a terminated instance is no look-alike: {:?}",
        inv.foreign
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_master_replica_and_groups() {
    let c = cloud().await;
    let env = Env::new("rds");
    let a_db = addr::security_group("db");
    let sg = c.create(&a_db, &env.sg("db", &[]), &ctx(&[])).await.unwrap();
    let ids = vec![(a_db.clone(), sg.id.clone())];

    let a_sn = addr::db_subnet_group();
    let sn = DbSubnetGroupSpec {
        name: env.name("db-subnets"),
        description: "fabrs db subnets".into(),
        subnets: vec![],
        tags: env.tags(&[]),
    };
    let o = c
        .create(&a_sn, &Spec::DbSubnetGroup(sn.clone()), &ctx(&ids))
        .await
        .expect("subnet group");
    assert_eq!(o.spec, Spec::DbSubnetGroup(sn.clone()));
    let a_pg = addr::db_parameter_group();
    let pg = DbParameterGroupSpec {
        name: env.name("db-params"),
        family: "postgres16".into(),
        description: "fabrs db params".into(),
        parameters: [("log_min_duration_statement", "500"), ("max_connections", "200")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        tags: env.tags(&[]),
    };
    let o = c
        .create(&a_pg, &Spec::DbParameterGroup(pg.clone()), &ctx(&ids))
        .await
        .expect("parameter group");
    assert_eq!(o.spec, Spec::DbParameterGroup(pg.clone()));

    let master = DbInstanceSpec {
        identifier: env.name("db"),
        replica_of: None,
        instance_class: "db.t3.micro".into(),
        engine: "postgres".into(),
        engine_version: "16.3".into(),
        storage_gb: 20,
        db_name: "app".into(),
        username: "app".into(),
        password_secret: "db_password".into(),
        multi_az: false,
        publicly_accessible: false,
        backup_retention_days: 7,
        security_groups: vec!["db".into()],
        subnet_group: sn.name.clone(),
        parameter_group: pg.name.clone(),
        deletion_protection: false,
        tags: env.tags(&[(addr::TAG_DB_ROLE, "master")]),
    };
    let mut dctx = ctx(&ids);
    dctx.db_password = Some(SecretValue::new("s3cret-pass".into()));
    let a_m = addr::db_master();
    let mo = c
        .create(&a_m, &Spec::DbInstance(master.clone()), &dctx)
        .await
        .expect("master");
    let observed_master = DbInstanceSpec {
        password_secret: String::new(),
        ..master.clone()
    };
    assert_eq!(
        mo.spec,
        Spec::DbInstance(master.clone()),
        "created: the spec as made (no read-back)"
    );
    let w = c
        .wait(&mo, false, Duration::from_secs(30), &|_| {})
        .await
        .expect("wait master");
    assert_eq!(w.status.state, "available");
    assert!(w.status.endpoint.is_some());

    let a_r = addr::db_replica(0);
    let replica = DbInstanceSpec {
        identifier: env.name("db-replica-0"),
        replica_of: Some(master.identifier.clone()),
        password_secret: String::new(),
        tags: env.tags(&[(addr::TAG_DB_ROLE, "replica-0")]),
        ..master.clone()
    };
    let ro = c
        .create(&a_r, &Spec::DbInstance(replica.clone()), &ctx(&ids))
        .await
        .expect("replica");
    let Spec::DbInstance(got) = &ro.spec else { panic!() };
    assert_eq!(got.replica_of.as_deref(), Some(master.identifier.as_str()));
    assert_eq!(got.tags, replica.tags);
    // Sent without a parameter group, the replica has its master's.
    assert_eq!(got.parameter_group, pg.name);
    assert_eq!(
        c.create(&a_m, &Spec::DbInstance(master.clone()), &dctx)
            .await
            .expect("adopt")
            .id,
        mo.id
    );

    let names = [
        (a_m.clone(), master.identifier.clone()),
        (a_sn.clone(), sn.name.clone()),
        (a_pg.clone(), pg.name.clone()),
    ];
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a_m), &Spec::DbInstance(observed_master.clone()));
    assert_eq!(spec_at(&inv, &a_sn), &Spec::DbSubnetGroup(sn.clone()));
    assert_eq!(spec_at(&inv, &a_pg), &Spec::DbParameterGroup(pg.clone()));
    assert!(inv.resources.contains_key(&a_r));
    assert!(inv.foreign.is_empty(), "{:?}", inv.foreign);

    // update: class, storage, backups; a parameter changed and one added
    let m2 = DbInstanceSpec {
        instance_class: "db.t3.small".into(),
        storage_gb: 40,
        backup_retention_days: 14,
        ..observed_master.clone()
    };
    c.update(&inv.resources[&a_m], &Spec::DbInstance(m2.clone()), &dctx)
        .await
        .expect("modify");
    let mut pg2 = pg.clone();
    pg2.parameters.insert("max_connections".into(), "300".into());
    pg2.parameters.insert("work_mem".into(), "8192".into());
    c.update(&inv.resources[&a_pg], &Spec::DbParameterGroup(pg2.clone()), &ctx(&ids))
        .await
        .expect("params");
    let inv = discover(&c, &env, &names).await;
    assert_eq!(spec_at(&inv, &a_m), &Spec::DbInstance(m2.clone()));
    assert_eq!(spec_at(&inv, &a_pg), &Spec::DbParameterGroup(pg2.clone()));

    for a in [&a_r, &a_m] {
        c.delete(&inv.resources[a]).await.expect("delete db");
        c.wait(&inv.resources[a], true, Duration::from_secs(30), &|_| {})
            .await
            .expect("db gone");
    }
    c.delete(&inv.resources[&a_pg]).await.expect("delete pg");
    c.delete(&inv.resources[&a_sn]).await.expect("delete sn");
    c.delete(&inv.resources[&a_sn]).await.expect("delete sn again");
    let inv = discover(&c, &env, &names).await;
    let left: BTreeSet<_> = inv.resources.keys().filter(|a| a.kind != Kind::SecurityGroup).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_and_classified() {
    let c = cloud().await;
    let env = Env::new("errors");
    // An ASG naming a launch configuration that does not exist.
    let asg = AutoScalingGroupSpec {
        name: env.name("web-asg"),
        role: RoleKind::Web,
        min: 1,
        max: 1,
        desired: 1,
        launch: LaunchRef::Configuration(Some("no-such-lc".into())),
        load_balancers: vec![],
        subnets: vec![],
        health_check_type: "EC2".into(),
        health_check_grace_secs: 0,
        tags: env.tags(&[(TAG_ROLE, "web")]),
    };
    let e = c
        .create(
            &addr::autoscaling_group(RoleKind::Web),
            &Spec::AutoScalingGroup(asg),
            &ctx(&[]),
        )
        .await
        .expect_err("no such LC");
    assert_one_line(&e);
    assert_eq!(e.operation, "CreateAutoScalingGroup");
    assert!(e.resource.contains(&env.name("web-asg")), "{e}");
    // A group key with no id.
    let e = c
        .create(&addr::load_balancer(), &env.lb(), &ctx(&[]))
        .await
        .expect_err("no lb group id");
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_one_line(&e);
    // A service NotFound, passed through update (not delete, which forgives it).
    let ghost = Observed {
        address: addr::security_group("web"),
        id: "sg-00000000000000000".into(),
        spec: env.sg("web", &[]),
        status: Status::default(),
    };
    let e = c
        .update(
            &ghost,
            &env.sg("web", &[rule("tcp", 1, 1, RuleSource::Cidr("10.0.0.0/8".into()))]),
            &ctx(&[]),
        )
        .await
        .expect_err("ghost");
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.message.starts_with("InvalidGroup.NotFound"), "{e}");
    assert_one_line(&e);
    c.delete(&ghost).await.expect("deleting a missing group succeeds");
    let e = c
        .wait(
            &Observed {
                address: addr::instance(RoleKind::Web, 0),
                id: "i-0000000000000000a".into(),
                spec: env.lb(),
                status: Status::default(),
            },
            false,
            Duration::from_secs(2),
            &|_| {},
        )
        .await
        .expect_err("timeout");
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("to be ready"), "{e}");

    let (ops, attempts) = c.api_calls();
    assert!(ops >= 4 && attempts >= ops, "{ops} {attempts}");
    c.reset_api_calls();
    assert_eq!(c.api_calls(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_configurations_refused_by_the_account() {
    // IAM enforcement is server-wide: this test has a moto of its own.
    let m = Moto::start();
    let run = |args: &[&str]| aws(&m, args);
    // The next 3 requests are free (the IAM set-up); everything after is checked.
    let r = std::process::Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-H",
            "Content-Type: text/plain",
            "--data",
            "3",
            &format!("{}/moto-api/reset-auth", m.url()),
        ])
        .status()
        .expect("curl");
    assert!(r.success());
    run(&["iam", "create-user", "--user-name", "newaccount"]);
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"autoscaling:CreateLaunchConfiguration","Resource":"*"}]}"#;
    run(&[
        "iam",
        "put-user-policy",
        "--user-name",
        "newaccount",
        "--policy-name",
        "no-lc",
        "--policy-document",
        policy,
    ]);
    let key = run(&["iam", "create-access-key", "--user-name", "newaccount"]);
    let field = |name: &str| key["AccessKey"][name].as_str().unwrap().to_string();
    let c = cloud_at(&m.url(), &field("AccessKeyId"), &field("SecretAccessKey")).await;
    let env = Env::new("nolc");
    // A raw group id passes through: no security group is created here
    // (under IAM enforcement moto answered the Rust SDK's CreateSecurityGroup
    // with AuthFailure, a signature mismatch unrelated to what is tested).
    let lc = Spec::LaunchConfiguration(LaunchConfigurationSpec {
        name: Some(env.name("web-r1-0123abcd")),
        launch: env.launch("web", "r1", &["sg-0123456789abcdef0"]),
    });
    let mut lctx = ctx(&[]);
    lctx.user_data = Some(env.user_data("web", "r1"));
    let e = c
        .create(&addr::launch_configuration(RoleKind::Web), &lc, &lctx)
        .await
        .expect_err("denied");
    assert_eq!(e.kind, ErrorKind::LaunchConfigurationsUnsupported, "{e}");
    assert!(e.message.starts_with(LC_UNSUPPORTED), "{e}");
    // Refused by the explicit Deny of the policy, not by a bad signature.
    assert!(e.message.contains("AccessDenied"), "{e}");
    assert_eq!(e.operation, "CreateLaunchConfiguration");
    assert_one_line(&e);
}
