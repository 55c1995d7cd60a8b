//! The BFD driver: one task that owns every session of the speaker, their send sockets and
//! their timers, and reader tasks for the receive sockets. It demultiplexes packets to
//! sessions (§6.3: by Your Discriminator, else by source address), applies the TTL rules
//! (RFC 5881 §5: exactly 255 single-hop; RFC 5883: at least the configured minimum
//! multi-hop), counts every discarded packet and reports state changes to the speaker.
//!
//! It must never block: sends are non-blocking (a full socket buffer drops the packet,
//! as the network could), and the state machines run only on packets and deadlines.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::net::{self, MULTI_HOP_PORT, SINGLE_HOP_PORT};
use super::packet::{ControlPacket, Diag, State};
use super::session::{Output, Session, SessionConfig, SessionStatus};
use crate::metrics::Metrics;
use crate::task::TaskGuard;

/// What the speaker wants a BFD session for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerBfd {
    pub peer: IpAddr,
    /// Source address of our packets (the BGP session's, when configured).
    pub local: Option<IpAddr>,
    pub session: SessionConfig,
    pub multihop: bool,
    /// Multi-hop only: packets arriving with a lower TTL are dropped.
    pub min_ttl: u8,
}

/// A session's change, reported to the speaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BfdEvent {
    pub peer: IpAddr,
    /// `Some((from, to))` when the state changed; `None` when only other facts (the
    /// negotiated intervals, the peer's state) did.
    pub transition: Option<(State, State)>,
    pub status: SessionStatus,
}

enum Cmd {
    Set(Vec<PeerBfd>),
    Status(oneshot::Sender<Vec<(IpAddr, SessionStatus)>>),
}

struct Rx {
    multihop: bool,
    dgram: net::Datagram,
    packet: Result<ControlPacket, super::DecodeError>,
}

/// A running BFD driver; dropping it stops every session (without AdminDown packets).
#[derive(Debug)]
pub struct Bfd {
    tx: mpsc::UnboundedSender<Cmd>,
    _task: TaskGuard,
}

impl Bfd {
    /// Starts the driver with no sessions. Sockets are opened when sessions need them,
    /// in the network namespace of the thread running the task.
    pub fn start(events: mpsc::UnboundedSender<BfdEvent>, metrics: Arc<Metrics>) -> Self {
        let (tx, cmd_rx) = mpsc::unbounded_channel();
        let (rx_tx, rx_rx) = mpsc::channel(1024);
        let driver = Driver {
            events,
            metrics,
            sessions: HashMap::new(),
            by_discr: HashMap::new(),
            receivers: HashMap::new(),
            rx_tx,
            next_discr: rand::random::<u32>() | 1,
        };
        Self {
            tx,
            _task: TaskGuard::spawn(driver.run(cmd_rx, rx_rx)),
        }
    }

    /// Replaces the set of sessions: new peers start, removed ones send AdminDown and
    /// stop, changed timers apply live (with a Poll Sequence when Up).
    pub fn set(&self, peers: Vec<PeerBfd>) {
        let _ = self.tx.send(Cmd::Set(peers));
    }

    /// Every session's status.
    pub async fn status(&self) -> Vec<(IpAddr, SessionStatus)> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Status(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

struct Entry {
    want: PeerBfd,
    session: Session,
    sock: Option<UdpSocket>,
    reported: SessionStatus,
}

struct Driver {
    events: mpsc::UnboundedSender<BfdEvent>,
    metrics: Arc<Metrics>,
    sessions: HashMap<IpAddr, Entry>,
    by_discr: HashMap<u32, IpAddr>,
    /// (IPv6, multi-hop) → the reader task of that receive socket.
    receivers: HashMap<(bool, bool), TaskGuard>,
    rx_tx: mpsc::Sender<Rx>,
    next_discr: u32,
}

impl Driver {
    async fn run(mut self, mut cmd_rx: mpsc::UnboundedReceiver<Cmd>, mut rx: mpsc::Receiver<Rx>) {
        loop {
            let next = self
                .sessions
                .values()
                .filter_map(|e| e.session.next_deadline())
                .min();
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    None => return,
                    Some(Cmd::Set(peers)) => self.set(peers),
                    Some(Cmd::Status(reply)) => {
                        let _ = reply.send(
                            self.sessions
                                .iter()
                                .map(|(a, e)| (*a, e.session.status()))
                                .collect(),
                        );
                    }
                },
                Some(r) = rx.recv() => self.receive(r),
                () = sleep_until(next) => self.timers(),
            }
        }
    }

