//! The RIBs: every accepted path per prefix (the union of the Adj-RIBs-In after import
//! policy), sorted so the best path and its ECMP companions lead (the Loc-RIB), and the
//! per-peer Adj-RIB-Out record of what was sent.
//!
//! Built for ingest speed and memory: one hash map per family keyed by the compact prefix
//! type, a fast seeded hasher, and paths shared through `Arc` (one `Path` allocation per
//! UPDATE and next hop, not per prefix), so that a prefix with one path costs 24 octets
//! in the IPv4 table. There is no second copy of each path for the Adj-RIB-In: a peer's
//! Adj-RIB-In is the paths whose source is that peer.
//! This module never talks to sockets or the kernel; it reports what changed.

pub mod best;
mod out;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
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

/// One path to a prefix. Immutable once in the RIB and shared (`Arc<Path>`) by every
/// prefix of the UPDATE that carried it.
#[derive(Clone, Debug)]
pub struct Path {
    pub source: Arc<Source>,
    /// The UPDATE's attributes (MP_REACH/UNREACH removed).
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

/// The paths of one prefix: most prefixes have exactly one, stored as one pointer.
#[derive(Clone, Debug)]
enum Paths {
    One(Arc<Path>),
    /// Two or more, best first. Boxed so that `Dest` stays two words: a bare `Vec` would
    /// make every single-path prefix pay for its three.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Arc<Path>>>),
}

/// All paths to one prefix, best first, then the rest in preference order.
#[derive(Clone, Debug)]
pub struct Dest {
    paths: Paths,
}

impl Dest {
    fn one(p: Arc<Path>) -> Self {
        Self {
            paths: Paths::One(p),
        }
    }

    pub fn paths(&self) -> &[Arc<Path>] {
        match &self.paths {
            Paths::One(p) => std::slice::from_ref(p),
            Paths::Many(v) => v,
        }
    }

    pub fn best(&self) -> Option<&Path> {
        self.paths().first().map(|p| &**p)
    }

    /// The best path as the shared pointer (its address identifies it).
    pub fn best_shared(&self) -> Option<&Arc<Path>> {
        self.paths().first()
    }

    /// The best path and those equal to it for forwarding (ECMP), distinct next hops.
    pub fn multipath(&self) -> Vec<&Path> {
        let paths = self.paths();
        let Some(first) = paths.first() else {
            return Vec::new();
        };
        let mut v: Vec<&Path> = vec![first];
        for p in &paths[1..] {
            if !best::multipath_equal(first, p) {
                break;
            }
            if v.iter().all(|q| q.next_hop != p.next_hop) {
                v.push(p);
            }
        }
        v
    }

    /// A fingerprint of what forwarding and advertisement depend on: the best path's
    /// source and attributes, and the ECMP next hops.
    fn selection(&self) -> Selection {
        let paths = self.paths();
        let best = &paths[0];
        let mut next_hops = SmallVec::new();
        next_hops.push(best.next_hop);
        if paths.len() > 1 {
            for p in self.multipath().iter().skip(1) {
                next_hops.push(p.next_hop);
            }
        }
        Selection {
            source: best.source.addr,
            attrs: Arc::as_ptr(&best.attrs) as usize,
            next_hops,
        }
    }

    /// Adds or replaces the path of `path`'s source; returns whether it was new.
    fn upsert(&mut self, path: Arc<Path>) -> bool {
        let addr = path.source.addr;
        match &mut self.paths {
            Paths::One(p) if p.same_source(addr) => {
                *p = path;
                false
            }
            Paths::One(p) => {
                let mut v = vec![p.clone(), path];
                v.sort_by(|a, b| best::compare(a, b));
                self.paths = Paths::Many(Box::new(v));
                true
            }
            Paths::Many(v) => {
                let added = match v.iter_mut().find(|p| p.same_source(addr)) {
                    Some(slot) => {
                        *slot = path;
                        false
                    }
                    None => {
                        v.push(path);
                        true
                    }
                };
                v.sort_by(|a, b| best::compare(a, b));
                added
            }
        }
    }

    /// Removes the path of `source`: `None` when it had none, else `Some(now empty)`.
    fn remove(&mut self, source: Option<IpAddr>) -> Option<bool> {
        match &mut self.paths {
            Paths::One(p) => p.same_source(source).then_some(true),
            Paths::Many(v) => {
                let i = v.iter().position(|p| p.same_source(source))?;
                v.remove(i);
                if v.len() == 1 {
                    self.paths = Paths::One(v[0].clone());
                }
                Some(false)
            }
        }
    }

    fn has(&self, source: Option<IpAddr>) -> bool {
        self.paths().iter().any(|p| p.same_source(source))
    }

