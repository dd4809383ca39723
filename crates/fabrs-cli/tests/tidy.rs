//! Tidy: the crate-boundary invariants of ARCHITECTURE.md, checked on the
//! source text so that plain `cargo test` (CI) enforces them.
//!
//! - Only fabrs-aws names `aws_sdk_*` types (refapp, the application, uses the
//!   SDK for its own buckets and is exempt).
//! - Every fabrs tag name (`fabrs:…`, `managed-by`) is written once, in
//!   fabrs-plan's `addr.rs` (fabrs-config's reserved-key check is the one
//!   exception: it refuses those keys in the file's `tags:`, and addr's tests
//!   check that each of its tags is reserved there).
//! - Only fabrs-cli's printer writes to the terminal (also a clippy lint,
//!   `[workspace.lints]`; this check runs without clippy).
//!
//! Only `crates/*/src` is checked: test code (`tests/`, and the test-support
//! crate) may name tags and print. `#[cfg(test)]` modules inside `src/` are
//! checked like the rest.

use std::path::{Path, PathBuf};

/// Crates that are not fabrs's product code: refapp (the application fabrs
/// deploys) and the test-support crate (test code, like `tests/`).
fn exempt(path: &str) -> bool {
    path.starts_with("crates/refapp/") || path.starts_with("crates/fabrs-test-support/")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `.rs` file under `crates/*/src`, as (path relative to the root, text).
fn sources() -> Vec<(String, String)> {
    let root = repo_root();
    let mut out = Vec::new();
    let mut stack = vec![root.join("crates")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
            if p.is_dir() {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if name != "target" && !name.starts_with('.') {
                    stack.push(p);
                }
            } else if rel.ends_with(".rs") && rel.split('/').nth(2) == Some("src") {
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    assert!(
        out.len() > 40,
        "found only {} source files under crates/*/src",
        out.len()
    );
    out
}

/// Lines of `text` containing `needle`, outside `//` comments, with numbers.
fn hits(text: &str, needle: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let code = l.split("//").next().unwrap_or("");
            code.contains(needle)
        })
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect()
}

fn check(needles: &[&str], allowed: impl Fn(&str) -> bool, what: &str) {
    let mut bad = Vec::new();
    for (path, text) in sources() {
        if exempt(&path) || allowed(&path) {
            continue;
        }
        for n in needles {
            for (line, l) in hits(&text, n) {
                bad.push(format!("{path}:{line}: {l}"));
            }
        }
    }
    assert!(bad.is_empty(), "{what}:\n{}", bad.join("\n"));
}

#[test]
fn only_fabrs_aws_names_sdk_types() {
    check(
        &["aws_sdk_", "aws_smithy_", "aws_config::"],
        |p| p.starts_with("crates/fabrs-aws/"),
        "AWS SDK names outside fabrs-aws",
    );
}

#[test]
fn tag_names_live_in_addr() {
    check(
        &["\"fabrs:", "\"managed-by\""],
        // fabrs-config's model.rs: is_reserved_tag_key, see above.
        |p| p == "crates/fabrs-plan/src/addr.rs" || p == "crates/fabrs-config/src/model.rs",
        "tag name literals outside fabrs-plan/src/addr.rs",
    );
}

#[test]
fn only_the_printer_prints() {
    check(
        &[
            "println!",
            "print!(",
            "dbg!(",
            "std::io::stdout",
            "std::io::stderr",
            "io::stdout()",
            "io::stderr()",
        ],
        |p| p == "crates/fabrs-cli/src/printer.rs",
        "terminal output outside fabrs-cli/src/printer.rs",
    );
}

/// The checks above must be able to fail.
#[test]
fn the_checks_see_what_they_look_for() {
    let printer = std::fs::read_to_string(repo_root().join("crates/fabrs-cli/src/printer.rs")).unwrap();
    assert!(!hits(&printer, "eprintln!").is_empty());
    let addr = std::fs::read_to_string(repo_root().join("crates/fabrs-plan/src/addr.rs")).unwrap();
    assert!(!hits(&addr, "\"fabrs:").is_empty());
    assert!(
        sources()
            .iter()
            .any(|(p, t)| p.starts_with("crates/fabrs-aws/") && t.contains("aws_sdk_"))
    );
}
