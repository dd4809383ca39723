//! The bad-input corpus (`tests/bad/` at the repository root), run against
//! fabrs-config itself: every file must fail with exactly the diagnostics its
//! header lists (position, rule, message prefix), with no library internals
//! in any message and no value echoed at length; every file in `tests/good/`
//! must load. The CLI's tests only check the exit status of the same files.
//!
//! Header format (see tests/bad/README.md):
//!
//! ```text
//! # args: --secrets            resolve the declared secrets too
//! # env: NAME=value            the environment those secrets see
//! # expect: LINE:COL error[RULE]: PATH: MESSAGE-PREFIX
//! ```
//!
//! A file that cannot hold its own header as text (UTF-16, Latin-1) has it in
//! `<name>.expect` next to it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fabrs_config::{Diagnostic, load_file, secrets};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[derive(Debug, Default)]
struct Case {
    secrets: bool,
    env: Vec<(String, String)>,
    expect: Vec<(String, String, String)>,
}

fn header(text: &str) -> Case {
    let mut case = Case::default();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(a) = line.strip_prefix("# args: ") {
            assert_eq!(a.trim(), "--secrets", "unknown args: {a}");
            case.secrets = true;
        } else if let Some(e) = line.strip_prefix("# env: ") {
            let (k, v) = e.split_once('=').unwrap();
            case.env.push((k.to_string(), v.to_string()));
        } else if let Some(x) = line.strip_prefix("# expect: ") {
            let (pos, rest) = x.split_once(' ').unwrap();
            let (kind, fragment) = rest.split_once(": ").unwrap();
            case.expect
                .push((pos.to_string(), kind.to_string(), fragment.to_string()));
        }
    }
    case
}

/// `LINE:COL`, `error[rule]` and `path: message (hint)` of a diagnostic, as
/// `fabrs validate` prints them.
fn parts(d: &Diagnostic) -> (String, String, String) {
    let kind = match d.rule {
        Some(r) => format!("error[{r}]"),
        None => "error".to_string(),
    };
    let short = d.short();
    let prefix = format!("{}:{}:{}: {kind}: ", d.file.display(), d.loc.line, d.loc.col);
    let rest = short.strip_prefix(&prefix).unwrap_or(&short).to_string();
    (format!("{}:{}", d.loc.line, d.loc.col), kind, rest)
}

/// Words that belong to a library, not to a message for a user.
const INTERNALS: [&str; 14] = [
    "from_str",
    "budget breached",
    "Nodes {",
    "serde",
    "saphyr",
    "invalid type:",
    "Some(",
    "None",
    "Error {",
    "unwrap",
    "panicked",
    "deserialize",
    "ErrorKind",
    "u64",
];

fn run(path: &Path, case: &Case) -> Result<(), Vec<Diagnostic>> {
    run_full(path, case).map_err(|d| d.diagnostics)
}

fn run_full(path: &Path, case: &Case) -> Result<(), fabrs_config::Diagnostics> {
    let env = load_file(path)?;
    if case.secrets {
        let vars = case.env.clone();
        let getenv = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        secrets::resolve(&env, getenv)?;
    }
    Ok(())
}

fn case_of(path: &Path) -> Case {
    let sidecar = path.with_extension("expect");
    let head = if sidecar.exists() {
        std::fs::read_to_string(&sidecar).unwrap()
    } else {
        String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
    };
    header(&head)
}

