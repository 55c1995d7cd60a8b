//! The controller's Prometheus metrics and a minimal `/metrics` HTTP endpoint.
//!
//! Labels are bounded: the pool name (operators create a handful), an error *kind*, a GC
//! reason, a bucket of blocks per node. Never a node, block, handle or pod name.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::inventory::Inventory;
use crate::reconcile::NodeLabels;

type Labels = Vec<(String, String)>;
type FGauge = Gauge<f64, AtomicU64>;

/// Every metric of the controller.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pool_size: Family<Labels, FGauge>,
    pool_allocated: Family<Labels, FGauge>,
    pool_free: Family<Labels, FGauge>,
    pool_borrowed: Family<Labels, FGauge>,
    pool_blocks: Family<Labels, Gauge>,
    nodes_by_blocks: Family<Labels, Gauge>,
    /// Leak candidates waiting out the grace period.
    pub gc_candidates: Gauge,
    /// Addresses released by GC, by reason.
    pub gc_released: Family<Labels, Counter>,
    /// Errors, by kind.
    pub errors: Family<Labels, Counter>,
    /// 1 while this replica leads.
    pub leader: Gauge,
    /// Reconciliation passes completed.
    pub passes: Counter,
    /// Fields of stored objects the controller does not know, by kind (brought up to date
    /// from the datastore layer's counters on every render).
    unknown_fields: Family<Labels, Counter>,
}

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_owned(), v.to_owned())]
}

fn bucket(blocks: usize) -> &'static str {
    match blocks {
        0 => "0",
        1 => "1",
        2 => "2",
        3..=4 => "3-4",
        5..=8 => "5-8",
        _ => "9+",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("twill_ipam");
        let m = Metrics {
            pool_size: Family::default(),
            pool_allocated: Family::default(),
            pool_free: Family::default(),
            pool_borrowed: Family::default(),
            pool_blocks: Family::default(),
            nodes_by_blocks: Family::default(),
            gc_candidates: Gauge::default(),
            gc_released: Family::default(),
            errors: Family::default(),
            leader: Gauge::default(),
            passes: Counter::default(),
            unknown_fields: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "unknown_fields",
            "Fields of stored objects the controller does not know (ignored), by kind",
            m.unknown_fields.clone(),
        );
        registry.register("pool_size", "Addresses in the pool", m.pool_size.clone());
        registry.register(
            "pool_allocated",
            "Addresses in use",
            m.pool_allocated.clone(),
        );
        registry.register("pool_free", "Addresses not in use", m.pool_free.clone());
        registry.register(
            "pool_borrowed",
            "Addresses in use by a node other than their block's",
            m.pool_borrowed.clone(),
        );
        registry.register(
            "pool_blocks",
            "Blocks carved from the pool",
            m.pool_blocks.clone(),
        );
        registry.register(
            "nodes_by_block_count",
            "Nodes by how many affine blocks they hold",
            m.nodes_by_blocks.clone(),
        );
        registry.register(
            "gc_candidates",
            "Leak candidates in their grace period",
            m.gc_candidates.clone(),
        );
        registry.register(
            "gc_released",
            "Addresses released by GC",
            m.gc_released.clone(),
        );
        registry.register("errors", "Errors by kind", m.errors.clone());
        registry.register(
            "leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        registry.register(
            "reconcile_passes",
            "Reconciliation passes",
            m.passes.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Refreshes the pool and node gauges from an inventory.
    pub fn observe(&self, inv: &Inventory, nodes: &NodeLabels) {
        for f in [
            &self.pool_size,
            &self.pool_allocated,
            &self.pool_free,
            &self.pool_borrowed,
        ] {
            f.clear();
        }
        self.pool_blocks.clear();
        for u in inv.pool_usage() {
            let l = label("pool", &u.name);
            self.pool_size.get_or_create(&l).set(u.size as f64);
            self.pool_allocated.get_or_create(&l).set(u.used as f64);
            self.pool_free
                .get_or_create(&l)
                .set(u.size.saturating_sub(u.used) as f64);
            self.pool_borrowed.get_or_create(&l).set(u.borrowed as f64);
            self.pool_blocks
                .get_or_create(&l)
                .set(i64::try_from(u.blocks).unwrap_or(i64::MAX));
        }
        self.nodes_by_blocks.clear();
        for node in nodes.keys() {
            let n = inv
                .blocks
                .iter()
                .filter(|(_, b)| b.is_affine_to(node))
                .count();
            self.nodes_by_blocks
                .get_or_create(&label("blocks", bucket(n)))
                .inc();
        }
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&label("kind", kind)).inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        for (kind, seen) in twill_api::resources::unknown::unknown_fields_seen() {
            let counter = self.unknown_fields.get_or_create(&label("kind", &kind));
            counter.inc_by(seen.saturating_sub(counter.get()));
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET /metrics` (any path, in fact) until the task is dropped. One request per
/// connection; a client that misbehaves only loses its own connection.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            // Out of file descriptors or similar: do not spin on it.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf)).await;
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                return;
            }
            let body = metrics.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_api::resources::kinds::IPRESERVATION;

    #[test]
    fn unknown_fields_met_by_the_datastore_layer_are_exported_per_kind() {
        let metrics = Metrics::default();
        IPRESERVATION
            .unknown_fields_seen
            .note("r", &["spec.reservedCIDR".to_string()]);
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("twill_ipam_unknown_fields_total{kind=\"ipreservation\"}"))
            .unwrap_or_else(|| panic!("no counter for ipreservation in {text}"));
        let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value >= 1, "{line}");
    }
}
