//! `twill-ipam-controller`: carves per-node blocks, releases the blocks of deleted nodes,
//! collects leaked addresses, reports each pool's `Allocatable` condition. One replica acts
//! at a time: leader election on an etcd lease (etcd mode) or a Kubernetes `Lease`
//! (Kubernetes mode). A leader that loses its lease (a datastore freeze, a pause) stops
//! acting at once, steps down and campaigns again, counting the loss in
//! `twill_ipam_leader_losses_total`. Exits 0 on SIGTERM/SIGINT, 64 on bad flags, 1 on a
//! fatal error.
//!
//! The environment the chart sets is its contract with this binary: `TWILL_DATASTORE`,
//! `TWILL_METRICS_LISTEN`, `TWILL_LOG`, `TWILL_LEADER_ELECT`,
//! `TWILL_LEADER_ELECTION_NAMESPACE`, `TWILL_LEADER_ELECTION_LEASE`, `TWILL_LEADER_ID`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};
use twill_ipam::connect::{DatastoreArgs, ElectionClient, connect, workload_source};
use twill_ipam::controller::{Controller, ControllerConfig};
use twill_ipam::leader::{ELECTION, LeaderGuard, Leadership};
use twill_ipam::metrics::{Health, Metrics};
use twill_utils::telemetry;

/// Twill's cluster-wide IPAM controller.
#[derive(Parser, Debug)]
#[command(name = "twill-ipam-controller", version)]
struct Args {
    #[command(flatten)]
    ds: DatastoreArgs,
    /// Where to serve `/livez`, `/readyz` and Prometheus `/metrics`; empty to disable.
    #[arg(long, env = "TWILL_METRICS_LISTEN", default_value = "0.0.0.0:9095")]
    metrics_listen: String,
    /// Log filter (`info`, `debug`, `twill_ipam=debug`); `RUST_LOG` wins when set.
    #[arg(
        long = "log",
        alias = "log-level",
        env = "TWILL_LOG",
        default_value = "info"
    )]
    log_level: String,
    /// Grace period before a leaked address is released (`90s`, `15m`, `1h`).
    #[arg(long, env = "TWILL_GC_GRACE", default_value = "15m", value_parser = parse_duration)]
    gc_grace: Duration,
    /// Full pass at least this often.
    #[arg(long, env = "TWILL_RESYNC_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Elect a leader among replicas (off: this replica acts alone; run one replica only).
    #[arg(long, env = "TWILL_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long one renewal of leadership lasts.
    #[arg(long, alias = "leader-lease", env = "TWILL_LEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    leader_lease_duration: Duration,
    /// Kubernetes mode: namespace of the leader `Lease` (default: the client's namespace,
    /// which in a pod is the pod's own).
    #[arg(long, env = "TWILL_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Kubernetes mode: name of the leader `Lease`.
    #[arg(
        long,
        env = "TWILL_LEADER_ELECTION_LEASE",
        default_value = "twill-ipam-controller"
    )]
    leader_election_lease: String,
    /// This replica's identity in the election (default: hostname and pid).
    #[arg(long, env = "TWILL_LEADER_ID")]
    leader_id: Option<String>,
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level));
    let filter = match filter {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("twill-ipam-controller: bad --log {:?}: {e}", args.log_level);
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
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let health = Arc::new(Health::new(registry));
    let _telemetry = if args.metrics_listen.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(&args.metrics_listen)
            .await
            .with_context(|| format!("listening on {}", args.metrics_listen))?;
        tracing::info!(addr = %listener.local_addr()?, "serving metrics and health on /metrics, /livez, /readyz");
        Some(telemetry::serve(listener, health.clone()))
    };
    let (ds, election) = connect(&args.ds, Duration::from_secs(10))
        .await
        .context("connecting to the datastore")?;
    health.set_connected();
    let id = args.leader_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let source = workload_source(&args.ds);
    let config = ControllerConfig::for_source(source, args.gc_grace, args.resync_interval);
    // One term of leadership per turn: campaign, lead until the lease is lost, step down.
    loop {
        let leadership = if args.leader_elect {
            tracing::info!(%id, "campaigning for leadership");
            let campaign = campaign_until_elected(&args, &election, &id);
            let leadership = tokio::select! {
                l = campaign => l,
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
            };
            tracing::info!(%id, "leading");
            Some(leadership)
        } else {
            tracing::info!("leader election off: acting alone");
            None
        };
        metrics.leader.set(1);
        // A new term starts from a fresh view: nothing learned under the old one is trusted.
        let controller = Controller::new(ds.clone(), config, metrics.clone());
        let guard: Option<LeaderGuard> = leadership.as_ref().map(Leadership::guard);
        let mut lost_guard = guard.clone();
        let mut signalled = false;
        controller
            .run(
                async {
                    let lost = async {
                        match lost_guard.as_mut() {
                            Some(g) => g.lost().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                        _ = int.recv() => tracing::info!("SIGINT: stopping"),
                        () = lost => return,
                    }
                    signalled = true;
                },
                || guard.as_ref().is_none_or(LeaderGuard::is_leader),
            )
            .await;
        metrics.leader.set(0);
        if signalled {
            if let Some(leadership) = leadership {
                leadership.resign().await;
            }
            return Ok(());
        }
        metrics.leader_losses.inc();
        tracing::warn!(%id, "lost the leader lease; stepping down and campaigning again");
        // Dropping the leadership stops its renewals; the lapsed lease is not ours to revoke.
        drop(leadership);
    }
}

/// Campaigns until elected, starting over (with back-off) when the datastore fails the
/// campaign: a standby replica waits out any outage rather than exiting.
async fn campaign_until_elected(args: &Args, election: &ElectionClient, id: &str) -> Leadership {
    let mut delay = Duration::from_millis(500);
    loop {
        match campaign(args, election.clone(), id).await {
            Ok(l) => return l,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "campaign failed; trying again in {delay:?}")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Campaigns with the election client of the datastore mode.
async fn campaign(args: &Args, election: ElectionClient, id: &str) -> Result<Leadership> {
    match election {
        ElectionClient::Etcd(client) => {
            Leadership::acquire_etcd(*client, ELECTION, id, args.leader_lease_duration)
                .await
                .context("leader election on etcd")
        }
        ElectionClient::Kubernetes(client) => {
            // The client's namespace: the pod's own in a cluster (from the service
            // account), else the kubeconfig context's (`default` when it names none).
            let namespace = args
                .leader_election_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            Ok(Leadership::acquire_kube(
                client,
                &namespace,
                &args.leader_election_lease,
                id,
                args.leader_lease_duration,
            )
            .await)
        }
    }
}
