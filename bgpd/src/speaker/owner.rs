//! The owner task: the only code that mutates peers, the RIB and the Adj-RIBs-Out. It
//! reacts to commands, session events and a one-second tick; it never awaits I/O.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::export::{self, ExportCtx};
use super::kernel_route::{applied, kernel_route};
use super::peer::{Live, Peer};
use super::types::{Communities, Event, SpeakerStats};
use super::{Command, SpeakerConfig};
use crate::bfd::{self, Bfd, BfdEvent, PeerBfd, SessionStatus};
use crate::config::PeerConfig;
use crate::fsm::{DownReason, FsmConfig, LocalSide, Negotiated, State, cease};
use crate::kernel::{KernelRoute, KernelSync};
use crate::metrics::Metrics;
use crate::packet::{Notification, Origin, PathAttributes};
use crate::policy::Filter;
use crate::rib::{AdjRibOut, Path, Rib, Source};
use crate::session::{self, SessionCmd, SessionEvent, SessionKey, sockopt};

/// Results of work the owner hands off (it never awaits I/O itself).
pub(super) enum Aux {
    /// The interface to a peer, for its link-local next hops.
    Oif { key: SessionKey, oif: Option<u32> },
    /// An unnumbered peer's neighbour, found on its interface.
    Neighbour(crate::unnumbered::Found),
}

pub(super) struct Owner {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub cluster_id: Option<Ipv4Addr>,
    pub(super) listener: Option<Arc<TcpListener>>,
    pub(super) kernel: Option<KernelSync>,
    /// Prefixes whose kernel route is to be recomputed and handed to kernel sync, paced
    /// by its backlog: the routes are built from the RIB when sent, so a prefix that
    /// changes many times while the kernel is busy costs one entry here, not one queued
    /// route per change.
    pub(super) kernel_queue: VecDeque<IpNet>,
    /// Routes of ours found in the kernel at start, until reconciled.
    pub(super) kernel_existing: Option<Vec<KernelRoute>>,
    pub(super) started: Instant,
    pub(super) events: broadcast::Sender<Event>,
    pub metrics: Arc<Metrics>,
    pub rib: Rib,
    pub peers: HashMap<IpAddr, Peer>,
    pub(super) filters: BTreeMap<String, Filter>,
    pub(super) local_source: Arc<Source>,
    pub(super) local_attrs: Arc<PathAttributes>,
    pub(super) epoch: u64,
    ev_tx: mpsc::Sender<SessionEvent>,
    ev_rx: Option<mpsc::Receiver<SessionEvent>>,
    aux_tx: mpsc::UnboundedSender<Aux>,
    aux_rx: Option<mpsc::UnboundedReceiver<Aux>>,
    pub stats: SpeakerStats,
    /// The BFD driver, started with the first peer that wants BFD.
    bfd: Option<Bfd>,
    bfd_tx: mpsc::UnboundedSender<BfdEvent>,
    bfd_rx: Option<mpsc::UnboundedReceiver<BfdEvent>>,
    /// The last BFD status of each peer with BFD on.
    pub(super) bfd_status: HashMap<IpAddr, SessionStatus>,
    /// Peers whose BFD session went down: their BGP session stays down (no connect, no
    /// accept) until BFD is Up again.
    pub(super) bfd_held: HashSet<IpAddr>,
    pub(super) unnumbered: super::unnumbered_peers::Unnumbered,
}

