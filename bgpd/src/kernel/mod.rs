//! Kernel route sync: bgpd's best paths into a kernel routing table, fast, and without ever
//! touching routes that are not ours.
//!
//! # API
//!
//! ```text
//! KernelConfig { protocol: 82, table: 254, metric: 20 }          (Default)
//! KernelRoute { prefix: IpNet, nexthops: Vec<NextHop> }           (>1 next hop = ECMP)
//! NextHop { gateway: IpAddr, oif: Option<u32> }   // From<IpAddr>; oif only for link-local
//!   KernelRoute::new(prefix, nexthops)    // normalised: host bits cleared, hops sorted+deduped
//! RouteChange::{Replace(KernelRoute), Delete(IpNet)}
//!
//! let (sync, existing) = KernelSync::start(cfg).await?;
//!     // `existing`: routes of ours already in the kernel (left by a previous run). Nothing is
//!     // flushed: compute what you want and call `reconcile` with it.
//! sync.submit(vec![RouteChange::Replace(r), RouteChange::Delete(p)]);   // never blocks
//! sync.flush().await?;       // everything submitted so far is in the kernel; Err(Rejected)
//!                            // lists routes the kernel refused since the last flush
//! sync.reconcile(desired).await? -> ReconcileReport { found, kept, replaced, deleted, failures }
//!                            // dump ours, diff (pure `diff::diff`), apply; stale ones deleted
//! sync.routes().await?       // our routes as the kernel has them now
//! sync.oif_for(peer).await?  // the interface the kernel reaches `peer` through (for
//!                            // IPv6 link-local next hops learned from that peer)
//! sync.stats()               // KernelStats { replaced, deleted, failed, batches } counters
//! ```
//!
//! The socket is opened by `start` on the calling thread, so it (and the routes it writes)
//! belongs to that thread's network namespace: tests run `start` inside a namespace with
//! `twill_harness::netns::NsRuntime`.
//!
//! # What is ours, and the metric
//!
//! A route is ours when it is in `table`, carries `protocol`, has priority `metric` and is of
//! type unicast. Every message we send names all of these, so the kernel itself matches only
//! our routes: a delete carries protocol and metric (IPv4 and IPv6 both skip routes whose
//! protocol or metric differ), and a dump is filtered by them.
//!
//! The kernel keys a route by (table, prefix, tos, metric), not by protocol. So:
//! - a route of another protocol for the same prefix at another metric (a static route at
//!   metric 0, felix's routes, BIRD's at 32) is a separate kernel route that we never touch;
//!   the lower metric wins forwarding. Ours default to 20 (as FRR's BGP routes), below the
//!   IPv6 default of 1024 and above explicitly configured metric-0 routes;
//! - a route of another protocol at exactly our table, prefix and metric would be replaced
//!   by our `Replace` (`NLM_F_REPLACE` matches the key). Do not configure another router to
//!   install at Twill's metric in the same table.
//! - felix's own routes carry the same protocol number; they stay out of our way by using
//!   another metric than ours. (Only unicast routes are ours, and an IPv4 delete names the
//!   type, so an IPv4 blackhole at our metric survives; IPv6 deletes ignore the type, so an
//!   IPv6 blackhole of our protocol *and* metric for the same prefix would not.)
//!
//! # Semantics
//! - Changes are coalesced per prefix (last wins) while the worker is busy, then applied in
//!   batches of many messages per `sendmsg` (see `socket.rs`).
//! - `Delete` of a route already gone is success. A route the kernel refuses (unreachable
//!   next hop, ...) is reported in `flush`/`reconcile` with the kernel's reason, and does not
//!   stop the rest of the batch.
//! - IPv4 and IPv6; a next hop must be of the prefix's family (RFC 5549 is not supported).
//!   An IPv6 link-local next hop (RFC 2545) names its interface (`NextHop::oif`); any other
//!   next hop is resolved by the kernel, so its `oif` is dropped when normalised.
//!
//! Never: flush routes at start, touch routes of other protocols, metrics or tables, or
//! block an async executor (the socket lives on the worker thread).

mod diff;
mod message;
mod socket;
mod worker;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

pub use diff::{Diff, diff};

/// Where and as what our routes go into the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    /// Route protocol number (`rtm_protocol`); 82 is Twill bgpd's.
    pub protocol: u8,
    /// Routing table (254 = main).
    pub table: u32,
    /// Route priority (metric); must not be 0, see the module doc.
    pub metric: u32,
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self {
            protocol: 82,
            table: 254,
            metric: 20,
        }
    }
}

