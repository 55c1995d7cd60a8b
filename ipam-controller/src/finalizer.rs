//! The pool-in-use guard for every client: the controller puts a finalizer on every
//! `IPPool` and removes it only once no address of the pool is allocated. A delete from any
//! client (`kubectl delete ippool`, etcdctl-free twillctl, the API) then only marks the
//! pool (`deletionTimestamp`): it hands out no new addresses, the ones in use stay valid,
//! and the pool goes when the last is released.
//!
//! Idempotent like the rest of a pass: a lost compare-and-swap is left to the next pass,
//! and a pool that never had the finalizer (created before this controller) is deleted
//! at once, as it would have been.

use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::IPPool;

use crate::allocator::IpamError;
use crate::inventory::Inventory;

/// The finalizer the controller holds on every pool.
pub const POOL_FINALIZER: &str = "networking.twill.dev/ipam";

/// What one pass did to the pools' finalizers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FinalizerReport {
    /// Pools that got the finalizer.
    pub held: usize,
    /// Pools being deleted that are empty now: finalizer removed, pool gone.
    pub released: usize,
    /// Pools being deleted that still have allocations.
    pub waiting: usize,
}

fn has_finalizer(pool: &IPPool) -> bool {
    pool.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == POOL_FINALIZER))
}

/// Adds the finalizer to pools without it; removes it from pools being deleted that have
/// no allocation left. Each pool is read again before it is written (a status report of
/// the same pass may have moved its revision); a pool is released only if it was already
/// being deleted when `inv` was read, so no allocation can have come after the count.
pub async fn hold_pools(ds: &Datastore, inv: &Inventory) -> Result<FinalizerReport, IpamError> {
    let mut report = FinalizerReport::default();
    for (object, pool) in &inv.pools {
        let was_deleting = object.metadata.deletion_timestamp.is_some();
        if !was_deleting && has_finalizer(object) {
            continue;
        }
        let used = inv
            .used()
            .filter(|(ip, _, _)| pool.cidr.contains(ip))
            .count();
        if was_deleting && has_finalizer(object) && used > 0 {
            tracing::info!(
                pool = pool.name,
                allocated = used,
                "pool is being deleted; it goes when its last address is released"
            );
            report.waiting += 1;
            continue;
        }
        let mut fresh: IPPool = match ds.get(None, &pool.name).await {
            Ok(fresh) => fresh,
            Err(DatastoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let deleting = fresh.metadata.deletion_timestamp.is_some();
        let finalizers = fresh.metadata.finalizers.get_or_insert_with(Vec::new);
        let held = finalizers.iter().any(|f| f == POOL_FINALIZER);
        match (was_deleting, deleting, held) {
            (_, false, false) => finalizers.push(POOL_FINALIZER.into()),
            (true, true, true) => finalizers.retain(|f| f != POOL_FINALIZER),
            _ => continue,
        }
        match ds.update(&fresh).await {
            Ok(_) if deleting => {
                tracing::info!(pool = pool.name, "pool is empty: its deletion completes");
                report.released += 1;
            }
            Ok(_) => report.held += 1,
            Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}
