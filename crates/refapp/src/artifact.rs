//! The release artifact: `refapp-<REV>.tar.gz` with `bin/refapp`,
//! `static/`, `migrations/` and `manifest.json`
//! (`{"name","revision","built_at","files":{path: sha256}}`). Entries are
//! sorted, owned by 0:0 and stamped with `built_at`, so the same inputs give
//! the same tarball.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub revision: String,
    pub built_at: String,
    pub files: BTreeMap<String, String>,
}

pub fn valid_revision(rev: &str) -> bool {
    !rev.is_empty()
        && rev.len() <= 128
        && !rev.starts_with('.')
        && rev
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// RFC 3339 UTC timestamp of a Unix time (no external date crate).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("non-UTF-8 file name {n:?}"))?;
        let path = e.path();
        let ty = e.file_type()?;
        if ty.is_dir() {
            collect(&path, &format!("{prefix}{name}/"), out)?;
        } else if ty.is_file() {
            out.push((format!("{prefix}{name}"), path));
        }
    }
    Ok(())
}

fn sha256_file(p: &Path) -> Result<String> {
    let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Assemble `<out_dir>/refapp-<revision>.tar.gz` from a built binary and the
/// crate's `static/` and `migrations/` (found under `source_dir`).
/// `built_at` is a Unix time (default: SOURCE_DATE_EPOCH, else now).
pub fn build(bin: &Path, source_dir: &Path, revision: &str, out_dir: &Path, built_at: Option<u64>) -> Result<PathBuf> {
    if !valid_revision(revision) {
        bail!("invalid revision {revision:?}: use letters, digits, '.', '_' and '-'");
    }
    if !bin.is_file() {
        bail!("binary {} not found", bin.display());
    }
    let built_at = match built_at {
        Some(t) => t,
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(s) => s.trim().parse().context("SOURCE_DATE_EPOCH")?,
            Err(_) => SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        },
    };
    let mut files = vec![("bin/refapp".to_string(), bin.to_path_buf())];
    collect(&source_dir.join("static"), "static/", &mut files)?;
    collect(&source_dir.join("migrations"), "migrations/", &mut files)?;
    if !files.iter().any(|(p, _)| p == "static/maintenance.html") {
        bail!("static/maintenance.html is missing");
    }
    if !files
        .iter()
        .any(|(p, _)| p.starts_with("migrations/") && p.ends_with(".sql"))
    {
        bail!("no migrations found");
    }

    let mut manifest = Manifest {
        name: "refapp".into(),
        revision: revision.into(),
        built_at: rfc3339(built_at),
        files: BTreeMap::new(),
    };
    for (p, src) in &files {
        manifest.files.insert(p.clone(), sha256_file(src)?);
    }
    let manifest_json = serde_json::to_vec_pretty(&manifest)?;

    std::fs::create_dir_all(out_dir)?;
    let final_path = out_dir.join(format!("refapp-{revision}.tar.gz"));
    let tmp_path = out_dir.join(format!(".refapp-{revision}.tar.gz.tmp"));
    {
        let gz = GzEncoder::new(File::create(&tmp_path)?, Compression::default());
        let mut tar = tar::Builder::new(gz);
        let header = |path: &str, size: u64, mode: u32| -> Result<tar::Header> {
            let mut h = tar::Header::new_ustar();
            h.set_path(path)?;
            h.set_size(size);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(built_at);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            Ok(h)
        };
        let mut dirs_done = std::collections::BTreeSet::new();
        for (p, src) in &files {
            // Directory entries so that extraction creates them with sane modes.
            let mut acc = String::new();
            for part in p.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
                acc.push_str(part);
                acc.push('/');
                if dirs_done.insert(acc.clone()) {
                    let mut h = header(&acc, 0, 0o755)?;
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_cksum();
                    tar.append(&h, std::io::empty())?;
                }
            }
            let mode = if p == "bin/refapp" { 0o755 } else { 0o644 };
            let len = std::fs::metadata(src)?.len();
            let h = header(p, len, mode)?;
            tar.append(&h, File::open(src)?)?;
        }
        let h = header("manifest.json", manifest_json.len() as u64, 0o644)?;
        tar.append(&h, manifest_json.as_slice())?;
        let gz = tar.into_inner()?;
        let mut f = gz.finish()?;
        f.flush()?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp_path, &final_path)?;
    Ok(final_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn revisions() {
        assert!(valid_revision("abc123"));
        assert!(valid_revision("v1.2.3-rc_1"));
        assert!(!valid_revision(""));
        assert!(!valid_revision("../x"));
        assert!(!valid_revision("a/b"));
        assert!(!valid_revision(".hidden"));
    }
}