/// One next hop of a kernel route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHop {
    pub gateway: IpAddr,
    /// The outgoing interface (ifindex). Needed, and kept, only for IPv6 link-local
    /// gateways: the same `fe80::` address can exist on every link.
    pub oif: Option<u32>,
}

impl NextHop {
    /// A next hop through `oif` when `gateway` is IPv6 link-local; otherwise the kernel
    /// resolves the interface and `oif` is dropped.
    pub fn new(gateway: IpAddr, oif: Option<u32>) -> Self {
        Self {
            gateway,
            oif: oif.filter(|_| is_link_local(&gateway)),
        }
    }
}

impl From<IpAddr> for NextHop {
    fn from(gateway: IpAddr) -> Self {
        Self { gateway, oif: None }
    }
}

impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.oif {
            Some(i) => write!(f, "{} dev #{i}", self.gateway),
            None => write!(f, "{}", self.gateway),
        }
    }
}

/// An IPv6 link-local address (fe80::/10), usable as a next hop only with an interface.
pub fn is_link_local(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// A route as bgpd wants it in the kernel: several next hops make one ECMP multipath route.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelRoute {
    pub prefix: IpNet,
    pub nexthops: Vec<NextHop>,
}

impl KernelRoute {
    /// A normalised route: host bits of the prefix cleared, next hops sorted and deduplicated
    /// (the kernel keeps no order among multipath next hops we could rely on), `oif` kept
    /// only on link-local next hops.
    pub fn new<H: Into<NextHop>>(prefix: IpNet, nexthops: Vec<H>) -> Self {
        let mut nexthops: Vec<NextHop> = nexthops
            .into_iter()
            .map(|h| {
                let h = h.into();
                NextHop::new(h.gateway, h.oif)
            })
            .collect();
        nexthops.sort();
        nexthops.dedup();
        Self {
            prefix: prefix.trunc(),
            nexthops,
        }
    }

    /// The gateways of the route, without interfaces.
    pub fn gateways(&self) -> Vec<IpAddr> {
        self.nexthops.iter().map(|h| h.gateway).collect()
    }
}

/// One change to the kernel's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteChange {
    /// Install, or replace whatever route of ours the prefix has.
    Replace(KernelRoute),
    /// Remove our route for the prefix (success when there is none).
    Delete(IpNet),
}

impl RouteChange {
    pub fn prefix(&self) -> IpNet {
        match self {
            Self::Replace(r) => r.prefix.trunc(),
            Self::Delete(p) => p.trunc(),
        }
    }

    fn normalised(self) -> Self {
        match self {
            Self::Replace(r) => Self::Replace(KernelRoute::new(r.prefix, r.nexthops)),
            Self::Delete(p) => Self::Delete(p.trunc()),
        }
    }
}

/// Which kind of change failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Replace,
    Delete,
}

/// A route the kernel refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?} {prefix}: {message}")]
pub struct RouteFailure {
    pub kind: ChangeKind,
    pub prefix: IpNet,
    /// The errno (e.g. `ENETUNREACH` for a next hop with no connected route).
    pub errno: i32,
    /// The errno's text and the kernel's extended-ack reason.
    pub message: String,
}

/// What a reconcile did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Routes of ours found in the kernel.
    pub found: usize,
    /// Found and already as desired.
    pub kept: usize,
    /// Installed or changed.
    pub replaced: usize,
    /// Stale ones removed.
    pub deleted: usize,
    /// Routes the kernel refused.
    pub failures: Vec<RouteFailure>,
}

/// Counters since start (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub replaced: u64,
    pub deleted: u64,
    pub failed: u64,
    pub batches: u64,
}

#[derive(Debug, Default)]
struct Stats {
    replaced: AtomicU64,
    deleted: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    /// Changes submitted and not yet taken up by the worker.
    backlog: AtomicUsize,
    /// Signalled whenever the worker takes up the queued changes.
    applied: tokio::sync::Notify,
}

/// Kernel sync failures.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("invalid kernel config: {0}")]
    Config(String),
    #[error("netlink {op}: {source}")]
    Netlink {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("kernel sync worker is gone")]
    Closed,
    #[error("kernel refused {} route(s){}: {}", failures.len() + more,
        if *more > 0 { format!(" ({more} not listed)") } else { String::new() },
        failures.iter().take(3).map(|f| f.to_string()).collect::<Vec<_>>().join("; "))]
    Rejected {
        failures: Vec<RouteFailure>,
        /// Failures beyond those listed.
        more: usize,
    },
}