    /// Replaces the paths of `source` with stale copies (shared through `copies`, so one
    /// stale `Path` per original); returns whether any was found.
    fn mark_stale(
        &mut self,
        source: Option<IpAddr>,
        copies: &mut HashMap<usize, Arc<Path>, Hasher>,
    ) -> bool {
        let mut stale = |p: &mut Arc<Path>| {
            if !p.same_source(source) || p.stale {
                return false;
            }
            let copy = copies
                .entry(Arc::as_ptr(p) as usize)
                .or_insert_with(|| {
                    Arc::new(Path {
                        stale: true,
                        ..(**p).clone()
                    })
                })
                .clone();
            *p = copy;
            true
        };
        match &mut self.paths {
            Paths::One(p) => stale(p),
            Paths::Many(v) => {
                let hit = v.iter_mut().fold(false, |hit, p| stale(p) | hit);
                if hit {
                    v.sort_by(|a, b| best::compare(a, b));
                }
                hit
            }
        }
    }
}

// The table entry size is what the ingest benchmark's memory figure rests on.
const _: () = assert!(std::mem::size_of::<(Ipv4Net, Dest)>() == 24);

#[derive(PartialEq, Eq)]
struct Selection {
    source: Option<IpAddr>,
    attrs: usize,
    next_hops: SmallVec<[IpAddr; 2]>,
}

/// The outcome of [`Rib::update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsert {
    /// The selection (best path or its ECMP set) changed.
    pub changed: bool,
    /// The source had no path to this prefix before.
    pub added: bool,
}

/// A fast hasher with a per-process random seed (prefixes come from peers: a fixed
/// hash would let one pick colliding prefixes).
type Hasher = foldhash::fast::RandomState;

/// The Loc-RIB: one table per family, keyed by the compact prefix types (an `Ipv4Net`
/// is 5 octets where an `IpNet` is 18).
#[derive(Debug, Default)]
pub struct Rib {
    v4: HashMap<Ipv4Net, Dest, Hasher>,
    v6: HashMap<Ipv6Net, Dest, Hasher>,
}

/// Applies `f` to the table of `prefix`'s family with its family-specific key.
macro_rules! with_table {
    ($self:expr, $prefix:expr, |$t:ident, $k:ident| $body:expr) => {
        match $prefix {
            IpNet::V4($k) => {
                let $t = &mut $self.v4;
                $body
            }
            IpNet::V6($k) => {
                let $t = &mut $self.v6;
                $body
            }
        }
    };
}

impl Rib {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, prefix: &IpNet) -> Option<&Dest> {
        match prefix {
            IpNet::V4(k) => self.v4.get(k),
            IpNet::V6(k) => self.v6.get(k),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &Dest)> {
        self.v4
            .iter()
            .map(|(k, d)| (IpNet::V4(*k), d))
            .chain(self.v6.iter().map(|(k, d)| (IpNet::V6(*k), d)))
    }

    /// Adds or replaces the path from `path.source` to `prefix`.
    pub fn update(&mut self, prefix: IpNet, path: impl Into<Arc<Path>>) -> Upsert {
        let path = path.into();
        with_table!(self, prefix, |t, k| {
            match t.entry(k) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Dest::one(path));
                    Upsert {
                        changed: true,
                        added: true,
                    }
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let dest = e.get_mut();
                    let before = dest.selection();
                    let added = dest.upsert(path);
                    Upsert {
                        changed: dest.selection() != before,
                        added,
                    }
                }
            }
        })
    }

    /// Removes the path from `source` to `prefix`: `None` when there was none, else
    /// whether the selection changed.
    pub fn remove(&mut self, prefix: &IpNet, source: Option<IpAddr>) -> Option<bool> {
        with_table!(self, *prefix, |t, k| {
            let dest = t.get_mut(&k)?;
            let before = dest.selection();
            if dest.remove(source)? {
                t.remove(&k);
                return Some(true);
            }
            Some(dest.selection() != before)
        })
    }

    /// Removes the path from `source` to `prefix`; returns whether the selection changed.
    pub fn withdraw(&mut self, prefix: &IpNet, source: Option<IpAddr>) -> bool {
        self.remove(prefix, source).unwrap_or(false)
    }

    /// Prefixes for which `source` has a path (its Adj-RIB-In after import policy).
    pub fn prefixes_from(&self, source: Option<IpAddr>) -> Vec<IpNet> {
        self.iter()
            .filter(|(_, d)| d.has(source))
            .map(|(n, _)| n)
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
        let mut copies = HashMap::default();
        let mut changed = Vec::new();
        let mut visit = |n: IpNet, d: &mut Dest| {
            let before = d.selection();
            if d.mark_stale(source, &mut copies) && d.selection() != before {
                changed.push(n);
            }
        };
        for (k, d) in self.v4.iter_mut() {
            visit(IpNet::V4(*k), d);
        }
        for (k, d) in self.v6.iter_mut() {
            visit(IpNet::V6(*k), d);
        }
        changed
    }

    /// Removes the paths from `source` still stale; returns the changed prefixes.
    pub fn sweep_stale(&mut self, source: Option<IpAddr>) -> Vec<IpNet> {
        let stale: Vec<IpNet> = self
            .iter()
            .filter(|(_, d)| d.paths().iter().any(|p| p.same_source(source) && p.stale))
            .map(|(n, _)| n)
            .collect();
        stale
            .into_iter()
            .filter(|n| self.withdraw(n, source))
            .collect()
    }
}

#[cfg(test)]
mod tests;
