//! User-data without secrets (`SecretMode::Fetched`): every secret renders
//! as tokens, and the rendered `fabrs-fetch-secrets`, run for real (python3)
//! against a stand-in `aws` on PATH that answers as
//! `aws ssm get-parameters-by-path --with-decryption` does, turns each file
//! into exactly what rendering with the values gives (which `formats.rs`
//! checks with the real programs), keeping owner and mode.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fabrs_config::secrets::Secrets;
use fabrs_config::{Environment, RoleKind};
use fabrs_render::{FETCH_SECRETS, Facts, Layout, Options, Renderer, RoleFiles, SecretMode, token};
use fabrs_test_support::root;

/// Every character some format treats specially (URL userinfo, pgbouncer's
/// and Redis's quotes, JSON, the shell), a tab, non-ASCII; one line (the
/// auth file cannot hold a line break).
const AWKWARD: &str = "  @:/%\"'\\ $HOME ${X} `id` ;#%%n%?&=+,[]{}<>|*~!^\tt\u{e9}\u{2603}\u{1F600} tail  ";

fn secrets() -> Secrets {
    Secrets::from_pairs([
        ("db_password", &*format!("db{AWKWARD}")),
        ("cache_password", &*format!("cache{AWKWARD}")),
        ("queue_password", &*format!("queue{AWKWARD}")),
    ])
}

fn render(env: &Environment, role: RoleKind, mode: SecretMode<'_>) -> RoleFiles {
    let opts = Options {
        revision: "3f9c2e1".into(),
        secrets: mode,
        facts: Facts {
            db_master_host: "10.0.0.5".into(),
            db_replica_host: Some("10.0.0.6".into()),
            cache_host: "10.0.0.7".into(),
        },
        layout: Layout::production(),
    };
    Renderer::new(&root()).unwrap().render_role(env, role, &opts).unwrap()
}

fn envs() -> Vec<Environment> {
    ["staging", "production"]
        .iter()
        .map(|n| fabrs_config::load_file(&root().join(format!("environments/{n}.yaml"))).unwrap())
        .collect()
}

/// What a secret value may look like in a file: raw, or in any encoding.
fn forms(v: &str) -> Vec<String> {
    vec![
        v.to_string(),
        fabrs_config::formats::UrlPart::encode(v).to_string(),
        fabrs_config::formats::RedisValue::quote(v).to_string(),
        v.replace('"', "\"\""),
        serde_json::to_string(v).unwrap(),
    ]
}

#[test]
fn user_data_holds_tokens_and_no_secret_value() {
    let s = secrets();
    for env in envs() {
        for role in env.roles.keys() {
            let r = render(&env, *role, SecretMode::Fetched(&s));
            for (name, v) in s.iter() {
                for f in forms(v.expose()) {
                    assert!(
                        !r.user_data.contains(&f),
                        "{} {role}: a form of {name} is in user-data",
                        env.name
                    );
                }
            }
            assert!(r.files.contains_key("fabrs-fetch-secrets"), "{role}");
            assert_eq!(r.files["fabrs-fetch-secrets"].target, FETCH_SECRETS);
            assert!(r.user_data.contains(&format!("- [{FETCH_SECRETS}]")));
            let tokens = r.files.values().filter(|f| f.content.contains("fabrs-ssm.")).count();
            assert!(tokens > 0, "{} {role}: no file holds a token", env.name);
            // Files with tokens are the sensitive ones, and keep their modes.
            for f in r
                .files
                .values()
                .filter(|f| f.content.contains("fabrs-ssm.") && f.target != FETCH_SECRETS)
            {
                assert!(f.sensitive, "{}", f.target);
                assert!(
                    ["0600", "0640", "0400"].contains(&f.mode.as_str()),
                    "{} {}",
                    f.target,
                    f.mode
                );
            }
        }
    }
    // One token per (secret, encoding), of the shape the script matches.
    assert_eq!(token("db_password", "url"), "fabrs-ssm.url.db_password.");
}

/// A directory with the role's sensitive files (token render) under their
/// targets, the script with its paths moved there, and a stand-in `aws`.
struct Stage {
    dir: tempfile::TempDir,
    script: PathBuf,
}

impl Stage {
    fn path(&self, target: &str) -> PathBuf {
        self.dir.path().join("root").join(target.trim_start_matches('/'))
    }
}

fn stage(r: &RoleFiles, parameters: &serde_json::Value) -> Stage {
    let dir = tempfile::tempdir().unwrap();
    let stage = Stage {
        script: dir.path().join("fabrs-fetch-secrets"),
        dir,
    };
    let mut script = r.files["fabrs-fetch-secrets"].content.clone();
    for f in r.files.values().filter(|f| f.sensitive) {
        let p = stage.path(&f.target);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &f.content).unwrap();
        std::fs::set_permissions(
            &p,
            std::fs::Permissions::from_mode(u32::from_str_radix(&f.mode, 8).unwrap()),
        )
        .unwrap();
        let quoted = format!("\"{}\"", f.target);
        assert!(script.contains(&quoted), "the script does not list {}", f.target);
        script = script.replace(&quoted, &format!("\"{}\"", p.display()));
    }
    std::fs::write(&stage.script, script).unwrap();
    // The stand-in `aws`: records its arguments, answers with the parameters.
    let bin = stage.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let answer = stage.dir.path().join("answer.json");
    std::fs::write(&answer, serde_json::to_vec(parameters).unwrap()).unwrap();
    let aws = bin.join("aws");
    std::fs::write(
        &aws,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >>{args}\ncat {answer}\n",
            args = stage.dir.path().join("aws-args").display(),
            answer = answer.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&aws, std::fs::Permissions::from_mode(0o755)).unwrap();
    stage
}

