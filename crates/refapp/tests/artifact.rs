//! The release tarball's layout and manifest (built from the debug binary,
//! so no release build is needed here).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

fn entries(tarball: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(tarball).unwrap());
    let mut ar = tar::Archive::new(gz);
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_dir() {
            continue;
        }
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mode = e.header().mode().unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(path, (mode, data));
    }
    out
}

#[test]
fn tarball_layout_and_manifest() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A small stand-in executable keeps this test fast (the 80 MB debug
    // binary is packaged by the next test).
    let scratch = tempfile::tempdir().unwrap();
    let bin_path = scratch.path().join("refapp");
    std::fs::write(&bin_path, "#!/bin/sh\necho stand-in refapp \"$@\"\n").unwrap();
    std::fs::set_permissions(&bin_path, std::fs::Permissions::from_mode(0o700)).unwrap();
    let bin = bin_path.as_path();
    let out = tempfile::tempdir().unwrap();
    let path = refapp::artifact::build(bin, crate_dir, "r2013.05-a1", out.path(), Some(1_368_000_000)).unwrap();
    assert_eq!(path, out.path().join("refapp-r2013.05-a1.tar.gz"));

    let files = entries(&path);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    for want in [
        "bin/refapp",
        "manifest.json",
        "migrations/0001_create_photos.sql",
        "migrations/0002_rendered_index_and_enqueued_at.sql",
        "static/logo.svg",
        "static/maintenance.html",
        "static/style.css",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(names.iter().all(|n| !n.starts_with('/') && !n.contains("..")));
    assert_eq!(files["bin/refapp"].0 & 0o777, 0o755);
    assert_eq!(files["bin/refapp"].1, std::fs::read(bin).unwrap());

    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"].1).unwrap();
    assert_eq!(manifest["name"], "refapp");
    assert_eq!(manifest["revision"], "r2013.05-a1");
    assert_eq!(manifest["built_at"], "2013-05-08T08:00:00Z");
    let listed = manifest["files"].as_object().unwrap();
    // Every file but the manifest is listed, with its real sha256.
    let expected: Vec<&str> = names.iter().copied().filter(|n| *n != "manifest.json").collect();
    let mut got: Vec<&str> = listed.keys().map(String::as_str).collect();
    got.sort();
    assert_eq!(got, expected);
    for (name, sum) in listed {
        assert_eq!(
            sum.as_str().unwrap(),
            hex::encode(Sha256::digest(&files[name].1)),
            "{name}"
        );
    }

    // Same inputs, same bytes.
    let out2 = tempfile::tempdir().unwrap();
    let path2 = refapp::artifact::build(bin, crate_dir, "r2013.05-a1", out2.path(), Some(1_368_000_000)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&path2).unwrap());

    // Unpacked like cloud-init does, the binary runs.
    let unpack = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&path)
        .arg("-C")
        .arg(unpack.path())
        .status()
        .unwrap();
    assert!(st.success());
    let exe = unpack.path().join("bin/refapp");
    assert_eq!(std::fs::metadata(&exe).unwrap().permissions().mode() & 0o111, 0o111);
    let run = Command::new(&exe).arg("web").output().unwrap();
    assert!(run.status.success());
    assert_eq!(String::from_utf8_lossy(&run.stdout), "stand-in refapp web\n");
}

#[test]
fn package_subcommand_and_bad_revisions() {
    let out = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_refapp");
    let o = Command::new(bin)
        .args(["package", "--bin", bin, "--revision", "abc123", "--out"])
        .arg(out.path())
        .args(["--source-dir", env!("CARGO_MANIFEST_DIR")])
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = out.path().join("refapp-abc123.tar.gz");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), path.display().to_string());
    let files = entries(&path);
    let m: serde_json::Value = serde_json::from_slice(&files["manifest.json"].1).unwrap();
    assert_eq!(m["built_at"], "1970-01-01T00:00:00Z");
    assert_eq!(m["revision"], "abc123");
    assert_eq!(
        m["files"]["bin/refapp"].as_str().unwrap(),
        hex::encode(Sha256::digest(std::fs::read(bin).unwrap()))
    );

    // Unpacked like cloud-init does, the real binary runs.
    let unpack = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&path)
        .arg("-C")
        .arg(unpack.path())
        .status()
        .unwrap();
    assert!(st.success());
    let help = Command::new(unpack.path().join("bin/refapp"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for sub in ["web", "worker", "migrate"] {
        assert!(help.contains(sub), "{help}");
    }

    for bad in ["", "../x", "a/b", "has space"] {
        let r = refapp::artifact::build(
            Path::new(bin),
            Path::new(env!("CARGO_MANIFEST_DIR")),
            bad,
            out.path(),
            Some(0),
        );
        assert!(r.is_err(), "{bad:?} accepted");
    }
    let missing = refapp::artifact::build(
        Path::new("/nonexistent/refapp"),
        Path::new(env!("CARGO_MANIFEST_DIR")),
        "ok",
        out.path(),
        Some(0),
    );
    assert!(missing.is_err());
}
