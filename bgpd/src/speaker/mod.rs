//! The speaker: the one owner of protocol state (peers, RIBs, kernel sync), fed by typed
//! channels, and the embeddable API felix and the standalone binary use.
//!
//! ```text
//!                 Command (mpsc, unbounded)                 SessionCmd (per peer)
//!  Speaker handle ─────────────────────────▶ ┌──────────┐ ───────────────────────▶ session task ×N
//!  (felix, gRPC)  ◀── oneshot replies ────── │  owner   │ ◀─────────────────────── (FSM, timers)
//!                                            │   task   │   SessionEvent (mpsc, bounded:
//!  listener task ── Command::Accepted ─────▶ │ RIB, out │    backpressure to the sockets)
//!                                            └──────────┘
//!                      Event (broadcast) ◀──────┘    └──── RouteChange ──▶ kernel worker thread
//! ```
//! Every task handle cancels its task on drop: dropping the `Speaker` stops everything
//! (kernel routes stay, so a restart does not break forwarding). Only the owner task
//! mutates state; nothing here blocks it (kernel writes are queued to their own thread,
//! socket writes to each connection's writer task).

mod export;
mod ingest;
mod kernel_feed;
mod kernel_route;
pub(crate) mod link;
mod owner;
mod peer;
mod policy_change;
mod status;
mod types;
mod unnumbered_peers;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use types::{
    BfdPeerStatus, Communities, Event, PeerStatus, RouteEntry, RouteQuery, RouteTable, SpeakerStats,
};

use crate::config::{Config, PeerConfig};
use crate::metrics::Metrics;
use crate::policy::Filter;
use crate::task::TaskGuard;

/// Everything the speaker needs to start.
#[derive(Clone, Debug)]
pub struct SpeakerConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Where to accept BGP connections; `None` = active sessions only.
    pub listen: Option<SocketAddr>,
    /// Install best paths into the kernel.
    pub kernel: Option<crate::kernel::KernelConfig>,
    /// Act as a route reflector with this cluster id.
    pub cluster_id: Option<Ipv4Addr>,
    pub filters: BTreeMap<String, Filter>,
    pub peers: Vec<PeerConfig>,
    pub originate: Vec<IpNet>,
}

