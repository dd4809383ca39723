//! create-env's preflight (issue 10 item 9) against moto, through the
//! checking proxy that counts every call: a missing AMI, key pair or
//! certificate (IAM or ACM) is one line each, all at once, exit status 1,
//! and not one write call reaches the cloud; the shipped environments and an
//! example with an ACM certificate, on a moto holding what a user makes by
//! hand (`tests/peers/moto-seed`), pass.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

mod common;
use common::*;

/// A proxy that checks and counts every request (`stats()["operations"]`).
fn counting_proxy(moto: &Moto, dir: &Path) -> Proxy {
    let log = dir.join("conformance.jsonl");
    Proxy::start(
        moto,
        &["--conformance", log.to_str().unwrap(), "--conformance-report-only"],
    )
}

/// The operations the proxy saw: `service.Operation` → count.
fn operations(proxy: &Proxy) -> Vec<(String, u64)> {
    let stats = proxy.stats();
    stats["operations"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}

/// Calls that change something: everything but Describe*, Get*, List*.
fn writes(ops: &[(String, u64)]) -> Vec<(String, u64)> {
    ops.iter()
        .filter(|(op, _)| {
            let name = op.split_once('.').map(|(_, n)| n).unwrap_or(op);
            !["Describe", "Get", "List", "Head"].iter().any(|p| name.starts_with(p))
        })
        .cloned()
        .collect()
}

fn count(ops: &[(String, u64)], op: &str) -> u64 {
    ops.iter().find(|(o, _)| o == op).map(|(_, n)| *n).unwrap_or(0)
}

/// A project of its own: `environments/<env>.yaml` is `src` with `edits`.
fn project(src: &str, env: &str, edits: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("environments")).unwrap();
    let mut text = std::fs::read_to_string(root().join(src)).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{src} has no `{from}`");
        text = text.replacen(from, to, 1);
    }
    let file = dir.path().join(format!("environments/{env}.yaml"));
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

fn create_env(endpoint: &str, dir: &Path, env: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--dir", dir.to_str().unwrap(), "create-env", env];
    args.extend(extra);
    fabrs(endpoint, &args)
}

/// The `error: preflight: …` lines of the output.
fn preflight_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("error: preflight: "))
        .map(str::to_string)
        .collect()
}

fn nothing_of(moto: &Moto, project: &str) {
    let groups = aws(
        moto,
        &[
            "ec2",
            "describe-security-groups",
            "--filters",
            &format!("Name=tag:fabrs:project,Values={project}"),
        ],
    );
    assert_eq!(
        groups["SecurityGroups"],
        Value::Array(vec![]),
        "no security group was made"
    );
    let lbs = aws(moto, &["elb", "describe-load-balancers"]);
    assert_eq!(
        lbs["LoadBalancerDescriptions"],
        Value::Array(vec![]),
        "no load balancer was made"
    );
    let dbs = aws(moto, &["rds", "describe-db-instances"]);
    assert_eq!(dbs["DBInstances"], Value::Array(vec![]), "no database was made");
    let roles = aws(moto, &["iam", "list-roles", "--path-prefix", "/fabrs/"]);
    assert_eq!(roles["Roles"], Value::Array(vec![]), "no instance role was made");
}

const IAM_CERT: &str = "arn:aws:iam::123456789012:server-certificate/myproject-staging";
const WORKER: &str = "  worker:\n    instance_type: t3.small\n";

#[test]
fn a_missing_ami_key_pair_or_certificate_stops_create_env_before_any_write() {
    let moto = Moto::start();
    let acm_missing = "arn:aws:acm:us-east-1:123456789012:certificate/0f3c3a55-7c6e-4a57-9f5e-2b1f1f0f0c01";
    let acm_elsewhere = "arn:aws:acm:eu-west-1:123456789012:certificate/5b0d1f0e-3d58-4cc5-8d53-6f1b4e1f2a77";
    let worker_ami = format!("{WORKER}    ami: ami-0123456789abcdef0\n");
    let cases: Vec<(&str, Vec<(&str, &str)>, Vec<String>)> = vec![
        (
            "a missing AMI (the worker's own)",
            vec![(WORKER, worker_ami.as_str())],
            vec!["AMI ami-0123456789abcdef0 does not exist in us-east-1 (role worker)".into()],
        ),
        (
            "a missing key pair",
            vec![("key_name: myproject-admin", "key_name: nobody-made-this")],
            vec!["key pair nobody-made-this does not exist in us-east-1 (ssh.key_name)".into()],
        ),
        (
            "a missing IAM server certificate",
            vec![("server-certificate/myproject-staging", "server-certificate/never-uploaded")],
            vec![
                "IAM server certificate arn:aws:iam::123456789012:server-certificate/never-uploaded does not exist (load balancer listener 443)"
                    .into(),
            ],
        ),
        (
            "a missing ACM certificate",
            vec![(IAM_CERT, acm_missing)],
            vec![format!("ACM certificate {acm_missing} does not exist (load balancer listener 443)")],
        ),
        (
            "an ACM certificate of another region",
            vec![(IAM_CERT, acm_elsewhere)],
            vec![format!(
                "ACM certificate {acm_elsewhere} is in eu-west-1: a load balancer in us-east-1 uses ACM certificates of its own region (load balancer listener 443)"
            )],
        ),
        (
            "all of them at once",
            vec![
                (WORKER, worker_ami.as_str()),
                (
                    "ami: resolve:ssm:/aws/service/debian/release/12/latest/amd64",
                    "ami: ami-0fffffffffffffff0",
                ),
                ("key_name: myproject-admin", "key_name: nobody-made-this"),
                (IAM_CERT, acm_missing),
            ],
            vec![
                "AMI ami-0123456789abcdef0 does not exist in us-east-1 (role worker)".into(),
                "AMI ami-0fffffffffffffff0 does not exist in us-east-1 (roles web, cache)".into(),
                "key pair nobody-made-this does not exist in us-east-1 (ssh.key_name)".into(),
                format!("ACM certificate {acm_missing} does not exist (load balancer listener 443)"),
            ],
        ),
    ];
    for (what, edits, expected) in cases {
        let (dir, _) = project("environments/staging.yaml", "staging", &edits);
        let ops = refused_before_any_write(&moto, dir.path(), what, &expected);
        assert!(
            count(&ops, "ec2.DescribeImages") >= 1,
            "{what}: the preflight went through the proxy: {ops:?}"
        );
    }
}

