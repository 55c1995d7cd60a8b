//! One IPAM block as plain data: which addresses are free (in the order they were freed),
//! who holds each used address, and a sequence number per allocation.
//!
//! This module is pure: no I/O, no clock reads (callers pass the time in). Every mutation
//! keeps the invariant `free.len() + allocations.len() == size`, and an ordinal is in at
//! most one of the two. It must never hand out an address that is already allocated.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::net::{nth_addr, ordinal_of};

/// Who holds one address of a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The handle the address was allocated under (`<network>.<containerID>`).
    pub handle: String,
    /// Free-form attributes: `namespace`, `pod`, `node` (the requesting node).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
    /// The block's sequence number when this address was handed out: a release by address
    /// that names an older sequence number is stale and frees nothing.
    pub seq: u64,
}

/// An IPAM block's allocation state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    /// The block's network.
    pub cidr: IpNet,
    /// The node this block is affine to (`None`: no owner, e.g. a released block that still
    /// holds borrowed addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// Incremented on every allocation; never decreases.
    #[serde(default)]
    pub sequence: u64,
    /// Used ordinals (offset of the address from the block's network address).
    #[serde(default)]
    pub allocations: BTreeMap<u32, Allocation>,
    /// Free ordinals, the one free longest first: reuse takes from the front, release
    /// appends at the back, so a just-freed address is the last to be reused.
    #[serde(default)]
    pub free: Vec<u32>,
    /// Unix seconds at which each free ordinal was last released (absent: never used).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub released_at: BTreeMap<u32, u64>,
}

/// What a successful allocation from a block returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assigned {
    /// The address handed out.
    pub addr: IpAddr,
    /// Its sequence number (for a guarded release by address).
    pub seq: u64,
}

/// Why a release by address did nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The address is not inside this block.
    #[error("{addr} is not in block {cidr}")]
    NotInBlock { addr: IpAddr, cidr: IpNet },
    /// The address has been released and handed out again since the caller saw it.
    #[error("{addr} was reassigned (sequence {current}, caller expected {expected})")]
    Reassigned {
        addr: IpAddr,
        expected: u64,
        current: u64,
    },
}

impl Block {
    /// A new, empty block affine to `affinity`.
    pub fn new(cidr: IpNet, affinity: Option<String>) -> Self {
        let size = block_size(&cidr);
        Block {
            cidr,
            affinity,
            sequence: 0,
            allocations: BTreeMap::new(),
            free: (0..size).collect(),
            released_at: BTreeMap::new(),
        }
    }

    /// Number of addresses in the block.
    pub fn size(&self) -> u32 {
        block_size(&self.cidr)
    }

    /// Number of used addresses.
    pub fn used(&self) -> usize {
        self.allocations.len()
    }

