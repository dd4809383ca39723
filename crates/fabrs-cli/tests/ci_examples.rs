//! The example CI workflows of examples/ci/ (issue 16): actionlint and zizmor
//! report nothing, and scripts/ci-examples runs each workflow's steps in order
//! against its own moto (pull request plan, merge apply + release push +
//! deploy --output json, scheduled rotation), checking what each says it does.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(root().join("scripts/ci-examples"))
        .args(args)
        .env("FABRS", env!("CARGO_BIN_EXE_fabrs"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("scripts/ci-examples runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn workflows_pass_actionlint_and_zizmor() {
    let (ok, text) = run(&["--lint-only"]);
    assert!(ok, "{text}");
    assert!(text.contains("actionlint and zizmor report nothing"), "{text}");
}

#[test]
fn workflows_run_on_moto() {
    let (ok, text) = run(&[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("the deploy's step events are the human output's steps, in order"),
        "{text}"
    );
    assert!(text.contains(" passed, 0 failed"), "{text}");
}
