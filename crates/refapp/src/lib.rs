//! refapp: the reference application fabrs deploys (photo site: web,
//! thumbnail worker, migrations).

pub mod artifact;
pub mod cache;
pub mod config;
pub mod db;
pub mod imaging;
pub mod migrate;
pub mod queue;
pub mod redact;
pub mod storage;
pub mod web;
pub mod worker;

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}