fn run(stage: &Stage) -> Output {
    let path = format!(
        "{}:{}",
        stage.dir.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The interpreter the script's `#!` names, as on the servers (a
    // version manager's `python3` shim would put its own `aws` first on PATH).
    Command::new("/usr/bin/python3")
        .arg(&stage.script)
        .env("PATH", path)
        .output()
        .expect("python3")
}

fn parameters(env: &Environment, s: &Secrets) -> serde_json::Value {
    let list: Vec<serde_json::Value> = s
        .iter()
        .map(|(name, v)| {
            serde_json::json!({
                "Name": fabrs_config::names::ssm_parameter(&env.project, &env.name, name),
                "Type": "SecureString",
                "Value": v.expose(),
            })
        })
        .collect();
    serde_json::json!({ "Parameters": list })
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_script_turns_tokens_into_exactly_the_files_rendered_with_the_values() {
    let s = secrets();
    for env in envs() {
        for role in env.roles.keys() {
            let fetched = render(&env, *role, SecretMode::Fetched(&s));
            let with_values = render(&env, *role, SecretMode::Values(&s));
            let st = stage(&fetched, &parameters(&env, &s));
            let out = run(&st);
            assert!(out.status.success(), "{} {role}: {}", env.name, text(&out));
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            for (name, v) in s.iter() {
                for f in forms(v.expose()) {
                    assert!(!printed.contains(&f), "the script printed {name}");
                }
            }
            let args = std::fs::read_to_string(st.dir.path().join("aws-args")).unwrap();
            let path = fabrs_config::names::ssm_path(&env.project, &env.name);
            assert_eq!(
                args.trim(),
                format!(
                    "ssm get-parameters-by-path --path {path} --with-decryption --region {} --output json",
                    env.region
                )
            );
            let mut compared = BTreeMap::new();
            for (key, f) in fetched.files.iter().filter(|(_, f)| f.sensitive) {
                let p = st.path(&f.target);
                let got = std::fs::read_to_string(&p).unwrap();
                assert!(
                    got == with_values.files[key].content,
                    "{} {role} {key}: differs from the render with the values",
                    env.name
                );
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
                assert_eq!(format!("{mode:04o}"), f.mode, "{key}: mode changed");
                compared.insert(key.clone(), ());
            }
            assert!(!compared.is_empty());
            // No temporary file is left behind.
            for f in fetched.files.values().filter(|f| f.sensitive) {
                let dir = st.path(&f.target).parent().unwrap().to_path_buf();
                for e in std::fs::read_dir(&dir).unwrap() {
                    let n = e.unwrap().file_name();
                    assert!(!n.to_string_lossy().starts_with(".fabrs-secrets."), "{}", dir.display());
                }
            }
        }
    }
}

#[test]
fn without_tokens_ssm_is_not_asked_and_a_missing_parameter_fails_naming_it() {
    let s = secrets();
    let env = &envs()[0];
    // Files rendered with the values (e.g. `fabrs render --resolve-secrets`): nothing to do.
    let with_values = render(env, RoleKind::Web, SecretMode::Values(&s));
    let st = stage(&with_values, &serde_json::json!({ "Parameters": [] }));
    let out = run(&st);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!Path::new(&st.dir.path().join("aws-args")).exists(), "aws was called");

    // A parameter missing from SSM: the boot fails, naming the parameter.
    let fetched = render(env, RoleKind::Web, SecretMode::Fetched(&s));
    let mut answer = parameters(env, &s);
    answer["Parameters"]
        .as_array_mut()
        .unwrap()
        .retain(|p| !p["Name"].as_str().unwrap().ends_with("/db_password"));
    let st = stage(&fetched, &answer);
    let before: Vec<String> = fetched
        .files
        .values()
        .filter(|f| f.sensitive)
        .map(|f| std::fs::read_to_string(st.path(&f.target)).unwrap())
        .collect();
    let out = run(&st);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim_end()
            .ends_with(&format!("no SSM parameter /{}/{}/db_password", env.project, env.name)),
        "{err}"
    );
    for (name, v) in s.iter() {
        assert!(!err.contains(v.expose()), "{name} in the error");
    }
    let after: Vec<String> = fetched
        .files
        .values()
        .filter(|f| f.sensitive)
        .map(|f| std::fs::read_to_string(st.path(&f.target)).unwrap())
        .collect();
    assert_eq!(before, after, "files changed although the fetch failed");
}
