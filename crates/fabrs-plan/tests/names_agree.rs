//! fabrs-config checks AWS's naming rules at validate time on the names it
//! derives (`fabrs_config::names`); the plan creates resources with the names
//! `desired.rs` derives. This test keeps the two schemes one: for every
//! shipped environment, example and valid corpus file, each derived name is
//! the name the desired state gives the resource.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fabrs_config::{Environment, Scaling, names};
use fabrs_plan::addr;
use fabrs_plan::desired::{desired_state, load_balancer_name};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn environments() -> Vec<Environment> {
    let mut files = vec![
        root().join("environments/staging.yaml"),
        root().join("environments/production.yaml"),
    ];
    for dir in ["examples", "tests/good"] {
        let mut more: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let envs: Vec<Environment> = files
        .iter()
        .map(|f| fabrs_config::load_file(f).unwrap_or_else(|d| panic!("{}", d.render())))
        .collect();
    assert!(envs.len() >= 10, "{} environments", envs.len());
    envs
}

#[test]
fn derived_names_are_the_names_the_plan_creates() {
    for env in environments() {
        let desired = desired_state(&env, &BTreeMap::new());
        let names = desired.names();
        let at = |a: fabrs_plan::resource::Address| {
            names
                .get(&a)
                .cloned()
                .unwrap_or_else(|| panic!("{}: no {a:?} in the desired state", env.file.display()))
        };
        let file = env.file.display().to_string();
        assert_eq!(names::load_balancer(&env), load_balancer_name(&env), "{file}");
        assert_eq!(names::load_balancer(&env), at(addr::load_balancer()), "{file}");
        assert_eq!(names::db_master(&env), at(addr::db_master()), "{file}");
        assert_eq!(names::db_subnet_group(&env), at(addr::db_subnet_group()), "{file}");
        assert_eq!(
            names::db_parameter_group(&env),
            at(addr::db_parameter_group()),
            "{file}"
        );
        for n in 0..env.database.replicas {
            assert_eq!(names::db_replica(&env, n), at(addr::db_replica(n)), "{file}");
        }
        for (kind, role) in &env.roles {
            let r = *kind;
            match role.scaling {
                Scaling::Auto { launch, .. } => {
                    assert_eq!(
                        names::autoscaling_group(&env, *kind),
                        at(addr::autoscaling_group(r)),
                        "{file}"
                    );
                    if launch == fabrs_config::Launch::Template {
                        assert_eq!(
                            names::launch_template(&env, *kind),
                            at(addr::launch_template(r)),
                            "{file}"
                        );
                    }
                }
                Scaling::Fixed { count } => {
                    for i in 0..count {
                        assert_eq!(names::instance(&env, *kind, i), at(addr::instance(r, i)), "{file}");
                    }
                }
            }
        }
        for g in fabrs_config::network::security_groups(&env) {
            assert_eq!(
                env.group_name(g.group),
                at(addr::security_group(g.group.as_str())),
                "{file}"
            );
        }
        // Every name the desired state holds is one the validation checked.
        let checked: Vec<String> = names::derived(&env).into_iter().map(|d| d.name).collect();
        assert_eq!(names::photos_bucket(&env), at(addr::photos_bucket()), "{file}");
        assert_eq!(env.artifacts.bucket, at(addr::artifacts_bucket()), "{file}");
        for (a, name) in &names {
            // A photo bucket the file names, and the artifact bucket, are
            // checked where the file names them (the decoder's bucket rules,
            // with their positions).
            if env.app.photos_bucket.as_ref() == Some(name) || &env.artifacts.bucket == name {
                continue;
            }
            let replica = name.contains("-db-replica-");
            let instance = matches!(desired.resources.get(a), Some(fabrs_plan::resource::Spec::Instance(_)));
            // Only the longest replica and instance name are listed (the others differ by a digit).
            if !replica && !instance {
                assert!(
                    checked.contains(name),
                    "{file}: `{name}` ({a:?}) is not checked by fabrs_config::names"
                );
            }
        }
    }
}