impl Owner {
    pub(super) fn new(
        cfg: SpeakerConfig,
        listener: Option<Arc<TcpListener>>,
        kernel: Option<(KernelSync, Vec<KernelRoute>)>,
        events: broadcast::Sender<Event>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (ev_tx, ev_rx) = mpsc::channel(128);
        let (aux_tx, aux_rx) = mpsc::unbounded_channel();
        let (bfd_tx, bfd_rx) = mpsc::unbounded_channel();
        let (kernel, existing) = match kernel {
            Some((k, e)) => (Some(k), (!e.is_empty()).then_some(e)),
            None => (None, None),
        };
        let mut o = Self {
            asn: cfg.asn,
            router_id: cfg.router_id,
            cluster_id: cfg.cluster_id,
            listener,
            kernel,
            kernel_queue: VecDeque::new(),
            kernel_existing: existing,
            started: Instant::now(),
            events,
            metrics,
            rib: Rib::new(),
            peers: HashMap::new(),
            filters: cfg.filters.clone(),
            local_source: Arc::new(Source {
                addr: None,
                router_id: cfg.router_id,
                asn: cfg.asn,
                ebgp: false,
                rr_client: false,
            }),
            local_attrs: Arc::new(PathAttributes {
                origin: Some(Origin::Igp),
                ..Default::default()
            }),
            epoch: 0,
            ev_tx,
            ev_rx: Some(ev_rx),
            aux_tx,
            aux_rx: Some(aux_rx),
            stats: SpeakerStats::default(),
            bfd: None,
            bfd_tx,
            bfd_rx: Some(bfd_rx),
            bfd_status: HashMap::new(),
            bfd_held: HashSet::new(),
            unnumbered: Default::default(),
        };
        o.originate(cfg.originate, Communities::default());
        o.set_peers(cfg.peers, cfg.filters);
        o
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let (Some(mut ev_rx), Some(mut aux_rx), Some(mut bfd_rx)) =
            (self.ev_rx.take(), self.aux_rx.take(), self.bfd_rx.take())
        else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let kernel = self.kernel.clone();
        loop {
            let kernel_waiting = !self.kernel_queue.is_empty();
            tokio::select! {
                () = applied(&kernel), if kernel_waiting => self.feed_kernel(false),
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(Command::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(c) => self.command(c),
                },
                Some(ev) = ev_rx.recv() => self.session_event(ev),
                Some(aux) = aux_rx.recv() => self.aux(aux),
                Some(ev) = bfd_rx.recv() => self.bfd_event(ev),
                _ = tick.tick() => self.tick(),
            }
        }
    }

