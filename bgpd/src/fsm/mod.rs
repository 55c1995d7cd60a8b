//! The BGP session FSM (RFC 4271 §8), sans-IO: `process(Input) -> Vec<Output>`.
//!
//! It never touches a socket, clock or channel. The session driver (`crate::session`)
//! performs its outputs (connect, send, close, start/stop timers) and feeds back what
//! happened as inputs. Connections are named by `ConnId` so that a collision (RFC 4271
//! §6.8) between our outgoing and the peer's incoming connection is decided here too.
//!
//! Deviation from the RFC, on purpose: after a session fails the FSM waits in Idle for a
//! backoff (as the RFC's optional DampPeerOscillations would) and restarts by itself; an
//! incoming connection in that wait is accepted rather than refused, so a restarting peer
//! comes back without waiting for our timer.

mod open;

use std::time::Duration;

pub use open::{LocalSide, Negotiated, PeerRestart, build_open, cease, code, negotiate, open_sub};

use crate::packet::{Message, Notification, Open};

/// The six states of RFC 4271 §8.2.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

/// The timers the driver runs for the FSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
}

/// A TCP connection, numbered by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// What happened (RFC 4271 §8.1 event names on each variant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Event 1 ManualStart (Event 5 ManualStart_with_PassiveTcpEstablishment when passive).
    Start,
    /// Event 2 ManualStop: close with this Cease.
    Stop(Notification),
    /// Event 9 ConnectRetryTimer_Expires.
    ConnectRetryTimerExpires,
    /// Event 10 HoldTimer_Expires.
    HoldTimerExpires,
    /// Event 11 KeepaliveTimer_Expires.
    KeepaliveTimerExpires,
    /// Event 16 Tcp_CR_Acked / Event 17 TcpConnectionConfirmed: our connect succeeded.
    TcpConnected(ConnId),
    /// Event 14 TcpConnection_Valid + Event 17: the peer connected to us.
    TcpAccepted(ConnId),
    /// Event 18 TcpConnectionFails for our connection attempt (refused, unreachable).
    ConnectFailed,
    /// Event 18 TcpConnectionFails on an open connection (reset, closed, read error).
    TcpFails(ConnId),
    /// Event 19 BGPOpen.
    Open(ConnId, Open),
    /// Event 21 BGPHeaderErr / Event 22 BGPOpenMsgErr / Event 28 UpdateMsgErr: the codec
    /// rejected a message; this NOTIFICATION goes back before closing.
    MessageError(ConnId, Notification),
    /// Event 25 NotifMsg.
    Notification(ConnId, Notification),
    /// Event 26 KeepAliveMsg.
    Keepalive(ConnId),
    /// Event 27 UpdateMsg (and ROUTE-REFRESH, which also proves the peer alive).
    Update(ConnId),
}

/// Why a session (or an attempt at one) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    HoldTimerExpired,
    NotificationSent(Notification),
    NotificationReceived(Notification),
    TcpFailed,
    Stopped,
    /// A new connection from a peer that supports graceful restart replaced this one.
    PeerRestarted,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::HoldTimerExpired => write!(f, "hold timer expired"),
            DownReason::NotificationSent(n) => {
                write!(f, "sent NOTIFICATION {}/{}", n.code, n.subcode)
            }
            DownReason::NotificationReceived(n) => {
                write!(f, "received NOTIFICATION {}/{}", n.code, n.subcode)
            }
            DownReason::TcpFailed => write!(f, "connection closed"),
            DownReason::Stopped => write!(f, "stopped"),
            DownReason::PeerRestarted => write!(f, "peer restarted"),
        }
    }
}

/// What the driver must do.
// `Send` carries whole messages (UPDATEs); boxing them would allocate per message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer; report `TcpConnected`/`TcpFails` with a new id.
    Connect,
    /// Give up the connection attempt in progress.
    AbortConnect,
    Send(ConnId, Message),
    Close(ConnId),
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    StateChanged {
        from: State,
        to: State,
    },
    /// The session reached Established on this connection.
    Established(ConnId, Box<Negotiated>),
    /// The session (or the attempt) ended; `was_established` tells the RIB to act.
    Down {
        reason: DownReason,
        was_established: bool,
    },
}

/// Static settings of one FSM.
#[derive(Clone, Debug)]
pub struct FsmConfig {
    pub local: LocalSide,
    pub passive: bool,
    /// First connect-retry / idle-hold interval; doubled on each failure up to `max_retry`.
    pub connect_retry: Duration,
    pub max_retry: Duration,
}

/// Hold time used until the OPEN exchange is done (RFC 4271 §8.2.2 "large value").
const OPEN_HOLD: Duration = Duration::from_secs(240);

/// One peer's session state machine.
#[derive(Debug)]
pub struct Fsm {
    cfg: FsmConfig,
    state: State,
    /// Stopped by the operator: no automatic restart.
    admin_down: bool,
    conn: Option<ConnId>,
    /// A second connection during OpenSent/OpenConfirm: the collision candidate.
    pending: Option<ConnId>,
    /// Whether `conn` was initiated by the peer.
    conn_incoming: bool,
    negotiated: Option<Negotiated>,
    retry: Duration,
}

mod process;

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        let retry = cfg.connect_retry;
        Self {
            cfg,
            state: State::Idle,
            admin_down: true,
            conn: None,
            pending: None,
            conn_incoming: false,
            negotiated: None,
            retry,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The connection carrying the session, if any.
    pub fn connection(&self) -> Option<ConnId> {
        self.conn
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests;
