//! Pushes the IR into the kernel over netlink: a full build replaces the table in one
//! transaction (add, delete, add again — so a restart never opens a window where an
//! isolated pod is unprotected); an update sends only what a [`Delta`] names (set
//! elements, the chains of changed policies and endpoints), also as one transaction.
//!
//! Drift: every commit bumps the netns's ruleset generation, so "the generation is the one
//! our last commit produced" proves nobody touched anything; when it moved, the table's
//! chains, rule counts and sets are read back and compared with what was applied.

use std::collections::{BTreeMap, BTreeSet};

use super::encode;
use super::model::Ruleset;
use super::netlink::{self, NFPROTO_INET, NLM_F_DUMP, NetlinkError, NfSocket, attr_str, attrs};
use super::render::{
    MAP_EGRESS, MAP_INGRESS, fixed_sets, pool_set_name, render, render_endpoint_chains,
    render_policy_chain, render_set, vmap_elem,
};
use crate::policy::calc::Delta;
use crate::policy::ir::{Direction, Family, Ir};
use crate::policy::names::{TABLE, endpoint_chain, endpoint_pass_chain, policy_chain};

/// What one push did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushStats {
    /// nf_tables messages in the transaction (0 when nothing changed).
    pub messages: usize,
    /// Bytes sent.
    pub bytes: usize,
    /// The whole table was (re)built.
    pub full: bool,
}

/// The nftables dataplane: one netlink socket and a mirror of what it applied.
pub struct NftDataplane {
    sock: NfSocket,
    /// Structure last committed (set elements are not mirrored); `None` before the first
    /// commit or after a failure, which forces a full build.
    applied: Option<Ruleset>,
    generation: Option<u32>,
    next_set_id: u32,
}

impl NftDataplane {
    /// Opens the netlink socket in the calling thread's network namespace.
    pub fn new() -> Result<Self, NetlinkError> {
        Ok(NftDataplane {
            sock: NfSocket::open()?,
            applied: None,
            generation: None,
            next_set_id: 1,
        })
    }

    fn set_id(&mut self) -> u32 {
        self.next_set_id = self.next_set_id.wrapping_add(1);
        self.next_set_id
    }

    /// Replaces the table with the rendering of `ir`, atomically.
    pub fn replace_all(&mut self, ir: &Ir) -> Result<PushStats, NetlinkError> {
        let rs = render(ir);
        let mut b = self.sock.batch();
        encode::new_table(&mut b);
        encode::del_table(&mut b);
        encode::new_table(&mut b);
        // Chains first (vmap elements jump to them), then sets, then rules.
        for chain in rs.chains.values() {
            encode::new_chain(&mut b, chain);
        }
        for set in rs.sets.values() {
            let id = self.set_id();
            encode::new_set(&mut b, set, id);
        }
        for chain in rs.chains.values() {
            encode::add_rules(&mut b, chain);
        }
        let stats = PushStats {
            messages: b.messages(),
            bytes: b.w.len(),
            full: true,
        };
        self.applied = None;
        self.sock.commit(b)?;
        self.generation = Some(self.sock.generation()?);
        let mut mirror = rs;
        for set in mirror.sets.values_mut() {
            set.elements.clear();
        }
        self.applied = Some(mirror);
        Ok(stats)
    }

    /// Applies what `delta` says changed; `ir` is the IR after the change. Falls back to
    /// a full build when nothing was applied yet or the update is refused (drift).
    pub fn apply(&mut self, ir: &Ir, delta: &Delta) -> Result<PushStats, NetlinkError> {
        if delta.reset || self.applied.is_none() {
            return self.replace_all(ir);
        }
        if delta.is_empty() {
            return Ok(PushStats::default());
        }
        match self.apply_incremental(ir, delta) {
            Ok(stats) => Ok(stats),
            Err(e) => {
                tracing::warn!(error = %e, "incremental nftables update refused; rebuilding the table");
                self.replace_all(ir)
            }
        }
    }

