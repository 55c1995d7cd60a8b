//! `twill-ipam-controller`: carves per-node blocks, releases the blocks of deleted nodes,
//! collects leaked addresses. One replica acts at a time (leader election on a Kubernetes
//! Lease in Kubernetes mode, on an etcd lease in etcd mode). Exits 0 on SIGTERM/SIGINT, 64
//! on bad flags, 1 on a fatal error.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use twill_ipam::connect::{DatastoreArgs, connect, workload_source};
use twill_ipam::controller::{Controller, ControllerConfig};
use twill_ipam::election::{ElectionArgs, Leader};
use twill_ipam::metrics::{self, Metrics};

/// Twill's cluster-wide IPAM controller.
#[derive(Parser, Debug)]
#[command(name = "twill-ipam-controller", version)]
struct Args {
    #[command(flatten)]
    ds: DatastoreArgs,
    /// Where to serve Prometheus metrics (`/metrics`); empty to disable.
    #[arg(long, env = "TWILL_METRICS_LISTEN", default_value = "0.0.0.0:9095")]
    metrics_listen: String,
    /// Grace period before a leaked address is released (`90s`, `15m`, `1h`).
    #[arg(long, env = "TWILL_GC_GRACE", default_value = "15m", value_parser = parse_duration)]
    gc_grace: Duration,
    /// Full pass at least this often.
    #[arg(long, env = "TWILL_RESYNC_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Leader lease time-to-live.
    #[arg(long, env = "TWILL_LEADER_LEASE", default_value = "15s", value_parser = parse_duration)]
    leader_lease: Duration,
    /// This replica's identity in the election (default: hostname and pid).
    #[arg(long, env = "TWILL_LEADER_ID")]
    leader_id: Option<String>,
    #[command(flatten)]
    election: ElectionArgs,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `twill_ipam=debug`.
    #[arg(long, env = "TWILL_LOG", default_value = "info")]
    log: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 15m, 1h"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

fn main() {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // --help and --version are not errors; bad flags are bad config (64).
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("twill-ipam-controller: --log {:?}: {e}", args.log);
            std::process::exit(64);
        }
    };
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twill-ipam-controller: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("twill-ipam-controller: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let metrics = Arc::new(Metrics::default());
    if !args.metrics_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&args.metrics_listen)
            .await
            .with_context(|| format!("listening on {}", args.metrics_listen))?;
        tracing::info!(addr = %listener.local_addr()?, "serving metrics");
        tokio::spawn(metrics::serve(listener, metrics.clone()));
    }
    let (ds, etcd) = connect(&args.ds, Duration::from_secs(10))
        .await
        .context("connecting to the datastore")?;
    let id = args.leader_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    tracing::info!(%id, "campaigning for leadership");
    let mut leadership = tokio::select! {
        l = Leader::campaign(&args.election, etcd, ds.kube_client(), &id, args.leader_lease) => l.context("leader election")?,
        _ = term.recv() => return Ok(()),
        _ = int.recv() => return Ok(()),
    };
    tracing::info!(%id, "leading");
    metrics.leader.set(1);
    let config = ControllerConfig {
        gc_grace: args.gc_grace,
        resync: args.resync_interval,
        source: workload_source(&args.ds),
    };
    let controller = Controller::new(ds, config, metrics.clone());
    let mut lost = false;
    controller
        .run(async {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
                () = leadership.lost() => lost = true,
            }
        })
        .await;
    metrics.leader.set(0);
    if lost {
        bail!("lost the leader lease; exiting so another replica takes over");
    }
    leadership.resign().await;
    Ok(())
}
