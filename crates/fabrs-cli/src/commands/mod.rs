pub mod deploy;
pub mod deploy_events;
pub mod env;
pub mod render;
pub mod validate;

use std::path::{Path, PathBuf};

use fabrs_config::{Diagnostics, Environment};

use crate::args::OutputFormat;
use crate::printer::Printer;

/// Load one environment; on failure print every diagnostic and return None.
pub fn load(arg: &str, dir: &Path, printer: &mut Printer) -> Option<Environment> {
    let file = fabrs_config::locate(arg, dir);
    match fabrs_config::load_file(&file) {
        Ok(env) => Some(env),
        Err(diags) => {
            report(&diags, printer);
            None
        }
    }
}

/// A file's diagnostics as JSON (one entry of `validate --output json`).
pub fn diagnostics_json(diags: &Diagnostics) -> serde_json::Value {
    let items: Vec<serde_json::Value> = diags.diagnostics.iter().map(diagnostic_json).collect();
    serde_json::json!({ "file": diags.file, "valid": false, "diagnostics": items })
}

pub fn report(diags: &Diagnostics, printer: &mut Printer) {
    match printer.format {
        OutputFormat::Json => printer.json(&diagnostics_json(diags)),
        OutputFormat::Human => {
            for d in &diags.diagnostics {
                printer.diagnostic(&d.render(&diags.text));
            }
            let n = diags.diagnostics.len();
            printer.error(&format!(
                "{} has {n} error{}",
                diags.file.display(),
                if n == 1 { "" } else { "s" }
            ));
        }
    }
}

pub fn diagnostic_json(d: &fabrs_config::Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "file": d.file,
        "line": d.loc.line,
        "column": d.loc.col,
        "path": d.path,
        "message": d.message,
        "hint": d.hint,
        "rule": d.rule,
    })
}

/// Every `environments/*.yaml` of a project, sorted.
pub fn all_environments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("environments"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .map(|p| p.strip_prefix(".").map(Path::to_path_buf).unwrap_or(p))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}