impl SpeakerConfig {
    /// A speaker with no listener, no kernel install, no peers and nothing originated.
    pub fn new(asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            asn,
            router_id,
            listen: None,
            kernel: None,
            cluster_id: None,
            filters: BTreeMap::new(),
            peers: Vec::new(),
            originate: Vec::new(),
        }
    }

    /// The speaker settings of a standalone configuration file.
    pub fn from_config(c: &Config) -> Self {
        let kernel = c.kernel.install.then(|| {
            let mut k = crate::kernel::KernelConfig::default();
            if let Some(t) = c.kernel.table {
                k.table = t;
            }
            if let Some(p) = c.kernel.protocol {
                k.protocol = p;
            }
            k
        });
        Self {
            asn: c.asn,
            router_id: c.router_id,
            listen: (c.listen.port != 0).then(|| SocketAddr::new(c.listen.address, c.listen.port)),
            kernel,
            cluster_id: c.route_reflector.as_ref().map(|r| r.cluster_id),
            filters: c.filters.clone(),
            peers: c.peers.clone(),
            originate: c.originate.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("kernel route sync: {0}")]
    Kernel(#[from] crate::kernel::KernelError),
    #[error("the speaker has stopped")]
    Stopped,
}

pub(crate) enum Command {
    Accepted(tokio::net::TcpStream, SocketAddr),
    SetPeers(Vec<PeerConfig>, BTreeMap<String, Filter>),
    Originate(Vec<IpNet>, Communities),
    Withdraw(Vec<IpNet>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Routes(RouteQuery, oneshot::Sender<Vec<RouteEntry>>),
    Stats(oneshot::Sender<SpeakerStats>),
    /// Everything submitted so far is in the kernel.
    KernelFlush(oneshot::Sender<()>),
    /// Re-read our kernel routes and repair them from the RIB.
    KernelResync,
    Shutdown(oneshot::Sender<()>),
}

/// A running speaker. Cheap to clone the parts callers need (`subscribe`); dropping the
/// last `Speaker` stops its tasks.
#[derive(Debug)]
pub struct Speaker {
    tx: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<Event>,
    metrics: Arc<Metrics>,
    local_addr: Option<SocketAddr>,
    _owner: TaskGuard,
    _listener: Option<TaskGuard>,
}

impl Speaker {
    /// Binds the listener, starts kernel sync (if configured), starts the peers.
    /// Call it inside the network namespace the speaker should live in.
    pub async fn start(cfg: SpeakerConfig) -> Result<Self, SpeakerError> {
        Self::start_with_metrics(cfg, Arc::new(Metrics::new())).await
    }

    /// [`start`](Self::start), counting into `metrics` (registered in the process's
    /// registry, and kept across speakers when one replaces another).
    pub async fn start_with_metrics(
        cfg: SpeakerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SpeakerError> {
        let listener = match cfg.listen {
            None => None,
            Some(addr) => Some(Arc::new(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| SpeakerError::Listen { addr, source })?,
            )),
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let kernel = match &cfg.kernel {
            None => None,
            Some(k) => Some(crate::kernel::KernelSync::start(k.clone()).await?),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
        let listener_task = listener.clone().map(|l| {
            let tx = tx.clone();
            TaskGuard::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((s, addr)) => {
                            if tx.send(Command::Accepted(s, addr)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                }
            })
        });
        let owner = owner::Owner::new(cfg, listener, kernel, events.clone(), metrics.clone());
        let owner_task = TaskGuard::spawn(owner.run(rx));
        Ok(Self {
            tx,
            events,
            metrics,
            local_addr,
            _owner: owner_task,
            _listener: listener_task,
        })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    fn send(&self, c: Command) -> Result<(), SpeakerError> {
        self.tx.send(c).map_err(|_| SpeakerError::Stopped)
    }

    /// Replaces the peer list and filters. Unchanged peers keep their sessions; changed
    /// ones restart (Cease "other configuration change"); removed ones get Cease
    /// "peer de-configured". An unnumbered peer (`interface`) joins once its neighbour's
    /// link-local address is found on that interface.
    pub fn set_peers(
        &self,
        peers: Vec<PeerConfig>,
        filters: BTreeMap<String, Filter>,
    ) -> Result<(), SpeakerError> {
        self.send(Command::SetPeers(peers, filters))
    }

    /// Announces prefixes from this speaker (idempotent).
    pub fn originate(&self, prefixes: Vec<IpNet>) -> Result<(), SpeakerError> {
        self.send(Command::Originate(prefixes, Communities::default()))
    }

    /// Announces prefixes carrying these communities (RFC 1997 and RFC 8092). Announcing
    /// a prefix again with other communities replaces them (an UPDATE goes out).
    pub fn originate_with(
        &self,
        prefixes: Vec<IpNet>,
        communities: Communities,
    ) -> Result<(), SpeakerError> {
        self.send(Command::Originate(prefixes, communities))
    }

    /// Stops announcing prefixes this speaker originated (idempotent).
    pub fn withdraw(&self, prefixes: Vec<IpNet>) -> Result<(), SpeakerError> {
        self.send(Command::Withdraw(prefixes))
    }

    /// Peer and route events from now on (a slow receiver sees `Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub async fn peers(&self) -> Result<Vec<PeerStatus>, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Peers(tx))?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    pub async fn routes(&self, q: RouteQuery) -> Result<Vec<RouteEntry>, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Routes(q, tx))?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    pub async fn stats(&self) -> Result<SpeakerStats, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Stats(tx))?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// Waits until every route change so far has reached the kernel.
    pub async fn kernel_flush(&self) -> Result<(), SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::KernelFlush(tx))?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    /// Repairs the speaker's kernel routes from the RIB (after someone else changed them).
    pub fn resync_kernel(&self) -> Result<(), SpeakerError> {
        self.send(Command::KernelResync)
    }

    /// Prometheus metrics of this speaker.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Sends Cease (administrative shutdown) to every peer and stops. Kernel routes stay.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Shutdown(tx)).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rx).await;
        }
    }
}

/// Whether `a` can be the next hop of `n` in the kernel: the same family, or (RFC 8950)
/// an IPv6 next hop of an IPv4 prefix.
pub(crate) fn usable_next_hop(a: &IpAddr, n: &IpNet) -> bool {
    same_family(a, n) || matches!((a, n), (IpAddr::V6(_), IpNet::V4(_)))
}

/// The address family of an IP address, for next-hop checks.
pub(crate) fn same_family(a: &IpAddr, n: &IpNet) -> bool {
    matches!(
        (a, n),
        (IpAddr::V4(_), IpNet::V4(_)) | (IpAddr::V6(_), IpNet::V6(_))
    )
}
