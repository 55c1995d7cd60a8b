//! The controller loop: on every change of a `Node`, `IPPool` or `Service` (and on a
//! periodic resync) run one pass — reconcile blocks with nodes and pools, give Services of
//! type LoadBalancer their addresses (and free those of Services gone), collect garbage,
//! refresh metrics, report each pool's `Allocatable` condition, hold each pool with a
//! finalizer until it is empty.
//!
//! A pass is idempotent and re-reads everything it acts on, so what triggered it does not
//! matter; a burst of watch events is coalesced into one pass.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use twill_api::datastore::Datastore;
use twill_api::resources::native::{KubeNode, Service};
use twill_api::resources::{IPPool, Node};

use crate::allocator::{Ipam, IpamError, Settings};
use crate::finalizer::{self, FinalizerReport};
use crate::gc::{Gc, PassReport};
use crate::inventory::{Inventory, WorkloadSource};
use crate::lb::{self, LbReport};
use crate::metrics::Metrics;
use crate::nodes::NodePruner;
use crate::reconcile::{self, Applied, load_nodes};
use crate::status;

/// How the controller behaves.
#[derive(Clone, Copy, Debug)]
pub struct ControllerConfig {
    /// How long an allocation without a workload waits before GC releases it.
    pub gc_grace: Duration,
    /// A full pass at least this often, even without events.
    pub resync: Duration,
    /// Where live workloads are read.
    pub source: WorkloadSource,
    /// Delete Twill `Node`s whose Kubernetes `Node` is gone (Kubernetes mode).
    pub prune_nodes: bool,
}

impl ControllerConfig {
    /// The defaults of a datastore mode: GC against Pods and Twill nodes pruned after
    /// Kubernetes Nodes in Kubernetes mode; against WorkloadEndpoints in etcd mode.
    pub fn for_source(source: WorkloadSource, gc_grace: Duration, resync: Duration) -> Self {
        ControllerConfig {
            gc_grace,
            resync,
            source,
            prune_nodes: source == WorkloadSource::Pods,
        }
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Block reconciliation.
    pub blocks: Applied,
    /// Garbage collection.
    pub gc: PassReport,
    /// Pools whose `Allocatable` condition changed.
    pub pools_reported: usize,
    /// Twill `Node`s deleted because their Kubernetes `Node` is gone.
    pub nodes_pruned: usize,
    /// The pools' finalizers (the pool-in-use guard).
    pub finalizers: FinalizerReport,
    /// LoadBalancer IPAM.
    pub lb: LbReport,
}

/// The controller's state between passes.
#[derive(Debug)]
pub struct Controller {
    ds: Datastore,
    ipam: Ipam,
    gc: Gc,
    pruner: NodePruner,
    metrics: Arc<Metrics>,
    config: ControllerConfig,
}

impl Controller {
    /// A controller over `ds`.
    pub fn new(ds: Datastore, config: ControllerConfig, metrics: Arc<Metrics>) -> Self {
        Controller {
            ipam: Ipam::new(ds.clone()).with_settings_ttl(Duration::ZERO),
            gc: Gc::new(config.gc_grace, config.source),
            pruner: NodePruner::default(),
            ds,
            metrics,
            config,
        }
    }

    async fn reconcile_blocks(&self, settings: &Settings) -> Result<Applied, IpamError> {
        let inv = Inventory::load(&self.ds, self.config.source).await?;
        let nodes = load_nodes(&self.ds).await?;
        let steps = reconcile::plan(&inv, &nodes, settings.config);
        let applied = reconcile::apply(
            &self.ds,
            &inv,
            settings.config,
            &settings.reservations,
            steps,
        )
        .await?;
        Ok(applied)
    }