/// create-env of the project in `dir` stops with exactly `expected` as its
/// preflight lines, exit 1, no write call at the proxy and nothing made; the
/// operations the proxy saw.
fn refused_before_any_write(moto: &Moto, dir: &Path, what: &str, expected: &[String]) -> Vec<(String, u64)> {
    let proxy = counting_proxy(moto, dir);
    let out = create_env(&proxy.url(), dir, "staging", &["--yes"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{what}: {text}");
    assert_eq!(preflight_lines(&out), expected, "{what}: {text}");
    assert!(text.contains("Nothing was changed"), "{what}: {text}");
    let ops = operations(&proxy);
    assert_eq!(writes(&ops), vec![], "{what}: no write call at all: {ops:?}");
    nothing_of(moto, "myproject");
    ops
}

/// `ami: resolve:ssm:…` naming a parameter the region does not have: found
/// by discovery's GetParameters, one line naming it and the roles, exit 1,
/// no write; the shipped file's parameter (Debian 12's, which moto serves as
/// AWS does, tests/peers/moto-patch.py) resolves to an image moto has.
#[test]
fn a_missing_image_parameter_stops_create_env_before_any_write() {
    let moto = Moto::start();
    let (dir, _) = project(
        "environments/staging.yaml",
        "staging",
        &[(
            "/aws/service/debian/release/12/latest/amd64",
            "/aws/service/debian/release/99/latest/amd64",
        )],
    );
    let ops = refused_before_any_write(
        &moto,
        dir.path(),
        "a missing parameter",
        &["SSM parameter /aws/service/debian/release/99/latest/amd64 (ami:) does not exist in us-east-1 (roles web, worker, cache)".to_string()],
    );
    assert!(count(&ops, "ssm.GetParameters") >= 1, "{ops:?}");
}

#[test]
fn the_shipped_environments_and_an_acm_example_pass_on_a_seeded_moto() {
    let moto = Moto::start();
    for env in ["staging", "production"] {
        let (dir, _) = project(&format!("environments/{env}.yaml"), env, &[]);
        let proxy = counting_proxy(&moto, dir.path());
        let out = ok(&create_env(&proxy.url(), dir.path(), env, &["--dry-run"]));
        assert!(!out.contains("preflight"), "{env}: {out}");
        let ops = operations(&proxy);
        for op in ["ec2.DescribeImages", "ec2.DescribeKeyPairs", "iam.GetServerCertificate"] {
            assert!(count(&ops, op) >= 1, "{env}: the preflight asked {op}: {ops:?}");
        }
        assert_eq!(writes(&ops), vec![], "{env}: a dry run writes nothing: {ops:?}");
    }
    // An ACM certificate's ARN is ACM's to make up: moto-seed imports one and
    // points the file at it, as a user would.
    let (dir, file) = project("examples/scoot.yaml", "production", &[]);
    let seed = std::process::Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/peers/moto-seed"))
        .args(["--endpoint", &moto.url(), "--rewrite-acm"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(seed.status.success(), "{}", String::from_utf8_lossy(&seed.stderr));
    let proxy = counting_proxy(&moto, dir.path());
    let out = fabrs_cmd(
        &proxy.url(),
        &[
            "--dir",
            dir.path().to_str().unwrap(),
            "create-env",
            "production",
            "--dry-run",
        ],
    )
    .env("FABRS_SECRET_RABBITMQ_PASSWORD", "moto-rabbit-Pa55word")
    .output()
    .unwrap();
    let text = ok(&out);
    assert!(!text.contains("preflight"), "{text}");
    let ops = operations(&proxy);
    assert!(count(&ops, "acm.DescribeCertificate") >= 1, "{ops:?}");
    assert_eq!(writes(&ops), vec![], "a dry run writes nothing: {ops:?}");
}
