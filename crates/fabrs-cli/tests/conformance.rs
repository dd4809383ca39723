//! Every request fabrs sends for create-env, a deploy, and destroy-env of
//! staging, production and each example is one AWS would accept: checked
//! by `scripts/conformance-run --enforce` (moto behind the conformance proxy,
//! which validates each request against botocore's service models and AWS's
//! rules the models do not carry, and answers 400 as AWS would). That the
//! proxy catches a bad request is shown by `tests/peers/test_conformance.py`
//! (run by `scripts/test`) and by the `bad-names` case here.

use std::process::Command;

mod common;
use common::root;

fn conformance_run(args: &[&str]) -> (bool, String) {
    let fabrs = std::path::PathBuf::from(env!("CARGO_BIN_EXE_fabrs"));
    let refapp = fabrs.with_file_name("refapp");
    assert!(
        refapp.exists(),
        "{} is missing: the staging case deploys the reference app; `cargo test --workspace` builds it",
        refapp.display()
    );
    let out = Command::new(root().join("scripts/conformance-run"))
        .args(args)
        .current_dir(root())
        .env("FABRS", &fabrs)
        .env("REFAPP", &refapp)
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run scripts/conformance-run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn create_deploy_and_destroy_send_nothing_aws_would_refuse() {
    let (ok, text) = conformance_run(&["--enforce"]);
    assert!(ok, "{text}");
    assert!(text.contains("total: 0 violations"), "{text}");
    assert!(text.contains("commands failed: 0"), "{text}");
    for case in ["staging", "production", "famigo", "lifesum", "scoot"] {
        assert!(text.contains(&format!("== {case}")), "{case} ran: {text}");
    }
    // The staging case deployed (release push and the roll went through the proxy).
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("deploy") && l.ends_with("ok")),
        "{text}"
    );
}
