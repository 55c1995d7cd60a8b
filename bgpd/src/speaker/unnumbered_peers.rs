//! Unnumbered peers in the owner: the configured peer list is kept as given, neighbour
//! discovery runs on exactly the interfaces of its unnumbered peers, and the peers the
//! owner runs are the list resolved with the neighbours found so far (see
//! [`crate::unnumbered`]), resolved again whenever one is found. All in the owner task, so
//! `Speaker::set_peers` (standalone or embedded) needs nothing else.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;

use super::owner::{Aux, Owner};
use crate::config::PeerConfig;
use crate::policy::Filter;
use crate::unnumbered::{self, Discovery, Found};

/// What the owner keeps for unnumbered peers.
#[derive(Default)]
pub(super) struct Unnumbered {
    /// The peer list as configured (unnumbered peers without an address).
    configured: Vec<PeerConfig>,
    found: HashMap<String, Ipv6Addr>,
    running: HashMap<String, Discovery>,
}

impl Owner {
    /// Records the configured peers, runs discovery on exactly their interfaces, and
    /// returns the peers to run now.
    pub(super) fn resolve_peers(&mut self, configured: Vec<PeerConfig>) -> Vec<PeerConfig> {
        let wanted: Vec<String> = configured
            .iter()
            .filter_map(|p| p.interface.clone())
            .collect();
        let aux = self.aux_sender();
        let u = &mut self.unnumbered;
        u.running.retain(|name, _| wanted.contains(name));
        u.found.retain(|name, _| wanted.contains(name));
        for name in wanted {
            if u.running.contains_key(&name) {
                continue;
            }
            let tx = aux.clone();
            match unnumbered::spawn(&name, move |f| tx.send(Aux::Neighbour(f)).is_ok()) {
                Ok(d) => {
                    u.running.insert(name, d);
                }
                Err(e) => tracing::error!(interface = %name, error = %e, "no neighbour discovery"),
            }
        }
        u.configured = configured;
        unnumbered::resolve(&u.configured, &u.found)
    }

    /// A neighbour found (or changed) on an interface: its peer starts (or restarts).
    pub(super) fn neighbour_found(&mut self, f: Found) {
        let u = &mut self.unnumbered;
        if !u.running.contains_key(&f.interface) || u.found.get(&f.interface) == Some(&f.address) {
            return;
        }
        u.found.insert(f.interface, f.address);
        let (configured, filters): (Vec<PeerConfig>, BTreeMap<String, Filter>) =
            (u.configured.clone(), self.filters.clone());
        self.set_peers(configured, filters);
    }
}