    /// True when no address is in use.
    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty()
    }

    /// True when this block is affine to `node`.
    pub fn is_affine_to(&self, node: &str) -> bool {
        self.affinity.as_deref() == Some(node)
    }

    /// Number of free addresses that may be handed out (not reserved).
    pub fn free_count(&self, reserved: &dyn Fn(IpAddr) -> bool) -> usize {
        self.free
            .iter()
            .filter(|&&o| !reserved(nth_addr(&self.cidr, o)))
            .count()
    }

    /// Hands out the address that has been free longest and is not reserved.
    pub fn allocate(
        &mut self,
        handle: &str,
        attrs: &BTreeMap<String, String>,
        reserved: &dyn Fn(IpAddr) -> bool,
    ) -> Option<Assigned> {
        let pos = self
            .free
            .iter()
            .position(|&o| !reserved(nth_addr(&self.cidr, o)))?;
        let ordinal = self.free.remove(pos);
        Some(self.assign(ordinal, handle, attrs))
    }

    /// Hands out one specific address, if it is free.
    pub fn allocate_addr(
        &mut self,
        addr: IpAddr,
        handle: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Option<Assigned> {
        let ordinal = ordinal_of(&self.cidr, addr)?;
        let pos = self.free.iter().position(|&o| o == ordinal)?;
        self.free.remove(pos);
        Some(self.assign(ordinal, handle, attrs))
    }

    fn assign(&mut self, ordinal: u32, handle: &str, attrs: &BTreeMap<String, String>) -> Assigned {
        self.sequence += 1;
        self.released_at.remove(&ordinal);
        self.allocations.insert(
            ordinal,
            Allocation {
                handle: handle.to_owned(),
                attrs: attrs.clone(),
                seq: self.sequence,
            },
        );
        Assigned {
            addr: nth_addr(&self.cidr, ordinal),
            seq: self.sequence,
        }
    }

    /// Releases every address held by `handle`; returns them (empty when none: releasing
    /// twice is harmless).
    pub fn release_handle(&mut self, handle: &str, now: u64) -> Vec<IpAddr> {
        let ordinals: Vec<u32> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.handle == handle)
            .map(|(&o, _)| o)
            .collect();
        ordinals
            .into_iter()
            .map(|o| {
                self.free_ordinal(o, now);
                nth_addr(&self.cidr, o)
            })
            .collect()
    }

    /// Releases one address. With `expected_seq`, frees it only if it still carries that
    /// sequence number. Returns the allocation it freed (`None`: it was already free).
    pub fn release_addr(
        &mut self,
        addr: IpAddr,
        expected_seq: Option<u64>,
        now: u64,
    ) -> Result<Option<Allocation>, ReleaseError> {
        let ordinal = ordinal_of(&self.cidr, addr).ok_or(ReleaseError::NotInBlock {
            addr,
            cidr: self.cidr,
        })?;
        let Some(current) = self.allocations.get(&ordinal) else {
            return Ok(None);
        };
        if let Some(expected) = expected_seq
            && expected != current.seq
        {
            return Err(ReleaseError::Reassigned {
                addr,
                expected,
                current: current.seq,
            });
        }
        Ok(self.free_ordinal(ordinal, now))
    }

    fn free_ordinal(&mut self, ordinal: u32, now: u64) -> Option<Allocation> {
        let freed = self.allocations.remove(&ordinal)?;
        self.free.push(ordinal);
        self.released_at.insert(ordinal, now);
        Some(freed)
    }

    /// Who holds `addr` (`None`: free or not in this block).
    pub fn holder(&self, addr: IpAddr) -> Option<&Allocation> {
        self.allocations.get(&ordinal_of(&self.cidr, addr)?)
    }

    /// Every used address with its allocation.
    pub fn used_addrs(&self) -> impl Iterator<Item = (IpAddr, &Allocation)> {
        self.allocations
            .iter()
            .map(|(&o, a)| (nth_addr(&self.cidr, o), a))
    }

    /// Addresses held by `handle`.
    pub fn addrs_of(&self, handle: &str) -> Vec<IpAddr> {
        self.used_addrs()
            .filter(|(_, a)| a.handle == handle)
            .map(|(ip, _)| ip)
            .collect()
    }

    /// Checks the block's internal invariants; returns a description of each violation.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let size = self.size();
        let mut seen = vec![false; size as usize];
        for &o in self.free.iter().chain(self.allocations.keys()) {
            match seen.get_mut(o as usize) {
                None => out.push(format!("{}: ordinal {o} outside the block", self.cidr)),
                Some(s) if *s => out.push(format!(
                    "{}: {} is both free and used, or listed twice",
                    self.cidr,
                    nth_addr(&self.cidr, o)
                )),
                Some(s) => *s = true,
            }
        }
        if self.free.len() + self.allocations.len() != size as usize {
            out.push(format!(
                "{}: free ({}) + used ({}) != size ({size})",
                self.cidr,
                self.free.len(),
                self.allocations.len()
            ));
        }
        if let Some((o, a)) = self.allocations.iter().find(|(_, a)| a.seq > self.sequence) {
            out.push(format!(
                "{}: {} has sequence {} beyond the block's {}",
                self.cidr,
                nth_addr(&self.cidr, *o),
                a.seq,
                self.sequence
            ));
        }
        out
    }
}

