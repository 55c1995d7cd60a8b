//! Unnumbered peers between the `Speaker` API and the owner: the owner only ever sees
//! peers with an address. This keeps the latest peer list, runs neighbour discovery on the
//! interfaces of its unnumbered peers, and hands the owner the resolved list again
//! whenever a neighbour is found (see [`crate::unnumbered`]).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::Command;
use crate::config::PeerConfig;
use crate::policy::Filter;
use crate::task::TaskGuard;
use crate::unnumbered::{self, Discovery, Found};

#[derive(Default)]
struct State {
    peers: Vec<PeerConfig>,
    filters: BTreeMap<String, Filter>,
    found: HashMap<String, Ipv6Addr>,
    running: HashMap<String, Discovery>,
}

pub(super) struct UnnumberedPeers {
    state: Arc<Mutex<State>>,
    found_tx: mpsc::UnboundedSender<Found>,
    _task: TaskGuard,
}

impl std::fmt::Debug for UnnumberedPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnnumberedPeers").finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl UnnumberedPeers {
    /// Resolved peer lists go to the owner through `owner`.
    pub(super) fn new(owner: mpsc::UnboundedSender<Command>) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let (found_tx, mut found_rx) = mpsc::unbounded_channel::<Found>();
        let shared = state.clone();
        let task = TaskGuard::spawn(async move {
            while let Some(f) = found_rx.recv().await {
                let cmd = {
                    let mut s = lock(&shared);
                    if s.found.get(&f.interface) == Some(&f.address) {
                        continue;
                    }
                    s.found.insert(f.interface, f.address);
                    Command::SetPeers(unnumbered::resolve(&s.peers, &s.found), s.filters.clone())
                };
                if owner.send(cmd).is_err() {
                    return;
                }
            }
        });
        Self {
            state,
            found_tx,
            _task: task,
        }
    }

    /// Records the configured peers, runs discovery on exactly their interfaces, and
    /// returns the peers the owner should run now.
    pub(super) fn set(
        &self,
        peers: Vec<PeerConfig>,
        filters: BTreeMap<String, Filter>,
    ) -> Vec<PeerConfig> {
        let mut s = lock(&self.state);
        let wanted: Vec<String> = peers.iter().filter_map(|p| p.interface.clone()).collect();
        s.running.retain(|name, _| wanted.contains(name));
        s.found.retain(|name, _| wanted.contains(name));
        for name in wanted {
            if s.running.contains_key(&name) {
                continue;
            }
            match unnumbered::spawn(&name, self.found_tx.clone()) {
                Ok(d) => {
                    s.running.insert(name, d);
                }
                Err(e) => tracing::error!(interface = %name, error = %e, "no neighbour discovery"),
            }
        }
        s.peers = peers;
        s.filters = filters;
        unnumbered::resolve(&s.peers, &s.found)
    }
}
