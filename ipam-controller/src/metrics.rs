//! The controller's Prometheus metrics and its probes, served by the shared telemetry
//! server ([`twill_utils::telemetry`]): `/livez`, `/readyz` and `/metrics`.
//!
//! Labels are bounded: the pool name (operators create a handful), an error *kind*, a GC
//! reason, a bucket of blocks per node. Never a node, block, handle or pod name.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use twill_utils::telemetry::Probes;

use crate::inventory::Inventory;
use crate::reconcile::NodeLabels;

type Labels = Vec<(String, String)>;
type FGauge = Gauge<f64, AtomicU64>;

/// Every metric of the controller.
#[derive(Debug)]
pub struct Metrics {
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
    /// Times this replica lost its lease while leading (it then campaigns again).
    pub leader_losses: Counter,
    /// Reconciliation passes completed.
    pub passes: Counter,
    /// Fields of stored objects the controller does not know, by kind (brought up to date
    /// from the datastore layer's counters on every pass).
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
    /// Families that no registry exports (tests, embedding).
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}

impl Metrics {
    /// Registers the controller's families in `root` under the prefix `twill_ipam`.
    pub fn register(root: &mut Registry) -> Self {
        let registry = root.sub_registry_with_prefix("twill_ipam");
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
            leader_losses: Counter::default(),
            passes: Counter::default(),
            unknown_fields: Family::default(),
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
            "leader_losses",
            "Times this replica lost its lease while leading and stepped down",
            m.leader_losses.clone(),
        );
        registry.register(
            "reconcile_passes",
            "Reconciliation passes",
            m.passes.clone(),
        );
        m
    }

    /// Refreshes the pool and node gauges from an inventory.
    pub fn observe(&self, inv: &Inventory, nodes: &NodeLabels) {
        for (kind, seen) in twill_api::resources::unknown::unknown_fields_seen() {
            let counter = self.unknown_fields.get_or_create(&label("kind", &kind));
            counter.inc_by(seen.saturating_sub(counter.get()));
        }
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
}

/// The controller's probes and the process's one registry. Live while the process runs
/// (the election and the controller loop report their own failures and step down rather
/// than hang); ready once the datastore has answered.
#[derive(Debug)]
pub struct Health {
    registry: Registry,
    connected: AtomicBool,
}

impl Health {
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            connected: AtomicBool::new(false),
        }
    }

    /// The datastore answered: the replica can lead or stand by.
    pub fn set_connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }
}

impl Probes for Health {
    fn live(&self) -> Result<(), String> {
        Ok(())
    }

    fn ready(&self) -> Result<(), String> {
        if self.connected.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not connected to the datastore yet".into())
        }
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_api::resources::kinds::IPRESERVATION;

    #[test]
    fn unknown_fields_met_by_the_datastore_layer_are_exported_per_kind() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        IPRESERVATION
            .unknown_fields_seen
            .note("r", &["spec.reservedCIDR".to_string()]);
        metrics.observe(&Inventory::default(), &NodeLabels::default());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("twill_ipam_unknown_fields_total{kind=\"ipreservation\"}"))
            .unwrap_or_else(|| panic!("no counter for ipreservation in {text}"));
        let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value >= 1, "{line}");
    }
}
