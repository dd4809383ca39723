//! `fabrs release push`, `deploy`, `rotate`, `rollback`, `history`, `ssh`
//! and `maintenance` against a real moto server (read back with awscli) and
//! real sshds on 127.0.0.2–4. moto's instances have 10.x / 172.31.x
//! addresses that are not hosts: an endpoint map sends each instance id to a
//! loopback sshd.
//!
//! The environment files are the repository's, copied into a project of the
//! test's own with three changes: the SSH user is root (sshd runs here as
//! root), the migration command is a script of the test's (it logs which
//! server ran it, fails for revisions named `badmig…`, sleeps for `slow…`),
//! and, where a test needs it, the project name.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;
use fabrs_test_support::{nginx, sshd};
use serde_json::Value;

/// A project directory of the test's own.
struct Project {
    dir: tempfile::TempDir,
    env: String,
    project: String,
}

impl Project {
    fn new(env: &str, project: &str, extra: &[(&str, &str)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("environments")).unwrap();
        let mut text = std::fs::read_to_string(root().join(format!("environments/{env}.yaml"))).unwrap();
        let log = dir.path().join("migrations.log");
        let script = dir.path().join("migrate.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 set -e\n\
                 server=$(echo \"$SSH_CONNECTION\" | cut -d' ' -f3)\n\
                 echo \"$1 $server\" >> '{}'\n\
                 echo \"applying the migrations of $1\"\n\
                 case \"$1\" in badmig*) echo 'ERROR: relation \"photos\" already exists' >&2; exit 3;; esac\n\
                 case \"$1\" in slow*) sleep 5;; esac\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut edits: Vec<(String, String)> = vec![
            ("user: admin".into(), "user: root".into()),
            (
                "  migrate_on: worker".into(),
                format!(
                    "  migrate_on: worker\n  migrate_command: \"{} {{revision}}\"",
                    script.display()
                ),
            ),
            ("project: myproject".into(), format!("project: {project}")),
            (
                format!("bucket: myproject-{env}-artifacts"),
                format!("bucket: {project}-{env}-artifacts"),
            ),
        ];
        // The roll waits out connection draining before it terminates a web
        // server: a second here, not the default five minutes.
        edits.push((
            "load_balancer:\n".into(),
            "load_balancer:\n  draining_timeout: 1s\n".into(),
        ));
        if env == "staging" {
            // These tests follow launch configurations (names, pruning,
            // rollback to a kept one); the shipped staging uses templates,
            // production's deploy test covers those.
            for _ in 0..2 {
                edits.push(("launch: template".into(), "launch: configuration".into()));
            }
        }
        edits.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        for (from, to) in edits {
            assert!(text.contains(&from), "environments/{env}.yaml has no `{from}`");
            text = text.replacen(&from, &to, 1);
        }
        std::fs::write(dir.path().join(format!("environments/{env}.yaml")), text).unwrap();
        Project {
            dir,
            env: env.into(),
            project: project.into(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn bucket(&self) -> String {
        format!("{}-{}-artifacts", self.project, self.env)
    }

    fn migrations(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("migrations.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// An artifact file for a revision (fabrs does not look inside it).
    fn artifact(&self, revision: &str, content: &str) -> PathBuf {
        let p = self.path().join(format!("refapp-{revision}.tar.gz"));
        std::fs::write(&p, content).unwrap();
        p
    }
}

/// moto + create-env + the artifact bucket + one sshd for the worker.
struct Stage {
    moto: Moto,
    p: Project,
    sshd: sshd::Sshd,
    endpoints: PathBuf,
}

impl Stage {
    fn new(env: &str, project: &str, extra: &[(&str, &str)], addrs: &[&str]) -> Stage {
        Stage::on(Moto::start(), Project::new(env, project, extra), addrs)
    }

    /// create-env of `p` on `moto` (which makes the artifact bucket), the sshds.
    fn on(moto: Moto, p: Project, addrs: &[&str]) -> Stage {
        let env = p.env.clone();
        let env = env.as_str();
        ok(&fabrs_in(&p, &moto.url(), &["create-env", env, "--yes"], &[]));
        let sshd = sshd::Sshd::start(addrs);
        let endpoints = p.path().join("endpoints");
        let s = Stage {
            moto,
            p,
            sshd,
            endpoints,
        };
        s.map_instances();
        s
    }

    /// Every instance of the environment's groups → the sshds, in turn.
    fn map_instances(&self) {
        let mut lines = String::new();
        let servers: Vec<(String, u16)> = self.sshd.endpoints.values().cloned().collect();
        for role in ["worker", "web"] {
            for (i, id) in self.instances(role).iter().enumerate() {
                let (h, port) = &servers[i % servers.len()];
                lines.push_str(&format!("{id} {h}:{port}\n"));
            }
        }
        std::fs::write(&self.endpoints, lines).unwrap();
    }

    fn fabrs(&self, args: &[&str]) -> Output {
        self.fabrs_via(&self.moto.url(), args, &[])
    }

    fn fabrs_via(&self, endpoint: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut all: Vec<(&str, String)> = vec![
            (
                "FABRS_SSH_CONFIG",
                self.sshd.dir.path().join("ssh_config").display().to_string(),
            ),
            (
                "FABRS_SSH_IDENTITY",
                self.sshd.dir.path().join("client_key").display().to_string(),
            ),
            ("FABRS_SSH_ENDPOINTS", self.endpoints.display().to_string()),
        ];
        all.extend(envs.iter().map(|(k, v)| (*k, v.to_string())));
        let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fabrs_in(&self.p, endpoint, args, &refs)
    }

    fn group(&self, role: &str) -> Value {
        let name = format!("{}-{}-{role}", self.p.project, self.p.env);
        let v = aws(
            &self.moto,
            &[
                "autoscaling",
                "describe-auto-scaling-groups",
                "--auto-scaling-group-names",
                &name,
            ],
        );
        v["AutoScalingGroups"][0].clone()
    }

    fn instances(&self, role: &str) -> BTreeSet<String> {
        self.group(role)["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["InstanceId"].as_str().unwrap().to_string())
            .collect()
    }

    fn launch_configurations(&self, role: &str) -> BTreeSet<String> {
        let prefix = format!("{}-{}-{role}-", self.p.project, self.p.env);
        aws(&self.moto, &["autoscaling", "describe-launch-configurations"])["LaunchConfigurations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["LaunchConfigurationName"].as_str().unwrap().to_string())
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    fn lb_health(&self) -> Vec<(String, String)> {
        let name = self.group("web")["LoadBalancerNames"][0].as_str().unwrap().to_string();
        let v = aws(
            &self.moto,
            &["elb", "describe-instance-health", "--load-balancer-name", &name],
        );
        v["InstanceStates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["InstanceId"].as_str().unwrap().to_string(),
                    s["State"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn lock_exists(&self) -> bool {
        let v = aws(
            &self.moto,
            &[
                "s3api",
                "list-objects-v2",
                "--bucket",
                &self.p.bucket(),
                "--prefix",
                &format!("releases/{}/{}/deploy.lock", self.p.project, self.p.env),
            ],
        );
        v.get("Contents")
            .and_then(|c| c.as_array())
            .is_some_and(|c| !c.is_empty())
    }

    fn push(&self, revision: &str) {
        let a = self.p.artifact(revision, &format!("release {revision}\n"));
        ok(&self.fabrs(&[
            "release",
            "push",
            &self.p.env,
            "--revision",
            revision,
            a.to_str().unwrap(),
        ]));
    }

    fn deploy(&self, revision: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "deploy",
            &self.p.env,
            "--revision",
            revision,
            "--poll-interval",
            "1s",
            "--health-timeout",
            "30s",
        ];
        args.extend_from_slice(extra);
        self.fabrs(&args)
    }
}

fn fabrs_in(p: &Project, endpoint: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut full = vec!["-C", p.path().to_str().unwrap()];
    full.extend_from_slice(args);
    let mut cmd = fabrs_cmd(endpoint, &full);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    no_secrets(&out, args);
    out
}

fn no_secrets(out: &Output, args: &[&str]) {
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    for (_, v) in SECRETS {
        assert!(
            !o.contains(v) && !e.contains(v),
            "a secret reached the output of fabrs {args:?}"
        );
    }
}

fn failed(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    text
}

fn lc_of(group: &Value) -> String {
    group["LaunchConfigurationName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn deploy_staging_replaces_every_instance_keeps_the_previous_lc_prunes_older_ones() {
    let s = Stage::new("staging", "myproject", &[], &["127.0.0.2"]);
    let (web0, worker0) = (s.instances("web"), s.instances("worker"));
    let lc0 = lc_of(&s.group("web"));
    assert_eq!((web0.len(), worker0.len()), (2, 1));

    // release push: once; the same file again is fine; a different one is refused.
    s.push("r1");
    s.push("r1");
    let other = s.p.artifact("r1-other", "something else\n");
    let refused = failed(&s.fabrs(&[
        "release",
        "push",
        "staging",
        "--revision",
        "r1",
        other.to_str().unwrap(),
    ]));
    assert!(refused.contains("already holds a different artifact"), "{refused}");

    // --dry-run: the steps and the instances, nothing changed.
    let dry = ok(&s.deploy("r1", &["--dry-run"]));
    for id in web0.iter().chain(&worker0) {
        assert!(dry.contains(id.as_str()), "{dry}");
    }
    assert!(dry.contains("run migrations on") && dry.contains("Dry run"), "{dry}");
    assert_eq!(s.instances("web"), web0);
    assert!(s.p.migrations().is_empty());

    let out = ok(&s.deploy("r1", &[]));
    assert!(out.contains("revision none -> r1"), "{out}");
    // Migrations ran once, on the worker's server.
    assert_eq!(s.p.migrations(), vec!["r1 127.0.0.2".to_string()], "{out}");
    for role in ["web", "worker"] {
        let g = s.group(role);
        let lc = lc_of(&g);
        assert!(lc.starts_with(&format!("myproject-staging-{role}-r1-")), "{lc}");
        assert_eq!(tag(&g["Tags"], "fabrs:revision"), Some("r1"));
        let now = s.instances(role);
        let before = if role == "web" { &web0 } else { &worker0 };
        assert!(now.is_disjoint(before), "{role}: old instances remain: {now:?}");
        assert_eq!(now.len(), before.len(), "{role}: desired capacity kept");
        assert_eq!(g["MaxSize"], if role == "web" { 4 } else { 2 }, "max restored");
        // The revision is readable from the launch configuration's user-data.
        let lcs = aws(
            &s.moto,
            &[
                "autoscaling",
                "describe-launch-configurations",
                "--launch-configuration-names",
                &lc,
            ],
        );
        let ud = String::from_utf8(base64_decode(
            lcs["LaunchConfigurations"][0]["UserData"].as_str().unwrap(),
        ))
        .unwrap();
        assert!(ud.contains("# fabrs:revision=r1"), "{ud}");
    }
    let health = s.lb_health();
    let web1 = s.instances("web");
    assert!(
        health.iter().all(|(id, st)| web1.contains(id) && st == "InService"),
        "{health:?}"
    );
    assert_eq!(health.len(), 2);
    // The previous launch configuration is kept.
    assert!(s.launch_configurations("web").contains(&lc0));
    assert!(!s.lock_exists(), "the lock is released");

    // The same revision again changes nothing.
    let again = ok(&s.deploy("r1", &[]));
    assert!(again.contains("No changes"), "{again}");
    assert_eq!(s.instances("web"), web1);
    assert_eq!(s.p.migrations().len(), 1);

    // Three more revisions: keep 3 (the one in use, the previous, one more).
    for r in ["r2", "r3", "r4"] {
        s.map_instances();
        s.push(r);
        ok(&s.deploy(r, &["--batch-size", "2"]));
    }
    let lcs = s.launch_configurations("web");
    assert_eq!(lcs.len(), 3, "{lcs:?}");
    let current = lc_of(&s.group("web"));
    assert!(current.contains("-r4-"));
    assert!(
        lcs.iter().any(|n| n.contains("-r3-")),
        "the previous one is kept: {lcs:?}"
    );
    assert!(
        !lcs.iter().any(|n| n.contains("-r1-") || *n == lc0),
        "older ones pruned: {lcs:?}"
    );

    let history = ok(&s.fabrs(&["history", "staging"]));
    for r in ["r1", "r2", "r3", "r4"] {
        assert!(history.contains(r), "{history}");
    }
    let json: Value = serde_json::from_slice(&s.fabrs(&["history", "staging", "--json"]).stdout).unwrap();
    let records = json.as_array().unwrap();
    assert_eq!(records.len(), 4, "no record for the no-op deploy: {json}");
    assert!(records.iter().all(|r| r["result"] == "succeeded"));
    assert_eq!(records[3]["from_revision"], "r3");
    assert_eq!(records[0]["from_revision"], Value::Null);

    // rollback: back to r3, through the same roll.
    s.map_instances();
    let before = s.instances("web");
    let out = ok(&s.fabrs(&["rollback", "staging", "--poll-interval", "1s"]));
    assert!(out.contains("r4 -> r3"), "{out}");
    let g = s.group("web");
    assert!(lc_of(&g).contains("-r3-"), "{}", lc_of(&g));
    assert!(s.instances("web").is_disjoint(&before));
}

#[test]
fn deploy_production_adds_a_launch_template_version_carrying_the_revision() {
    let s = Stage::new("production", "myproject", &[], &["127.0.0.2"]);
    let web0 = s.instances("web");
    assert_eq!(web0.len(), 3);
    s.push("p1");
    ok(&s.deploy("p1", &["--batch-size", "2"]));
    let g = s.group("web");
    let lt = &g["LaunchTemplate"];
    let version = lt["Version"].as_str().unwrap().to_string();
    assert!(
        version.chars().all(|c| c.is_ascii_digit()),
        "an explicit version: {version}"
    );
    let versions = aws(
        &s.moto,
        &[
            "ec2",
            "describe-launch-template-versions",
            "--launch-template-name",
            lt["LaunchTemplateName"].as_str().unwrap(),
        ],
    );
    let v = versions["LaunchTemplateVersions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["VersionNumber"].to_string() == version)
        .unwrap()
        .clone();
    assert!(v["VersionDescription"].as_str().unwrap().contains("p1"), "{v}");
    assert!(s.instances("web").is_disjoint(&web0));
    assert_eq!(s.instances("web").len(), 3);
    assert_eq!(tag(&g["Tags"], "fabrs:revision"), Some("p1"));
    let again = ok(&s.deploy("p1", &[]));
    assert!(again.contains("No changes"), "{again}");
}

#[test]
fn a_revision_whose_instances_never_turn_healthy_is_rolled_back() {
    let s = Stage::new("staging", "myproject", &[], &["127.0.0.2"]);
    s.push("good1");
    ok(&s.deploy("good1", &[]));
    let good_web = lc_of(&s.group("web"));
    let good_worker = lc_of(&s.group("worker"));
    s.map_instances();
    s.push("bad1");
    let proxy = Proxy::start(&s.moto, &["--sicken-revision", "bad1"]);
    let out = s.fabrs_via(
        &proxy.url(),
        &[
            "deploy",
            "staging",
            "--revision",
            "bad1",
            "--poll-interval",
            "1s",
            "--health-timeout",
            "6s",
        ],
        &[],
    );
    let text = failed(&out);
    assert!(text.contains("rolled back"), "{text}");
    assert!(proxy.stats()["sickened"].as_i64().unwrap() >= 1, "{}", proxy.stats());
    // Both groups are back on the previous launch configuration, healthy.
    assert_eq!(lc_of(&s.group("web")), good_web, "{text}");
    assert_eq!(lc_of(&s.group("worker")), good_worker, "{text}");
    assert_eq!(tag(&s.group("web")["Tags"], "fabrs:revision"), Some("good1"));
    let web = s.instances("web");
    assert_eq!(web.len(), 2, "{text}");
    let health = s.lb_health();
    let in_service: BTreeSet<String> = health
        .iter()
        .filter(|(_, st)| st == "InService")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(in_service, web, "{health:?}");
    assert!(!s.lock_exists());
    let json: Value = serde_json::from_slice(&s.fabrs(&["history", "staging", "--json"]).stdout).unwrap();
    let last = json.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["result"], "rolled back", "{json}");
    assert_eq!(last["revision"], "bad1");
}

#[test]
fn two_concurrent_deploys_one_runs_the_other_fails_or_waits_naming_the_holder() {
    let s = Stage::new("staging", "myproject", &[], &["127.0.0.2"]);
    s.push("slow1");
    let spawn = |who: &str, rev: &str, wait: &str| {
        let mut full = vec!["-C", s.p.path().to_str().unwrap()];
        let args = [
            "deploy",
            "staging",
            "--revision",
            rev,
            "--poll-interval",
            "1s",
            "--lock-wait",
            wait,
        ];
        full.extend_from_slice(&args);
        let mut cmd = fabrs_cmd(&s.moto.url(), &full);
        cmd.env("FABRS_ACTOR", who)
            .env("FABRS_SSH_CONFIG", s.sshd.dir.path().join("ssh_config"))
            .env("FABRS_SSH_IDENTITY", s.sshd.dir.path().join("client_key"))
            .env("FABRS_SSH_ENDPOINTS", &s.endpoints)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    // Both preflight, both find work; one takes the lock (and holds it
    // through a 5 s migration), the other is told who holds it.
    let a = spawn("alice", "slow1", "0");
    let b = spawn("bob", "slow1", "0");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "exactly one runs: {codes:?}\n{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let (loser, winner) = if a.status.success() { (&b, "alice") } else { (&a, "bob") };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(err.contains(&format!("locked by {winner}@")), "{err}");
    assert_eq!(s.p.migrations().len(), 1, "migrations ran once");

    // With a lock wait, the second waits, then finds nothing left to do.
    s.map_instances();
    s.push("slow2");
    let a = spawn("alice", "slow2", "0");
    std::thread::sleep(Duration::from_millis(2500));
    let b = spawn("bob", "slow2", "2m");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(b.status.success(), "{err}");
    assert!(
        err.contains("waiting up to 2m for the deploy lock held by alice@"),
        "{err}"
    );
    assert!(err.contains("No changes"), "{err}");
    assert_eq!(s.p.migrations().len(), 2);
    assert!(!s.lock_exists());
}

#[test]
fn a_missing_artifact_or_a_failing_migration_stops_the_deploy_before_any_rotation() {
    let s = Stage::new("staging", "myproject", &[], &["127.0.0.2"]);
    let (web0, lc0) = (s.instances("web"), lc_of(&s.group("web")));
    let lcs0 = s.launch_configurations("web");

    let text = failed(&s.deploy("r9", &[]));
    assert!(
        text.contains("has no release artifact") && text.contains("fabrs release push"),
        "{text}"
    );

    s.push("badmig1");
    let text = failed(&s.deploy("badmig1", &[]));
    assert!(text.contains("migrations failed"), "{text}");
    assert!(
        text.contains("relation \"photos\" already exists"),
        "the server's output is shown: {text}"
    );
    assert_eq!(s.p.migrations(), vec!["badmig1 127.0.0.2".to_string()]);
    // Nothing rotated, no launch configuration made, the lock released.
    assert_eq!(s.instances("web"), web0);
    assert_eq!(lc_of(&s.group("web")), lc0);
    assert_eq!(s.launch_configurations("web"), lcs0);
    assert!(!s.lock_exists());
    let history = ok(&s.fabrs(&["history", "staging"]));
    assert!(history.contains("badmig1") && history.contains("failed"), "{history}");

    // Ctrl-C during the deploy: the lock is released, the record says so.
    s.push("slow9");
    let mut full = vec!["-C", s.p.path().to_str().unwrap()];
    full.extend_from_slice(&["deploy", "staging", "--revision", "slow9", "--poll-interval", "1s"]);
    let child = fabrs_cmd(&s.moto.url(), &full)
        .env("FABRS_SSH_CONFIG", s.sshd.dir.path().join("ssh_config"))
        .env("FABRS_SSH_IDENTITY", s.sshd.dir.path().join("client_key"))
        .env("FABRS_SSH_ENDPOINTS", &s.endpoints)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The migration takes 5 s: interrupt while it runs.
    let start = std::time::Instant::now();
    while !s.p.migrations().iter().any(|m| m.starts_with("slow9")) {
        assert!(start.elapsed() < Duration::from_secs(60), "the migration never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = failed(&out);
    assert!(text.contains("interrupted; the lock was released"), "{text}");
    assert!(!s.lock_exists());
    assert_eq!(s.instances("web"), web0);
    let json: Value = serde_json::from_slice(&s.fabrs(&["history", "staging", "--json"]).stdout).unwrap();
    assert_eq!(
        json.as_array().unwrap().last().unwrap()["result"],
        "interrupted",
        "{json}"
    );

    // A bad revision name never reaches the cloud.
    let text = failed(&s.deploy("../x", &[]));
    assert!(text.contains("not a usable revision"), "{text}");
}

#[test]
fn ssh_runs_on_every_server_of_a_role_with_per_host_output_and_status() {
    let s = Stage::new("production", "myproject", &[], &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let web = s.instances("web");
    assert_eq!(web.len(), 3);
    let out = s.fabrs(&[
        "ssh",
        "production",
        "web",
        "--",
        "echo served-by $(echo $SSH_CONNECTION | cut -d' ' -f3); case $SSH_CONNECTION in *' 127.0.0.3 '*) echo broken >&2; exit 4;; esac",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    for id in &web {
        assert!(stdout.lines().any(|l| l.starts_with(id.as_str())), "{stdout}");
    }
    for a in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        assert!(stdout.contains(&format!("served-by {a}")), "{stdout}");
    }
    assert!(stdout.contains("exit 4") && stdout.contains("broken"), "{stdout}");
    assert_eq!(stdout.matches("= exit 0").count(), 2, "{stdout}");
    assert!(stderr.contains("1 of 3 web server(s) failed"), "{stderr}");

    let all_ok = ok(&s.fabrs(&["ssh", "production", "worker", "--", "true"]));
    assert!(all_ok.contains("exit 0"), "{all_ok}");
}

#[test]
fn maintenance_over_ssh_with_real_nginx_serves_503_while_the_health_check_passes() {
    let project = format!("mt{}", std::process::id());
    let s = Stage::new("staging", &project, &[], &["127.0.0.2", "127.0.0.3"]);
    let env = fabrs_config::load_file(&s.p.path().join("environments/staging.yaml")).unwrap();
    let stack = nginx::WebStack::start(env, &root());
    // Port 80 redirects (staging has an HTTPS listener); 443 serves.
    assert_eq!(nginx::get_plain(stack.http, "/").0, 301);
    let get = |path: &str| nginx::get_tls(stack.https, path);
    assert_eq!(get("/"), (200, "page".into()));

    let out = ok(&s.fabrs(&["maintenance", "staging", "on"]));
    assert!(out.contains("Maintenance on"), "{out}");
    assert!(Path::new(&stack.flag).is_file());
    let (status, body) = get("/");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("down for maintenance"), "{body}");
    assert_eq!(get("/healthcheck.html"), (200, "ok (maintenance)\n".into()));

    ok(&s.fabrs(&["maintenance", "staging", "off"]));
    assert!(!Path::new(&stack.flag).exists());
    assert_eq!(get("/"), (200, "page".into()));
}

#[test]
fn rotate_makes_new_launch_configurations_from_the_file_with_the_same_revision() {
    let s = Stage::new("staging", "myproject", &[], &["127.0.0.2"]);
    s.push("r1");
    ok(&s.deploy("r1", &[]));
    let worker_lc = lc_of(&s.group("worker"));
    let web_before = s.instances("web");
    let migrations = s.p.migrations().len();

    // Nothing changed in the file: nothing to rotate.
    let none = ok(&s.fabrs(&["rotate", "staging", "--poll-interval", "1s"]));
    assert!(none.contains("No changes"), "{none}");

    // A new instance type for the web role (the first `instance_type` is web's).
    let file = s.p.path().join("environments/staging.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replacen("instance_type: t3.small", "instance_type: t3.medium", 1),
    )
    .unwrap();
    let dry = ok(&s.fabrs(&["rotate", "staging", "--role", "web", "--dry-run"]));
    assert!(
        dry.contains("web: + launch configuration myproject-staging-web-r1-"),
        "{dry}"
    );
    assert!(!dry.contains("worker:"), "{dry}");
    let out = ok(&s.fabrs(&["rotate", "staging", "--role", "web", "--poll-interval", "1s"]));
    assert!(out.contains("revision r1 -> r1"), "{out}");
    let web_lc = lc_of(&s.group("web"));
    assert!(web_lc.starts_with("myproject-staging-web-r1-"), "{web_lc}");
    let lc = aws(
        &s.moto,
        &[
            "autoscaling",
            "describe-launch-configurations",
            "--launch-configuration-names",
            &web_lc,
        ],
    );
    assert_eq!(lc["LaunchConfigurations"][0]["InstanceType"], "t3.medium");
    assert_eq!(
        lc_of(&s.group("worker")),
        worker_lc,
        "--role web leaves the worker alone"
    );
    assert!(s.instances("web").is_disjoint(&web_before));
    assert_eq!(s.p.migrations().len(), migrations, "the same revision: no migrations");
    let json: Value = serde_json::from_slice(&s.fabrs(&["history", "staging", "--json"]).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().last().unwrap()["operation"], "rotate");
}

/// The output of `fabrs plan`, `status`, `deploy --dry-run` and `history`
/// against moto, as insta snapshots (`cargo insta review` shows a change as a
/// diff). What moto makes up or the clock decides is normalised: instance,
/// group, subnet and VPC ids, addresses, DNS names, content hashes in launch
/// configuration names, times and durations.
#[test]
fn plan_status_dry_run_and_history_output_as_snapshots() {
    let moto = Moto::start();
    let p = Project::new("staging", "myproject", &[]);
    let stdout = |o: &Output| {
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout.clone()).unwrap()
    };
    let mut settings = insta::Settings::clone_current();
    for (re, to) in [
        (r"\b(i|sg|subnet|vpc|lt)-[0-9a-f]{8,17}\b", "$1-[id]"),
        // moto's private addresses (the file's CIDRs stay).
        (r"\b(?:10|172)\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", "[ip]"),
        (r"\b[a-z0-9-]+\.(?:[a-z0-9]+\.)*amazonaws\.com\b", "[dns]"),
        // The user-data hash of app servers depends on moto's addresses.
        (
            r"(myproject-staging-(?:web|worker)-[A-Za-z0-9._]+)-[0-9a-f]{8}\b",
            "$1-[hash]",
        ),
        (r"\S*/\.tmp\w+/", "[project]/"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[time]"),
        (r"\b\d+s  ", "[took]  "),
        (r"(?m)  \S+@\S+$", "  [who]@[host]"),
    ] {
        settings.add_filter(re, to);
    }
    let _guard = settings.bind_to_scope();

    insta::assert_snapshot!(
        "plan_empty_account",
        stdout(&fabrs_in(&p, &moto.url(), &["plan", "staging"], &[]))
    );
    let s = Stage::on(moto, p, &["127.0.0.2"]);
    insta::assert_snapshot!("status_after_create_env", stdout(&s.fabrs(&["status", "staging"])));
    s.push("r1");
    insta::assert_snapshot!("deploy_dry_run", stdout(&s.deploy("r1", &["--dry-run"])));
    ok(&s.deploy("r1", &[]));
    insta::assert_snapshot!("history_after_one_deploy", stdout(&s.fabrs(&["history", "staging"])));
}

/// A benchmark, not a test (`benches/deploy.sh` runs it): a deploy of
/// staging's two roles (2 web, 1 worker; migrations over SSH) through the
/// proxy at 100 ms per request, moto's instant health: its calls, and its
/// round trips in series from the proxy's trace (benches/series.py).
#[test]
#[ignore = "a benchmark: benches/deploy.sh"]
fn bench_deploy_calls_and_round_trips() {
    let s = Stage::new("staging", "myproject", &[], &["127.0.0.2"]);
    s.push("r1");
    let trace = s.p.path().join("trace");
    let proxy = Proxy::start(&s.moto, &["--latency-ms", "100", "--trace", trace.to_str().unwrap()]);
    let out = s.fabrs_via(
        &proxy.url(),
        &[
            "deploy",
            "staging",
            "--revision",
            "r1",
            "--poll-interval",
            "1s",
            "--health-timeout",
            "30s",
        ],
        &[],
    );
    ok(&out);
    // DEPLOY_TRACE=FILE keeps the trace (which calls: benches/series.py --chain).
    if let Some(keep) = std::env::var_os("DEPLOY_TRACE") {
        std::fs::copy(&trace, keep).unwrap();
    }
    let series = std::process::Command::new("python3")
        .arg(fabrs_test_support::root().join("benches/series.py"))
        .arg(&trace)
        .arg("--chain")
        .output()
        .unwrap();
    // The figures are this benchmark's output.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("deploy {}", String::from_utf8_lossy(&series.stdout));
    }
}
