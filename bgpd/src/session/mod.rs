//! The session driver: one task per peer that owns the peer's FSM, its TCP connections
//! and its timers, performs the FSM's outputs and reports to the speaker.
//!
//! ```text
//!   speaker ──SessionCmd──▶ session task ──SessionEvent──▶ speaker
//!                             ▲      │ bytes
//!               ConnEvent     │      ▼
//!   connect task / reader task    writer task ──▶ TCP
//! ```
//! The driver holds no routes; it forwards UPDATEs as decoded. It must never block on
//! the socket: writes go through the connection's writer task.

mod conn;
pub mod sockopt;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use conn::ConnectParams;
use conn::{Conn, ConnEvent};

use crate::fsm::{ConnId, DownReason, Fsm, FsmConfig, Input, Negotiated, Output, State, Timer};
use crate::packet::{DecodeCxt, Message, Notification, RouteRefresh, Update, encode_message};
use crate::task::TaskGuard;

/// Identifies one run of a peer's session task; events of an older run are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub peer: IpAddr,
    pub epoch: u64,
}

/// Orders from the speaker.
#[derive(Debug)]
pub enum SessionCmd {
    /// The listener accepted a connection from this peer.
    Accepted(TcpStream),
    /// Encoded messages to send on the established connection.
    Send(Bytes),
    /// Close with this NOTIFICATION and stay down.
    Stop(Notification),
}

/// Reports to the speaker.
// UPDATEs dominate; boxing them would allocate per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SessionEvent {
    State(SessionKey, State),
    Established {
        key: SessionKey,
        negotiated: Box<Negotiated>,
        local_addr: IpAddr,
    },
    Down {
        key: SessionKey,
        reason: DownReason,
        was_established: bool,
    },
    Update(SessionKey, Update),
    /// RFC 7606 treat-as-withdraw.
    Withdraw(SessionKey, Vec<IpNet>),
    RouteRefresh(SessionKey, RouteRefresh),
    /// An error worth counting that did not change the state (e.g. treat-as-withdraw).
    Error(SessionKey, &'static str),
}

/// A running session task; dropping it aborts the task (and its connections).
#[derive(Debug)]
pub struct SessionHandle {
    pub key: SessionKey,
    tx: mpsc::UnboundedSender<SessionCmd>,
    _task: TaskGuard,
}

impl SessionHandle {
    pub fn send(&self, cmd: SessionCmd) {
        let _ = self.tx.send(cmd);
    }
}

/// Starts a session task; a held one (`start` false) stays Idle, refusing connections,
/// until dropped.
pub fn spawn(
    key: SessionKey,
    fsm: FsmConfig,
    connect: ConnectParams,
    events: mpsc::Sender<SessionEvent>,
    start: bool,
) -> SessionHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    // Small queues: backpressure reaches the socket instead of buffering UPDATEs in memory.
    let (ctx, crx) = mpsc::channel(32);
    let driver = Driver {
        key,
        fsm: Fsm::new(fsm),
        connect,
        events,
        cmd_rx: rx,
        conn_tx: ctx,
        conn_rx: crx,
        conns: HashMap::new(),
        connecting: None,
        next_id: 0,
        deadlines: HashMap::new(),
        start,
    };
    SessionHandle {
        key,
        tx,
        _task: TaskGuard::spawn(driver.run()),
    }
}

struct Driver {
    key: SessionKey,
    fsm: Fsm,
    connect: ConnectParams,
    events: mpsc::Sender<SessionEvent>,
    cmd_rx: mpsc::UnboundedReceiver<SessionCmd>,
    conn_tx: mpsc::Sender<ConnEvent>,
    conn_rx: mpsc::Receiver<ConnEvent>,
    conns: HashMap<ConnId, Conn>,
    connecting: Option<(ConnId, TaskGuard)>,
    next_id: u64,
    deadlines: HashMap<Timer, Instant>,
    start: bool,
}

