//! `/livez`, `/readyz` and `/metrics` over HTTP (hyper) on `--health-listen`.
//!
//! Live: the reconciler has run recently (it beats at least every resync period, so a
//! wedged loop turns liveness red). Ready: the first full sync of routes, BGP and policy
//! has succeeded and the last one did not fail. Metrics: felix's own families plus the
//! embedded speaker's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::RwLock;

use twill_bgpd::task::TaskGuard;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// felix's metric families (bounded labels only: results and kinds, never object names).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<Vec<(String, String)>, Counter>,
    pub reconcile_seconds: Histogram,
    pub route_changes: Counter,
    pub local_endpoints: Gauge,
    pub announced_prefixes: Gauge,
    pub bgp_peers_configured: Gauge,
    pub drift_repairs: Counter,
    pub unknown_workload_interfaces: Gauge,
    /// Fields of stored objects this version does not know, by kind (brought up to date
    /// from the datastore layer's counters on every scrape).
    pub unknown_fields: Family<Vec<(String, String)>, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("twill_felix");
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
        let unknown_workload_interfaces = Gauge::default();
        registry.register(
            "unknown_workload_interfaces",
            "Workload (tw*) interfaces with no endpoint on this node: shut by policy",
            unknown_workload_interfaces.clone(),
        );
        let unknown_fields = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "unknown_fields",
            "Fields of stored objects felix does not know (ignored), by kind",
            unknown_fields.clone(),
        );
        Metrics {
            registry,
            unknown_fields,
            reconciles,
            reconcile_seconds,
            route_changes,
            local_endpoints,
            announced_prefixes,
            bgp_peers_configured,
            drift_repairs,
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

    fn encode(&self) -> String {
        for (kind, seen) in twill_api::resources::unknown::unknown_fields_seen() {
            let counter = self
                .unknown_fields
                .get_or_create(&vec![("kind".to_string(), kind)]);
            counter.inc_by(seen.saturating_sub(counter.get()));
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Shared health state.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    beat_ms: AtomicU64,
    max_silence: Duration,
    pub metrics: Metrics,
    speaker_metrics: RwLock<Option<Arc<twill_bgpd::metrics::Metrics>>>,
}

impl Health {
    /// `max_silence`: how long the reconciler may stay silent and still count as live.
    pub fn new(max_silence: Duration) -> Health {
        Health {
            ready: AtomicBool::new(false),
            beat_ms: AtomicU64::new(now_ms()),
            max_silence,
            metrics: Metrics::default(),
            speaker_metrics: RwLock::new(None),
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

    pub async fn set_speaker_metrics(&self, m: Arc<twill_bgpd::metrics::Metrics>) {
        *self.speaker_metrics.write().await = Some(m);
    }

    async fn render_metrics(&self) -> String {
        let mut out = self.metrics.encode();
        // Both encoders end with "# EOF"; keep only the final one.
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out = stripped.to_string();
        }
        match self.speaker_metrics.read().await.as_ref() {
            Some(m) => out.push_str(&m.encode()),
            None => out.push_str("# EOF\n"),
        }
        out
    }

    async fn answer(&self, path: &str) -> (StatusCode, String) {
        match path {
            "/livez" if self.is_live() => (StatusCode::OK, "ok\n".into()),
            "/livez" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "reconciler is not running\n".into(),
            ),
            "/readyz" if self.is_ready() => (StatusCode::OK, "ok\n".into()),
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not in sync with the datastore yet\n".into(),
            ),
            "/metrics" => (StatusCode::OK, self.render_metrics().await),
            _ => (StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}

/// Serves health and metrics on `listener` until the guard is dropped.
pub fn serve(listener: TcpListener, health: Arc<Health>) -> TaskGuard {
    TaskGuard::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "health listener accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let health = health.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let health = health.clone();
                    async move {
                        let (status, body) = health.answer(req.uri().path()).await;
                        Response::builder()
                            .status(status)
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(body)))
                    }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(error = %e, "health connection");
                }
            });
        }
    })
}

/// Binds the health listener (a bind failure is a start-up error).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_api::resources::kinds::BGPFILTER;

    #[test]
    fn unknown_fields_met_by_the_datastore_layer_are_exported_per_kind() {
        let metrics = Metrics::default();
        BGPFILTER
            .unknown_fields_seen
            .note("f", &["spec.exportV4[0].actoin".to_string()]);
        let text = metrics.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("twill_felix_unknown_fields_total{kind=\"bgpfilter\"}"))
            .unwrap_or_else(|| panic!("no counter for bgpfilter in {text}"));
        let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value >= 1, "{line}");
    }
}
