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
    let json = printer.format == OutputFormat::Json;
    for target in &targets {
        let file = fabrs_config::locate(target, &global.dir);
        let loaded = fabrs_config::load_file(&file).and_then(|env| {
            if args.secrets {
                fabrs_config::secrets::resolve(&env, |k| std::env::var(k).ok())?;
            }
            Ok(env)
        });
        let env = match loaded {
            Ok(env) => env,
            Err(diags) => {
                failed = true;
                // JSON: one document for all files, printed at the end.
                if json {
                    results.push(super::diagnostics_json(&diags));
                } else {
                    super::report(&diags, printer);
                }
                continue;
            }
        };
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
    if json {
        printer.json(&serde_json::Value::Array(results));
    }
    Ok(if failed { Outcome::Failed } else { Outcome::Ok })
}
