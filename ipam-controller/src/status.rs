//! Pools report back: each `IPPool` carries an `Allocatable` condition saying whether new
//! addresses can come from it and, when not, why (`Disabled`, `NoNodes`, `Exhausted`).
//!
//! The decision is a pure function of the inventory; the write is a compare-and-swap of
//! the pool's status, made only when the condition changed (so passes do not churn), and a
//! lost race is left to the next pass. Messages carry no counts for the same reason.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::{Condition, IPPool, ResourceStatus};

use crate::allocator::IpamError;
use crate::inventory::{Inventory, PoolUsage};
use crate::plan::{Pool, Reservations};
use crate::reconcile::NodeLabels;

/// The condition type pools carry.
pub const ALLOCATABLE: &str = "Allocatable";

/// What a pool's `Allocatable` condition says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `True` or `False`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For operators.
    pub message: String,
}

/// Addresses of `pool` covered by reservations (overlapping reservations count twice;
/// this only decides whether anything at all is left).
fn reserved_in(pool: &Pool, reservations: &Reservations) -> u128 {
    reservations
        .nets()
        .iter()
        .map(|r| {
            let inner = if pool.cidr.contains(r) {
                r
            } else if r.contains(&pool.cidr) {
                &pool.cidr
            } else {
                return 0;
            };
            let bits = u32::from(inner.max_prefix_len() - inner.prefix_len());
            1u128.checked_shl(bits).unwrap_or(u128::MAX)
        })
        .fold(0u128, u128::saturating_add)
}

/// Whether new addresses can come from `pool`, and why not.
pub fn verdict(
    pool: &Pool,
    usage: &PoolUsage,
    nodes: &NodeLabels,
    reservations: &Reservations,
) -> Verdict {
    if pool.disabled {
        return Verdict {
            status: "False",
            reason: "Disabled",
            message: "the pool is disabled: no new allocations, existing ones stay".into(),
        };
    }
    // A LoadBalancer pool serves Services, wherever the nodes are.
    if !pool.load_balancer
        && !nodes
            .values()
            .any(|labels| pool.node_selector.matches(labels))
    {
        return Verdict {
            status: "False",
            reason: "NoNodes",
            message: "no node matches the pool's nodeSelector".into(),
        };
    }
    let free = usage
        .size
        .saturating_sub(usage.used)
        .saturating_sub(reserved_in(pool, reservations));
    if free == 0 {
        return Verdict {
            status: "False",
            reason: "Exhausted",
            message: "every address of the pool is in use or reserved".into(),
        };
    }
    Verdict {
        status: "True",
        reason: "Allocatable",
        message: "new addresses can be allocated from this pool".into(),
    }
}

fn same(condition: &Condition, v: &Verdict) -> bool {
    condition.status == v.status && condition.reason == v.reason && condition.message == v.message
}

/// Writes each pool's condition where it changed. Returns how many pools were updated.
pub async fn report_pools(
    ds: &Datastore,
    inv: &Inventory,
    nodes: &NodeLabels,
    reservations: &Reservations,
) -> Result<usize, IpamError> {
    let usage = inv.pool_usage();
    let mut updated = 0;
    for ((object, pool), usage) in inv.pools.iter().zip(&usage) {
        let v = verdict(pool, usage, nodes, reservations);
        let mut status = object.status.clone().unwrap_or_default();
        let current = status.conditions.iter().find(|c| c.type_ == ALLOCATABLE);
        if current.is_some_and(|c| same(c, &v)) {
            continue;
        }
        let transition = match current {
            Some(c) if c.status == v.status => c.last_transition_time.clone(),
            _ => Time(k8s_openapi::jiff::Timestamp::now()),
        };
        status.conditions.retain(|c| c.type_ != ALLOCATABLE);
        status.conditions.push(Condition {
            type_: ALLOCATABLE.into(),
            status: v.status.into(),
            reason: v.reason.into(),
            message: v.message,
            last_transition_time: transition,
            observed_generation: object.metadata.generation,
        });
        let mut changed: IPPool = object.clone();
        changed.status = Some(ResourceStatus {
            conditions: status.conditions,
        });
        match ds.update_status(&changed).await {
            Ok(_) => updated += 1,
            Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use twill_api::selector::Selector;

    fn pool(selector: &str, disabled: bool) -> Pool {
        Pool {
            name: "p".into(),
            cidr: "10.244.0.0/30".parse().unwrap(),
            block_len: 30,
            node_selector: Selector::parse(selector).unwrap(),
            disabled,
            load_balancer: false,
        }
    }

    fn usage(used: u128) -> PoolUsage {
        PoolUsage {
            name: "p".into(),
            cidr: "10.244.0.0/30".parse().unwrap(),
            size: 4,
            used,
            borrowed: 0,
            blocks: 1,
            disabled: false,
        }
    }

    #[test]
    fn each_reason_is_given() {
        let nodes: NodeLabels =
            BTreeMap::from([("n1".into(), BTreeMap::from([("zone".into(), "a".into())]))]);
        let none = Reservations::default();
        let v = |p: &Pool, used, r: &Reservations| verdict(p, &usage(used), &nodes, r).reason;
        assert_eq!(v(&pool("", false), 1, &none), "Allocatable");
        assert_eq!(v(&pool("", true), 1, &none), "Disabled");
        assert_eq!(v(&pool("zone == 'b'", false), 1, &none), "NoNodes");
        assert_eq!(v(&pool("", false), 4, &none), "Exhausted");
        let two = Reservations::new(vec!["10.244.0.0/31".parse().unwrap()]);
        assert_eq!(v(&pool("", false), 2, &two), "Exhausted");
        assert_eq!(v(&pool("", false), 1, &two), "Allocatable");
        let all = Reservations::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(v(&pool("", false), 0, &all), "Exhausted");
    }
}
