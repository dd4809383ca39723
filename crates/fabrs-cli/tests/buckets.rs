//! The photo and artifact buckets (issue 10, item 2) against a real moto,
//! read back with awscli: made by create-env private, encrypted and with ACLs
//! off, tagged (the artifact bucket versioned, and the project's, shared by
//! its environments); drift repaired; a bucket of that name that is not the
//! owner's refused; destroy-env refuses the photo bucket while it holds data
//! and, told to, empties and deletes it, and keeps the artifact bucket.

use serde_json::Value;

mod common;
use common::*;

const PHOTOS: &str = "myproject-staging-photos";
const ARTIFACTS: &str = "myproject-staging-artifacts";

fn s3api(moto: &Moto, args: &[&str]) -> Value {
    let mut a = vec!["s3api"];
    a.extend_from_slice(args);
    aws(moto, &a)
}

/// An object, as the app or `release push` would leave it.
fn put_object(moto: &Moto, bucket: &str, key: &str, body: &[u8]) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    s3api(
        moto,
        &[
            "put-object",
            "--bucket",
            bucket,
            "--key",
            key,
            "--body",
            file.path().to_str().unwrap(),
        ],
    );
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn create_env_makes_the_photo_bucket_private_encrypted_and_owned() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conformance.jsonl");
    let proxy = conformance_proxy(&moto, &log);
    ok(&fabrs(&proxy.url(), &["create-env", "staging", "--yes"]));
    let s3 = violations(&log, "s3");
    assert!(s3.is_empty(), "S3 would refuse: {s3:#?}");

    assert_private_and_encrypted(&moto, PHOTOS);
    let tags = s3api(&moto, &["get-bucket-tagging", "--bucket", PHOTOS])["TagSet"].clone();
    assert_eq!(tag(&tags, "fabrs:environment"), Some("staging"), "{tags}");
    assert_eq!(tag(&tags, "managed-by"), Some("fabrs"), "{tags}");
    let out = ok(&fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]));
    assert!(out.contains("No changes"), "{out}");

    // Drift: someone opens the bucket up; the plan says so, create-env closes it.
    s3api(&moto, &["delete-public-access-block", "--bucket", PHOTOS]);
    let out = fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bucket.photos") && text(&out).contains("block_public_access"));
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    let pab = s3api(&moto, &["get-public-access-block", "--bucket", PHOTOS])["PublicAccessBlockConfiguration"].clone();
    assert_eq!(pab["BlockPublicPolicy"], true, "{pab}");
}

