//! Snapshot of every rendered file for staging and production (secrets as placeholders).
//! A template change shows up as a reviewable diff: `cargo insta review`.

use fabrs_render::{Options, Renderer};
use fabrs_test_support::root;

fn snapshot_env(name: &str) {
    let root = root();
    let env = fabrs_config::load_file(&root.join("environments").join(format!("{name}.yaml")))
        .unwrap_or_else(|d| panic!("{}", d.render()));
    let renderer = Renderer::new(&root).unwrap();
    let opts = Options::review(&env, "3f9c2e1");
    let roles = renderer.render_all(&env, &opts).unwrap();
    assert_eq!(roles.len(), 3, "staging and production have web, worker and cache");
    for role in roles {
        for (file, f) in &role.files {
            insta::assert_snapshot!(format!("{name}__{}__{file}", role.role), f.content);
        }
        insta::assert_snapshot!(format!("{name}__{}__user-data", role.role), role.user_data);
    }
}

#[test]
fn staging_files() {
    snapshot_env("staging");
}

#[test]
fn production_files() {
    snapshot_env("production");
}
