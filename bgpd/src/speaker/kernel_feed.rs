//! The speaker's side of kernel sync: feeding changed prefixes (their routes computed by
//! [`super::kernel_route`]) to kernel sync at the pace it applies them, and the one
//! reconcile after a restart. It only reads the RIB; it never writes the kernel itself.

use std::collections::HashSet;
use std::time::Duration;

use ipnet::IpNet;

use super::kernel_route::kernel_route;
use super::owner::Owner;
use crate::kernel::{KernelRoute, RouteChange};

impl Owner {
    /// Hands queued prefixes to kernel sync, as routes computed from the RIB now, while
    /// its backlog is low (`all`: everything, whatever the backlog).
    pub(super) fn feed_kernel(&mut self, all: bool) {
        /// Routes per submission, and how many may wait in kernel sync (besides the round
        /// it is applying): enough to keep its socket busy, few enough that memory stays
        /// flat however fast routes arrive.
        const BATCH: usize = 8192;
        const MAX_BACKLOG: usize = 2 * BATCH;
        let Some(k) = self.kernel.clone() else {
            self.kernel_queue.clear();
            return;
        };
        let mut seen: HashSet<IpNet> = HashSet::new();
        while !self.kernel_queue.is_empty() && (all || k.backlog() < MAX_BACKLOG) {
            seen.clear();
            let n = self.kernel_queue.len().min(BATCH);
            let changes: Vec<RouteChange> = self
                .kernel_queue
                .drain(..n)
                .filter(|p| seen.insert(*p))
                .map(|p| match kernel_route(&self.rib, &self.peers, &p) {
                    Some(r) => RouteChange::Replace(r),
                    None => RouteChange::Delete(p),
                })
                .collect();
            k.submit(changes);
        }
        if self.kernel_queue.capacity() > 4 * BATCH && self.kernel_queue.len() < BATCH {
            self.kernel_queue.shrink_to(BATCH);
        }
    }

    /// Routes found in the kernel at start stay until every peer has sent its table (or
    /// two minutes passed); then the kernel is made to match the RIB (RFC 4724's
    /// restarting-speaker behaviour: forwarding survives our restart).
    pub(super) fn maybe_reconcile_kernel(&mut self) {
        if self.kernel_existing.is_none() {
            return;
        }
        let all_synced = self
            .peers
            .values()
            .all(|p| p.live.as_ref().is_some_and(|l| l.eor_pending.is_empty()));
        if !all_synced && self.started.elapsed() < Duration::from_secs(120) {
            return;
        }
        self.kernel_existing = None;
        self.reconcile_kernel("kernel reconciled");
    }

    /// Puts the kernel back in line with the RIB (someone changed our routes behind our
    /// back). Before the start-up reconcile has run, that reconcile will do it.
    pub(super) fn resync_kernel(&mut self) {
        if self.kernel_existing.is_none() {
            self.reconcile_kernel("kernel routes resynced");
        }
    }

    /// Makes our kernel routes exactly the RIB's (dump, diff, apply on the kernel thread).
    fn reconcile_kernel(&mut self, what: &'static str) {
        let Some(k) = self.kernel.clone() else { return };
        // The reconcile installs the whole RIB: nothing queued needs sending on its own.
        self.kernel_queue.clear();
        let desired: Vec<KernelRoute> = self
            .rib
            .iter()
            .filter_map(|(n, _)| kernel_route(&self.rib, &self.peers, &n))
            .collect();
        tokio::spawn(async move {
            match k.reconcile(desired).await {
                Ok(r) => tracing::info!(report = ?r, "{what}"),
                Err(e) => tracing::warn!(error = %e, "kernel reconcile"),
            }
        });
    }
}