/// Handle to the worker that owns one netlink socket, coalesces queued changes (last change
/// per prefix wins), and applies them in pipelined batches. Dropping the last handle stops
/// the worker (routes stay in the kernel).
#[derive(Clone, Debug)]
pub struct KernelSync {
    tx: mpsc::UnboundedSender<worker::Command>,
    stats: Arc<Stats>,
}

impl KernelSync {
    /// Opens the socket (in the calling thread's network namespace), starts the worker and
    /// returns the routes of ours already in the kernel. Flushes nothing.
    pub async fn start(cfg: KernelConfig) -> Result<(Self, Vec<KernelRoute>), KernelError> {
        if cfg.metric == 0 {
            return Err(KernelError::Config(
                "metric 0 would make deletes match any metric".to_owned(),
            ));
        }
        let sock = socket::RouteSocket::open(cfg).map_err(|source| KernelError::Netlink {
            op: "open socket",
            source,
        })?;
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut worker = worker::Worker::new(sock, stats.clone());
        std::thread::Builder::new()
            .name("twill-kernel".to_owned())
            .spawn(move || match worker.dump() {
                Ok(existing) => {
                    if ready_tx.send(Ok(existing)).is_ok() {
                        worker.run(rx);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|source| KernelError::Netlink {
                op: "spawn worker",
                source,
            })?;
        let existing = ready_rx.await.map_err(|_| KernelError::Closed)??;
        Ok((Self { tx, stats }, existing))
    }

    /// Queues changes; never blocks. Later changes to a prefix supersede earlier ones.
    /// A caller producing changes faster than the kernel takes them should pace itself
    /// with [`backlog`](Self::backlog) and [`applied`](Self::applied) rather than queue
    /// them all here (each queued change holds its route until applied).
    pub fn submit(&self, changes: Vec<RouteChange>) {
        if !changes.is_empty() {
            self.stats
                .backlog
                .fetch_add(changes.len(), Ordering::Relaxed);
            // The worker only goes away with every handle, so this cannot fail while `self` lives
            // (unless the worker thread panicked; `flush` then reports `Closed`).
            let _ = self.tx.send(worker::Command::Submit(changes));
        }
    }

    /// Waits until everything submitted so far is in the kernel. `Err(Rejected)` lists the
    /// routes refused since the previous flush (the rest were applied).
    pub async fn flush(&self) -> Result<(), KernelError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(worker::Command::Flush(reply))
            .map_err(|_| KernelError::Closed)?;
        rx.await.map_err(|_| KernelError::Closed)?
    }

    /// Makes our routes in the kernel exactly `desired`: dumps ours, diffs, applies (changes
    /// submitted earlier are applied first). Routes of other protocols are never looked at.
    pub async fn reconcile(
        &self,
        desired: Vec<KernelRoute>,
    ) -> Result<ReconcileReport, KernelError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(worker::Command::Reconcile(desired, reply))
            .map_err(|_| KernelError::Closed)?;
        rx.await.map_err(|_| KernelError::Closed)?
    }

    /// Our routes as the kernel has them now (after applying what was submitted).
    pub async fn routes(&self) -> Result<Vec<KernelRoute>, KernelError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(worker::Command::Routes(reply))
            .map_err(|_| KernelError::Closed)?;
        rx.await.map_err(|_| KernelError::Closed)?
    }

    /// The interface index the kernel's main-table lookup reaches `addr` through (what
    /// `ip route get ADDR` prints as `dev`), `None` when unreachable. Link-local next hops
    /// learned from a peer use the interface of the route to that peer.
    pub async fn oif_for(&self, addr: IpAddr) -> Result<Option<u32>, KernelError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(worker::Command::Oif(addr, reply))
            .map_err(|_| KernelError::Closed)?;
        rx.await.map_err(|_| KernelError::Closed)?
    }

    /// Changes submitted and not yet taken up by the worker (at most one more round is
    /// being applied meanwhile).
    pub fn backlog(&self) -> usize {
        self.stats.backlog.load(Ordering::Relaxed)
    }

    /// Resolves when the worker next takes up queued changes (or at once if it did since
    /// the last call): wait on it when [`backlog`](Self::backlog) is high, then submit
    /// more; they are applied right after the round in progress.
    pub async fn applied(&self) {
        self.stats.applied.notified().await;
    }

    /// Counters since start.
    pub fn stats(&self) -> KernelStats {
        let s = &self.stats;
        KernelStats {
            replaced: s.replaced.load(Ordering::Relaxed),
            deleted: s.deleted.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
        }
    }
}
