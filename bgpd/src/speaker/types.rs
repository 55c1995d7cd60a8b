//! The speaker's public data: events, peer status and route listings. Plain data, no
//! behaviour; the gRPC layer converts these to protobuf at its boundary.

use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;

use crate::fsm::State;
use crate::packet::PathAttributes;

/// Something that happened, for `Speaker::subscribe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    PeerState {
        peer: IpAddr,
        state: State,
    },
    /// The forwarding of a prefix changed: its best path's next hops (empty = no route).
    Route {
        prefix: IpNet,
        next_hops: Vec<IpAddr>,
    },
}

/// One peer as an operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub address: IpAddr,
    pub asn: u32,
    /// "eBGP", "iBGP" or "iBGP RR-client".
    pub kind: &'static str,
    pub state: State,
    /// When the current state was entered.
    pub since: SystemTime,
    pub router_id: Option<std::net::Ipv4Addr>,
    pub received: u64,
    pub accepted: u64,
    pub advertised: u64,
    pub last_error: Option<String>,
    /// BFD for this peer, when configured.
    pub bfd: Option<BfdPeerStatus>,
    /// Why the peer is held (no session, nothing in or out), if it is.
    pub held: Option<String>,
}

/// A peer's BFD session as the control API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BfdPeerStatus {
    pub session: crate::bfd::SessionStatus,
    /// The BGP session is held down until BFD is Up again.
    pub holding_bgp: bool,
}

/// Which table to list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouteTable {
    #[default]
    LocRib,
    AdjRibIn(IpAddr),
    AdjRibOut(IpAddr),
}

/// A route listing request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteQuery {
    pub table: RouteTable,
    /// Only routes for prefixes equal to or inside this one.
    pub prefix: Option<IpNet>,
}

/// One path in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    pub prefix: IpNet,
    /// The peer the path came from; `None` = originated here (or, in an Adj-RIB-Out
    /// listing, the peer it is sent to is the one asked about).
    pub from: Option<IpAddr>,
    pub next_hop: IpAddr,
    pub best: bool,
    /// Part of the ECMP set installed for the prefix.
    pub multipath: bool,
    pub stale: bool,
    pub attrs: PathAttributes,
}

/// Communities attached to originated prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Communities {
    /// RFC 1997 communities (`AS:value` as `AS << 16 | value`).
    pub standard: Vec<u32>,
    /// RFC 8092 large communities.
    pub large: Vec<crate::packet::LargeCommunity>,
}

impl Communities {
    pub fn is_empty(&self) -> bool {
        self.standard.is_empty() && self.large.is_empty()
    }
}

/// Counters for benchmarks and health.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpeakerStats {
    pub loc_rib_prefixes: usize,
    pub updates_in: u64,
    pub updates_out: u64,
}
