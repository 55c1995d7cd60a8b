//! `twill-felix`, the per-node agent: parses its configuration (exit 64 when it cannot
//! work), sets up logging, runs the agent until SIGTERM or SIGINT.

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use twill_felix::config::Args;

fn main() {
    let config = match Args::parse().into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("twill-felix: {e}");
            std::process::exit(64);
        }
    };
    let filter = match EnvFilter::try_new(&config.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("twill-felix: --log {:?}: {e}", config.log);
            std::process::exit(64);
        }
    };
    // The filter is reloadable: FelixConfiguration's logSeverityScreen applies live.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr),
        )
        .init();
    twill_felix::logging::set_reloader(move |directives| {
        let filter = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("twill-felix: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
            let _ = tx.send(true);
        });
        twill_felix::agent::run(config, rx)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    });
    if let Err(e) = result {
        tracing::error!(error = %e, "twill-felix stopped");
        eprintln!("twill-felix: {e}");
        std::process::exit(1);
    }
}