#[test]
fn a_photo_bucket_of_that_name_that_is_not_the_environments_is_refused() {
    let moto = Moto::start();
    s3api(&moto, &["create-bucket", "--bucket", PHOTOS]);
    let out = fabrs(&moto.url(), &["create-env", "staging", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("bucket.photos") && text(&out).contains(PHOTOS),
        "{}",
        text(&out)
    );
    // Untouched: still no tags.
    let out = std::process::Command::new(fabrs_test_support::venv("aws"))
        .args([
            "--endpoint-url",
            &moto.url(),
            "--region",
            "us-east-1",
            "s3api",
            "get-bucket-tagging",
            "--bucket",
            PHOTOS,
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the look-alike got tags: {}", text(&out));
}

#[test]
fn destroy_env_refuses_a_bucket_with_data_and_with_the_flag_empties_and_deletes_it() {
    let moto = Moto::start();
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    let dir = tempfile::tempdir().unwrap();
    put_object(&moto, PHOTOS, "photos/p.jpg", b"not really a jpeg");

    let log = dir.path().join("conformance.jsonl");
    let proxy = conformance_proxy(&moto, &log);
    let out = fabrs(
        &proxy.url(),
        &[
            "destroy-env",
            "staging",
            "--yes",
            "--disable-deletion-protection",
            "--skip-final-snapshot",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(PHOTOS) && stderr.contains("--delete-bucket-contents"),
        "{stderr}"
    );
    let writes = write_calls(&proxy.stats());
    assert!(writes.is_empty(), "write calls before the refusal: {writes:?}");
    let listed = s3api(&moto, &["list-objects-v2", "--bucket", PHOTOS]);
    assert_eq!(
        listed["Contents"][0]["Key"], "photos/p.jpg",
        "the photo is still there: {listed}"
    );

    ok(&fabrs(
        &moto.url(),
        &[
            "destroy-env",
            "staging",
            "--yes",
            "--disable-deletion-protection",
            "--skip-final-snapshot",
            "--delete-bucket-contents",
        ],
    ));
    let buckets = s3api(&moto, &["list-buckets"])["Buckets"].clone();
    assert!(
        !buckets.as_array().unwrap().iter().any(|b| b["Name"] == PHOTOS),
        "{buckets}"
    );
}

/// Private, encrypted, ACLs off: what both buckets must be.
fn assert_private_and_encrypted(moto: &Moto, bucket: &str) {
    let pab = s3api(moto, &["get-public-access-block", "--bucket", bucket])["PublicAccessBlockConfiguration"].clone();
    for k in [
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(pab[k], true, "{bucket} {k}: {pab}");
    }
    let enc = s3api(moto, &["get-bucket-encryption", "--bucket", bucket]);
    assert_eq!(
        enc["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256",
        "{bucket}: {enc}"
    );
    let own = s3api(moto, &["get-bucket-ownership-controls", "--bucket", bucket]);
    assert_eq!(
        own["OwnershipControls"]["Rules"][0]["ObjectOwnership"], "BucketOwnerEnforced",
        "{bucket}: {own}"
    );
}

fn versioning(moto: &Moto, bucket: &str) -> Value {
    s3api(moto, &["get-bucket-versioning", "--bucket", bucket])["Status"].clone()
}

/// A project whose production names staging's artifact bucket.
fn production_sharing_stagings_artifacts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("environments")).unwrap();
    for f in ["staging.yaml", "production.yaml"] {
        let text = std::fs::read_to_string(root().join("environments").join(f)).unwrap();
        let text = text.replace(
            "bucket: myproject-production-artifacts",
            &format!("bucket: {ARTIFACTS}"),
        );
        std::fs::write(dir.path().join("environments").join(f), text).unwrap();
    }
    dir
}

#[test]
fn create_env_makes_the_projects_artifact_bucket_versioned_shared_and_kept_by_destroy_env() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conformance.jsonl");
    let proxy = conformance_proxy(&moto, &log);
    let out = ok(&fabrs(&proxy.url(), &["create-env", "staging", "--yes"]));
    assert!(out.contains("bucket.artifacts"), "{out}");
    let s3 = violations(&log, "s3");
    assert!(s3.is_empty(), "S3 would refuse: {s3:#?}");
    assert!(
        proxy.stats()["operations"]["s3.PutBucketVersioning"].as_u64() == Some(1),
        "{}",
        proxy.stats()
    );

    assert_private_and_encrypted(&moto, ARTIFACTS);
    assert_eq!(versioning(&moto, ARTIFACTS), "Enabled");
    assert_eq!(
        versioning(&moto, PHOTOS),
        Value::Null,
        "the photo bucket is not versioned"
    );
    let tags = s3api(&moto, &["get-bucket-tagging", "--bucket", ARTIFACTS])["TagSet"].clone();
    assert_eq!(tag(&tags, "managed-by"), Some("fabrs"), "{tags}");
    assert_eq!(tag(&tags, "fabrs:project"), Some("myproject"), "{tags}");
    assert_eq!(
        tag(&tags, "fabrs:environment"),
        None,
        "the project's, not staging's: {tags}"
    );
    let out = ok(&fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]));
    assert!(out.contains("No changes"), "{out}");

    // Drift: versioning suspended by hand; the plan says so, create-env turns it on.
    s3api(
        &moto,
        &[
            "put-bucket-versioning",
            "--bucket",
            ARTIFACTS,
            "--versioning-configuration",
            "Status=Suspended",
        ],
    );
    let out = fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("bucket.artifacts") && text(&out).contains("versioned"),
        "{}",
        text(&out)
    );
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    assert_eq!(versioning(&moto, ARTIFACTS), "Enabled");

    // Another environment of the project naming the same bucket plans it
    // as it is: no change, no conflict.
    let shared = production_sharing_stagings_artifacts();
    let production = shared.path().join("environments/production.yaml");
    let out = fabrs(&moto.url(), &["plan", production.to_str().unwrap(), "--json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let touches_artifacts = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["address"] == "bucket.artifacts");
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["address"] == "bucket.photos"),
        "production's own bucket is planned: {plan:#}"
    );
    assert!(!touches_artifacts, "production would change staging's bucket: {plan:#}");
    assert!(plan["conflicts"].as_array().is_none_or(|c| c.is_empty()), "{plan:#}");

    // destroy-env removes the environment's buckets, not the project's
    // (with a release in it).
    put_object(&moto, ARTIFACTS, "releases/myproject/r1/refapp.tar.gz", b"a release");
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
    assert!(!out.contains("bucket.artifacts"), "{out}");
    let names: Vec<String> = s3api(&moto, &["list-buckets"])["Buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["Name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&ARTIFACTS.to_string()), "{names:?}");
    assert!(!names.contains(&PHOTOS.to_string()), "{names:?}");
    let listed = s3api(&moto, &["list-objects-v2", "--bucket", ARTIFACTS]);
    assert_eq!(
        listed["Contents"][0]["Key"], "releases/myproject/r1/refapp.tar.gz",
        "{listed}"
    );
}

#[test]
fn an_artifact_bucket_fabrs_did_not_make_is_refused_until_handed_over_by_its_tags() {
    let moto = Moto::start();
    s3api(&moto, &["create-bucket", "--bucket", ARTIFACTS]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conformance.jsonl");
    let proxy = conformance_proxy(&moto, &log);
    let out = fabrs(&proxy.url(), &["create-env", "staging", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("bucket.artifacts") && t.contains(ARTIFACTS) && t.contains("fabrs:project=myproject"),
        "{t}"
    );
    let writes = write_calls(&proxy.stats());
    assert!(writes.is_empty(), "write calls before the refusal: {writes:?}");
    assert_eq!(versioning(&moto, ARTIFACTS), Value::Null, "the look-alike was changed");

    // Handed over: tagged as the message says; create-env makes it what it
    // must be (versioned, private, encrypted) and keeps its objects.
    s3api(
        &moto,
        &[
            "put-bucket-tagging",
            "--bucket",
            ARTIFACTS,
            "--tagging",
            "TagSet=[{Key=managed-by,Value=fabrs},{Key=fabrs:project,Value=myproject}]",
        ],
    );
    ok(&fabrs(&moto.url(), &["create-env", "staging", "--yes"]));
    assert_eq!(versioning(&moto, ARTIFACTS), "Enabled");
    assert_private_and_encrypted(&moto, ARTIFACTS);
    let out = ok(&fabrs(&moto.url(), &["plan", "staging", "--detailed-exitcode"]));
    assert!(out.contains("No changes"), "{out}");
}