    fn apply_incremental(&mut self, ir: &Ir, delta: &Delta) -> Result<PushStats, NetlinkError> {
        let Some(mut applied) = self.applied.take() else {
            return self.replace_all(ir);
        };
        let mut b = self.sock.batch();

        // Chains that may change.
        let mut names: BTreeSet<String> = BTreeSet::new();
        for key in &delta.policies {
            for dir in Direction::BOTH {
                names.insert(policy_chain(key, dir));
            }
        }
        for iface in &delta.endpoints {
            for dir in Direction::BOTH {
                names.insert(endpoint_chain(iface, dir));
                names.insert(endpoint_pass_chain(iface, dir));
            }
        }
        let mut wanted: BTreeMap<String, super::model::NftChain> = BTreeMap::new();
        for key in &delta.policies {
            for dir in Direction::BOTH {
                if let Some(c) = render_policy_chain(ir, key, dir) {
                    wanted.insert(c.name.clone(), c);
                }
            }
        }
        for iface in &delta.endpoints {
            if let Some(ep) = ir.endpoints.get(iface) {
                for c in render_endpoint_chains(ir, iface, ep) {
                    wanted.insert(c.name.clone(), c);
                }
            }
        }

        // 1. New sets, new chains.
        for name in &delta.sets_added {
            if let Some(set) = ir.sets.get(name) {
                let set = render_set(name, set);
                let id = self.set_id();
                encode::new_set(&mut b, &set, id);
                applied.sets.insert(
                    name.clone(),
                    super::model::NftSet {
                        elements: Vec::new(),
                        ..set
                    },
                );
            }
        }
        for (name, chain) in &wanted {
            if !applied.chains.contains_key(name) {
                encode::new_chain(&mut b, chain);
            }
        }
        // 2. Elements of existing sets.
        for (name, elems) in &delta.elements_removed {
            if let Some(set) = applied.sets.get(name) {
                let elems: Vec<_> = elems.iter().map(super::render::element).collect();
                encode::set_elements(&mut b, name, set.interval, &elems, false);
            }
        }
        for (name, elems) in &delta.elements_added {
            if let Some(set) = applied.sets.get(name) {
                let elems: Vec<_> = elems.iter().map(super::render::element).collect();
                encode::set_elements(&mut b, name, set.interval, &elems, true);
            }
        }
        if delta.nat {
            for family in Family::BOTH {
                for nat in [false, true] {
                    let name = pool_set_name(family, nat);
                    if let Some(set) = fixed_sets(ir).into_iter().find(|s| s.name == name) {
                        encode::flush_set(&mut b, &name);
                        encode::set_elements(&mut b, &name, true, &set.elements, true);
                    }
                }
            }
        }
        // 3. Rules of new and changed chains.
        for (name, chain) in &wanted {
            match applied.chains.get(name) {
                Some(old) if old.rules == chain.rules => {}
                Some(_) => {
                    encode::flush_chain(&mut b, name);
                    encode::add_rules(&mut b, chain);
                }
                None => encode::add_rules(&mut b, chain),
            }
        }
        // 4. Verdict maps.
        for iface in &delta.endpoints {
            let present = ir.endpoints.contains_key(iface);
            let had = applied
                .chains
                .contains_key(&endpoint_chain(iface, Direction::Ingress));
            for (map, dir) in [
                (MAP_INGRESS, Direction::Ingress),
                (MAP_EGRESS, Direction::Egress),
            ] {
                if present && !had {
                    encode::set_elements(&mut b, map, false, &[vmap_elem(iface, dir)], true);
                } else if !present && had {
                    encode::set_elements(&mut b, map, false, &[vmap_elem(iface, dir)], false);
                }
            }
        }
        // 5. Chains no longer wanted: endpoint chains before the pass chains they go to,
        // both before the policy chains they jump to.
        let mut gone: Vec<&String> = names
            .iter()
            .filter(|n| !wanted.contains_key(*n) && applied.chains.contains_key(*n))
            .collect();
        gone.sort_by_key(|n| {
            if n.starts_with("ing-") || n.starts_with("egr-") {
                0
            } else if n.starts_with("ingk-") || n.starts_with("egrk-") {
                1
            } else {
                2
            }
        });
        for name in &gone {
            encode::del_chain(&mut b, name);
        }
        // 6. Sets no longer used.
        for name in &delta.sets_removed {
            if applied.sets.remove(name).is_some() {
                encode::del_set(&mut b, name);
            }
        }

        let stats = PushStats {
            messages: b.messages(),
            bytes: b.w.len(),
            full: false,
        };
        if b.messages() == 0 {
            self.applied = Some(applied);
            return Ok(stats);
        }
        self.sock.commit(b)?;
        self.generation = Some(self.sock.generation()?);
        for name in gone {
            applied.chains.remove(name);
        }
        for (name, chain) in wanted {
            applied.chains.insert(name, chain);
        }
        self.applied = Some(applied);
        Ok(stats)
    }

