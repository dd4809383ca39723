//! The database against a real moto, read back with awscli: what RDS itself
//! refuses (a parameter group in a PostgreSQL replica's create call, checked
//! by the conformance proxy), automatic minor upgrades, deletion protection
//! and the final snapshot of `destroy-env`.

use serde_json::Value;

mod common;
use common::*;

fn db(moto: &Moto, id: &str) -> Value {
    aws(moto, &["rds", "describe-db-instances", "--db-instance-identifier", id])["DBInstances"][0].clone()
}

#[test]
fn the_replica_is_created_without_a_parameter_group_and_a_minor_upgrade_is_no_change() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conformance.jsonl");
    let proxy = conformance_proxy(&moto, &log);
    ok(&fabrs(&proxy.url(), &["create-env", "staging", "--yes"]));
    let stats = proxy.stats();
    assert!(
        stats["operations"]["rds.CreateDBInstanceReadReplica"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "the replica's request went through the checking proxy: {stats}"
    );
    let rds: Vec<Value> = violations(&log, "rds");
    assert!(rds.is_empty(), "RDS would refuse: {rds:#?}");

    // Read back: the replica uses its master's group, only the master is protected.
    let master = db(&moto, "myproject-staging-db");
    let replica = db(&moto, "myproject-staging-db-replica-0");
    let group = |d: &Value| {
        d["DBParameterGroups"][0]["DBParameterGroupName"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(group(&master), "myproject-staging-postgres16");
    assert_eq!(group(&replica), group(&master));
    assert_eq!(master["DeletionProtection"], true);
    assert_eq!(replica["DeletionProtection"], false);
    ok(&fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]));

    // RDS applies a minor upgrade in the maintenance window: no change, no downgrade.
    for id in ["myproject-staging-db", "myproject-staging-db-replica-0"] {
        aws(
            &moto,
            &[
                "rds",
                "modify-db-instance",
                "--db-instance-identifier",
                id,
                "--engine-version",
                "16.6",
                "--apply-immediately",
            ],
        );
        assert_eq!(db(&moto, id)["EngineVersion"], "16.6");
    }
    let out = ok(&fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]));
    assert!(out.contains("No changes"), "{out}");
}

#[test]
fn destroy_env_refuses_a_protected_database_and_with_the_flag_takes_a_final_snapshot() {
    let moto = Moto::start();
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    let instances = || {
        aws(&moto, &["rds", "describe-db-instances"])["DBInstances"]
            .as_array()
            .unwrap()
            .len()
    };
    let groups = || {
        let mut args = vec!["ec2", "describe-security-groups"];
        let f = env_filter("staging");
        args.extend(f.iter().map(String::as_str));
        aws(&moto, &args)["SecurityGroups"].as_array().unwrap().len()
    };
    let (dbs_before, groups_before) = (instances(), groups());
    assert_eq!(dbs_before, 2);

    // Without the flag: one line naming the database and the flag, exit 1,
    // and not one write call (counted at the proxy).
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conformance.jsonl");
    let proxy = conformance_proxy(&moto, &log);
    let out = fabrs(&proxy.url(), &["destroy-env", "staging", "--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("myproject-staging-db ") && lines[0].contains("--disable-deletion-protection"),
        "{stderr}"
    );
    let writes = write_calls(&proxy.stats());
    assert!(writes.is_empty(), "write calls before the refusal: {writes:?}");
    assert_eq!((instances(), groups()), (dbs_before, groups_before), "nothing deleted");
    assert!(
        aws(&moto, &["rds", "describe-db-snapshots", "--snapshot-type", "manual"])["DBSnapshots"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // With it: protection off, a final snapshot of the master, everything gone.
    let out = ok(&fabrs(
        &proxy.url(),
        &["destroy-env", "staging", "--yes", "--disable-deletion-protection"],
    ));
    assert!(out.contains("Destroy complete"), "{out}");
    assert!(out.contains("final snapshot myproject-staging-db-final-"), "{out}");
    assert_eq!(instances(), 0);
    let snaps = aws(&moto, &["rds", "describe-db-snapshots", "--snapshot-type", "manual"])["DBSnapshots"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(snaps.len(), 1, "one final snapshot, of the master only: {snaps:#?}");
    let id = snaps[0]["DBSnapshotIdentifier"].as_str().unwrap();
    assert_eq!(snaps[0]["DBInstanceIdentifier"], "myproject-staging-db");
    let suffix = id.strip_prefix("myproject-staging-db-final-").expect(id);
    assert!(
        suffix.len() == 16 && suffix.chars().all(|c| c.is_ascii_digit() || c == 't' || c == 'z'),
        "{id}"
    );
    let rds: Vec<Value> = violations(&log, "rds");
    assert!(rds.is_empty(), "RDS would refuse: {rds:#?}");
}

#[test]
fn destroy_env_can_skip_the_final_snapshot() {
    let moto = Moto::start();
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    let out = ok(&fabrs(
        &moto.url(),
        &[
            "destroy-env",
            "staging",
            "--yes",
            "--disable-deletion-protection",
            "--skip-final-snapshot",
        ],
    ));
    assert!(!out.contains("final snapshot"), "{out}");
    assert!(
        aws(&moto, &["rds", "describe-db-instances"])["DBInstances"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        aws(&moto, &["rds", "describe-db-snapshots", "--snapshot-type", "manual"])["DBSnapshots"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
