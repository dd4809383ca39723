//! fabrs-config: environment files → validated model.
//!
//! `load` parses the YAML (syntax and duplicate keys are the parser's), decodes
//! it strictly (unknown keys, types, ranges, references), then runs the security
//! lint. Every problem of the file is reported at once, each with file:line:col
//! and its key path. Nothing here knows AWS, templates or async.

mod decode;
pub mod diag;
mod lint;
pub mod model;
pub mod network;
mod node;
pub mod revision;
pub mod secrets;
mod wire;

use std::path::{Path, PathBuf};

pub use decode::{At, parse_duration};
pub use diag::{Diagnostic, Diagnostics, Loc};
pub use lint::RULES as LINT_RULES;
pub use model::*;
pub use revision::Revision;

/// Load an environment file from disk.
pub fn load_file(file: &Path) -> Result<Environment, Diagnostics> {
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            return Err(Diagnostics {
                file: file.to_path_buf(),
                text: String::new(),
                diagnostics: vec![Diagnostic {
                    file: file.to_path_buf(),
                    loc: Loc {
                        line: 1,
                        col: 1,
                        len: 0,
                    },
                    path: String::new(),
                    message: format!("cannot read the file: {}", e.kind()),
                    hint: None,
                    rule: None,
                }],
            });
        }
    };
    load_str(&source, file, &project_dir_of(file))
}

/// Load an environment from text; `file` is used in diagnostics, `project_dir`
/// is where template overrides live and which secret files must stay out of.
pub fn load_str(source: &str, file: &Path, project_dir: &Path) -> Result<Environment, Diagnostics> {
    let mut sink = diag::Sink::new(file);
    let env = match node::parse(source) {
        Ok(root) => wire::decode(&mut sink, &root, file, project_dir),
        Err(e) => {
            sink.error(e.loc, "", e.message);
            None
        }
    };
    if let Some(env) = &env {
        check_file_name(&mut sink, env, source);
        lint::lint(&mut sink, env);
    }
    match env {
        Some(env) if sink.diags.is_empty() => Ok(env),
        _ => {
            let mut diagnostics = sink.diags;
            diagnostics.sort_by_key(|d| (d.loc.line, d.loc.col));
            diagnostics.dedup();
            Err(Diagnostics {
                file: file.to_path_buf(),
                text: source.to_string(),
                diagnostics,
            })
        }
    }
}

/// A file under `environments/` must be named after the environment it describes:
/// `fabrs deploy staging` must never act on a file that says `production`.
fn check_file_name(sink: &mut diag::Sink, env: &Environment, source: &str) {
    let in_envs = env
        .file
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "environments");
    let stem = env.file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if in_envs && stem != env.name {
        let loc = source
            .lines()
            .enumerate()
            .find(|(_, l)| l.starts_with("environment:"))
            .map(|(i, l)| Loc {
                line: i as u32 + 1,
                col: (l.find(&*env.name).unwrap_or(0) + 1) as u32,
                len: env.name.len() as u32,
            })
            .unwrap_or(Loc {
                line: 1,
                col: 1,
                len: 0,
            });
        let d = sink.error(
            loc,
            "environment",
            format!("`{}` does not match the file name `{}`", env.name, stem),
        );
        d.hint = Some(format!(
            "rename the file to {}.yaml or set `environment: {stem}`",
            env.name
        ));
    }
}

/// The project directory of an environment file: the parent of `environments/`
/// when the file lives there, else the file's own directory.
pub fn project_dir_of(file: &Path) -> PathBuf {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if dir.file_name().is_some_and(|n| n == "environments") {
        dir.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Resolve a command-line environment argument: a name (`staging` →
/// `<dir>/environments/staging.yaml`) or a path to a YAML file.
pub fn locate(arg: &str, dir: &Path) -> PathBuf {
    let looks_like_path = arg.contains('/') || arg.ends_with(".yaml") || arg.ends_with(".yml");
    if looks_like_path {
        PathBuf::from(arg)
    } else {
        dir.join("environments").join(format!("{arg}.yaml"))
    }
}
