//! Instance roles (issue 10, item 1) against a real moto behind the
//! conformance proxy, read back with awscli: a role and instance profile per
//! server role, tagged, least privilege, named by every launch template,
//! launch configuration and instance; drift repaired; look-alikes refused;
//! destroyed with the environment.

use std::collections::BTreeSet;

use serde_json::Value;

mod common;
use common::*;

fn strings(v: &Value) -> BTreeSet<String> {
    match v {
        Value::String(s) => [s.clone()].into(),
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        other => panic!("not a string or list: {other}"),
    }
}

/// sid → (actions, resources) of a role's inline policy, as IAM holds it.
fn policy(moto: &Moto, role: &str) -> Vec<(String, BTreeSet<String>, BTreeSet<String>)> {
    let doc = aws(
        moto,
        &["iam", "get-role-policy", "--role-name", role, "--policy-name", "fabrs"],
    )["PolicyDocument"]
        .clone();
    // awscli decodes the URL-encoded document into JSON.
    let doc: Value = match doc {
        Value::String(s) => serde_json::from_str(&s).unwrap(),
        v => v,
    };
    let mut out: Vec<_> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "{s}");
            (
                s["Sid"].as_str().unwrap().to_string(),
                strings(&s["Action"]),
                strings(&s["Resource"]),
            )
        })
        .collect();
    out.sort();
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_server_gets_a_least_privilege_instance_role_read_back_with_awscli() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conformance.jsonl");
    let proxy = conformance_proxy(&moto, &log);
    // staging, on launch configurations (the shipped file uses templates)
    // for web and worker, with a fixed cache server; production: templates.
    let legacy = staging_on_configurations();
    let legacy_dir = legacy.path().to_str().unwrap();
    ok(&fabrs(
        &proxy.url(),
        &["--dir", legacy_dir, "create-env", "staging", "--yes"],
    ));
    ok(&fabrs(&proxy.url(), &["create-env", "production", "--yes"]));
    let ops = proxy.stats()["operations"].clone();
    for op in [
        "iam.CreateRole",
        "iam.PutRolePolicy",
        "iam.CreateInstanceProfile",
        "iam.AddRoleToInstanceProfile",
    ] {
        assert!(ops[op].as_u64().unwrap_or(0) >= 1, "{op} went through the proxy: {ops}");
    }
    let iam: Vec<Value> = violations(&log, "iam");
    assert!(iam.is_empty(), "IAM would refuse: {iam:#?}");

    // One role per server role under the environment's path, tagged.
    let roles = aws(
        &moto,
        &["iam", "list-roles", "--path-prefix", "/fabrs/myproject/staging/"],
    )["Roles"]
        .as_array()
        .unwrap()
        .clone();
    let names: BTreeSet<String> = roles
        .iter()
        .map(|r| r["RoleName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        set(&[
            "myproject-staging-cache",
            "myproject-staging-web",
            "myproject-staging-worker"
        ])
    );
    for r in &names {
        let role = aws(&moto, &["iam", "get-role", "--role-name", r])["Role"].clone();
        let trust = role["AssumeRolePolicyDocument"].clone();
        let trust: Value = match trust {
            Value::String(s) => serde_json::from_str(&s).unwrap(),
            v => v,
        };
        assert_eq!(
            trust["Statement"][0]["Principal"]["Service"], "ec2.amazonaws.com",
            "only EC2 may assume {r}"
        );
        let tags = aws(&moto, &["iam", "list-role-tags", "--role-name", r])["Tags"].clone();
        assert_eq!(tag(&tags, "fabrs:project"), Some("myproject"), "{r}: {tags}");
        assert_eq!(tag(&tags, "fabrs:environment"), Some("staging"), "{r}: {tags}");
        assert_eq!(tag(&tags, "managed-by"), Some("fabrs"), "{r}: {tags}");
        let prof =
            aws(&moto, &["iam", "get-instance-profile", "--instance-profile-name", r])["InstanceProfile"].clone();
        assert_eq!(prof["Roles"][0]["RoleName"], r.as_str(), "{prof}");
        assert_eq!(prof["Path"], "/fabrs/myproject/staging/");
    }

    // Exactly what each role needs, nothing else.
    let ssm = (
        "ReadSecrets".to_string(),
        set(&["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"]),
        set(&[
            "arn:aws:ssm:us-east-1:*:parameter/myproject/staging",
            "arn:aws:ssm:us-east-1:*:parameter/myproject/staging/*",
        ]),
    );
    let app = vec![
        (
            "ReadReleases".to_string(),
            set(&["s3:GetObject"]),
            set(&["arn:aws:s3:::myproject-staging-artifacts/releases/myproject/*"]),
        ),
        ssm.clone(),
        (
            "ReadWritePhotos".to_string(),
            set(&["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]),
            set(&["arn:aws:s3:::myproject-staging-photos/photos/*"]),
        ),
    ];
    assert_eq!(policy(&moto, "myproject-staging-web"), app);
    assert_eq!(policy(&moto, "myproject-staging-worker"), app);
    assert_eq!(policy(&moto, "myproject-staging-cache"), vec![ssm]);

    // Every launch names its role's profile.
    let lcs = aws(&moto, &["autoscaling", "describe-launch-configurations"])["LaunchConfigurations"]
        .as_array()
        .unwrap()
        .clone();
    let staging_lcs: Vec<&Value> = lcs
        .iter()
        .filter(|l| {
            l["LaunchConfigurationName"]
                .as_str()
                .unwrap()
                .starts_with("myproject-staging-")
        })
        .collect();
    assert!(!staging_lcs.is_empty(), "staging uses launch configurations");
    for lc in staging_lcs {
        let name = lc["LaunchConfigurationName"].as_str().unwrap();
        let role = if name.starts_with("myproject-staging-web-") {
            "web"
        } else {
            "worker"
        };
        assert_eq!(lc["IamInstanceProfile"], format!("myproject-staging-{role}"), "{name}");
    }
    let lts = aws(&moto, &["ec2", "describe-launch-templates"])["LaunchTemplates"]
        .as_array()
        .unwrap()
        .clone();
    let mut seen_lt = 0;
    for lt in &lts {
        let name = lt["LaunchTemplateName"].as_str().unwrap();
        let v = aws(
            &moto,
            &[
                "ec2",
                "describe-launch-template-versions",
                "--launch-template-name",
                name,
                "--versions",
                "$Latest",
            ],
        )["LaunchTemplateVersions"][0]
            .clone();
        assert_eq!(
            v["LaunchTemplateData"]["IamInstanceProfile"]["Name"], name,
            "the template {name} names the profile of its role (same name): {v}"
        );
        seen_lt += 1;
    }
    assert!(seen_lt >= 2, "production's templates were read: {lts:?}");
    let reservations = aws(&moto, &["ec2", "describe-instances"])["Reservations"]
        .as_array()
        .unwrap()
        .clone();
    let mut fixed = 0;
    for i in reservations
        .iter()
        .flat_map(|r| r["Instances"].as_array().unwrap().clone())
    {
        if i["State"]["Name"] != "running" {
            continue;
        }
        let tags = i["Tags"].clone();
        let (Some(env), Some(role)) = (tag(&tags, "fabrs:environment"), tag(&tags, "fabrs:role")) else {
            continue;
        };
        // moto's Auto Scaling launches a group's instances without its launch
        // configuration's or template's profile (AWS passes it on): the
        // launches are checked above; here the instances fabrs runs itself.
        if tag(&tags, "aws:autoscaling:groupName").is_some() {
            continue;
        }
        let arn = i["IamInstanceProfile"]["Arn"].as_str().unwrap_or_default();
        assert!(
            arn.ends_with(&format!("/myproject-{env}-{role}")),
            "instance {} ({env} {role}) runs with its role's profile: {arn:?}",
            i["InstanceId"]
        );
        fixed += 1;
    }
    assert!(fixed >= 1, "instances were read: {reservations:?}");

    // A rerun plans nothing.
    let out = ok(&fabrs(
        &moto.url(),
        &["--dir", legacy_dir, "plan", "staging", "--detailed-exitcode"],
    ));
    assert!(out.contains("No changes"), "{out}");
}

#[test]
fn drift_is_repaired_look_alikes_refused_and_destroy_removes_the_roles() {
    let moto = Moto::start();
    // Someone else's role holds the name the web servers' role would take.
    aws(
        &moto,
        &[
            "iam",
            "create-role",
            "--role-name",
            "myproject-staging-web",
            "--assume-role-policy-document",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        ],
    );
    let out = fabrs(&moto.url(), &["create-env", "staging", "--yes"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("instance_role.web"), "the look-alike is named: {text}");
    assert!(
        aws(
            &moto,
            &["iam", "list-role-policies", "--role-name", "myproject-staging-web"]
        )["PolicyNames"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the look-alike was not changed"
    );
    aws(&moto, &["iam", "delete-role", "--role-name", "myproject-staging-web"]);

    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    // Drift: the policy removed, the role taken out of its profile.
    aws(
        &moto,
        &[
            "iam",
            "delete-role-policy",
            "--role-name",
            "myproject-staging-worker",
            "--policy-name",
            "fabrs",
        ],
    );
    aws(
        &moto,
        &[
            "iam",
            "remove-role-from-instance-profile",
            "--instance-profile-name",
            "myproject-staging-cache",
            "--role-name",
            "myproject-staging-cache",
        ],
    );
    let out = fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("instance_role.worker") && text.contains("instance_role.cache"),
        "{text}"
    );
    assert!(text.contains("2 to change"), "in place, nothing replaced: {text}");
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    assert_eq!(
        aws(
            &moto,
            &["iam", "list-role-policies", "--role-name", "myproject-staging-worker"]
        )["PolicyNames"],
        serde_json::json!(["fabrs"])
    );
    let prof = aws(
        &moto,
        &[
            "iam",
            "get-instance-profile",
            "--instance-profile-name",
            "myproject-staging-cache",
        ],
    )["InstanceProfile"]
        .clone();
    assert_eq!(prof["Roles"][0]["RoleName"], "myproject-staging-cache");
    let out = ok(&fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]));
    assert!(out.contains("No changes"), "{out}");

    ok(&fabrs(
        &moto.url(),
        &[
            "destroy-env",
            "staging",
            "--yes",
            "--disable-deletion-protection",
            "--skip-final-snapshot",
        ],
    ));
    let left = aws(&moto, &["iam", "list-roles", "--path-prefix", "/fabrs/"])["Roles"].clone();
    assert_eq!(left, serde_json::json!([]), "roles left: {left}");
    let left = aws(&moto, &["iam", "list-instance-profiles", "--path-prefix", "/fabrs/"])["InstanceProfiles"].clone();
    assert_eq!(left, serde_json::json!([]), "profiles left: {left}");
}

#[test]
fn a_role_already_in_its_profile_from_a_killed_run_is_not_an_error() {
    let moto = Moto::start();
    // Every AddRoleToInstanceProfile reaches IAM twice, as when a killed
    // run's call was in flight: the call fabrs hears back from is refused
    // with LimitExceeded (the profile holds its one role already).
    let proxy = Proxy::start(&moto, &["--send-twice", "AddRoleToInstanceProfile"]);
    ok(&fabrs(&proxy.url(), &["create-env", "staging", "--yes"]));
    assert_eq!(proxy.stats()["doubled"], 3, "{}", proxy.stats());
    for role in ["web", "worker", "cache"] {
        let name = format!("myproject-staging-{role}");
        let p = aws(
            &moto,
            &["iam", "get-instance-profile", "--instance-profile-name", &name],
        );
        let roles: Vec<&str> = p["InstanceProfile"]["Roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["RoleName"].as_str().unwrap())
            .collect();
        assert_eq!(roles, vec![name.as_str()], "{p}");
    }
    let out = ok(&fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]));
    assert!(out.contains("No changes"), "{out}");
}
