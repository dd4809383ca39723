//! The photo bucket (issue 10, item 2) against a real moto, read back with
//! awscli: made by create-env private, encrypted and with ACLs off, tagged;
//! drift repaired; a bucket of that name that is not the environment's
//! refused; destroy-env refuses it while it holds data and, told to, empties
//! and deletes it.

use serde_json::Value;

mod common;
use common::*;

const PHOTOS: &str = "myproject-staging-photos";

fn s3api(moto: &Moto, args: &[&str]) -> Value {
    let mut a = vec!["s3api"];
    a.extend_from_slice(args);
    aws(moto, &a)
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

    let pab = s3api(&moto, &["get-public-access-block", "--bucket", PHOTOS])["PublicAccessBlockConfiguration"].clone();
    for k in [
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(pab[k], true, "{k}: {pab}");
    }
    let enc = s3api(&moto, &["get-bucket-encryption", "--bucket", PHOTOS]);
    assert_eq!(
        enc["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256",
        "{enc}"
    );
    let own = s3api(&moto, &["get-bucket-ownership-controls", "--bucket", PHOTOS]);
    assert_eq!(
        own["OwnershipControls"]["Rules"][0]["ObjectOwnership"], "BucketOwnerEnforced",
        "{own}"
    );
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
    let photo = dir.path().join("p.jpg");
    std::fs::write(&photo, b"not really a jpeg").unwrap();
    s3api(
        &moto,
        &[
            "put-object",
            "--bucket",
            PHOTOS,
            "--key",
            "photos/p.jpg",
            "--body",
            photo.to_str().unwrap(),
        ],
    );

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
