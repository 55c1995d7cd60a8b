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
        };
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
