//! What the owner keeps per peer: the configured peer and, while a session is up, the
//! facts of that session. Read by the export and kernel-feed code, mutated only by the owner.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;
use tokio::time::Instant;

use crate::config::{Family, PeerConfig};
use crate::fsm::{Negotiated, State};
use crate::policy::Filter;
use crate::rib::{AdjRibOut, Source};
use crate::session::SessionHandle;

/// A peer's live session facts.
pub(super) struct Live {
    pub negotiated: Negotiated,
    pub local_addr: IpAddr,
    pub source: Arc<Source>,
    /// Families whose End-of-RIB has not arrived yet.
    pub eor_pending: HashSet<Family>,
    /// The interface the peer is reached through, for IPv6 link-local next hops it sends
    /// (resolved from the kernel once the session is up; `None` until then or without
    /// kernel install).
    pub oif: Option<u32>,
    /// Our link-local address on the link shared with the peer (RFC 2545), sent beside
    /// the global next hop of IPv6 routes; `None` for a peer not on a shared link.
    pub link_local: Option<std::net::Ipv6Addr>,
    /// Our global IPv6 address on the link shared with the peer: the next hop of IPv6
    /// routes sent over an IPv4 session.
    pub link_global_v6: Option<std::net::Ipv6Addr>,
}

/// One configured peer: its configuration, session handle and state, its Adj-RIB-Out and
/// counters. Only the owner task mutates it.
pub(super) struct Peer {
    pub cfg: PeerConfig,
    pub session: SessionHandle,
    pub state: State,
    pub since: SystemTime,
    pub live: Option<Live>,
    pub out: AdjRibOut,
    pub accepted: u64,
    pub rejected: HashSet<IpNet, foldhash::fast::RandomState>,
    pub last_error: Option<String>,
    /// Graceful-restart helper: stale paths are dropped at this time.
    pub stale_until: Option<Instant>,
    pub import: Vec<Filter>,
    pub export: Vec<Filter>,
    /// Max-prefix tripped: the session stays down until reconfigured.
    pub shut: bool,
}

impl Peer {
    pub fn is_ebgp(&self, local_as: u32) -> bool {
        self.cfg.asn != local_as
    }
}
