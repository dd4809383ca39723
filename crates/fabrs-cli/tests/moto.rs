//! `fabrs plan`, `create-env`, `status`, `destroy-env` against a real moto
//! server, read back with an independent client (awscli), through a
//! fault-injecting proxy, and killed with SIGKILL mid-run.
//!
//! moto and awscli come from scripts/setup (.venv); a missing one fails the
//! test, saying so.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

fn ingress(group: &Value, names: &std::collections::BTreeMap<String, String>) -> BTreeSet<(i64, String)> {
    let mut out = BTreeSet::new();
    for p in group["IpPermissions"].as_array().unwrap() {
        let port = p["FromPort"].as_i64().unwrap_or(-1);
        assert_eq!(p["FromPort"], p["ToPort"], "single ports only");
        for r in p["IpRanges"].as_array().into_iter().flatten() {
            out.insert((port, r["CidrIp"].as_str().unwrap().to_string()));
        }
        for r in p["Ipv6Ranges"].as_array().into_iter().flatten() {
            out.insert((port, r["CidrIpv6"].as_str().unwrap().to_string()));
        }
        for r in p["UserIdGroupPairs"].as_array().into_iter().flatten() {
            let id = r["GroupId"].as_str().unwrap();
            out.insert((port, names.get(id).cloned().unwrap_or_else(|| id.to_string())));
        }
    }
    out
}

fn set(items: &[(i64, &str)]) -> BTreeSet<(i64, String)> {
    items.iter().map(|(p, s)| (*p, s.to_string())).collect()
}

/// Everything the environment file asks for, read back with awscli.
fn check_against_file(moto: &Moto, env: &str) {
    check_against(moto, env, &root().join(format!("environments/{env}.yaml")))
}

/// Instance metadata: IMDSv2 only, one hop.
fn assert_imdsv2(what: &str, options: &Value) {
    assert_eq!(options["HttpTokens"], "required", "{what}: {options}");
    assert_eq!(options["HttpPutResponseHopLimit"], 1, "{what}: {options}");
}

/// A root volume (block device mapping's Ebs, or a volume): encrypted gp3.
fn assert_encrypted_gp3(what: &str, ebs: &Value) {
    assert_eq!(ebs["Encrypted"], true, "{what}: {ebs}");
    assert_eq!(ebs["VolumeType"], "gp3", "{what}: {ebs}");
}