/// Number of addresses in `cidr` (blocks are at most 2^16 addresses: /16 or /112).
pub fn block_size(cidr: &IpNet) -> u32 {
    let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len()).min(31);
    1u32 << host_bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> Block {
        Block::new("10.244.0.0/30".parse().unwrap(), Some("n1".into()))
    }
    fn none(_: IpAddr) -> bool {
        false
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn new_block_hands_out_addresses_in_order() {
        let mut b = block();
        let attrs = BTreeMap::new();
        let got: Vec<_> = (0..4)
            .map(|i| b.allocate(&format!("h{i}"), &attrs, &none).unwrap().addr)
            .collect();
        assert_eq!(
            got,
            ["10.244.0.0", "10.244.0.1", "10.244.0.2", "10.244.0.3"].map(ip)
        );
        assert!(b.allocate("h5", &attrs, &none).is_none());
        assert!(b.violations().is_empty());
    }

    #[test]
    fn reuse_takes_the_address_free_longest() {
        let mut b = block();
        let attrs = BTreeMap::new();
        for i in 0..4 {
            b.allocate(&format!("h{i}"), &attrs, &none).unwrap();
        }
        b.release_handle("h2", 10);
        b.release_handle("h0", 11);
        assert_eq!(
            b.allocate("x", &attrs, &none).unwrap().addr,
            ip("10.244.0.2")
        );
        assert_eq!(
            b.allocate("y", &attrs, &none).unwrap().addr,
            ip("10.244.0.0")
        );
    }

    #[test]
    fn stale_release_by_address_does_not_free_a_reassigned_address() {
        let mut b = Block::new("10.244.0.0/32".parse().unwrap(), None);
        let attrs = BTreeMap::new();
        let first = b.allocate("a", &attrs, &none).unwrap();
        b.release_handle("a", 1);
        let second = b.allocate("b", &attrs, &none).unwrap();
        assert_eq!(first.addr, second.addr);
        let err = b.release_addr(first.addr, Some(first.seq), 2).unwrap_err();
        assert!(matches!(err, ReleaseError::Reassigned { .. }));
        assert_eq!(b.holder(first.addr).unwrap().handle, "b");
        let freed = b.release_addr(second.addr, Some(second.seq), 3).unwrap();
        assert_eq!(freed.unwrap().handle, "b");
    }

    #[test]
    fn release_by_handle_is_idempotent() {
        let mut b = block();
        let attrs = BTreeMap::new();
        b.allocate("a", &attrs, &none).unwrap();
        assert_eq!(b.release_handle("a", 1).len(), 1);
        assert!(b.release_handle("a", 2).is_empty());
        assert_eq!(b.free.len(), 4);
        assert!(b.violations().is_empty());
    }

    #[test]
    fn reserved_addresses_are_never_handed_out() {
        let mut b = block();
        let attrs = BTreeMap::new();
        let reserved = |a: IpAddr| a == ip("10.244.0.0") || a == ip("10.244.0.2");
        assert_eq!(
            b.allocate("a", &attrs, &reserved).unwrap().addr,
            ip("10.244.0.1")
        );
        assert_eq!(
            b.allocate("b", &attrs, &reserved).unwrap().addr,
            ip("10.244.0.3")
        );
        assert!(b.allocate("c", &attrs, &reserved).is_none());
        assert_eq!(b.free_count(&reserved), 0);
    }

    #[test]
    fn ipv6_blocks_work_like_ipv4_blocks() {
        let mut b = Block::new("fd00:10:244::/126".parse().unwrap(), None);
        let attrs = BTreeMap::new();
        assert_eq!(b.size(), 4);
        let a = b.allocate("a", &attrs, &none).unwrap();
        assert_eq!(a.addr, ip("fd00:10:244::"));
        assert_eq!(b.holder(ip("fd00:10:244::")).unwrap().handle, "a");
        assert!(b.release_addr(ip("fd00:10:245::"), None, 1).is_err());
    }

    #[test]
    fn block_survives_a_json_round_trip() {
        let mut b = block();
        let attrs = BTreeMap::from([("pod".to_owned(), "p".to_owned())]);
        b.allocate("a", &attrs, &none).unwrap();
        b.release_handle("a", 7);
        b.allocate("b", &attrs, &none).unwrap();
        let json = serde_json::to_string(&b).unwrap();
        let back: Block = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
    }
}
