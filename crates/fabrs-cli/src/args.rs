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
    #[arg(short = 'C', long = "dir", global = true, default_value = ".", value_name = "DIR")]
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
    /// AWS API endpoint (a local emulator such as moto); default: AWS_ENDPOINT_URL, else AWS
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS named profile; default: AWS_PROFILE, else the default credential chain
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
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
    /// Show what create-env would change, from the live account (Terraform-style)
    Plan(PlanArgs),
    /// Create or converge the environment's resources
    CreateEnv(CreateEnvArgs),
    /// What is running: instances per role, health, launch configuration, database endpoints
    Status(StatusArgs),
    /// Delete everything fabrs owns in the environment
    DestroyEnv(DestroyEnvArgs),
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

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Environment name or path
    pub env: String,
    /// Print the plan as JSON on stdout (same as --output json)
    #[arg(long)]
    pub json: bool,
    /// Save the plan, with a fingerprint of the account it was made against
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Revision the servers' user-data installs (default: the one running now)
    #[arg(long)]
    pub revision: Option<String>,
}

#[derive(Args, Debug)]
pub struct CreateEnvArgs {
    /// Environment name or path
    pub env: String,
    /// Apply without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the plan only; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Apply a plan saved by `fabrs plan --out` (refused when the account changed since)
    #[arg(long, value_name = "FILE", conflicts_with = "revision")]
    pub plan: Option<PathBuf>,
    /// Revision the servers' user-data installs (default: the one running now, else none)
    #[arg(long)]
    pub revision: Option<String>,
    /// Changes run at once
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Longest wait for an instance
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub instance_timeout: std::time::Duration,
    /// Longest wait for a database
    #[arg(long, default_value = "40m", value_parser = parse_duration)]
    pub database_timeout: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Environment name or path
    pub env: String,
    /// Print JSON on stdout (same as --output json)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DestroyEnvArgs {
    /// Environment name or path
    pub env: String,
    /// Destroy without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Changes run at once
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    fabrs_config::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` is not a duration (e.g. 90s, 10m, 1h)"))
}