fn check_against(moto: &Moto, env: &str, path: &std::path::Path) {
    let file = fabrs_config::load_file(path).unwrap();
    let p = format!("myproject-{env}");

    // Security groups: exactly seed 001's rules.
    let mut args = vec!["ec2", "describe-security-groups"];
    let f = env_filter(env);
    args.extend(f.iter().map(String::as_str));
    let groups = aws(moto, &args)["SecurityGroups"].as_array().unwrap().clone();
    let names: std::collections::BTreeMap<String, String> = groups
        .iter()
        .map(|g| {
            (
                g["GroupId"].as_str().unwrap().to_string(),
                g["GroupName"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let by_name = |n: &str| {
        groups
            .iter()
            .find(|g| g["GroupName"] == n)
            .unwrap_or_else(|| panic!("no group {n}"))
    };
    let expected_names: BTreeSet<String> = ["sg", "lb-sg", "web-sg", "worker-sg", "cache-sg", "queue-sg", "db-sg"]
        .iter()
        .map(|s| format!("{p}-{s}"))
        .collect();
    assert_eq!(names.values().cloned().collect::<BTreeSet<_>>(), expected_names);
    let g = |s: &str| format!("{p}-{s}");
    assert_eq!(
        ingress(by_name(&g("sg")), &names),
        set(&[(22, "203.0.113.10/32")]),
        "SSH only from the admin CIDR"
    );
    assert_eq!(
        ingress(by_name(&g("lb-sg")), &names),
        set(&[(80, "0.0.0.0/0"), (80, "::/0"), (443, "0.0.0.0/0"), (443, "::/0")]),
        "the internet reaches only the load balancer"
    );
    assert_eq!(
        ingress(by_name(&g("web-sg")), &names),
        set(&[(80, &g("lb-sg")), (443, &g("lb-sg"))])
    );
    assert_eq!(ingress(by_name(&g("worker-sg")), &names), set(&[]));
    assert_eq!(
        ingress(by_name(&g("db-sg")), &names),
        set(&[(5432, &g("web-sg")), (5432, &g("worker-sg"))])
    );
    assert_eq!(
        ingress(by_name(&g("cache-sg")), &names),
        set(&[(6379, &g("web-sg")), (6379, &g("worker-sg"))])
    );
    assert_eq!(
        ingress(by_name(&g("queue-sg")), &names),
        set(&[(5672, &g("web-sg")), (5672, &g("worker-sg"))])
    );
    for group in &groups {
        assert_eq!(tag(&group["Tags"], "managed-by"), Some("fabrs"));
    }

    // The classic ELB: listeners, health check, its group, tags.
    let lbs = aws(moto, &["elb", "describe-load-balancers", "--load-balancer-names", &p]);
    let lb = &lbs["LoadBalancerDescriptions"][0];
    let mut listeners: Vec<(i64, String, i64, String)> = lb["ListenerDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let l = &l["Listener"];
            (
                l["LoadBalancerPort"].as_i64().unwrap(),
                l["Protocol"].as_str().unwrap().to_uppercase(),
                l["InstancePort"].as_i64().unwrap(),
                l["InstanceProtocol"].as_str().unwrap().to_uppercase(),
            )
        })
        .collect();
    listeners.sort();
    assert_eq!(
        listeners,
        vec![
            (80, "HTTP".into(), 80, "HTTP".into()),
            (443, "HTTPS".into(), 443, "HTTPS".into())
        ]
    );
    let hc = &lb["HealthCheck"];
    assert_eq!(hc["Target"], "HTTPS:443/healthcheck.html");
    assert_eq!(hc["Interval"], 30);
    assert_eq!(hc["Timeout"], 5);
    let lb_groups: Vec<&str> = lb["SecurityGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        lb_groups.iter().map(|id| names[*id].clone()).collect::<Vec<_>>(),
        vec![g("lb-sg")]
    );
    // Connection draining on, with the file's timeout.
    let attrs = aws(
        moto,
        &["elb", "describe-load-balancer-attributes", "--load-balancer-name", &p],
    );
    let draining = &attrs["LoadBalancerAttributes"]["ConnectionDraining"];
    assert_eq!(draining["Enabled"], true, "{attrs}");
    assert_eq!(
        draining["Timeout"].as_u64(),
        Some(file.load_balancer.draining_timeout.as_secs()),
        "{attrs}"
    );
    // The HTTPS listener refuses TLS below 1.2: its SSL negotiation policy
    // references ELBSecurityPolicy-TLS-1-2-2017-01.
    let tls = "fabrs-ELBSecurityPolicy-TLS-1-2-2017-01";
    for ld in lb["ListenerDescriptions"].as_array().unwrap() {
        let names: Vec<&str> = ld["PolicyNames"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let https = ld["Listener"]["Protocol"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("HTTPS");
        assert_eq!(names, if https { vec![tls] } else { vec![] }, "{ld}");
    }
    let policies = aws(
        moto,
        &[
            "elb",
            "describe-load-balancer-policies",
            "--load-balancer-name",
            &p,
            "--policy-names",
            tls,
        ],
    );
    let policy = &policies["PolicyDescriptions"][0];
    assert_eq!(policy["PolicyTypeName"], "SSLNegotiationPolicyType", "{policies}");
    assert!(
        policy["PolicyAttributeDescriptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["AttributeName"] == "Reference-Security-Policy"
                && a["AttributeValue"] == "ELBSecurityPolicy-TLS-1-2-2017-01"),
        "{policies}"
    );
    let lb_tags = aws(moto, &["elb", "describe-tags", "--load-balancer-names", &p]);
    assert_eq!(
        tag(&lb_tags["TagDescriptions"][0]["Tags"], "fabrs:environment"),
        Some(env)
    );

    // Autoscaling groups: sizes, launch configuration or template (user-data included), ELB.
    for role in ["web", "worker"] {
        let name = format!("{p}-{role}");
        let asgs = aws(
            moto,
            &[
                "autoscaling",
                "describe-auto-scaling-groups",
                "--auto-scaling-group-names",
                &name,
            ],
        );
        let asg = &asgs["AutoScalingGroups"][0];
        let fabrs_config::Scaling::Auto {
            min,
            max,
            desired,
            launch,
        } = file.roles[&fabrs_config::RoleKind::parse(role).unwrap()].scaling
        else {
            panic!("{role} is autoscaled in {env}")
        };
        assert_eq!(
            (
                asg["MinSize"].as_u64(),
                asg["MaxSize"].as_u64(),
                asg["DesiredCapacity"].as_u64()
            ),
            (Some(min as u64), Some(max as u64), Some(desired as u64)),
            "{name}"
        );
        let lbs: Vec<&str> = asg["LoadBalancerNames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(lbs, if role == "web" { vec![p.as_str()] } else { vec![] });
        assert!(
            asg["Tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["Key"] == "fabrs:role" && t["Value"] == role && t["PropagateAtLaunch"] == true)
        );
        let user_data = match launch {
            fabrs_config::Launch::Configuration => {
                let lc_name = asg["LaunchConfigurationName"].as_str().expect("a launch configuration");
                assert!(
                    lc_name.starts_with(&format!("{name}-none-")),
                    "{lc_name}: the revision is readable"
                );
                let lcs = aws(
                    moto,
                    &[
                        "autoscaling",
                        "describe-launch-configurations",
                        "--launch-configuration-names",
                        lc_name,
                    ],
                );
                let lc = &lcs["LaunchConfigurations"][0];
                assert_eq!(
                    lc["InstanceType"],
                    file.roles[&fabrs_config::RoleKind::parse(role).unwrap()]
                        .instance_type
                        .as_str()
                );
                // `ami: resolve:ssm:…` is resolved by fabrs at plan time: the
                // configuration names the image the parameter names (read
                // here with awscli).
                let image = match &file.ami {
                    fabrs_config::Ami::Id(id) => id.clone(),
                    fabrs_config::Ami::Parameter(name) => {
                        aws(moto, &["ssm", "get-parameter", "--name", name])["Parameter"]["Value"]
                            .as_str()
                            .expect("the parameter's value")
                            .to_string()
                    }
                };
                assert_eq!(lc["ImageId"], image.as_str());
                assert_imdsv2(lc_name, &lc["MetadataOptions"]);
                assert_encrypted_gp3(lc_name, &lc["BlockDeviceMappings"][0]["Ebs"]);
                lc["UserData"].as_str().unwrap().to_string()
            }
            fabrs_config::Launch::Template => {
                let lt = &asg["LaunchTemplate"];
                assert_eq!(lt["LaunchTemplateName"], name.as_str());
                let versions = aws(
                    moto,
                    &[
                        "ec2",
                        "describe-launch-template-versions",
                        "--launch-template-name",
                        &name,
                        "--versions",
                        "$Latest",
                    ],
                );
                let data = &versions["LaunchTemplateVersions"][0]["LaunchTemplateData"];
                assert_eq!(
                    data["InstanceType"],
                    file.roles[&fabrs_config::RoleKind::parse(role).unwrap()]
                        .instance_type
                        .as_str()
                );
                assert_imdsv2(&name, &data["MetadataOptions"]);
                assert_encrypted_gp3(&name, &data["BlockDeviceMappings"][0]["Ebs"]);
                data["UserData"].as_str().unwrap().to_string()
            }
        };
        let decoded = String::from_utf8(base64_decode(&user_data)).unwrap();
        assert!(
            decoded.starts_with("#cloud-config\n# fabrs:owner=myproject/"),
            "{}",
            &decoded[..80.min(decoded.len())]
        );
        assert!(decoded.contains(&format!("refapp-{role}.service")));
        assert!(
            decoded.contains(&format!("{p}-db.")),
            "the user-data points pgbouncer at the real database endpoint"
        );
        assert!(!decoded.contains("fabrs.invalid"), "no placeholder address is left");
        // Secrets are fetched from SSM at boot (tests/ssm.rs): the user-data
        // holds tokens, never the resolved value.
        assert!(
            !decoded.contains("moto-db-Pa55word") && decoded.contains("fabrs-ssm.url.db_password."),
            "the launched user-data holds the secret's token, not its value"
        );
    }

    // The cache + queue server.
    let mut args = vec!["ec2", "describe-instances"];
    let mut f = env_filter(env);
    f.push("Name=tag:fabrs:role,Values=cache".into());
    f.push("Name=instance-state-name,Values=pending,running".into());
    args.extend(f.iter().map(String::as_str));
    let res = aws(moto, &args);
    let cache: Vec<&Value> = res["Reservations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["Instances"].as_array().unwrap())
        .collect();
    assert_eq!(cache.len(), 1, "one cache/queue server");
    assert_imdsv2("the cache server", &cache[0]["MetadataOptions"]);
    let volume_ids: Vec<&str> = cache[0]["BlockDeviceMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["Ebs"]["VolumeId"].as_str().unwrap())
        .collect();
    assert_eq!(volume_ids.len(), 1, "the root volume only");
    let mut args = vec!["ec2", "describe-volumes", "--volume-ids"];
    args.extend(volume_ids.iter().copied());
    for v in aws(moto, &args)["Volumes"].as_array().unwrap() {
        assert_encrypted_gp3("the cache server's root volume", v);
    }

    // RDS: master and replica, the replica pointing at the master.
    let dbs = aws(moto, &["rds", "describe-db-instances"]);
    let ours: Vec<&Value> = dbs["DBInstances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["DBInstanceIdentifier"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{p}-db"))
        })
        .collect();
    assert_eq!(ours.len(), 1 + file.database.replicas as usize);
    let master = ours
        .iter()
        .find(|d| d["DBInstanceIdentifier"] == format!("{p}-db"))
        .unwrap();
    assert_eq!(master["DBInstanceClass"], file.database.instance_class.as_str());
    assert_eq!(master["Engine"], "postgres");
    assert_eq!(master["PubliclyAccessible"], false);
    assert_eq!(master["MultiAZ"], file.database.multi_az);
    let replica = ours
        .iter()
        .find(|d| d["DBInstanceIdentifier"] == format!("{p}-db-replica-0"))
        .unwrap();
    let source = replica["ReadReplicaSourceDBInstanceIdentifier"].as_str().unwrap();
    assert!(
        source == format!("{p}-db") || source.ends_with(&format!(":db:{p}-db")),
        "{source}"
    );
    let db_groups: Vec<&str> = master["VpcSecurityGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["VpcSecurityGroupId"].as_str().unwrap())
        .collect();
    assert_eq!(
        db_groups.iter().map(|id| names[*id].clone()).collect::<Vec<_>>(),
        vec![g("db-sg")]
    );
}

#[test]
fn create_env_staging_then_read_back_independently() {
    let moto = Moto::start();
    let out = ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    assert!(out.contains("Apply complete"), "{out}");
    check_against_file(&moto, "staging");
    // Rerunnable: the second run changes nothing.
    let again = ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    assert!(again.contains("No changes."), "{again}");
    let status = ok(&fabrs(&moto.url(), &["status", "staging"]));
    assert!(
        status.contains("myproject-staging-db") && status.contains("replica"),
        "{status}"
    );
    let json: Value = serde_json::from_slice(&fabrs(&moto.url(), &["status", "staging", "--json"]).stdout).unwrap();
    assert_eq!(json["roles"]["web"]["instances"].as_array().unwrap().len(), 2);
}

#[test]
fn create_env_staging_on_launch_configurations_reads_back_hardened_and_reruns_to_no_changes() {
    let moto = Moto::start();
    let dir = staging_on_configurations();
    let file = dir.path().join("environments/staging.yaml");
    let arg = file.to_str().unwrap();
    ok(&fabrs(&moto.url(), &["create-env", arg, "--yes"]));
    check_against(&moto, "staging", &file);
    let again = ok(&fabrs(&moto.url(), &["create-env", arg, "--yes"]));
    assert!(again.contains("No changes."), "{again}");
}

#[test]
fn create_env_production_with_launch_templates() {
    let moto = Moto::start();
    ok(&fabrs(&moto.url(), &["create-env", "production", "--yes"]));
    check_against_file(&moto, "production");
}

#[test]
fn plan_detects_drift_and_create_env_repairs_it() {
    let moto = Moto::start();
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    assert_eq!(
        fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"])
            .status
            .code(),
        Some(0)
    );

    // Out of band: a wider group, a resized group, a deleted replica.
    aws(
        &moto,
        &[
            "autoscaling",
            "update-auto-scaling-group",
            "--auto-scaling-group-name",
            "myproject-staging-worker",
            "--max-size",
            "9",
        ],
    );
    let groups = aws(
        &moto,
        &[
            "ec2",
            "describe-security-groups",
            "--filters",
            "Name=group-name,Values=myproject-staging-web-sg",
        ],
    );
    let web = groups["SecurityGroups"][0]["GroupId"].as_str().unwrap().to_string();
    aws(
        &moto,
        &[
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            &web,
            "--protocol",
            "tcp",
            "--port",
            "22",
            "--cidr",
            "0.0.0.0/0",
        ],
    );
    let out = fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("~ autoscaling_group.worker") && text.contains("~ max = 9 -> 2"),
        "{text}"
    );
    assert!(
        text.contains("~ security_group.web") && text.contains("0.0.0.0/0"),
        "{text}"
    );
    assert!(text.contains("Plan: 0 to add, 2 to change, 0 to destroy."), "{text}");
    let json: Value = serde_json::from_slice(&fabrs(&moto.url(), &["plan", "staging", "--json"]).stdout).unwrap();
    assert_eq!(json["summary"]["change"], 2);

    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    assert_eq!(
        fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"])
            .status
            .code(),
        Some(0)
    );
    check_against_file(&moto, "staging");
}

#[test]
fn an_unhardened_template_version_and_draining_turned_off_by_hand_are_planned_and_repaired() {
    let moto = Moto::start();
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    // By hand: a template version without the metadata options (IMDSv1
    // allowed) and with an unencrypted volume; draining off on the ELB.
    let name = "myproject-staging-web";
    let versions = aws(
        &moto,
        &[
            "ec2",
            "describe-launch-template-versions",
            "--launch-template-name",
            name,
            "--versions",
            "$Latest",
        ],
    );
    let mut data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"].clone();
    data.as_object_mut().unwrap().remove("MetadataOptions");
    data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] = Value::Bool(false);
    aws(
        &moto,
        &[
            "ec2",
            "create-launch-template-version",
            "--launch-template-name",
            name,
            "--launch-template-data",
            &data.to_string(),
        ],
    );
    aws(
        &moto,
        &[
            "elb",
            "modify-load-balancer-attributes",
            "--load-balancer-name",
            "myproject-staging",
            "--load-balancer-attributes",
            r#"{"ConnectionDraining":{"Enabled":false}}"#,
        ],
    );
    let out = fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("~ launch_template.web"), "{text}");
    assert!(
        text.contains(r#"~ launch.metadata_http_tokens = "" -> "required""#)
            && text.contains("~ launch.volume_encrypted = false -> true"),
        "{text}"
    );
    assert!(
        text.contains("~ load_balancer.main") && text.contains("~ connection_draining_secs = null -> 300"),
        "{text}"
    );
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    assert_eq!(
        fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"])
            .status
            .code(),
        Some(0)
    );
    check_against_file(&moto, "staging");
}

#[test]
fn a_saved_plan_is_refused_after_the_account_changed() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("staging.plan.json");
    let out = fabrs(&moto.url(), &["plan", "staging", "--out", saved.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    // The account changes: something of the environment appears meanwhile.
    aws(
        &moto,
        &[
            "ec2",
            "create-security-group",
            "--group-name",
            "myproject-staging-sg",
            "--description",
            "made by hand",
            "--tag-specifications",
            "ResourceType=security-group,Tags=[{Key=fabrs:project,Value=myproject},{Key=fabrs:environment,Value=staging},{Key=managed-by,Value=fabrs},{Key=fabrs:group,Value=base}]",
        ],
    );
    let out = fabrs(
        &moto.url(),
        &["create-env", "staging", "--plan", saved.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the account changed since the plan was made"), "{err}");
    let n = aws(
        &moto,
        &[
            "ec2",
            "describe-security-groups",
            "--filters",
            "Name=tag:fabrs:environment,Values=staging",
        ],
    )["SecurityGroups"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n, 1, "nothing was applied");

    // A fresh saved plan applies.
    ok(&fabrs(
        &moto.url(),
        &["plan", "staging", "--out", saved.to_str().unwrap()],
    ));
    ok(&fabrs(
        &moto.url(),
        &["create-env", "staging", "--plan", saved.to_str().unwrap()],
    ));
    check_against_file(&moto, "staging");
}

#[test]
fn destroy_env_removes_what_fabrs_owns_and_nothing_else() {
    let moto = Moto::start();
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    // Look-alikes without fabrs's tags.
    let vpcs = aws(
        &moto,
        &["ec2", "describe-vpcs", "--filters", "Name=is-default,Values=true"],
    );
    let vpc = vpcs["Vpcs"][0]["VpcId"].as_str().unwrap().to_string();
    let lookalike = aws(
        &moto,
        &[
            "ec2",
            "create-security-group",
            "--group-name",
            "myproject-staging-old-sg",
            "--description",
            "hand made",
            "--vpc-id",
            &vpc,
        ],
    );
    let lookalike_id = lookalike["GroupId"].as_str().unwrap().to_string();
    let run = aws(
        &moto,
        &[
            "ec2",
            "run-instances",
            "--image-id",
            "ami-0c7217cdde317cfec",
            "--count",
            "1",
            "--instance-type",
            "t3.small",
            "--tag-specifications",
            "ResourceType=instance,Tags=[{Key=Name,Value=myproject-staging-cache-0},{Key=fabrs:role,Value=cache}]",
        ],
    );
    let lookalike_instance = run["Instances"][0]["InstanceId"].as_str().unwrap().to_string();

    let out = ok(&fabrs(
        &moto.url(),
        &["destroy-env", "staging", "--yes", "--disable-deletion-protection"],
    ));
    assert!(out.contains("Destroy complete"), "{out}");

    let mut args = vec!["ec2", "describe-security-groups"];
    let f = env_filter("staging");
    args.extend(f.iter().map(String::as_str));
    assert_eq!(
        aws(&moto, &args)["SecurityGroups"].as_array().unwrap().len(),
        0,
        "no tagged group left"
    );
    let mut args = vec!["ec2", "describe-instances"];
    let mut f = env_filter("staging");
    f.push("Name=instance-state-name,Values=pending,running,stopping,stopped".into());
    args.extend(f.iter().map(String::as_str));
    assert_eq!(
        aws(&moto, &args)["Reservations"].as_array().unwrap().len(),
        0,
        "no tagged instance left"
    );
    assert_eq!(
        aws(&moto, &["autoscaling", "describe-auto-scaling-groups"])["AutoScalingGroups"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        aws(&moto, &["autoscaling", "describe-launch-configurations"])["LaunchConfigurations"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        aws(&moto, &["elb", "describe-load-balancers"])["LoadBalancerDescriptions"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        aws(&moto, &["rds", "describe-db-instances"])["DBInstances"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The look-alikes are untouched.
    let still = aws(
        &moto,
        &["ec2", "describe-security-groups", "--group-ids", &lookalike_id],
    );
    assert_eq!(still["SecurityGroups"].as_array().unwrap().len(), 1);
    let inst = aws(
        &moto,
        &["ec2", "describe-instances", "--instance-ids", &lookalike_instance],
    );
    assert_eq!(inst["Reservations"][0]["Instances"][0]["State"]["Name"], "running");
}

#[test]
fn create_env_converges_through_throttling_errors_latency_and_dropped_connections() {
    let moto = Moto::start();
    let proxy = Proxy::start(
        &moto,
        &[
            "--throttle",
            "0.08",
            "--error",
            "0.05",
            "--drop",
            "0.03",
            "--latency-ms",
            "15",
            "--seed",
            "7",
        ],
    );
    let out = ok(&fabrs(&proxy.url(), &["create-env", "staging", "--yes"]));
    assert!(out.contains("Apply complete"), "{out}");
    let stats = proxy.stats();
    assert!(
        stats["throttled"].as_u64().unwrap() > 0
            && stats["errors"].as_u64().unwrap() > 0
            && stats["dropped"].as_u64().unwrap() > 0,
        "faults were injected: {stats}"
    );
    // Straight to moto: nothing left to do, and everything as the file says.
    assert_eq!(
        fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"])
            .status
            .code(),
        Some(0)
    );
    check_against_file(&moto, "staging");
}

#[test]
fn killed_create_env_reruns_to_the_same_result_without_duplicates_or_orphans() {
    // Killed after the n-th write call the proxy forwarded: among the
    // instance roles and secrets, the security groups and load balancer,
    // the database and servers (KILL_POINTS, comma-separated, overrides).
    let points: Vec<u64> = std::env::var("KILL_POINTS")
        .map(|v| v.split(',').map(|n| n.trim().parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![4, 12, 30]);
    for kill_after_writes in points {
        let moto = Moto::start();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("conformance.jsonl");
        // Latency keeps the kill close to the write it follows.
        let proxy = Proxy::start(
            &moto,
            &[
                "--conformance",
                log.to_str().unwrap(),
                "--conformance-report-only",
                "--latency-ms",
                "60",
            ],
        );
        let mut child = fabrs_cmd(&proxy.url(), &["create-env", "staging", "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while write_call_count(&proxy.stats()) < kill_after_writes {
            assert!(
                child.try_wait().unwrap().is_none(),
                "create-env ended before {kill_after_writes} writes: {}",
                proxy.stats()
            );
            std::thread::sleep(Duration::from_millis(10)); // polling the proxy's count, not a timing guess
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(status.code(), None, "killed by the signal, not finished");
        // What the killed run had sent finishes at the proxy (with its
        // create-time tags, as AWS applies them with the create) before
        // anyone looks: on AWS an accepted call does not stop with its client.
        while proxy.stats()["in_flight"].as_u64().unwrap_or(0) > 0 {
            std::thread::sleep(Duration::from_millis(10)); // polling the proxy's count
        }
        // The kill landed mid-run: something was made, not everything.
        let pending = fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]);
        assert_eq!(
            pending.status.code(),
            Some(2),
            "killed after {kill_after_writes} writes: {}{}",
            String::from_utf8_lossy(&pending.stdout),
            String::from_utf8_lossy(&pending.stderr)
        );
        let rerun = fabrs(&moto.url(), &["create-env", "staging", "--yes"]);
        assert_eq!(
            rerun.status.code(),
            Some(0),
            "rerun after a kill after {kill_after_writes} writes ({:?}): {}",
            proxy.stats()["operations"],
            String::from_utf8_lossy(&rerun.stderr)
        );
        assert_eq!(
            fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"])
                .status
                .code(),
            Some(0),
            "killed after {kill_after_writes} writes"
        );
        check_against_file(&moto, "staging");
        // No duplicates: exactly one of each thing, by independent count.
        let lts = aws(&moto, &["ec2", "describe-launch-templates"]);
        let mut names: Vec<&str> = lts["LaunchTemplates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["LaunchTemplateName"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec!["myproject-staging-web", "myproject-staging-worker"],
            "killed after {kill_after_writes} writes: {lts}"
        );
        let inst = aws(
            &moto,
            &[
                "ec2",
                "describe-instances",
                "--filters",
                "Name=instance-state-name,Values=pending,running",
            ],
        );
        let all: Vec<&Value> = inst["Reservations"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["Instances"].as_array().unwrap())
            .collect();
        let cache = all
            .iter()
            .filter(|i| tag(&i["Tags"], "fabrs:role") == Some("cache"))
            .count();
        assert_eq!(cache, 1, "killed after {kill_after_writes} writes: one cache server");
        assert_eq!(
            all.len(),
            1 + 2 + 1,
            "killed after {kill_after_writes} writes: cache + 2 web + 1 worker, no orphan"
        );
        let dbs = aws(&moto, &["rds", "describe-db-instances"]);
        assert_eq!(dbs["DBInstances"].as_array().unwrap().len(), 2);
        assert_eq!(
            aws(&moto, &["elb", "describe-load-balancers"])["LoadBalancerDescriptions"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}

#[test]
fn an_account_that_refuses_launch_configurations_gets_told_to_use_templates() {
    let moto = Moto::start();
    // The proxy answers CreateLaunchConfiguration as AWS answers accounts
    // created after 2024-10-01.
    let proxy = Proxy::start(&moto, &["--deny-action", "CreateLaunchConfiguration"]);
    let dir = staging_on_configurations();
    let file = dir.path().join("environments/staging.yaml");
    let out = fabrs(&proxy.url(), &["create-env", file.to_str().unwrap(), "--yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(proxy.stats()["denied"].as_u64().unwrap() > 0);
    let line = err
        .lines()
        .find(|l| l.contains("CreateLaunchConfiguration"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("set `launch: template` for this role in the environment file"),
        "{line}"
    );
    assert!(
        !err.contains("Error {") && !err.contains("DispatchFailure"),
        "one line, no debug dump: {err}"
    );
}

#[test]
fn create_calls_a_killed_run_left_in_flight_do_not_fail_the_next_run() {
    // Each create call reaches the API twice, as when a run killed with the
    // call in flight sent it just before: the call fabrs hears back from
    // finds the resource made (Duplicate… / AlreadyExists). fabrs proves it
    // is its own by the tags and goes on; one of each thing results.
    let moto = Moto::start();
    let proxy = Proxy::start(
        &moto,
        &[
            "--send-twice",
            "CreateLoadBalancer",
            "--send-twice",
            "CreateSecurityGroup",
            "--send-twice",
            "CreateDBSubnetGroup",
            "--send-twice",
            "CreateDBParameterGroup",
            "--send-twice",
            "CreateDBInstance",
            "--send-twice",
            "CreateLaunchTemplate",
            "--send-twice",
            "CreateAutoScalingGroup",
            "--send-twice",
            "CreateRole",
            "--send-twice",
            "CreateInstanceProfile",
        ],
    );
    ok(&fabrs(&proxy.url(), &["create-env", "staging", "--yes"]));
    assert!(proxy.stats()["doubled"].as_u64() >= Some(17), "{}", proxy.stats());
    let out = ok(&fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]));
    assert!(out.contains("No changes"), "{out}");
    check_against_file(&moto, "staging");
    let lbs = aws(&moto, &["elb", "describe-load-balancers"]);
    assert_eq!(lbs["LoadBalancerDescriptions"].as_array().unwrap().len(), 1, "{lbs}");
}
