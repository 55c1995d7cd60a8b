//! Garbage collection of leaked addresses and stale handle-index entries.
//!
//! A used address whose workload is gone becomes a candidate; it is released only after it
//! has stayed a candidate for the grace period, and after a re-check against a fresh read of
//! the workloads immediately before the release. The release itself is guarded by the
//! allocation's sequence number, so an address reassigned in the meantime is never freed.
//! Addresses of nodes that no longer exist are released at once (after the same re-check of
//! the node). Each pass does a bounded amount of work.
//!
//! Planning (`Gc::plan`) is a pure function of the inventory and the clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;
use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::{IPAMHandle, Node};

use crate::allocator::{Ipam, IpamError};
use crate::block::Allocation;
use crate::inventory::{Finding, Inventory, WorkloadSource, load_workloads};
use crate::lb::is_lb_handle;
use crate::model::handle_name;

/// Why GC releases something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The allocation's workload is gone and the grace period has passed.
    Leaked,
    /// The allocation's node is gone.
    NodeGone,
}

/// One thing a GC pass will do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Release `addr` if it is still held by `alloc` (same sequence number).
    Release {
        addr: IpAddr,
        alloc: Allocation,
        reason: Reason,
    },
    /// Delete a handle-index entry that points at nothing.
    DeleteHandle { handle: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr, String, u64),
    Handle(String),
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Leak candidates still waiting out their grace period.
    pub candidates: usize,
    /// Addresses released (both reasons).
    pub released: usize,
    /// Of those, released because the node is gone.
    pub released_node_gone: usize,
    /// Handle-index entries deleted.
    pub handles_deleted: usize,
    /// Releases skipped because the re-check found the workload or node back.
    pub rechecked_live: usize,
}

/// The collector's memory of candidates between passes.
#[derive(Debug)]
pub struct Gc {
    grace: Duration,
    max_per_pass: usize,
    source: WorkloadSource,
    first_seen: HashMap<Key, Instant>,
}

impl Gc {
    /// A collector with `grace` (default in the controller: 15 minutes).
    pub fn new(grace: Duration, source: WorkloadSource) -> Self {
        Gc {
            grace,
            max_per_pass: 256,
            source,
            first_seen: HashMap::new(),
        }
    }

    /// Caps the actions of one pass.
    pub fn with_max_per_pass(mut self, n: usize) -> Self {
        self.max_per_pass = n.max(1);
        self
    }

    /// Leak candidates currently tracked.
    pub fn candidates(&self) -> usize {
        self.first_seen.len()
    }

    /// Decides what to release now; remembers new candidates, forgets recovered ones.
    pub fn plan(&mut self, inv: &Inventory, now: Instant) -> Vec<Action> {
        let mut seen_now: HashMap<Key, Instant> = HashMap::new();
        let mut actions = Vec::new();
        for (addr, _, a) in inv.used() {
            // A Service's LoadBalancer address: LoadBalancer IPAM frees it with its Service.
            if is_lb_handle(&a.handle) {
                continue;
            }
            let node_gone = a.attrs.get("node").is_some_and(|n| !inv.nodes.contains(n));
            if node_gone {
                actions.push(Action::Release {
                    addr,
                    alloc: a.clone(),
                    reason: Reason::NodeGone,
                });
                continue;
            }
            if inv.workloads.holds(addr, a) {
                continue;
            }
            let key = Key::Addr(addr, a.handle.clone(), a.seq);
            let since = self.first_seen.get(&key).copied().unwrap_or(now);
            seen_now.insert(key, since);
            if now.saturating_duration_since(since) >= self.grace {
                actions.push(Action::Release {
                    addr,
                    alloc: a.clone(),
                    reason: Reason::Leaked,
                });
            }
        }
        for f in inv.check() {
            if let Finding::HandleWithoutAddresses { handle } = f {
                let key = Key::Handle(handle.clone());
                let since = self.first_seen.get(&key).copied().unwrap_or(now);
                seen_now.insert(key, since);
                if now.saturating_duration_since(since) >= self.grace {
                    actions.push(Action::DeleteHandle { handle });
                }
            }
        }
        self.first_seen = seen_now;
        actions.truncate(self.max_per_pass);
        actions
    }

