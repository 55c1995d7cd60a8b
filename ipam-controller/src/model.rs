//! Conversions between the stored IPAM kinds of `twill-api` (Calico-shaped JSON) and the
//! allocator's plain data (`Block`, `Pool`, `Config`, `Reservations`), plus object names.
//!
//! A stored block that does not convert is reported as corrupt, never "repaired" here:
//! silently fixing a block could hand out an address someone holds.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use twill_api::resources::{
    AllocationAttribute, IPAMBlockSpec, IPAMConfig, IPPool, IPPoolUse, IPReservation,
};
use twill_api::selector::Selector;

use crate::block::{Allocation, Block, block_size};
use crate::plan::{Config, Pool, Reservations};

/// A stored object that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An `IPAMBlock` whose state is inconsistent.
    #[error("block {block}: {reason}")]
    CorruptBlock { block: String, reason: String },
    /// An `IPPool` that does not parse.
    #[error("pool {pool}: {reason}")]
    BadPool { pool: String, reason: String },
}

fn corrupt(block: &str, reason: impl Into<String>) -> ModelError {
    ModelError::CorruptBlock {
        block: block.to_owned(),
        reason: reason.into(),
    }
}

/// Prefix of a block's `affinity` field.
const HOST: &str = "host:";

/// The object name of the block `cidr` (`10-244-0-64-26`).
pub fn block_name(cidr: &IpNet) -> String {
    cidr.to_string().replace(['.', ':', '/'], "-")
}

/// The object name of `node`'s affinity for block `cidr`.
pub fn affinity_name(node: &str, cidr: &IpNet) -> String {
    format!("{node}-{}", block_name(cidr))
}

/// The object name of an `IPAMHandle` (handle ids may hold characters names may not).
pub fn handle_name(handle: &str) -> String {
    let mut name: String = handle
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    if name.is_empty() {
        name.push_str("handle");
    }
    name.truncate(253);
    name
}

/// Parses a stored block.
pub fn block_from_spec(spec: &IPAMBlockSpec) -> Result<Block, ModelError> {
    let cidr: IpNet = spec
        .cidr
        .parse()
        .map_err(|e| corrupt(&spec.cidr, format!("cidr: {e}")))?;
    let name = &spec.cidr;
    let size = block_size(&cidr) as usize;
    if spec.allocations.len() != size {
        return Err(corrupt(
            name,
            format!(
                "{} allocation slots for {size} addresses",
                spec.allocations.len()
            ),
        ));
    }
    let affinity = match spec.affinity.as_deref() {
        None => None,
        Some(a) => Some(
            a.strip_prefix(HOST)
                .ok_or_else(|| corrupt(name, format!("affinity {a:?} is not host:<node>")))?
                .to_owned(),
        ),
    };
    let mut allocations = BTreeMap::new();
    for (ordinal, slot) in spec.allocations.iter().enumerate() {
        let Some(index) = slot else { continue };
        let attr = spec
            .attributes
            .get(*index as usize)
            .ok_or_else(|| corrupt(name, format!("allocation {ordinal} points past attributes")))?;
        let ordinal = ordinal as u32;
        let seq = spec
            .sequence_number_for_allocation
            .get(&ordinal.to_string())
            .copied()
            .unwrap_or(0);
        allocations.insert(
            ordinal,
            Allocation {
                handle: attr.handle_id.clone().unwrap_or_default(),
                attrs: attr.secondary.clone(),
                seq,
            },
        );
    }
    let released_at = spec
        .released_at
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, *v)))
        .collect();
    let block = Block {
        cidr,
        affinity,
        sequence: spec.sequence_number,
        allocations,
        free: spec.unallocated.clone(),
        released_at,
    };
    if let Some(v) = block.violations().into_iter().next() {
        return Err(corrupt(name, v));
    }
    Ok(block)
}