impl Driver {
    async fn run(mut self) {
        if self.start {
            self.input(Input::Start).await;
        }
        loop {
            let next = self.deadlines.values().min().copied();
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    None => return,
                    Some(cmd) => self.command(cmd).await,
                },
                Some(ev) = self.conn_rx.recv() => self.conn_event(ev).await,
                _ = sleep_until(next), if next.is_some() => self.timers().await,
            }
        }
    }

    fn new_id(&mut self) -> ConnId {
        self.next_id += 1;
        ConnId(self.next_id)
    }

    async fn command(&mut self, cmd: SessionCmd) {
        match cmd {
            SessionCmd::Accepted(stream) => {
                if let Some(hops) = self.connect.ttl_security {
                    let v6 = self.connect.peer.is_ipv6();
                    if let Err(e) = sockopt::set_ttl_security(&stream, v6, hops) {
                        tracing::warn!(peer = %self.key.peer, error = %e, "GTSM on accepted socket");
                    }
                }
                let id = self.new_id();
                match Conn::start(id, stream, self.conn_tx.clone()) {
                    Ok(c) => {
                        self.conns.insert(id, c);
                        self.input(Input::TcpAccepted(id)).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "accepted socket unusable"),
                }
            }
            SessionCmd::Send(bytes) => {
                if self.fsm.state() == State::Established
                    && let Some(c) = self.fsm.connection().and_then(|c| self.conns.get(&c))
                {
                    c.send(bytes);
                }
            }
            SessionCmd::Stop(n) => self.input(Input::Stop(n)).await,
        }
    }

    async fn conn_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Connected(id, stream) => {
                if self.connecting.as_ref().map(|(c, _)| *c) != Some(id) {
                    return; // an attempt we gave up on
                }
                self.connecting = None;
                match Conn::start(id, stream, self.conn_tx.clone()) {
                    Ok(c) => {
                        self.conns.insert(id, c);
                        self.input(Input::TcpConnected(id)).await;
                    }
                    Err(_) => self.input(Input::ConnectFailed).await,
                }
            }
            ConnEvent::ConnectFailed(id) => {
                if self.connecting.as_ref().map(|(c, _)| *c) == Some(id) {
                    self.connecting = None;
                    self.input(Input::ConnectFailed).await;
                }
            }
            ConnEvent::Closed(id) => self.input(Input::TcpFails(id)).await,
            ConnEvent::Error(id, e) => match e.notification() {
                Some(n) => {
                    tracing::info!(peer = %self.key.peer, error = %e, "malformed message");
                    self.input(Input::MessageError(id, n)).await;
                }
                None => {
                    if let crate::packet::DecodeError::TreatAsWithdraw { withdrawn } = e
                        && self.fsm.connection() == Some(id)
                        && self.fsm.state() == State::Established
                    {
                        self.emit(SessionEvent::Error(self.key, "treat_as_withdraw"))
                            .await;
                        self.emit(SessionEvent::Withdraw(self.key, withdrawn)).await;
                    }
                }
            },
            ConnEvent::Message(id, msg) => self.message(id, msg).await,
        }
    }

    async fn message(&mut self, id: ConnId, msg: Message) {
        match msg {
            Message::Open(o) => self.input(Input::Open(id, o)).await,
            Message::Keepalive => self.input(Input::Keepalive(id)).await,
            Message::Notification(n) => self.input(Input::Notification(id, n)).await,
            Message::Update(u) => {
                self.input(Input::Update(id)).await;
                if self.fsm.state() == State::Established && self.fsm.connection() == Some(id) {
                    self.emit(SessionEvent::Update(self.key, u)).await;
                }
            }
            Message::RouteRefresh(r) => {
                self.input(Input::Update(id)).await;
                if self.fsm.state() == State::Established && self.fsm.connection() == Some(id) {
                    self.emit(SessionEvent::RouteRefresh(self.key, r)).await;
                }
            }
        }
    }

    async fn timers(&mut self) {
        let now = Instant::now();
        let due: Vec<Timer> = self
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            self.deadlines.remove(&t);
            let input = match t {
                Timer::ConnectRetry => Input::ConnectRetryTimerExpires,
                Timer::Hold => Input::HoldTimerExpires,
                Timer::Keepalive => Input::KeepaliveTimerExpires,
            };
            self.input(input).await;
        }
    }

    async fn emit(&self, ev: SessionEvent) {
        let _ = self.events.send(ev).await;
    }

    /// Feeds the FSM and performs its outputs.
    async fn input(&mut self, input: Input) {
        let outputs = self.fsm.process(input);
        // The negotiated 4-octet-AS setting must reach the reader before our KEEPALIVE
        // lets the peer send UPDATEs.
        if let (Some(n), Some(c)) = (self.fsm.negotiated(), self.fsm.connection())
            && let Some(conn) = self.conns.get(&c)
        {
            conn.set_four_octet(n.four_octet_as);
        }
        for o in outputs {
            self.perform(o).await;
        }
    }

    async fn perform(&mut self, o: Output) {
        match o {
            Output::Connect => {
                let id = self.new_id();
                let guard = conn::spawn_connect(id, self.connect.clone(), self.conn_tx.clone());
                self.connecting = Some((id, guard));
            }
            Output::AbortConnect => self.connecting = None,
            Output::Send(c, msg) => {
                if let Some(conn) = self.conns.get(&c) {
                    let cxt = DecodeCxt {
                        four_octet_as: conn.four_octet(),
                    };
                    let mut buf = BytesMut::new();
                    encode_message(&msg, &cxt, &mut buf);
                    conn.send(buf.freeze());
                }
            }
            Output::Close(c) => {
                if let Some(conn) = self.conns.remove(&c) {
                    conn.close();
                }
            }
            Output::StartTimer(t, d) => {
                self.deadlines.insert(t, Instant::now() + d);
            }
            Output::StopTimer(t) => {
                self.deadlines.remove(&t);
            }
            Output::StateChanged { to, .. } => {
                self.emit(SessionEvent::State(self.key, to)).await;
            }
            Output::Established(c, negotiated) => {
                let local_addr = self
                    .conns
                    .get(&c)
                    .map(|x| x.local.ip())
                    .unwrap_or(self.key.peer);
                tracing::info!(peer = %self.key.peer, "session established");
                self.emit(SessionEvent::Established {
                    key: self.key,
                    negotiated,
                    local_addr: unmap(local_addr),
                })
                .await;
            }
            Output::Down {
                reason,
                was_established,
            } => {
                if was_established {
                    tracing::info!(peer = %self.key.peer, %reason, "session down");
                }
                self.emit(SessionEvent::Down {
                    key: self.key,
                    reason,
                    was_established,
                })
                .await;
            }
        }
    }
}

/// An IPv4 peer seen through an IPv6 socket shows as `::ffff:a.b.c.d`.
pub fn unmap(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

async fn sleep_until(d: Option<Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Where to connect: a link-local peer address is scoped to the peer's interface.
fn peer_socket_addr(peer: &crate::config::PeerConfig) -> SocketAddr {
    match (peer.address, &peer.interface) {
        (IpAddr::V6(a), Some(name)) if crate::kernel::is_link_local(&peer.address) => {
            let scope = crate::unnumbered::interface_index(name).unwrap_or(0);
            SocketAddr::V6(std::net::SocketAddrV6::new(a, peer.port, 0, scope))
        }
        (a, _) => SocketAddr::new(a, peer.port),
    }
}

/// Connect parameters for a peer.
pub fn connect_params(peer: &crate::config::PeerConfig) -> ConnectParams {
    ConnectParams {
        peer: peer_socket_addr(peer),
        source: peer.source_address,
        password: peer.password.clone(),
        ttl_security: peer.ttl_security,
        timeout: Duration::from_secs(10),
    }
}