    /// One full pass.
    pub async fn pass(&mut self) -> Result<PassSummary, IpamError> {
        let nodes_pruned = if self.config.prune_nodes {
            self.pruner.pass(&self.ds).await?.len()
        } else {
            0
        };
        let settings = Settings::load(&self.ds).await?;
        let mut summary = PassSummary {
            blocks: self.reconcile_blocks(&settings).await?,
            gc: self.gc.pass(&self.ipam).await?,
            pools_reported: 0,
            nodes_pruned,
            finalizers: FinalizerReport::default(),
            lb: LbReport::default(),
        };
        // A failure here (say, Services not readable) must not stop pod IPAM.
        summary.lb = match lb::reconcile(&self.ds, &settings).await {
            Ok(report) => report,
            Err(e) => {
                self.metrics.error(e.kind_label());
                tracing::warn!(error = %e, "LoadBalancer IPAM pass failed; retrying at the next trigger");
                LbReport::default()
            }
        };
        if summary.gc.released > 0 {
            // Blocks GC just emptied (a gone node's) can be released now, not next pass.
            let again = self.reconcile_blocks(&settings).await?;
            summary.blocks.released += again.released;
            summary.blocks.claimed += again.claimed;
            summary.blocks.affinities += again.affinities;
        }
        let inv = Inventory::load(&self.ds, self.config.source).await?;
        let nodes = load_nodes(&self.ds).await?;
        self.metrics.observe(&inv, &nodes);
        summary.pools_reported =
            status::report_pools(&self.ds, &inv, &nodes, &settings.reservations).await?;
        summary.finalizers = finalizer::hold_pools(&self.ds, &inv).await?;
        self.metrics
            .gc_candidates
            .set(i64::try_from(summary.gc.candidates).unwrap_or(i64::MAX));
        let node_gone = summary.gc.released_node_gone;
        for (reason, n) in [
            ("leaked", summary.gc.released - node_gone),
            ("node_gone", node_gone),
        ] {
            self.metrics
                .gc_released
                .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
                .inc_by(n as u64);
        }
        self.metrics.passes.inc();
        Ok(summary)
    }

    /// Runs passes on changes and every `resync` until `shutdown` resolves or `may_act`
    /// turns false (leadership lost). `may_act` is asked before a pass starts and again
    /// every time the pass wakes up, so a replica that lost its lease stops between two
    /// datastore requests, even mid-pass (a pass is idempotent: the next leader redoes it).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        may_act: impl Fn() -> bool,
    ) {
        let mut nodes = self.ds.watch::<Node>(None, None);
        let mut pools = self.ds.watch::<IPPool>(None, None);
        let mut services = self.ds.watch::<Service>(None, None);
        let mut kube_nodes = if self.config.prune_nodes {
            self.ds.watch::<KubeNode>(None, None)
        } else {
            futures::stream::pending().boxed()
        };
        let mut tick = tokio::time::interval(self.config.resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
                Some(_) = nodes.next() => {}
                Some(_) = pools.next() => {}
                Some(_) = services.next() => {}
                Some(_) = kube_nodes.next() => {}
            }
            // Coalesce a burst of events into one pass.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while let Some(Some(_)) = nodes.next().now_or_never() {}
            while let Some(Some(_)) = pools.next().now_or_never() {}
            while let Some(Some(_)) = services.next().now_or_never() {}
            while let Some(Some(_)) = kube_nodes.next().now_or_never() {}
            if !may_act() {
                tracing::warn!("no longer allowed to act (leadership lost): stopping");
                return;
            }
            tracing::debug!("pass starting");
            let outcome = {
                let pass = self.pass();
                tokio::pin!(pass);
                std::future::poll_fn(|cx| {
                    if !may_act() || shutdown.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    pass.as_mut().poll(cx).map(Some)
                })
                .await
            };
            match outcome {
                None => {
                    tracing::info!("stopping in the middle of a pass");
                    return;
                }
                Some(Ok(s)) if s != PassSummary::default() => tracing::info!(?s, "pass done"),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    self.metrics.error(e.kind_label());
                    tracing::warn!(error = %e, "pass failed; retrying at the next trigger");
                }
            }
        }
    }
}