/// The stored form of a block. `strict` records whether strict affinity was on at claim.
pub fn block_to_spec(block: &Block, strict: bool) -> IPAMBlockSpec {
    let size = block.size() as usize;
    let mut allocations = vec![None; size];
    let mut attributes = Vec::with_capacity(block.allocations.len());
    let mut seqs = BTreeMap::new();
    for (&ordinal, a) in &block.allocations {
        if let Some(slot) = allocations.get_mut(ordinal as usize) {
            *slot = Some(attributes.len() as u32);
        }
        attributes.push(AllocationAttribute {
            handle_id: Some(a.handle.clone()),
            secondary: a.attrs.clone(),
        });
        seqs.insert(ordinal.to_string(), a.seq);
    }
    IPAMBlockSpec {
        cidr: block.cidr.to_string(),
        affinity: block.affinity.as_ref().map(|n| format!("{HOST}{n}")),
        strict_affinity: strict,
        allocations,
        unallocated: block.free.clone(),
        attributes,
        sequence_number: block.sequence,
        sequence_number_for_allocation: seqs,
        released_at: block
            .released_at
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        deleted: false,
    }
}

/// The allocator's view of an `IPPool`.
pub fn pool_from_api(pool: &IPPool) -> Result<Pool, ModelError> {
    let name = pool.metadata.name.clone().unwrap_or_default();
    let bad = |reason: String| ModelError::BadPool {
        pool: name.clone(),
        reason,
    };
    let cidr: IpNet = pool
        .spec
        .cidr
        .parse()
        .map_err(|e| bad(format!("cidr: {e}")))?;
    let node_selector = Selector::parse(pool.spec.node_selector.as_deref().unwrap_or(""))
        .map_err(|e| bad(e.to_string()))?;
    let block_len = pool.spec.effective_block_size();
    if block_len < cidr.prefix_len() || block_len > cidr.max_prefix_len() {
        return Err(bad(format!("blockSize {block_len} does not fit {cidr}")));
    }
    Ok(Pool {
        name: name.clone(),
        cidr: cidr.trunc(),
        block_len,
        node_selector,
        // A pool being deleted (its finalizer holds it until empty) hands out nothing new.
        disabled: pool.spec.disabled.unwrap_or(false) || pool.metadata.deletion_timestamp.is_some(),
        load_balancer: pool.spec.allows(IPPoolUse::LoadBalancer),
    })
}

/// The allocator's view of the `IPAMConfig` (defaults when there is none).
pub fn config_from_api(config: Option<&IPAMConfig>) -> Config {
    config
        .map(|c| Config {
            strict_affinity: c.spec.strict_affinity,
            max_blocks_per_host: c.spec.max_blocks_per_host,
        })
        .unwrap_or_default()
}

/// Every reserved network of every `IPReservation` (entries that do not parse are skipped:
/// validation refuses them at store time).
pub fn reservations_from_api(list: &[IPReservation]) -> Reservations {
    let nets = list
        .iter()
        .flat_map(|r| r.spec.reserved_cidrs.iter())
        .filter_map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect();
    Reservations::new(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_round_trips_through_the_stored_shape() {
        let mut b = Block::new("fd00:10::40/122".parse().unwrap(), Some("n1".into()));
        let attrs = BTreeMap::from([("pod".to_owned(), "p1".to_owned())]);
        b.allocate("net.a", &attrs, &|_| false).unwrap();
        b.allocate("net.b", &attrs, &|_| false).unwrap();
        b.release_handle("net.a", 99);
        let spec = block_to_spec(&b, false);
        assert_eq!(spec.affinity.as_deref(), Some("host:n1"));
        assert_eq!(block_from_spec(&spec).unwrap(), b);
    }

    #[test]
    fn a_block_with_an_address_both_free_and_used_is_corrupt() {
        let mut b = Block::new("10.244.0.0/30".parse().unwrap(), None);
        b.allocate("h", &BTreeMap::new(), &|_| false).unwrap();
        let mut spec = block_to_spec(&b, false);
        spec.unallocated.push(0);
        assert!(matches!(
            block_from_spec(&spec),
            Err(ModelError::CorruptBlock { .. })
        ));
    }

    #[test]
    fn names_are_valid_object_names() {
        assert_eq!(
            block_name(&"10.244.0.64/26".parse().unwrap()),
            "10-244-0-64-26"
        );
        assert_eq!(
            block_name(&"fd00:10::40/122".parse().unwrap()),
            "fd00-10--40-122"
        );
        assert_eq!(handle_name("Twill.ABC_123"), "twill.abc-123");
    }
}
