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

/// `fabrs plan --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Human,
    Markdown,
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
    /// Upload release artifacts to the environment's artifact bucket
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Roll a revision out: migrations, new launch configurations, health-gated replacement, rollback on failure
    Deploy(DeployArgs),
    /// New launch configurations from the current file (AMI, instance type), same revision, same roll
    Rotate(RotateArgs),
    /// Back to the previous revision (or --to REV), through the same roll
    Rollback(RollbackArgs),
    /// The deploys of an environment, newest last (from the audit trail)
    History(HistoryArgs),
    /// Run a command on every server of a role at once, output prefixed per host
    Ssh(SshCmdArgs),
    /// Turn the maintenance page on or off on every web server (the ELB health check keeps passing)
    Maintenance(MaintenanceArgs),
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
    /// Print the plan as JSON on stdout (same as --output json or --format json)
    #[arg(long)]
    pub json: bool,
    /// How to print the plan: for a terminal, for a pull-request comment (bounded size), or JSON
    #[arg(long, value_enum)]
    pub format: Option<PlanFormat>,
    /// Only the addresses, grouped by action, with the reason for each update and replacement
    #[arg(long)]
    pub concise: bool,
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
    /// Changes run at once per AWS service (EC2, ELB, RDS, IAM, S3, SSM, Auto Scaling)
    #[arg(long, default_value_t = 8)]
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
    /// Changes run at once per AWS service (EC2, ELB, RDS, IAM, S3, SSM, Auto Scaling)
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Delete the database master without a final snapshot (by default one is
    /// taken, named `<identifier>-final-<time>`)
    #[arg(long)]
    pub skip_final_snapshot: bool,
    /// Turn the database master's deletion protection off and delete it
    /// (without it, a protected database stops destroy-env before anything is deleted)
    #[arg(long)]
    pub disable_deletion_protection: bool,
    /// Delete the objects of the environment's buckets (the photo bucket), then
    /// the buckets (without it, a bucket holding data stops destroy-env before
    /// anything is deleted)
    #[arg(long)]
    pub delete_bucket_contents: bool,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    fabrs_config::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` is not a duration (e.g. 90s, 10m, 1h)"))
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Upload a release artifact for a revision (refuses to overwrite a different one)
    Push(ReleasePushArgs),
}

#[derive(Args, Debug)]
pub struct ReleasePushArgs {
    /// Environment name or path
    pub env: String,
    /// The revision the artifact is the release of
    #[arg(long)]
    pub revision: String,
    /// The artifact (`<app>-<revision>.tar.gz`, as `crates/refapp/scripts/build-artifact` makes)
    pub path: PathBuf,
}

/// How a roll runs; defaults come from the file's `deploy:` section.
#[derive(Args, Debug, Clone)]
pub struct RollArgs {
    /// Print the steps and the instances that would be replaced; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// New instances launched per batch
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: Option<u32>,
    /// Healthy instances a role never drops below during the roll
    #[arg(long)]
    pub healthy_floor: Option<u32>,
    /// Per batch: how long new instances have to become healthy before the roll goes back
    #[arg(long, value_parser = parse_duration)]
    pub health_timeout: Option<std::time::Duration>,
    /// How long to wait for another deploy's lock
    #[arg(long, value_parser = parse_duration_or_zero)]
    pub lock_wait: Option<std::time::Duration>,
    /// Delete a lock left by a deploy that died, then take it
    #[arg(long)]
    pub break_lock: bool,
    /// How often the roll looks at the groups
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub poll_interval: std::time::Duration,
}

/// How to reach the servers over SSH (the system ssh client and its config).
#[derive(Args, Debug, Clone)]
pub struct SshArgs {
    /// Map instance ids to host:port (one `i-… host:port` per line): bastions, tests
    #[arg(long, env = "FABRS_SSH_ENDPOINTS", value_name = "FILE")]
    pub ssh_endpoints: Option<PathBuf>,
    /// An ssh_config file (ssh -F)
    #[arg(long, env = "FABRS_SSH_CONFIG", value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// A private key (ssh -i)
    #[arg(long, env = "FABRS_SSH_IDENTITY", value_name = "FILE")]
    pub ssh_identity: Option<PathBuf>,
    /// Per host: longest a command may run
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub ssh_timeout: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// Environment name or path
    pub env: String,
    /// The revision to roll out (its artifact must be in the artifact bucket)
    #[arg(long)]
    pub revision: String,
    #[command(flatten)]
    pub roll: RollArgs,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// Environment name or path
    pub env: String,
    /// Only these roles (web, worker); default: every autoscaled role
    #[arg(long)]
    pub role: Vec<String>,
    #[command(flatten)]
    pub roll: RollArgs,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Environment name or path
    pub env: String,
    /// The revision to go back to (default: the one before the current, from the audit trail)
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub roll: RollArgs,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Environment name or path
    pub env: String,
    /// Print JSON on stdout (same as --output json)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SshCmdArgs {
    /// Environment name or path
    pub env: String,
    /// Role whose servers run the command (web, worker, cache)
    pub role: String,
    /// The command line, after `--`
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Args, Debug)]
pub struct MaintenanceArgs {
    /// Environment name or path
    pub env: String,
    #[arg(value_enum)]
    pub state: OnOff,
    #[command(flatten)]
    pub ssh: SshArgs,
}

fn parse_duration_or_zero(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    parse_duration(s)
}