    /// Whether the kernel still holds what was applied: free when nobody committed
    /// anything since; otherwise the table's structure is read back and compared.
    pub fn in_sync(&mut self) -> Result<bool, NetlinkError> {
        let Some(applied) = &self.applied else {
            return Ok(false);
        };
        let generation = self.sock.generation()?;
        if Some(generation) == self.generation {
            return Ok(true);
        }
        let live = read_structure(&mut self.sock)?;
        let expected = Structure {
            chains: applied
                .chains
                .iter()
                .map(|(n, c)| (n.clone(), c.rules.len()))
                .collect(),
            sets: applied.sets.keys().cloned().collect(),
        };
        if live == expected {
            self.generation = Some(generation);
            Ok(true)
        } else {
            tracing::warn!("nftables table {TABLE} drifted from what felix applied");
            Ok(false)
        }
    }

    /// Forgets what was applied, so the next push rebuilds the table.
    pub fn invalidate(&mut self) {
        self.applied = None;
    }
}

/// Names and rule counts of the table's chains, names of its sets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Structure {
    pub chains: BTreeMap<String, usize>,
    pub sets: BTreeSet<String>,
}

/// Reads the structure of table `inet twill` back from the kernel.
pub fn read_structure(sock: &mut NfSocket) -> Result<Structure, NetlinkError> {
    let mut s = Structure::default();
    let table_attr = |w: &mut netlink::Writer| w.str(1, TABLE);
    let chains = match sock.request(netlink::msg::GETCHAIN, NLM_F_DUMP, NFPROTO_INET, |_| {}) {
        Ok(c) => c,
        Err(NetlinkError::Refused { .. }) => return Ok(s),
        Err(e) => return Err(e),
    };
    for m in chains {
        let a = attrs(&m.payload);
        let table = a.iter().find(|(t, _)| *t == 1).map(|(_, v)| attr_str(v));
        let name = a.iter().find(|(t, _)| *t == 3).map(|(_, v)| attr_str(v));
        if let (Some(table), Some(name)) = (table, name)
            && table == TABLE
        {
            s.chains.insert(name, 0);
        }
    }
    if s.chains.is_empty() {
        return Ok(s);
    }
    for m in sock.request(netlink::msg::GETRULE, NLM_F_DUMP, NFPROTO_INET, table_attr)? {
        let a = attrs(&m.payload);
        let table = a.iter().find(|(t, _)| *t == 1).map(|(_, v)| attr_str(v));
        let chain = a.iter().find(|(t, _)| *t == 2).map(|(_, v)| attr_str(v));
        if let (Some(table), Some(chain)) = (table, chain)
            && table == TABLE
        {
            *s.chains.entry(chain).or_default() += 1;
        }
    }
    for m in sock.request(netlink::msg::GETSET, NLM_F_DUMP, NFPROTO_INET, table_attr)? {
        let a = attrs(&m.payload);
        let table = a.iter().find(|(t, _)| *t == 1).map(|(_, v)| attr_str(v));
        let name = a.iter().find(|(t, _)| *t == 2).map(|(_, v)| attr_str(v));
        if let (Some(table), Some(name)) = (table, name)
            && table == TABLE
        {
            s.sets.insert(name);
        }
    }
    Ok(s)
}
