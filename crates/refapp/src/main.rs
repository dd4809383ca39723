use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use refapp::config::Config;

/// Reference photo application deployed by fabrs.
#[derive(Parser)]
#[command(name = "refapp", version)]
struct Cli {
    /// KEY=VALUE file loaded before reading the environment (real
    /// environment variables win).
    #[arg(long, env = "REFAPP_ENV_FILE", global = true)]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP on REFAPP_LISTEN.
    Web,
    /// Consume render jobs and write thumbnails.
    Worker,
    /// Apply pending database migrations (safe to run twice or concurrently).
    Migrate,
    /// Assemble the release tarball from a built binary (used by
    /// scripts/build-artifact).
    Package {
        #[arg(long)]
        bin: PathBuf,
        #[arg(long)]
        revision: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Directory holding static/ and migrations/.
        #[arg(long, default_value = env!("CARGO_MANIFEST_DIR"))]
        source_dir: PathBuf,
    },
}

fn init_logging(filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Package {
        bin,
        revision,
        out,
        source_dir,
    } = &cli.command
    {
        let path = refapp::artifact::build(bin, source_dir, revision, out, None)?;
        println!("{}", path.display());
        return Ok(());
    }
    let cfg = Config::from_env(cli.env_file.as_deref())?;
    init_logging(cfg.rust_log.as_deref());
    tracing::info!(config = ?cfg, "starting");
    let rt = match cli.command {
        Command::Web => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.web_threads)
            .enable_all()
            .build()?,
        _ => tokio::runtime::Runtime::new()?,
    };
    let secrets = cfg.secrets.clone();
    let res = rt.block_on(async move {
        match cli.command {
            Command::Web => {
                let listener = tokio::net::TcpListener::bind(cfg.listen)
                    .await
                    .with_context(|| format!("binding {}", cfg.listen))?;
                refapp::web::serve(cfg, listener, refapp::shutdown_signal()).await
            }
            Command::Worker => refapp::worker::run(cfg, refapp::shutdown_signal()).await,
            Command::Migrate => {
                let pool = refapp::db::Pool::new(&cfg.database_url, 1, cfg.secrets.clone())?;
                let mut c = pool.get().await?;
                let applied = refapp::migrate::run(&mut c).await?;
                tracing::info!(?applied, "migrations up to date");
                Ok(())
            }
            Command::Package { .. } => unreachable!(),
        }
    });
    res.map_err(|e| anyhow::anyhow!("{}", secrets.scrub(&format!("{e:#}"))))
}
