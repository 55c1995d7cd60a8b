//! The standalone BGP speaker (route reflector, lab peer).
//!
//! Parses the configuration before starting the runtime (exit 64 on a bad file, the
//! field named), serves the control API on `--api-socket`, reloads peers on SIGHUP
//! without dropping unchanged sessions, and on SIGTERM sends Cease to every peer and exits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ipnet::IpNet;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};
use twill_bgpd::config::Config;
use twill_bgpd::metrics::Metrics;
use twill_bgpd::{Speaker, SpeakerConfig};
use twill_utils::telemetry;

/// Twill's BGP speaker, standalone.
#[derive(Parser, Debug)]
#[command(name = "twill-bgpd", version)]
struct Args {
    /// The YAML configuration file.
    #[arg(long, env = "TWILL_BGPD_CONFIG")]
    config: PathBuf,
    /// Unix socket for the gRPC control API.
    #[arg(long, env = "TWILL_BGPD_API_SOCKET")]
    api_socket: Option<PathBuf>,
    /// Serve `/livez`, `/readyz` and Prometheus `/metrics` at http://ADDR.
    #[arg(long, env = "TWILL_BGPD_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "twill-bgpd: bad configuration {}: {e}",
                args.config.display()
            );
            return ExitCode::from(64);
        }
    };
    // One thread, as BIRD and FRR's bgpd run their protocol: the owner task does the RIB
    // work in order anyway, and a second worker only adds cross-thread wake-ups per
    // UPDATE (measured: ~15% more CPU for a 1M-prefix ingest, bench-results/bgpd.md).
    // Kernel writes have their own thread (kernel sync), so nothing here blocks.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twill-bgpd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twill-bgpd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let speaker =
        Arc::new(Speaker::start_with_metrics(SpeakerConfig::from_config(&cfg), metrics).await?);
    tracing::info!(asn = cfg.asn, router_id = %cfg.router_id, peers = cfg.peers.len(), "started");
    let _api = match &args.api_socket {
        Some(path) => Some(twill_bgpd::control::serve_unix(speaker.clone(), path).await?),
        None => None,
    };
    let _telemetry = match args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Some(telemetry::serve(
                listener,
                Arc::new(Standalone { registry }),
            ))
        }
        None => None,
    };
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut current = cfg;
    loop {
        tokio::select! {
            _ = hup.recv() => current = reload(&speaker, &args.config, current),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping: Cease to every peer");
    speaker.shutdown().await;
    if let Some(path) = &args.api_socket {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Applies a changed configuration file; a bad file is logged and the old one kept.
fn reload(speaker: &Speaker, path: &Path, old: Config) -> Config {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload refused, keeping the running configuration");
            return old;
        }
    };
    if new.asn != old.asn || new.router_id != old.router_id || new.listen != old.listen {
        tracing::warn!("asn, router_id and listen change only on restart");
    }
    let before: BTreeSet<IpNet> = old.originate.iter().copied().collect();
    let after: BTreeSet<IpNet> = new.originate.iter().copied().collect();
    let res = speaker
        .set_peers(new.peers.clone(), new.filters.clone())
        .and_then(|()| speaker.originate(after.difference(&before).copied().collect()))
        .and_then(|()| speaker.withdraw(before.difference(&after).copied().collect()));
    match res {
        Ok(()) => {
            tracing::info!(peers = new.peers.len(), "configuration reloaded");
            new
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed");
            old
        }
    }
}

/// The standalone speaker's probes: it serves them once it has started, and its own
/// registry holds the speaker's families.
struct Standalone {
    registry: Registry,
}

impl telemetry::Probes for Standalone {
    fn live(&self) -> Result<(), String> {
        Ok(())
    }
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn registry(&self) -> &Registry {
        &self.registry
    }
}