    fn now() -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    fn set(&mut self, peers: Vec<PeerBfd>) {
        let now = Self::now();
        let wanted: HashMap<IpAddr, PeerBfd> = peers.into_iter().map(|p| (p.peer, p)).collect();
        let gone: Vec<IpAddr> = self
            .sessions
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for a in gone {
            if let Some(mut e) = self.sessions.remove(&a) {
                self.by_discr.remove(&e.session.local_discr());
                let p = e.session.admin_down();
                send(&e, &p);
            }
        }
        for (addr, want) in wanted {
            match self.sessions.get_mut(&addr) {
                Some(e) if e.want.multihop == want.multihop && e.want.local == want.local => {
                    let out = e.session.set_config(want.session, now);
                    e.want = want;
                    self.perform(addr, out);
                }
                _ => {
                    if let Some(old) = self.sessions.remove(&addr) {
                        self.by_discr.remove(&old.session.local_discr());
                    }
                    self.add(want, now);
                }
            }
        }
        self.metrics.bfd_sessions_up(self.up_count());
    }

    fn add(&mut self, want: PeerBfd, now: std::time::Instant) {
        self.ensure_receiver(want.peer.is_ipv6(), want.multihop);
        let discr = self.discriminator();
        let mut session = Session::new(want.session, discr);
        let sock = match net::bind_sender(want.peer, want.local) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(peer = %want.peer, error = %e, "BFD send socket");
                None
            }
        };
        session.start(now);
        let reported = session.status();
        self.by_discr.insert(discr, want.peer);
        self.sessions.insert(
            want.peer,
            Entry {
                want,
                session,
                sock,
                reported,
            },
        );
    }

    /// A fresh non-zero discriminator not in use (§6.8.1: unique per system).
    fn discriminator(&mut self) -> u32 {
        loop {
            self.next_discr = self.next_discr.wrapping_add(0x9e37_79b9);
            if self.next_discr != 0 && !self.by_discr.contains_key(&self.next_discr) {
                return self.next_discr;
            }
        }
    }

    fn ensure_receiver(&mut self, v6: bool, multihop: bool) {
        if self
            .receivers
            .get(&(v6, multihop))
            .is_some_and(|t| !t.is_finished())
        {
            return;
        }
        let port = if multihop {
            MULTI_HOP_PORT
        } else {
            SINGLE_HOP_PORT
        };
        let sock = match net::bind_receiver(v6, port) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(port, v6, error = %e, "BFD receive socket");
                return;
            }
        };
        let tx = self.rx_tx.clone();
        let metrics = self.metrics.clone();
        let task = TaskGuard::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                let dgram = match net::recv(&sock, &mut buf).await {
                    Ok(d) => d,
                    Err(e) => {
                        // Ends the reader: a socket that fails once is not retried in a
                        // loop; the next session change opens a new one.
                        tracing::warn!(port, error = %e, "BFD receive failed");
                        return;
                    }
                };
                let packet = match buf.get(..dgram.len) {
                    Some(b) => ControlPacket::decode(b),
                    None => Err(super::DecodeError::Length {
                        length: 0,
                        payload: buf.len(),
                    }),
                };
                if let Err(e) = &packet {
                    metrics.bfd_dropped(e.kind());
                    tracing::trace!(src = %dgram.src, error = %e, "BFD packet discarded");
                    continue;
                }
                // Backpressure: under a storm, packets wait in the socket buffer and the
                // kernel drops the excess, as it would for any flood.
                if tx
                    .send(Rx {
                        multihop,
                        dgram,
                        packet,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        self.receivers.insert((v6, multihop), task);
    }

    fn receive(&mut self, r: Rx) {
        let Ok(p) = r.packet else { return };
        let src = crate::session::unmap(r.dgram.src.ip());
        // §6.3 / §6.8.6: a non-zero Your Discriminator selects the session; zero selects
        // it by the source address.
        let addr = if p.your_discr != 0 {
            match self.by_discr.get(&p.your_discr) {
                Some(a) => *a,
                None => return self.metrics.bfd_dropped("unknown_discriminator"),
            }
        } else {
            src
        };
        let Some(e) = self.sessions.get_mut(&addr) else {
            return self.metrics.bfd_dropped("unknown_peer");
        };
        if addr != src || e.want.multihop != r.multihop {
            return self.metrics.bfd_dropped("wrong_source");
        }
        let ttl_ok = match (r.dgram.ttl, e.want.multihop) {
            (Some(t), false) => t == 255,
            (Some(t), true) => t >= e.want.min_ttl,
            (None, _) => false,
        };
        if !ttl_ok {
            return self.metrics.bfd_dropped("ttl");
        }
        // A packet from the peer's session of an earlier life (another My Discriminator)
        // while we are Up belongs to a session that is gone: §6.8.6 takes it as it is.
        match e.session.on_packet(&p, Self::now()) {
            Ok(out) => self.perform(addr, out),
            Err(_) => self.metrics.bfd_dropped("wrong_discriminator"),
        }
    }

    fn timers(&mut self) {
        let now = Self::now();
        let due: Vec<IpAddr> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.session.next_deadline().is_some_and(|d| d <= now))
            .map(|(a, _)| *a)
            .collect();
        for a in due {
            if let Some(e) = self.sessions.get_mut(&a) {
                let out = e.session.on_timer(now);
                self.perform(a, out);
            }
        }
    }

    fn perform(&mut self, addr: IpAddr, out: Vec<Output>) {
        let Some(e) = self.sessions.get_mut(&addr) else {
            return;
        };
        let mut transition = None;
        for o in out {
            match o {
                Output::Send(p) => send(e, &p),
                Output::StateChanged { from, to, diag } => {
                    tracing::info!(peer = %addr, from = from.name(), to = to.name(),
                        diag = diag.name(), "BFD session state");
                    self.metrics.bfd_transition(
                        to.name(),
                        to == State::Down && diag == Diag::ControlDetectionTimeExpired,
                    );
                    transition = Some((transition.map_or(from, |(f, _)| f), to));
                }
            }
        }
        let status = e.session.status();
        if transition.is_some() || status != e.reported {
            e.reported = status;
            let _ = self.events.send(BfdEvent {
                peer: addr,
                transition,
                status,
            });
        }
        if transition.is_some() {
            self.metrics.bfd_sessions_up(self.up_count());
        }
    }

    fn up_count(&self) -> usize {
        self.sessions
            .values()
            .filter(|e| e.session.state() == State::Up)
            .count()
    }
}

fn send(e: &Entry, p: &ControlPacket) {
    let Some(sock) = &e.sock else { return };
    let port = if e.want.multihop {
        MULTI_HOP_PORT
    } else {
        SINGLE_HOP_PORT
    };
    if let Err(err) = sock.try_send_to(&p.to_bytes(), SocketAddr::new(e.want.peer, port)) {
        tracing::debug!(peer = %e.want.peer, error = %err, "BFD send");
    }
}

async fn sleep_until(d: Option<std::time::Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// A session's timers from the configuration's milliseconds.
pub fn session_config(rx_ms: u32, tx_ms: u32, mult: u8, passive: bool) -> SessionConfig {
    SessionConfig {
        desired_min_tx: Duration::from_millis(u64::from(tx_ms)),
        required_min_rx: Duration::from_millis(u64::from(rx_ms)),
        detect_mult: mult,
        passive,
    }
}
