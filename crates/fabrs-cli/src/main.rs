//! The `fabrs` binary: glue. Arguments in, one operation, a `Result` mapped to
//! an exit status (0 ok, 1 error, 2 "changes present" for --detailed-exitcode).

mod args;
mod commands;
mod printer;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::printer::Printer;

/// How a command ended, beyond plain success.
pub enum Outcome {
    Ok,
    /// `plan --detailed-exitcode` with changes present.
    Changes,
    /// The command reported its own errors (diagnostics); exit 1 without more.
    Failed,
}

fn main() -> ExitCode {
    // Usage errors exit 1, not clap's 2: with `plan --detailed-exitcode`, 2
    // means "changes", and a CI step must not read a typo as that.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let mut printer = Printer::new(
        cli.global.output,
        cli.global.quiet,
        cli.global.verbose,
        cli.global.color,
    );
    let result = match &cli.command {
        Command::Validate(a) => commands::validate::run(&cli.global, a, &mut printer),
        Command::Render(a) => commands::render::run(&cli.global, a, &mut printer),
        Command::Plan(a) => commands::env::plan(&cli.global, a, &mut printer),
        Command::CreateEnv(a) => commands::env::create(&cli.global, a, &mut printer),
        Command::Status(a) => commands::env::status(&cli.global, a, &mut printer),
        Command::DestroyEnv(a) => commands::env::destroy(&cli.global, a, &mut printer),
        Command::Release(args::ReleaseCommand::Push(a)) => commands::deploy::release_push(&cli.global, a, &mut printer),
        Command::Deploy(a) => commands::deploy::deploy(&cli.global, a, &mut printer),
        Command::Rotate(a) => commands::deploy::rotate(&cli.global, a, &mut printer),
        Command::Rollback(a) => commands::deploy::rollback(&cli.global, a, &mut printer),
        Command::History(a) => commands::deploy::history(&cli.global, a, &mut printer),
        Command::Ssh(a) => commands::deploy::ssh(&cli.global, a, &mut printer),
        Command::Maintenance(a) => commands::deploy::maintenance(&cli.global, a, &mut printer),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "fabrs", &mut buf);
            printer.data(&String::from_utf8_lossy(&buf));
            Ok(Outcome::Ok)
        }
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Ok(Outcome::Changes) => ExitCode::from(2),
        Err(e) => {
            // One line per cause, no debug dump.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            printer.error(&chain.join(": "));
            ExitCode::from(1)
        }
    }
}