/// What `fabrs validate` shows a person for each bad file (the source line, a
/// caret under the mistake, the hint), reviewed as insta snapshots in
/// `tests/snapshots/`: a change to any message, hint or caret shows up in review.
#[test]
fn every_bad_file_renders_as_reviewed() {
    let root = root();
    for path in yaml_files(&root.join("tests/bad")) {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let case = case_of(&path);
        let diags = run_full(&path, &case).expect_err("a bad file is refused");
        let prefix = format!("{}/", root.display());
        let rendered = diags.render().replace(&prefix, "");
        insta::assert_snapshot!(format!("bad__{stem}"), rendered);
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_bad_file_fails_with_exactly_the_expected_diagnostics() {
    let dir = root().join("tests/bad");
    let files = yaml_files(&dir);
    assert!(files.len() >= 111, "the corpus has {} files", files.len());
    let mut failures = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let sidecar = path.with_extension("expect");
        let head = if sidecar.exists() {
            std::fs::read_to_string(&sidecar).unwrap()
        } else {
            String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
        };
        let case = header(&head);
        assert!(!case.expect.is_empty(), "{name} lists no `# expect:` line");
        let started = Instant::now();
        let result = std::panic::catch_unwind(|| run(path, &case));
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, name.clone());
        }
        let diags = match result {
            Err(_) => {
                failures.push(format!("{name}: panicked"));
                continue;
            }
            Ok(Ok(())) => {
                failures.push(format!("{name}: accepted"));
                continue;
            }
            Ok(Err(d)) => d,
        };
        let got: Vec<_> = diags.iter().map(parts).collect();
        let matches = got.len() == case.expect.len()
            && got
                .iter()
                .zip(&case.expect)
                .all(|(g, (pos, kind, frag))| &g.0 == pos && &g.1 == kind && g.2.starts_with(frag.as_str()));
        if !matches {
            let shown: Vec<String> = got
                .iter()
                .map(|g| format!("# expect: {} {}: {}", g.0, g.1, g.2))
                .collect();
            failures.push(format!(
                "{name}:\n  expected {:?}\n  got:\n{}",
                case.expect,
                shown.join("\n")
            ));
        }
        for d in &diags {
            let text = format!("{} {}", d.message, d.hint.clone().unwrap_or_default());
            for word in INTERNALS {
                if text.contains(word) {
                    failures.push(format!("{name}: a message names `{word}`: {text}"));
                }
            }
            if text.len() > 600 {
                failures.push(format!("{name}: a message of {} bytes", text.len()));
            }
            for (_, v) in &case.env {
                assert!(!text.contains(v.as_str()), "{name}: a secret value reached a message");
            }
        }
    }
    eprintln!("slowest case: {} in {:?}", slowest.1, slowest.0);
    assert!(
        failures.is_empty(),
        "{} of {} corpus files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn every_good_file_loads() {
    let dir = root().join("tests/good");
    let files = yaml_files(&dir);
    assert!(files.len() >= 5, "tests/good has {} files", files.len());
    for path in files {
        if let Err(d) = load_file(&path) {
            panic!("{} was refused:\n{}", path.display(), d.render());
        }
    }
}

/// Cases too big to commit: generated, with the same assertions.
#[test]
fn huge_inputs_are_refused_with_a_short_message() {
    let dir = std::env::temp_dir().join(format!("fabrs-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(root().join("tests/good/plain.yaml")).unwrap();

    // A 2 MB file: refused before parsing, at 1:1.
    let big = dir.join("big.yaml");
    std::fs::write(&big, format!("{good}# {}\n", "x".repeat(2_000_000))).unwrap();
    let d = load_file(&big).unwrap_err();
    assert_eq!(d.diagnostics.len(), 1);
    let (pos, _, msg) = parts(&d.diagnostics[0]);
    assert_eq!(pos, "1:1");
    assert!(msg.contains("at most 1048576 bytes"), "{msg}");

    // A 900 kB value where a name goes: named, shortened, never echoed whole.
    let long = dir.join("long.yaml");
    let value = "a".repeat(900_000);
    std::fs::write(
        &long,
        good.replace("environment: test", &format!("environment: {value}")),
    )
    .unwrap();
    let d = load_file(&long).unwrap_err();
    let rendered = d.render();
    assert!(rendered.len() < 4000, "{} bytes of output", rendered.len());
    let (pos, _, msg) = parts(&d.diagnostics[0]);
    assert_eq!(pos, "3:14");
    assert!(msg.starts_with("environment: `aaaa"), "{msg}");
    assert!(msg.contains("(900000 characters)"), "{msg}");

    // A billion laughs (10^20 values): refused quickly, in plain words.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (i, c) in ('b'..='t').enumerate() {
        let prev = (b'a' + i as u8) as char;
        bomb.push_str(&format!("{c}: &{c} [{}]\n", vec![format!("*{prev}"); 10].join(", ")));
    }
    let file = dir.join("bomb.yaml");
    std::fs::write(&file, &bomb).unwrap();
    let started = Instant::now();
    let d = load_file(&file).unwrap_err();
    let took = started.elapsed();
    let (_, _, msg) = parts(&d.diagnostics[0]);
    assert!(msg.contains("expands to more than"), "{msg}");
    eprintln!("alias bomb refused in {took:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