    pub(super) fn export_ctx(&self) -> ExportCtx {
        ExportCtx {
            asn: self.asn,
            cluster_id: self.cluster_id,
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Accepted(stream, addr) => {
                let ip = session::unmap(addr.ip());
                match self.peers.get(&ip) {
                    Some(p) if !p.shut && p.cfg.held.is_none() && !self.bfd_held.contains(&ip) => {
                        p.session.send(SessionCmd::Accepted(stream));
                    }
                    _ => tracing::debug!(%ip, "connection from an unknown peer refused"),
                }
            }
            Command::SetPeers(peers, filters) => self.set_peers(peers, filters),
            Command::Originate(prefixes, communities) => self.originate(prefixes, communities),
            Command::Withdraw(prefixes) => {
                let changed: Vec<IpNet> = prefixes
                    .into_iter()
                    .map(|p| p.trunc())
                    .filter(|p| self.rib.withdraw(p, None))
                    .collect();
                self.propagate(&changed);
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_status());
            }
            Command::Routes(q, reply) => {
                let _ = reply.send(self.routes(&q));
            }
            Command::Stats(reply) => {
                let mut s = self.stats;
                s.loc_rib_prefixes = self.rib.len();
                let _ = reply.send(s);
            }
            Command::KernelFlush(reply) => match self.kernel.clone() {
                None => {
                    let _ = reply.send(());
                }
                Some(k) => {
                    self.feed_kernel(true);
                    tokio::spawn(async move {
                        if let Err(e) = k.flush().await {
                            tracing::warn!(error = %e, "kernel refused routes");
                        }
                        let _ = reply.send(());
                    });
                }
            },
            Command::KernelResync => self.resync_kernel(),
            Command::Shutdown(_) => {}
        }
    }

    fn originate(&mut self, prefixes: Vec<IpNet>, communities: Communities) {
        // One attribute set per call: the prefixes of a call pack into the same UPDATEs.
        let attrs = if communities.is_empty() {
            self.local_attrs.clone()
        } else {
            let mut a = (*self.local_attrs).clone();
            a.communities = communities.standard;
            a.large_communities = communities.large;
            Arc::new(a)
        };
        let mut changed = Vec::new();
        for p in prefixes {
            let p = p.trunc();
            let next_hop = match p {
                IpNet::V4(_) => IpAddr::from(Ipv4Addr::UNSPECIFIED),
                IpNet::V6(_) => IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
            };
            let path = Path {
                source: self.local_source.clone(),
                attrs: attrs.clone(),
                next_hop,
                stale: false,
            };
            if self.rib.update(p, path).changed {
                changed.push(p);
            }
        }
        self.propagate(&changed);
    }

    pub(super) fn resolve(&self, names: &[String]) -> Vec<Filter> {
        names
            .iter()
            .filter_map(|n| self.filters.get(n).cloned())
            .collect()
    }

    pub(super) fn aux_sender(&self) -> mpsc::UnboundedSender<Aux> {
        self.aux_tx.clone()
    }

    pub(super) fn set_peers(
        &mut self,
        configured: Vec<PeerConfig>,
        filters: BTreeMap<String, Filter>,
    ) {
        let peers = self.resolve_peers(configured);
        let filters_changed = filters != self.filters;
        self.filters = filters;
        let wanted: HashMap<IpAddr, PeerConfig> =
            peers.into_iter().map(|p| (p.address, p)).collect();
        let gone: Vec<IpAddr> = self
            .peers
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for a in gone {
            self.remove_peer(a, cease::PEER_DECONFIGURED);
        }
        for (addr, cfg) in wanted {
            let Some(p) = self.peers.get(&addr) else {
                self.add_peer(cfg);
                continue;
            };
            let uses_filters = !cfg.import.is_empty() || !cfg.export.is_empty();
            if p.cfg == cfg && !(filters_changed && uses_filters) {
                continue;
            }
            if same_session(&p.cfg, &cfg) {
                // Only policy changed: the session stays (route refresh / re-export).
                self.change_policy(addr, cfg);
                continue;
            }
            self.remove_peer(addr, cease::OTHER_CONFIG_CHANGE);
            self.add_peer(cfg);
        }
        self.sync_bfd();
    }

    /// Hands the BFD driver the peers that want BFD; releases held peers that no longer do.
    fn sync_bfd(&mut self) {
        let want: Vec<PeerBfd> = self
            .peers
            .values()
            .filter_map(|p| {
                let b = p.cfg.bfd_enabled()?;
                Some(PeerBfd {
                    peer: p.cfg.address,
                    local: p.cfg.source_address,
                    session: bfd::driver::session_config(
                        b.receive_interval_ms,
                        b.transmit_interval_ms,
                        b.detect_multiplier,
                        b.passive,
                    ),
                    multihop: b.multihop,
                    min_ttl: b.minimum_ttl,
                })
            })
            .collect();
        self.bfd_status
            .retain(|a, _| want.iter().any(|w| w.peer == *a));
        let released: Vec<IpAddr> = self
            .bfd_held
            .iter()
            .filter(|a| !want.iter().any(|w| w.peer == **a))
            .copied()
            .collect();
        for a in released {
            self.release_bfd_hold(a);
        }
        if want.is_empty() && self.bfd.is_none() {
            return;
        }
        self.bfd
            .get_or_insert_with(|| Bfd::start(self.bfd_tx.clone(), self.metrics.clone()))
            .set(want);
    }

    /// A BFD session changed: record it; Up → Down takes BGP down and holds it (RFC 5882
    /// §3.2), unless the peer said AdminDown (a deliberate stop, not a failure); Up again
    /// lets BGP re-establish.
    fn bfd_event(&mut self, ev: BfdEvent) {
        let Some(p) = self.peers.get(&ev.peer) else {
            return;
        };
        if p.cfg.bfd_enabled().is_none() {
            return;
        }
        self.bfd_status.insert(ev.peer, ev.status);
        match ev.transition {
            Some((bfd::State::Up, bfd::State::Down))
                if ev.status.remote_state != bfd::State::AdminDown =>
            {
                tracing::warn!(peer = %ev.peer, diag = ev.status.diag.name(),
                    "BFD down: closing the BGP session");
                self.metrics.error("bfd_down");
                let cfg = p.cfg.clone();
                // Routes go now (no graceful-restart stale keeping: RFC 5882 §4.3.2 treats
                // a BFD failure as a real one); the session is replaced by one that neither
                // connects nor accepts until BFD is Up.
                self.remove_peer(ev.peer, cease::BFD_DOWN);
                self.bfd_held.insert(ev.peer);
                self.add_peer(cfg);
                if let Some(p) = self.peers.get_mut(&ev.peer) {
                    p.last_error = Some(format!("BFD down ({})", ev.status.diag.name()));
                }
            }
            Some((_, bfd::State::Up)) if self.bfd_held.contains(&ev.peer) => {
                tracing::info!(peer = %ev.peer, "BFD up: BGP may re-establish");
                self.release_bfd_hold(ev.peer);
            }
            _ => {}
        }
    }

    fn release_bfd_hold(&mut self, addr: IpAddr) {
        if !self.bfd_held.remove(&addr) {
            return;
        }
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        let (cfg, last_error) = (p.cfg.clone(), p.last_error.clone());
        self.remove_peer(addr, cease::BFD_DOWN);
        self.add_peer(cfg);
        if let Some(p) = self.peers.get_mut(&addr) {
            p.last_error = last_error;
        }
    }

    pub(super) fn add_peer(&mut self, cfg: PeerConfig) {
        self.epoch += 1;
        let key = SessionKey {
            peer: cfg.address,
            epoch: self.epoch,
        };
        if let Some(l) = &self.listener {
            let v6 = l.local_addr().is_ok_and(|a| a.is_ipv6());
            if let Err(e) = sockopt::set_md5_key(
                l.as_ref(),
                v6,
                cfg.address,
                cfg.password.as_deref().map(str::as_bytes),
            ) && cfg.password.is_some()
            {
                tracing::warn!(peer = %cfg.address, error = %e, "TCP-MD5 key on the listener");
            }
            // GTSM: a peer that connects to us drops our SYN-ACK unless it has TTL 255.
            // (Incoming TTLs are checked per peer, on the accepted socket.)
            if cfg.ttl_security.is_some()
                && let Err(e) = sockopt::set_max_ttl(l.as_ref(), v6)
            {
                tracing::warn!(error = %e, "TTL 255 on the listener for GTSM");
            }
        }
        let fsm = FsmConfig {
            local: LocalSide {
                local_as: self.asn,
                router_id: self.router_id,
                peer_as: cfg.asn,
                hold_time: cfg.hold_time,
                families: cfg.families.clone(),
                graceful_restart: cfg
                    .graceful_restart
                    .enabled
                    .then_some(cfg.graceful_restart.restart_time),
                // Routes of a previous run in the kernel: we restarted and kept forwarding.
                restarting: self.kernel_existing.is_some(),
                forwarding_preserved: self.kernel.is_some(),
                extended_next_hop: cfg.extended_next_hop,
            },
            passive: cfg.passive,
            connect_retry: Duration::from_secs(u64::from(cfg.connect_retry.unwrap_or(5).max(1))),
            max_retry: Duration::from_secs(60),
        };
        if let Some(reason) = &cfg.held {
            tracing::warn!(peer = %cfg.address, %reason, "peer held: no session until resolved");
        }
        let handle = session::spawn(
            key,
            fsm,
            session::connect_params(&cfg),
            self.ev_tx.clone(),
            // Held by its configuration or by BFD: the session is not started (the owner
            // also refuses the peer's connections) until the peer is re-added.
            cfg.held.is_none() && !self.bfd_held.contains(&cfg.address),
        );
        let peer = Peer {
            import: self.resolve(&cfg.import),
            export: self.resolve(&cfg.export),
            cfg,
            session: handle,
            state: State::Idle,
            since: SystemTime::now(),
            live: None,
            out: AdjRibOut::default(),
            accepted: 0,
            rejected: HashSet::default(),
            last_error: None,
            stale_until: None,
            shut: false,
        };
        self.peers.insert(peer.cfg.address, peer);
    }

    pub(super) fn remove_peer(&mut self, addr: IpAddr, subcode: u8) {
        if let Some(p) = self.peers.remove(&addr) {
            p.session.send(SessionCmd::Stop(Notification {
                code: crate::fsm::code::CEASE,
                subcode,
                data: Vec::new(),
            }));
            // Let the session flush its NOTIFICATION before the handle aborts it.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                drop(p);
            });
            let changed = self.rib.remove_source(Some(addr));
            self.propagate(&changed);
        }
    }

    fn session_event(&mut self, ev: SessionEvent) {
        let key = match &ev {
            SessionEvent::State(k, _)
            | SessionEvent::Update(k, _)
            | SessionEvent::Withdraw(k, _)
            | SessionEvent::RouteRefresh(k, _)
            | SessionEvent::Error(k, _) => *k,
            SessionEvent::Established { key, .. } | SessionEvent::Down { key, .. } => *key,
        };
        if self.peers.get(&key.peer).map(|p| p.session.key) != Some(key) {
            return; // from a session that was replaced
        }
        match ev {
            SessionEvent::State(_, state) => {
                if let Some(p) = self.peers.get_mut(&key.peer) {
                    p.state = state;
                    p.since = SystemTime::now();
                }
                if self.events.receiver_count() > 0 {
                    let _ = self.events.send(Event::PeerState {
                        peer: key.peer,
                        state,
                    });
                }
            }
            SessionEvent::Established {
                negotiated,
                local_addr,
                ..
            } => self.established(key.peer, *negotiated, local_addr),
            SessionEvent::Down {
                reason,
                was_established,
                ..
            } => self.down(key.peer, reason, was_established),
            SessionEvent::Update(_, u) => {
                self.stats.updates_in += 1;
                self.metrics.update_in();
                let changed = self.ingest(key.peer, u);
                self.propagate(&changed);
            }
            SessionEvent::Withdraw(_, prefixes) => {
                let changed = self.withdraw_from(key.peer, &prefixes);
                self.propagate(&changed);
            }
            SessionEvent::RouteRefresh(_, _) => self.send_full_table(key.peer),
            SessionEvent::Error(_, kind) => self.metrics.error(kind),
        }
    }

    fn aux(&mut self, aux: Aux) {
        match aux {
            Aux::Neighbour(f) => self.neighbour_found(f),
            Aux::Oif { key, oif } => {
                let Some(p) = self.peers.get_mut(&key.peer) else {
                    return;
                };
                if p.session.key != key {
                    return;
                }
                let Some(live) = p.live.as_mut() else { return };
                live.oif = oif;
                // Routes through this peer's link-local next hops can go to the kernel now.
                let via_ll: Vec<IpNet> = self
                    .rib
                    .iter()
                    .filter(|(_, d)| {
                        d.paths().iter().any(|p| {
                            p.source.addr == Some(key.peer)
                                && crate::kernel::is_link_local(&p.next_hop)
                        })
                    })
                    .map(|(n, _)| n)
                    .collect();
                self.propagate(&via_ll);
            }
        }
    }

    fn established(&mut self, addr: IpAddr, negotiated: Negotiated, local_addr: IpAddr) {
        let (asn, cluster) = (self.asn, self.cluster_id);
        // An unnumbered peer is reached through its interface by definition.
        let interface_oif = self
            .peers
            .get(&addr)
            .and_then(|p| p.cfg.interface.as_deref())
            .and_then(|n| crate::unnumbered::interface_index(n).ok());
        if let Some(k) = self.kernel.clone()
            && interface_oif.is_none()
            && let Some(key) = self.peers.get(&addr).map(|p| p.session.key)
        {
            let tx = self.aux_tx.clone();
            tokio::spawn(async move {
                let oif = match k.oif_for(addr).await {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::warn!(peer = %addr, error = %e, "no interface for the peer");
                        None
                    }
                };
                let _ = tx.send(Aux::Oif { key, oif });
            });
        }
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let source = Arc::new(Source {
            addr: Some(addr),
            router_id: negotiated.peer_id,
            asn: p.cfg.asn,
            ebgp: p.cfg.asn != asn,
            rr_client: p.cfg.route_reflector_client && cluster.is_some(),
        });
        let eor_pending = negotiated.families.iter().copied().collect();
        let addrs = super::link::interface_addrs();
        p.live = Some(Live {
            negotiated,
            local_addr,
            source,
            eor_pending,
            oif: interface_oif,
            link_local: super::link::shared_link_local(&addrs, local_addr, addr),
            link_global_v6: super::link::shared_link_global_v6(&addrs, local_addr, addr),
        });
        p.out.clear();
        self.send_full_table(addr);
    }

    fn down(&mut self, addr: IpAddr, reason: DownReason, was_established: bool) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let count_as_error = !matches!(reason, DownReason::Stopped);
        if count_as_error {
            p.last_error = Some(reason.to_string());
            self.metrics.error(match reason {
                DownReason::HoldTimerExpired => "hold_timer_expired",
                DownReason::NotificationSent(_) => "notification_sent",
                DownReason::NotificationReceived(_) => "notification_received",
                DownReason::TcpFailed => "connection_closed",
                DownReason::PeerRestarted => "peer_restarted",
                DownReason::Stopped => "stopped",
            });
        }
        let live = p.live.take();
        p.out.clear();
        if !was_established {
            return;
        }
        // RFC 4724 §4.2: keep the routes of a restarting peer (one that announced the
        // capability), marked stale, when the session ended without a NOTIFICATION.
        let restart = live
            .as_ref()
            .and_then(|l| l.negotiated.graceful_restart.as_ref())
            .filter(|_| {
                matches!(
                    reason,
                    DownReason::TcpFailed
                        | DownReason::HoldTimerExpired
                        | DownReason::PeerRestarted
                )
            })
            .map(|gr| gr.restart_time);
        let changed = match restart {
            Some(secs) if secs > 0 => {
                p.stale_until = Some(Instant::now() + Duration::from_secs(u64::from(secs)));
                self.rib.mark_stale(Some(addr))
            }
            _ => {
                p.accepted = 0;
                p.rejected.clear();
                self.rib.remove_source(Some(addr))
            }
        };
        self.propagate(&changed);
    }

    fn withdraw_from(&mut self, addr: IpAddr, prefixes: &[IpNet]) -> Vec<IpNet> {
        let Some(p) = self.peers.get_mut(&addr) else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        for n in prefixes {
            if let Some(c) = self.rib.remove(n, Some(addr)) {
                p.accepted = p.accepted.saturating_sub(1);
                if c {
                    changed.push(*n);
                }
            }
            if !p.rejected.is_empty() {
                p.rejected.remove(n);
            }
        }
        changed
    }

    /// Stale paths of `addr` are done with (End-of-RIB, or the restart time passed).
    pub(super) fn sweep_stale(&mut self, addr: IpAddr) {
        let changed = self.rib.sweep_stale(Some(addr));
        if let Some(p) = self.peers.get_mut(&addr) {
            p.stale_until = None;
            p.accepted = self.rib.prefixes_from(Some(addr)).len() as u64;
        }
        self.propagate(&changed);
    }

    pub(super) fn send_full_table(&mut self, addr: IpAddr) {
        let ctx = self.export_ctx();
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        p.out.clear();
        let all: Vec<IpNet> = self.rib.iter().map(|(n, _)| n).collect();
        let mut sent = 0;
        if let Some(bytes) = export::export(&ctx, &self.rib, p, &all) {
            sent += 1;
            self.metrics.update_out();
            p.session.send(SessionCmd::Send(bytes));
        }
        if let Some(eor) = export::end_of_rib(p) {
            p.session.send(SessionCmd::Send(eor));
        }
        self.stats.updates_out += sent;
    }

    /// Pushes the changed prefixes to the kernel, the event stream and every peer.
    pub(super) fn propagate(&mut self, changed: &[IpNet]) {
        if changed.is_empty() {
            return;
        }
        if self.kernel.is_some() {
            self.kernel_queue.extend(changed.iter().copied());
            self.feed_kernel(false);
        }
        if self.events.receiver_count() > 0 {
            for n in changed {
                let next_hops = kernel_route(&self.rib, &self.peers, n)
                    .map(|r| r.gateways())
                    .unwrap_or_default();
                let _ = self.events.send(Event::Route {
                    prefix: *n,
                    next_hops,
                });
            }
        }
        let ctx = self.export_ctx();
        for p in self.peers.values_mut() {
            if p.live.is_none() {
                continue;
            }
            if let Some(bytes) = export::export(&ctx, &self.rib, p, changed) {
                self.stats.updates_out += 1;
                self.metrics.update_out();
                p.session.send(SessionCmd::Send(bytes));
            }
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let expired: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.stale_until.is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for a in expired {
            tracing::info!(peer = %a, "graceful restart time over: dropping stale routes");
            self.sweep_stale(a);
        }
        self.maybe_reconcile_kernel();
        self.metrics.observe(self.peers.values().map(|p| {
            (
                p.cfg.address,
                p.state,
                p.accepted + p.rejected.len() as u64,
                p.accepted,
                p.out.len() as u64,
            )
        }));
    }

    async fn shutdown(&mut self) {
        for p in self.peers.values() {
            p.session.send(SessionCmd::Stop(Notification {
                code: crate::fsm::code::CEASE,
                subcode: cease::ADMIN_SHUTDOWN,
                data: Vec::new(),
            }));
        }
        // Give the writers a moment to put the NOTIFICATIONs on the wire.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.feed_kernel(true);
        if let Some(k) = &self.kernel {
            let _ = k.flush().await;
        }
    }
}

/// Whether two configurations of a peer differ only in policy (import/export filters), so
/// that the session can stay up through the change.
fn same_session(a: &PeerConfig, b: &PeerConfig) -> bool {
    let policy_free = |c: &PeerConfig| PeerConfig {
        import: Vec::new(),
        export: Vec::new(),
        // BFD timers change live in the BFD session; the BGP session is not involved.
        bfd: None,
        ..c.clone()
    };
    policy_free(a) == policy_free(b)
}
