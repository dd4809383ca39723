//! Command-line arguments (clap). Raw flags are resolved into `Settings` once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "fabrs", version, about = "One environment YAML to a running, autoscaled web stack on AWS", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// Project directory (holds environments/, and optional templates/ and cloud-init/ overrides)
    #[arg(
        short = 'C',
        long = "dir",
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    pub dir: PathBuf,
    /// Output format for results
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// Only print errors and requested data
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// When to use colours (NO_COLOR is honoured)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and check environment files: every error at once, with file:line:col
    Validate(ValidateArgs),
    /// Write the rendered cloud-init, nginx, pgbouncer and systemd files for review
    Render(RenderArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Environment names or paths (default: every environments/*.yaml)
    pub envs: Vec<String>,
    /// Also check that every declared secret can be resolved (values are never printed)
    #[arg(long)]
    pub secrets: bool,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// Environment name or path
    pub env: String,
    /// Only this role (web, worker, cache)
    #[arg(long)]
    pub role: Option<String>,
    /// Write the files under this directory (default: list them on stdout)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Revision whose release artifact the user-data installs
    #[arg(long, default_value = "UNRELEASED")]
    pub revision: String,
    /// Fill in secret values instead of placeholders (the files then hold secrets)
    #[arg(long)]
    pub resolve_secrets: bool,
}