    /// One pass: load, plan, re-check, release.
    pub async fn pass(&mut self, ipam: &Ipam) -> Result<PassReport, IpamError> {
        let ds = ipam.datastore();
        let inv = Inventory::load(ds, self.source).await?;
        let actions = self.plan(&inv, Instant::now());
        let mut report = PassReport::default();
        if !actions.is_empty() {
            // Re-check immediately before acting, against a fresh read.
            let workloads = load_workloads(ds, self.source).await?;
            for action in actions {
                match action {
                    Action::Release {
                        addr,
                        alloc,
                        reason,
                    } => {
                        let still_gone = match reason {
                            Reason::Leaked => !workloads.holds(addr, &alloc),
                            Reason::NodeGone => match alloc.attrs.get("node") {
                                Some(n) => node_gone(ds, n).await?,
                                None => false,
                            },
                        };
                        if !still_gone {
                            report.rechecked_live += 1;
                            continue;
                        }
                        match ipam.release_addr(addr, Some(alloc.seq)).await {
                            Ok(Some(_)) => {
                                tracing::info!(%addr, handle = %alloc.handle, ?reason, "GC released an address");
                                report.released += 1;
                                if reason == Reason::NodeGone {
                                    report.released_node_gone += 1;
                                }
                            }
                            Ok(None) | Err(IpamError::Stale(_)) | Err(IpamError::NoBlock(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Action::DeleteHandle { handle } => {
                        if delete_stale_handle(ds, &inv, &handle).await? {
                            report.handles_deleted += 1;
                        }
                    }
                }
            }
        }
        report.candidates = self.first_seen.len();
        Ok(report)
    }
}

async fn node_gone(ds: &Datastore, node: &str) -> Result<bool, IpamError> {
    match ds.get::<Node>(None, node).await {
        Ok(_) => Ok(false),
        Err(DatastoreError::NotFound { .. }) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the index entry if it is unchanged since the inventory was read (a borrow in
/// flight would have bumped its revision).
async fn delete_stale_handle(
    ds: &Datastore,
    inv: &Inventory,
    handle: &str,
) -> Result<bool, IpamError> {
    let Some(h) = inv.handles.iter().find(|h| h.spec.handle_id == handle) else {
        return Ok(false);
    };
    let rv = h.metadata.resource_version.as_deref();
    match ds
        .delete::<IPAMHandle>(None, &handle_name(handle), rv)
        .await
    {
        Ok(_) => Ok(true),
        Err(DatastoreError::NotFound { .. } | DatastoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use twill_api::resources::IPAMBlock;

    use super::*;
    use crate::block::Block;
    use crate::model::{block_name, block_to_spec};

    /// A node "n1" whose block holds `n` addresses, none with a live workload.
    fn leaky(n: usize) -> Inventory {
        let mut b = Block::new("10.244.0.0/24".parse().unwrap(), Some("n1".into()));
        let attrs = BTreeMap::from([("node".to_owned(), "n1".to_owned())]);
        for i in 0..n {
            b.allocate(&format!("net.{i}"), &attrs, &|_| false).unwrap();
        }
        Inventory {
            blocks: vec![(
                IPAMBlock::new(&block_name(&b.cidr), block_to_spec(&b, false)),
                b,
            )],
            nodes: ["n1".to_owned()].into(),
            ..Default::default()
        }
    }

    #[test]
    fn leaks_wait_out_the_grace_period_and_a_pass_is_bounded() {
        let inv = leaky(20);
        let mut gc =
            Gc::new(Duration::from_secs(60), WorkloadSource::Endpoints).with_max_per_pass(8);
        let t0 = Instant::now();
        assert!(
            gc.plan(&inv, t0).is_empty(),
            "nothing before the grace period"
        );
        assert_eq!(gc.candidates(), 20);
        let later = gc.plan(&inv, t0 + Duration::from_secs(61));
        assert_eq!(later.len(), 8, "at most max_per_pass actions per pass");
        assert!(later.iter().all(|a| matches!(
            a,
            Action::Release {
                reason: Reason::Leaked,
                ..
            }
        )));
    }

    #[test]
    fn a_gone_nodes_addresses_go_at_once() {
        let mut inv = leaky(3);
        inv.nodes.clear();
        let mut gc = Gc::new(Duration::from_secs(900), WorkloadSource::Endpoints);
        let now = gc.plan(&inv, Instant::now());
        assert_eq!(now.len(), 3);
        assert!(now.iter().all(|a| matches!(
            a,
            Action::Release {
                reason: Reason::NodeGone,
                ..
            }
        )));
    }
}
