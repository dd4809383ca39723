//! Secrets in SSM Parameter Store (issue 10, item 3) against a real moto
//! behind the conformance proxy, read back with awscli: every secret a
//! SecureString under `/<project>/<environment>/`, tagged, with the value
//! create-env resolved; no secret value in any user-data fabrs sent (launch
//! configurations, launch template versions, instances; `write_files`
//! entries decoded); a rotation is an in-place update of that parameter
//! only; look-alikes refused; destroy-env removes them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

mod common;
use common::*;

fn conformance_proxy(moto: &Moto, log: &std::path::Path) -> Proxy {
    Proxy::start(
        moto,
        &["--conformance", log.to_str().unwrap(), "--conformance-report-only"],
    )
}

fn violations(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn secret_value(var: &str) -> &'static str {
    SECRETS.iter().find(|(k, _)| *k == var).unwrap().1
}

/// name → (type, value) of the parameters under a path, decrypted.
fn parameters(moto: &Moto, path: &str) -> BTreeMap<String, (String, String)> {
    aws(
        moto,
        &["ssm", "get-parameters-by-path", "--path", path, "--with-decryption"],
    )["Parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["Name"].as_str().unwrap().to_string(),
                (
                    p["Type"].as_str().unwrap().to_string(),
                    p["Value"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// A user-data as text, with every base64 `write_files` content decoded
/// and appended (so a value inside one is found too).
fn readable(user_data: &str) -> String {
    let mut out = user_data.to_string();
    let lines: Vec<&str> = user_data.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.trim() == "encoding: b64" {
            if let Some(c) = lines[i + 1..].iter().find_map(|l| l.trim().strip_prefix("content: ")) {
                out.push('\n');
                out.push_str(&String::from_utf8_lossy(&base64_decode(c.trim())));
            }
        }
    }
    out
}

/// Every user-data fabrs sent that moto holds: launch configurations,
/// every version of every launch template, every instance.
fn every_user_data(moto: &Moto) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for lc in aws(moto, &["autoscaling", "describe-launch-configurations"])["LaunchConfigurations"]
        .as_array()
        .unwrap()
    {
        let ud = lc["UserData"].as_str().unwrap_or_default();
        out.push((
            lc["LaunchConfigurationName"].as_str().unwrap().to_string(),
            String::from_utf8_lossy(&base64_decode(ud)).to_string(),
        ));
    }
    for lt in aws(moto, &["ec2", "describe-launch-templates"])["LaunchTemplates"]
        .as_array()
        .unwrap()
    {
        let name = lt["LaunchTemplateName"].as_str().unwrap();
        for v in aws(
            moto,
            &[
                "ec2",
                "describe-launch-template-versions",
                "--launch-template-name",
                name,
            ],
        )["LaunchTemplateVersions"]
            .as_array()
            .unwrap()
        {
            let ud = v["LaunchTemplateData"]["UserData"].as_str().unwrap_or_default();
            out.push((
                format!("{name} v{}", v["VersionNumber"]),
                String::from_utf8_lossy(&base64_decode(ud)).to_string(),
            ));
        }
    }
    for r in aws(moto, &["ec2", "describe-instances"])["Reservations"]
        .as_array()
        .unwrap()
    {
        for i in r["Instances"].as_array().unwrap() {
            let id = i["InstanceId"].as_str().unwrap();
            let ud = aws(
                moto,
                &[
                    "ec2",
                    "describe-instance-attribute",
                    "--instance-id",
                    id,
                    "--attribute",
                    "userData",
                ],
            )["UserData"]["Value"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            out.push((id.to_string(), String::from_utf8_lossy(&base64_decode(&ud)).to_string()));
        }
    }
    out
}

fn assert_no_secret_in_user_data(moto: &Moto, extra: &[&str]) -> usize {
    let all = every_user_data(moto);
    let mut checked = 0;
    for (what, ud) in &all {
        if ud.is_empty() {
            continue;
        }
        let text = readable(ud);
        assert!(text.contains("fabrs-fetch-secrets"), "{what}: no secret fetch");
        for v in SECRETS.iter().map(|(_, v)| *v).chain(extra.iter().copied()) {
            assert!(!text.contains(v), "{what}: a secret value is in its user-data");
        }
        checked += 1;
    }
    checked
}

fn launch_names(moto: &Moto) -> BTreeSet<String> {
    aws(moto, &["autoscaling", "describe-launch-configurations"])["LaunchConfigurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["LaunchConfigurationName"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn secrets_are_secure_strings_in_ssm_and_no_user_data_holds_one() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conformance.jsonl");
    let proxy = conformance_proxy(&moto, &log);
    ok(&fabrs(&proxy.url(), &["create-env", "staging", "--yes"]));
    ok(&fabrs(&proxy.url(), &["create-env", "production", "--yes"]));
    let ops = proxy.stats()["operations"].clone();
    assert!(
        ops["ssm.PutParameter"].as_u64().unwrap_or(0) >= 6,
        "PutParameter went through the proxy: {ops}"
    );
    let ssm: Vec<Value> = violations(&log).into_iter().filter(|v| v["service"] == "ssm").collect();
    assert!(ssm.is_empty(), "SSM would refuse: {ssm:#?}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    for (_, v) in SECRETS {
        assert!(!log_text.contains(v), "a secret value is in the conformance log");
    }

    for env in ["staging", "production"] {
        let got = parameters(&moto, &format!("/myproject/{env}"));
        let want: BTreeMap<String, (String, String)> = [
            ("db_password", "FABRS_SECRET_DB_PASSWORD"),
            ("cache_password", "FABRS_SECRET_CACHE_PASSWORD"),
            ("queue_password", "FABRS_SECRET_QUEUE_PASSWORD"),
        ]
        .iter()
        .map(|(s, var)| {
            (
                format!("/myproject/{env}/{s}"),
                ("SecureString".to_string(), secret_value(var).to_string()),
            )
        })
        .collect();
        assert_eq!(got, want, "{env}");
        for name in want.keys() {
            let tags = aws(
                &moto,
                &[
                    "ssm",
                    "list-tags-for-resource",
                    "--resource-type",
                    "Parameter",
                    "--resource-id",
                    name,
                ],
            )["TagList"]
                .clone();
            assert_eq!(tag(&tags, "fabrs:project"), Some("myproject"), "{name}: {tags}");
            assert_eq!(tag(&tags, "fabrs:environment"), Some(env), "{name}: {tags}");
            assert_eq!(tag(&tags, "managed-by"), Some("fabrs"), "{name}: {tags}");
            let f = tag(&tags, "fabrs:fingerprint").unwrap_or_default();
            assert!(
                f.len() == 32 && f.chars().all(|c| c.is_ascii_hexdigit()),
                "{name}: {tags}"
            );
            assert!(SECRETS.iter().all(|(_, v)| !f.contains(v) && !v.contains(f)));
        }
    }
    let checked = assert_no_secret_in_user_data(&moto, &[]);
    assert!(checked >= 5, "user-data was read ({checked})");

    // A rerun plans nothing; the plan shows no value.
    let out = ok(&fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]));
    assert!(out.contains("No changes"), "{out}");
}

#[test]
fn a_rotation_updates_one_parameter_in_place_look_alikes_are_refused_and_destroy_removes_them() {
    let moto = Moto::start();
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    let launches = launch_names(&moto);
    let rotated = "moto-db-Rotated-99";
    let with_rotated = |args: &[&str]| {
        let out = fabrs_cmd(&moto.url(), args)
            .env("FABRS_SECRET_DB_PASSWORD", rotated)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(rotated), "the rotated value reached the output");
        for (_, v) in SECRETS {
            assert!(!text.contains(v), "a value reached the output");
        }
        (out.status.code(), text)
    };
    let (code, text) = with_rotated(&["plan", "staging", "--detailed-exitcode"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("ssm_parameter.db_password"), "{text}");
    assert!(
        text.contains("0 to add, 1 to change, 0 to destroy"),
        "one in-place update only: {text}"
    );
    let (code, text) = with_rotated(&["create-env", "staging", "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    let got = parameters(&moto, "/myproject/staging");
    assert_eq!(got["/myproject/staging/db_password"].1, rotated);
    assert_eq!(
        got["/myproject/staging/cache_password"].1,
        secret_value("FABRS_SECRET_CACHE_PASSWORD")
    );
    assert_eq!(launch_names(&moto), launches, "a rotation makes no new user-data");
    assert_no_secret_in_user_data(&moto, &[rotated]);
    let (code, text) = with_rotated(&["plan", "staging", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("No changes"), "{text}");

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
    assert!(parameters(&moto, "/myproject/staging").is_empty(), "parameters left");

    // Someone else's parameter at a name fabrs wants: refused, untouched.
    aws(
        &moto,
        &[
            "ssm",
            "put-parameter",
            "--name",
            "/myproject/staging/db_password",
            "--type",
            "SecureString",
            "--value",
            "not-fabrs-value",
        ],
    );
    let out = fabrs(&moto.url(), &["create-env", "staging", "--yes"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ssm_parameter.db_password"),
        "the look-alike is named: {text}"
    );
    assert_eq!(
        parameters(&moto, "/myproject/staging")["/myproject/staging/db_password"].1,
        "not-fabrs-value"
    );
}
