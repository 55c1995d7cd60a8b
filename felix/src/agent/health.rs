//! felix's probes and metrics, served by the shared telemetry server
//! ([`twill_utils::telemetry`]) on `--health-listen`: `/livez`, `/readyz`, `/metrics`.
//!
//! Live: the reconciler has run recently (it beats at least every resync period, so a
//! wedged loop turns liveness red). Ready: the first full sync of routes, BGP and policy
//! has succeeded and the last one did not fail. Metrics: felix's own families plus the
//! embedded speaker's, sub-registries of one registry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use twill_utils::task::TaskGuard;
use twill_utils::telemetry::{self, Probes};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// felix's metric families (bounded labels only: results and kinds, never object names).
#[derive(Debug)]
pub struct Metrics {
    pub reconciles: Family<Vec<(String, String)>, Counter>,
    pub reconcile_seconds: Histogram,
    pub route_changes: Counter,
    pub local_endpoints: Gauge,
    pub announced_prefixes: Gauge,
    pub bgp_peers_configured: Gauge,
    pub drift_repairs: Counter,
    /// What the inventory audit reclaimed, by kind (`allocation`, `endpoint`).
    pub audit_reclaimed: Family<Vec<(String, String)>, Counter>,
    /// Endpoints the last audit found without their host interface, left to the runtime
    /// (kind `missing_interface`).
    pub inconsistencies: Family<Vec<(String, String)>, Gauge>,
    pub unknown_workload_interfaces: Gauge,
}

impl Metrics {
    /// Registers felix's families in `root` under the prefix `twill_felix`.
    pub fn register(root: &mut Registry) -> Self {
        let registry = root.sub_registry_with_prefix("twill_felix");
        let reconciles = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "reconciles",
            "Reconcile passes by result",
            reconciles.clone(),
        );
        let reconcile_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "reconcile_seconds",
            "Time of one reconcile pass",
            reconcile_seconds.clone(),
        );
        let route_changes = Counter::default();
        registry.register(
            "route_changes",
            "Host routes added, replaced or deleted by felix",
            route_changes.clone(),
        );
        let local_endpoints = Gauge::default();
        registry.register(
            "local_endpoints",
            "Workload endpoints on this node",
            local_endpoints.clone(),
        );
        let announced_prefixes = Gauge::default();
        registry.register(
            "announced_prefixes",
            "Prefixes this node announces (blocks and borrowed addresses)",
            announced_prefixes.clone(),
        );
        let bgp_peers_configured = Gauge::default();
        registry.register(
            "bgp_peers_configured",
            "BGP peers configured from the datastore",
            bgp_peers_configured.clone(),
        );
        let drift_repairs = Counter::default();
        registry.register(
            "drift_repairs",
            "Reconciles triggered by a change to felix-owned kernel state",
            drift_repairs.clone(),
        );
        let audit_reclaimed = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "audit_reclaimed",
            "Allocations and endpoints the node audit reclaimed (their container is gone)",
            audit_reclaimed.clone(),
        );
        let inconsistencies = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "inconsistencies",
            "Endpoints whose host interface is missing while their container lives",
            inconsistencies.clone(),
        );
        let unknown_workload_interfaces = Gauge::default();
        registry.register(
            "unknown_workload_interfaces",
            "Workload (tw*) interfaces with no endpoint on this node: shut by policy",
            unknown_workload_interfaces.clone(),
        );
        Metrics {
            reconciles,
            reconcile_seconds,
            route_changes,
            local_endpoints,
            announced_prefixes,
            bgp_peers_configured,
            drift_repairs,
            audit_reclaimed,
            inconsistencies,
            unknown_workload_interfaces,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, result: &str, took: Duration) {
        self.reconciles
            .get_or_create(&vec![("result".to_string(), result.to_string())])
            .inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    /// Records one audit's findings.
    pub fn audited(&self, r: &super::audit::AuditReport) {
        let kind = |k: &str| vec![("kind".to_string(), k.to_string())];
        self.audit_reclaimed
            .get_or_create(&kind("endpoint"))
            .inc_by(r.removed_endpoints.len() as u64);
        self.audit_reclaimed
            .get_or_create(&kind("allocation"))
            .inc_by(r.freed_handles.len() as u64);
        self.inconsistencies
            .get_or_create(&kind("missing_interface"))
            .set(r.missing_interfaces.len() as i64);
    }
}

/// Shared health state: the probes and the process's one registry (felix's families and
/// the embedded speaker's, which outlive any one speaker).
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    beat_ms: AtomicU64,
    max_silence: Duration,
    pub metrics: Metrics,
    bgp: Arc<twill_bgpd::metrics::Metrics>,
    registry: Registry,
}

impl Health {
    /// `max_silence`: how long the reconciler may stay silent and still count as live.
    pub fn new(max_silence: Duration) -> Health {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let bgp = Arc::new(twill_bgpd::metrics::Metrics::register(&mut registry));
        Health {
            ready: AtomicBool::new(false),
            beat_ms: AtomicU64::new(now_ms()),
            max_silence,
            metrics,
            bgp,
            registry,
        }
    }

    pub fn beat(&self) {
        self.beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn is_live(&self) -> bool {
        now_ms().saturating_sub(self.beat_ms.load(Ordering::Relaxed))
            <= self.max_silence.as_millis() as u64
    }

    /// The embedded speaker's families: every speaker felix starts counts into them.
    pub fn bgp_metrics(&self) -> Arc<twill_bgpd::metrics::Metrics> {
        self.bgp.clone()
    }
}

impl Probes for Health {
    fn live(&self) -> Result<(), String> {
        if self.is_live() {
            Ok(())
        } else {
            Err("reconciler is not running".into())
        }
    }

    fn ready(&self) -> Result<(), String> {
        if self.is_ready() {
            Ok(())
        } else {
            Err("not in sync with the datastore yet".into())
        }
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Serves health and metrics on `listener` until the guard is dropped.
pub fn serve(listener: TcpListener, health: Arc<Health>) -> TaskGuard {
    telemetry::serve(listener, health)
}

/// Binds the health listener (a bind failure is a start-up error).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
