//! `fabrs validate [ENV|PATH]...`

use anyhow::bail;

use crate::Outcome;
use crate::args::{GlobalArgs, OutputFormat, ValidateArgs};
use crate::printer::Printer;

pub fn run(global: &GlobalArgs, args: &ValidateArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let targets: Vec<String> = if args.envs.is_empty() {
        let all = super::all_environments(&global.dir);
        if all.is_empty() {
            bail!(
                "no environment files under {}",
                global.dir.join("environments").display()
            );
        }
        all.iter().map(|p| p.display().to_string()).collect()
    } else {
        args.envs.clone()
    };
    let mut failed = false;
    let mut results = Vec::new();
    for target in &targets {
        let Some(env) = super::load(target, &global.dir, printer) else {
            failed = true;
            continue;
        };
        if args.secrets {
            if let Err(diags) = fabrs_config::secrets::resolve(&env, |k| std::env::var(k).ok()) {
                super::report(&diags, printer);
                failed = true;
                continue;
            }
        }
        match printer.format {
            OutputFormat::Json => results.push(
                serde_json::json!({ "file": env.file, "valid": true, "environment": env.name, "project": env.project }),
            ),
            OutputFormat::Human => printer.success(&format!(
                "{}: {} / {} is valid",
                env.file.display(),
                env.project,
                env.name
            )),
        }
    }
    if printer.format == OutputFormat::Json && !results.is_empty() {
        printer.json(&serde_json::Value::Array(results));
    }
    Ok(if failed { Outcome::Failed } else { Outcome::Ok })
}
