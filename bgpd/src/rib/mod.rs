//! The RIBs: every accepted path per prefix (the union of the Adj-RIBs-In after import
//! policy), sorted so the best path and its ECMP companions lead (the Loc-RIB), and the
//! per-peer Adj-RIB-Out record of what was sent.
//!
//! Built for ingest speed: one hash map for all prefixes, path attributes shared through
//! `Arc` (one allocation per UPDATE, not per prefix), and no second copy of each path
//! for the Adj-RIB-In (a peer's Adj-RIB-In is the paths whose source is that peer).
//! This module never talks to sockets or the kernel; it reports what changed.

pub mod best;
mod out;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;
use smallvec::SmallVec;

use crate::packet::PathAttributes;

pub use out::AdjRibOut;

/// Where a path came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The peer's address; `None` for paths this speaker originates.
    pub addr: Option<IpAddr>,
    /// The peer's BGP identifier (ours for local paths).
    pub router_id: Ipv4Addr,
    pub asn: u32,
    pub ebgp: bool,
    pub rr_client: bool,
}

impl Source {
    pub fn is_local(&self) -> bool {
        self.addr.is_none()
    }
}

/// One path to a prefix.
#[derive(Clone, Debug)]
pub struct Path {
    pub source: Arc<Source>,
    /// Shared by every prefix of the UPDATE that carried them (MP_REACH/UNREACH removed).
    pub attrs: Arc<PathAttributes>,
    /// Where to forward (the BGP next hop).
    pub next_hop: IpAddr,
    /// Kept through the peer's graceful restart, not yet refreshed.
    pub stale: bool,
}

impl Path {
    pub fn effective_router_id(&self) -> Ipv4Addr {
        self.attrs.originator_id.unwrap_or(self.source.router_id)
    }

    fn same_source(&self, addr: Option<IpAddr>) -> bool {
        self.source.addr == addr
    }
}

/// All paths to one prefix, best first, then the rest in preference order. Most prefixes
/// have one path: it lives inline, without a heap allocation per prefix.
#[derive(Clone, Debug, Default)]
pub struct Dest {
    paths: SmallVec<[Path; 1]>,
}

impl Dest {
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    pub fn best(&self) -> Option<&Path> {
        self.paths.first()
    }

    /// The best path and those equal to it for forwarding (ECMP), distinct next hops.
    pub fn multipath(&self) -> Vec<&Path> {
        let Some(first) = self.paths.first() else {
            return Vec::new();
        };
        let mut v = vec![first];
        for p in &self.paths[1..] {
            if !best::multipath_equal(first, p) {
                break;
            }
            if v.iter().all(|q| q.next_hop != p.next_hop) {
                v.push(p);
            }
        }
        v
    }

    fn sort(&mut self) {
        if self.paths.len() > 1 {
            self.paths.sort_by(best::compare);
        }
    }

    /// A fingerprint of what forwarding and advertisement depend on.
    fn selection(&self) -> Option<Selection> {
        let best = self.paths.first()?;
        Some(Selection {
            source: best.source.addr,
            attrs: Arc::as_ptr(&best.attrs) as usize,
            next_hops: self.multipath().iter().map(|p| p.next_hop).collect(),
        })
    }
}

#[derive(PartialEq, Eq)]
struct Selection {
    source: Option<IpAddr>,
    attrs: usize,
    next_hops: Vec<IpAddr>,
}

/// The outcome of [`Rib::update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsert {
    /// The selection (best path or its ECMP set) changed.
    pub changed: bool,
    /// The source had no path to this prefix before.
    pub added: bool,
}

/// The Loc-RIB.
#[derive(Debug, Default)]
pub struct Rib {
    dests: HashMap<IpNet, Dest>,
}

impl Rib {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.dests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dests.is_empty()
    }

    pub fn get(&self, prefix: &IpNet) -> Option<&Dest> {
        self.dests.get(prefix)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &Dest)> {
        self.dests.iter()
    }

    /// Adds or replaces the path from `path.source` to `prefix`.
    pub fn update(&mut self, prefix: IpNet, path: Path) -> Upsert {
        let dest = self.dests.entry(prefix).or_default();
        if dest.paths.is_empty() {
            dest.paths.push(path);
            return Upsert {
                changed: true,
                added: true,
            };
        }
        let before = dest.selection();
        let added = match dest
            .paths
            .iter_mut()
            .find(|p| p.same_source(path.source.addr))
        {
            Some(slot) => {
                *slot = path;
                false
            }
            None => {
                dest.paths.push(path);
                true
            }
        };
        dest.sort();
        Upsert {
            changed: dest.selection() != before,
            added,
        }
    }

    /// Removes the path from `source` to `prefix`: `None` when there was none, else
    /// whether the selection changed.
    pub fn remove(&mut self, prefix: &IpNet, source: Option<IpAddr>) -> Option<bool> {
        let dest = self.dests.get_mut(prefix)?;
        let i = dest.paths.iter().position(|p| p.same_source(source))?;
        let was_best = i == 0;
        let before = if was_best { None } else { dest.selection() };
        dest.paths.remove(i);
        if dest.paths.is_empty() {
            self.dests.remove(prefix);
            return Some(true);
        }
        Some(was_best || dest.selection() != before)
    }

    /// Removes the path from `source` to `prefix`; returns whether the selection changed.
    pub fn withdraw(&mut self, prefix: &IpNet, source: Option<IpAddr>) -> bool {
        self.remove(prefix, source).unwrap_or(false)
    }

    /// Prefixes for which `source` has a path (its Adj-RIB-In after import policy).
    pub fn prefixes_from(&self, source: Option<IpAddr>) -> Vec<IpNet> {
        self.dests
            .iter()
            .filter(|(_, d)| d.paths.iter().any(|p| p.same_source(source)))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Removes every path from `source`; returns the prefixes whose selection changed.
    pub fn remove_source(&mut self, source: Option<IpAddr>) -> Vec<IpNet> {
        let prefixes = self.prefixes_from(source);
        prefixes
            .into_iter()
            .filter(|n| self.withdraw(n, source))
            .collect()
    }

    /// Marks every path from `source` stale (graceful restart helper, RFC 4724 §4.2).
    pub fn mark_stale(&mut self, source: Option<IpAddr>) -> Vec<IpNet> {
        let mut changed = Vec::new();
        for (n, d) in self.dests.iter_mut() {
            let before = d.selection();
            let mut hit = false;
            for p in d.paths.iter_mut().filter(|p| p.same_source(source)) {
                p.stale = true;
                hit = true;
            }
            if hit {
                d.sort();
                if d.selection() != before {
                    changed.push(*n);
                }
            }
        }
        changed
    }

    /// Removes the paths from `source` still stale; returns the changed prefixes.
    pub fn sweep_stale(&mut self, source: Option<IpAddr>) -> Vec<IpNet> {
        let stale: Vec<IpNet> = self
            .dests
            .iter()
            .filter(|(_, d)| d.paths.iter().any(|p| p.same_source(source) && p.stale))
            .map(|(n, _)| *n)
            .collect();
        stale
            .into_iter()
            .filter(|n| self.withdraw(n, source))
            .collect()
    }
}

#[cfg(test)]
mod tests;
