//! Plans for review (issue 16): snapshots of `plan` in every format (human,
//! concise, markdown, JSON) for the cases a reviewer meets, built from the
//! shipped staging environment and constructed inventories (the planner is
//! pure), with user-data rendered by the real templates.

use std::collections::BTreeMap;
use std::path::Path;

use fabrs_config::{Environment, RoleKind};
use fabrs_plan::desired::{Desired, RoleLaunch, desired_state, sha256_hex};
use fabrs_plan::plan::{Plan, plan};
use fabrs_plan::resource::*;
use fabrs_plan::review::markdown::{GITHUB_COMMENT_LIMIT, markdown};
use fabrs_plan::review::{Extras, concise, human, json, userdata};
use fabrs_render::{Facts, Options, Renderer, SecretMode};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Staging on launch configurations (the shipped file uses templates): the
/// review of a new revision shows a configuration made beside the kept one.
fn staging() -> Environment {
    let file = root().join("environments/staging.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("launch: template", "launch: configuration");
    let env = fabrs_config::load_str(&text, &file, root()).unwrap();
    // The file names Debian 12's public parameter; discovery reads it.
    let read = Inventory {
        image_parameters: [(
            "/aws/service/debian/release/12/latest/amd64".to_string(),
            "ami-0deb12a0b1c2d3e4f".to_string(),
        )]
        .into(),
        ..Inventory::default()
    };
    fabrs_plan::images::resolve(&env, &read).unwrap().env
}

/// Secret values with every character a template must encode.
const SECRETS: [(&str, &str); 3] = [
    // RDS refuses `/`, `"`, `@` and spaces in the master password.
    ("db_password", "p:ss%w0rd'q&+#x?="),
    ("cache_password", "c@che pw/%2F"),
    ("queue_password", "qu:eue@&=?"),
];

fn secrets(env: &Environment) -> fabrs_config::secrets::Secrets {
    fabrs_config::secrets::resolve(env, |var| {
        SECRETS
            .iter()
            .find(|(n, _)| var == format!("FABRS_SECRET_{}", n.to_uppercase()))
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

fn facts() -> Facts {
    Facts {
        db_master_host: "db.internal.example".into(),
        db_replica_host: Some("db-replica.internal.example".into()),
        cache_host: "10.0.1.9".into(),
    }
}

/// Per role: (review render, real render with values and marker lines).
fn render(env: &Environment, revision: &str) -> BTreeMap<RoleKind, (String, String)> {
    let renderer = Renderer::new(root()).unwrap();
    let s = secrets(env);
    env.roles
        .keys()
        .map(|role| {
            let rev = if *role == RoleKind::Cache { "none" } else { revision };
            let mut opts = Options::review(env, rev);
            if *role != RoleKind::Cache {
                opts.facts = facts();
            }
            let review = renderer.render_role(env, *role, &opts).unwrap().user_data;
            opts.secrets = SecretMode::Values(&s);
            let full = renderer.render_role(env, *role, &opts).unwrap().user_data;
            let sha = sha256_hex(review.as_bytes());
            let (first, rest) = full.split_once('\n').unwrap();
            let full = format!(
                "{first}\n# fabrs:owner=myproject/staging\n# fabrs:user-data-sha256={sha}\n# fabrs:revision={rev}\n{rest}"
            );
            (*role, (review, full))
        })
        .collect()
}

fn launches(rendered: &BTreeMap<RoleKind, (String, String)>, revision: &str) -> BTreeMap<RoleKind, RoleLaunch> {
    rendered
        .iter()
        .map(|(role, (review, _))| {
            (
                *role,
                RoleLaunch {
                    user_data_sha256: Some(sha256_hex(review.as_bytes())),
                    revision: if *role == RoleKind::Cache {
                        None
                    } else {
                        fabrs_config::Revision::parse_wire(revision).unwrap()
                    },
                },
            )
        })
        .collect()
}

fn observed_from(desired: &Desired) -> Inventory {
    let mut inv = Inventory::default();
    for (a, s) in &desired.resources {
        inv.resources.insert(
            a.clone(),
            Observed {
                address: a.clone(),
                id: format!("id-{a}"),
                spec: s.clone(),
                status: Status::default(),
            },
        );
    }
    inv
}

/// The observed user-data of an inventory's launches (what discovery reads).
fn with_user_data(inv: &mut Inventory, rendered: &BTreeMap<RoleKind, (String, String)>) {
    for (a, o) in &inv.resources {
        let role = match &o.spec {
            Spec::LaunchConfiguration(l) => l.launch.role,
            Spec::LaunchTemplate(l) => l.launch.role,
            Spec::Instance(i) => i.launch.role,
            _ => continue,
        };
        inv.user_data.insert(a.clone(), rendered[&role].1.clone());
    }
}

/// What the CLI does: the review texts per role and the secret forms learned
/// from the desired renders.
fn extras(p: &Plan, inv: &Inventory, desired: &BTreeMap<RoleKind, (String, String)>) -> Extras {
    let mut forms = Vec::new();
    for (review, full) in desired.values() {
        forms.extend(userdata::secret_forms(review, full));
    }
    let env = staging();
    let s = secrets(&env);
    for (name, v) in s.iter() {
        forms.push((v.expose().to_string(), format!("__secret_{name}__")));
    }
    let by_role = desired.iter().map(|(r, (review, _))| (*r, review.clone())).collect();
    Extras {
        user_data: userdata::changes(p, &inv.user_data, &by_role, Some(&forms)),
        ..Default::default()
    }
}

/// Every format of a plan, in one snapshot per format.
fn snapshot_all(name: &str, p: &Plan, x: &Extras) {
    let md = markdown(p, x);
    assert!(md.chars().count() < GITHUB_COMMENT_LIMIT);
    let all = [
        human(p, x),
        concise(p),
        md,
        serde_json::to_string_pretty(&json(p, x)).unwrap(),
    ];
    for text in &all {
        for (_, v) in SECRETS {
            assert!(!text.contains(v), "{name}: a secret value is in the output");
        }
    }
    insta::assert_snapshot!(format!("{name}_human"), all[0]);
    insta::assert_snapshot!(format!("{name}_concise"), all[1]);
    insta::assert_snapshot!(format!("{name}_markdown"), all[2]);
    insta::assert_snapshot!(format!("{name}_json"), all[3]);
}

#[test]
fn empty_account() {
    let env = staging();
    let r = render(&env, "3f9c2e1");
    let desired = desired_state(&env, &launches(&r, "3f9c2e1"));
    let inv = Inventory::default();
    let p = plan("myproject", "staging", &desired, &inv);
    let x = extras(&p, &inv, &r);
    // Creates show no user-data diff and fold the ownership tags.
    let text = human(&p, &x);
    assert!(text.contains("+ tags.Name = "));
    assert!(!text.contains("+ tags.managed-by"), "{text}");
    snapshot_all("empty_account", &p, &x);
}

#[test]
fn no_changes() {
    let env = staging();
    let r = render(&env, "3f9c2e1");
    let desired = desired_state(&env, &launches(&r, "3f9c2e1"));
    let mut inv = observed_from(&desired);
    with_user_data(&mut inv, &r);
    let p = plan("myproject", "staging", &desired, &inv);
    assert!(p.is_empty());
    snapshot_all("no_changes", &p, &extras(&p, &inv, &r));
}

#[test]
fn new_revision_shows_the_changed_line() {
    let env = staging();
    let old = render(&env, "3f9c2e1");
    let new = render(&env, "a1b2c3d");
    let mut inv = observed_from(&desired_state(&env, &launches(&old, "3f9c2e1")));
    with_user_data(&mut inv, &old);
    let desired = desired_state(&env, &launches(&new, "a1b2c3d"));
    let p = plan("myproject", "staging", &desired, &inv);
    let x = extras(&p, &inv, &new);
    let text = human(&p, &x);
    assert!(text.contains("-REFAPP_REVISION=3f9c2e1"), "{text}");
    assert!(text.contains("+REFAPP_REVISION=a1b2c3d"), "{text}");
    assert!(
        !text.contains("user_data_sha256 ="),
        "the hash is replaced by the diff:\n{text}"
    );
    // The secret placeholders are in the diff's context, never the values.
    let md = markdown(&p, &x);
    assert!(md.contains("```diff"));
    snapshot_all("new_revision", &p, &x);
}

#[test]
fn rule_added_and_removed() {
    let env = staging();
    let r = render(&env, "3f9c2e1");
    let desired = desired_state(&env, &launches(&r, "3f9c2e1"));
    let mut inv = observed_from(&desired);
    let Some(Observed {
        spec: Spec::SecurityGroup(sg),
        ..
    }) = inv.resources.get_mut(&fabrs_plan::addr::security_group("web"))
    else {
        panic!("staging has a web group")
    };
    // The account has a rule the file no longer wants, and lacks one it wants.
    let wanted = sg.ingress.iter().next().cloned().unwrap();
    sg.ingress.remove(&wanted);
    sg.ingress.insert(IngressRule {
        protocol: "tcp".into(),
        from_port: 22,
        to_port: 22,
        source: RuleSource::Cidr("203.0.113.10/32".into()),
    });
    let p = plan("myproject", "staging", &desired, &inv);
    let x = extras(&p, &inv, &r);
    let text = human(&p, &x);
    assert!(text.contains("    - tcp/22 from 203.0.113.10/32"), "{text}");
    assert!(text.contains("    + tcp/"), "{text}");
    snapshot_all("rule_added_and_removed", &p, &x);
}

#[test]
fn database_change_refused_as_a_conflict() {
    let env = staging();
    let r = render(&env, "3f9c2e1");
    let desired = desired_state(&env, &launches(&r, "3f9c2e1"));
    let mut inv = observed_from(&desired);
    let Some(Observed {
        spec: Spec::DbInstance(db),
        ..
    }) = inv.resources.get_mut(&fabrs_plan::addr::db_master())
    else {
        panic!("staging has a database")
    };
    db.username = "olduser".into();
    db.instance_class = "db.t3.micro".into();
    let p = plan("myproject", "staging", &desired, &inv);
    assert_eq!(p.conflicts.len(), 1);
    let x = extras(&p, &inv, &r);
    assert!(markdown(&p, &x).contains("[!CAUTION]"));
    snapshot_all("database_conflict", &p, &x);
}

#[test]
fn two_hundred_rules_fit_a_comment() {
    let env = staging();
    let r = render(&env, "3f9c2e1");
    let mut desired = desired_state(&env, &launches(&r, "3f9c2e1"));
    for (_, spec) in desired.resources.iter_mut() {
        if let Spec::SecurityGroup(sg) = spec
            && sg.key == "web"
        {
            for n in 0..200u32 {
                sg.ingress.insert(IngressRule {
                    protocol: "tcp".into(),
                    from_port: 443,
                    to_port: 443,
                    source: RuleSource::Cidr(format!("198.51.{}.{}/32", n / 200, n % 200)),
                });
            }
        }
    }
    // From an empty account (every rule listed) and against one with 200
    // other rules (200 removed, 200 added), plus every launch changing.
    let empty = plan("myproject", "staging", &desired, &Inventory::default());
    let mut inv = observed_from(&desired_state(&env, &launches(&render(&env, "0000000"), "0000000")));
    if let Some(Observed {
        spec: Spec::SecurityGroup(sg),
        ..
    }) = inv.resources.get_mut(&fabrs_plan::addr::security_group("web"))
    {
        for n in 0..200u32 {
            sg.ingress.insert(IngressRule {
                protocol: "tcp".into(),
                from_port: 8000 + n as u16,
                to_port: 8000 + n as u16,
                source: RuleSource::Cidr(format!("192.0.2.{}/32", n % 250)),
            });
        }
    }
    let old = render(&env, "0000000");
    with_user_data(&mut inv, &old);
    let changed = plan("myproject", "staging", &desired, &inv);
    for (p, inv) in [(&empty, &Inventory::default()), (&changed, &inv)] {
        let x = extras(p, inv, &r);
        let md = markdown(p, &x);
        let (add, change, destroy) = p.summary();
        assert!(
            md.starts_with(&format!(
                "**Plan: {add} to add, {change} to change, {destroy} to destroy.**"
            )),
            "{}",
            &md[..200]
        );
        assert!(
            md.chars().count() < GITHUB_COMMENT_LIMIT,
            "{} characters",
            md.chars().count()
        );
        assert!(md.contains("tcp/443 from 198.51.0.199/32"), "the rules fit whole");
    }
}

#[test]
fn details_that_do_not_fit_are_cut_with_a_note_never_the_summary() {
    // 400 resources with 200 rules each: far beyond any comment.
    let env = staging();
    let r = render(&env, "3f9c2e1");
    let base = desired_state(&env, &launches(&r, "3f9c2e1"));
    let mut desired = Desired::default();
    let sg = base
        .resources
        .values()
        .find_map(|s| match s {
            Spec::SecurityGroup(g) => Some(g.clone()),
            _ => None,
        })
        .unwrap();
    for i in 0..400 {
        let mut g = sg.clone();
        g.key = format!("g{i}");
        g.name = format!("myproject-staging-g{i}");
        for n in 0..200u32 {
            g.ingress.insert(IngressRule {
                protocol: "tcp".into(),
                from_port: 1000 + n as u16,
                to_port: 1000 + n as u16,
                source: RuleSource::Group("lb".into()),
            });
        }
        desired
            .resources
            .insert(fabrs_plan::addr::security_group(&g.key), Spec::SecurityGroup(g));
    }
    let p = plan("myproject", "staging", &desired, &Inventory::default());
    let md = markdown(&p, &Extras::default());
    assert!(md.starts_with("**Plan: 400 to add, 0 to change, 0 to destroy.**"));
    assert!(md.chars().count() < GITHUB_COMMENT_LIMIT);
    assert!(
        md.contains("_Truncated to fit a comment:"),
        "the note says details were cut"
    );
    // Sections are whole: every one opened is closed.
    assert_eq!(md.matches("<details>").count(), md.matches("</details>").count());
}

#[test]
fn without_secrets_the_current_user_data_is_withheld() {
    let env = staging();
    let old = render(&env, "3f9c2e1");
    let new = render(&env, "a1b2c3d");
    let mut inv = observed_from(&desired_state(&env, &launches(&old, "3f9c2e1")));
    with_user_data(&mut inv, &old);
    let desired = desired_state(&env, &launches(&new, "a1b2c3d"));
    let p = plan("myproject", "staging", &desired, &inv);
    let by_role = new.iter().map(|(r, (rv, _))| (*r, rv.clone())).collect();
    let x = Extras {
        user_data: userdata::changes(&p, &inv.user_data, &by_role, None),
        ..Default::default()
    };
    assert!(!x.user_data.is_empty());
    for out in [human(&p, &x), markdown(&p, &x), json(&p, &x).to_string()] {
        assert!(out.contains("user-data diff not shown") || out.contains("\"withheld\""));
        for (_, v) in SECRETS {
            assert!(!out.contains(v));
        }
    }
}

/// Render staging's roles at a revision with the given secret values: per
/// role (review, real with markers).
fn render_with(env: &Environment, revision: &str, values: &[(&str, String)]) -> BTreeMap<RoleKind, (String, String)> {
    let renderer = Renderer::new(root()).unwrap();
    let s = fabrs_config::secrets::Secrets::from_pairs(values.iter().map(|(n, v)| (*n, v.as_str())));
    env.roles
        .keys()
        .map(|role| {
            let mut opts = Options::review(env, revision);
            opts.facts = facts();
            let review = renderer.render_role(env, *role, &opts).unwrap().user_data;
            opts.secrets = SecretMode::Values(&s);
            let full = renderer.render_role(env, *role, &opts).unwrap().user_data;
            (*role, (review, full))
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever the secret values (any character a template must quote or
    /// encode), none reaches any format of the plan: the observed user-data
    /// holds them, the review shows placeholders.
    #[test]
    fn no_secret_value_reaches_a_review(
        // What RDS accepts as a master password (no `/`, `"`, `@`, space).
        db in "Zq[A-Za-z0-9:%&+#'=?!$.-]{6,14}",
        cache in "Zq[A-Za-z0-9@/:%&+#'\"=?!$ .-]{6,14}",
        queue in "Zq[A-Za-z0-9@/:%&+#'\"=?!$ .-]{6,14}",
    ) {
        let env = staging();
        let values = [("db_password", db.clone()), ("cache_password", cache.clone()), ("queue_password", queue.clone())];
        let old = render_with(&env, "3f9c2e1", &values);
        let new = render_with(&env, "a1b2c3d", &values);
        let mut inv = observed_from(&desired_state(&env, &launches(&old, "3f9c2e1")));
        with_user_data(&mut inv, &old);
        let desired = desired_state(&env, &launches(&new, "a1b2c3d"));
        let p = plan("myproject", "staging", &desired, &inv);
        // What the CLI does: forms learned from the desired renders, plus the raw values.
        let mut forms: Vec<(String, String)> = values.iter().map(|(n, v)| (v.clone(), format!("__secret_{n}__"))).collect();
        for (review, full) in new.values() {
            forms.extend(userdata::secret_forms(review, full));
        }
        let by_role = new.iter().map(|(r, (rv, _))| (*r, rv.clone())).collect();
        let x = Extras { user_data: userdata::changes(&p, &inv.user_data, &by_role, Some(&forms)), ..Default::default() };
        proptest::prop_assert!(x.user_data.values().all(|u| u.before.is_some()));
        // Not vacuous: the observed user-data does hold the values.
        proptest::prop_assert!(inv.user_data.values().any(|t| t.contains("Zq") && !t.contains("__secret_db_password__")));
        // Every string of the JSON document, unescaped, joined.
        fn strings(v: &serde_json::Value, out: &mut String) {
            match v {
                serde_json::Value::String(s) => { out.push_str(s); out.push('\n'); }
                serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                serde_json::Value::Object(m) => m.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let mut json_text = String::new();
        strings(&json(&p, &x), &mut json_text);
        let outputs = [human(&p, &x), markdown(&p, &x), json_text];
        for out in &outputs {
            for (_, v) in &values {
                let encoded: String = v.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
                proptest::prop_assert!(!out.contains(v.as_str()), "raw value in the output");
                proptest::prop_assert!(!out.contains(&encoded), "URL-encoded value in the output");
            }
        }
        // The diff is still there: the revision line changed.
        proptest::prop_assert!(outputs[0].contains("+REFAPP_REVISION=a1b2c3d"));
    }
}
