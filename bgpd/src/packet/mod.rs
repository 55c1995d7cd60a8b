//! The BGP wire codec: message and attribute types (this file), their encoders and decoders
//! (one file per message kind), and the mapping from decode errors to NOTIFICATIONs.
//!
//! This module is pure: no sockets, no clocks, no logging. It turns bytes into typed
//! messages and back, and nothing else.
//!
//! Entry points: [`decode_message`] (streaming, one message per call), [`encode_message`],
//! [`DecodeError::notification`] (the NOTIFICATION to send, `None` for RFC 7606
//! treat-as-withdraw) and [`pack_updates`] (a table into as few UPDATEs as fit).
//!
//! | file | what |
//! |---|---|
//! | `message.rs` | header (RFC 4271 §4.1), `decode_message`, `encode_message` |
//! | `open.rs`, `capability.rs` | OPEN, optional parameters (RFC 9072), capabilities (RFC 5492) |
//! | `update.rs`, `attributes.rs`, `aspath.rs`, `mp.rs`, `nlri.rs` | UPDATE, path attributes, AS_PATH/AS4_PATH (RFC 6793), MP_REACH/MP_UNREACH (RFC 4760), prefixes |
//! | `notification.rs`, `route_refresh.rs` | NOTIFICATION, KEEPALIVE, ROUTE-REFRESH (RFC 2918) |
//! | `error.rs` | one error enum per message kind, codes and subcodes (RFC 4271 §6, RFC 7606) |
//! | `iana.rs` | registry numbers: AFI/SAFI, message and attribute types, flags |
//! | `pack.rs` | `pack_updates` |

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

mod aspath;
mod attr_header;
mod attributes;
mod capability;
pub mod error;
pub mod iana;
mod message;
mod mp;
pub mod nlri;
mod notification;
mod open;
mod pack;
mod route_refresh;
mod update;

pub use aspath::path_len;
pub use error::{DecodeError, HeaderError, OpenError, RouteRefreshError, UpdateError};
pub use message::{decode_message, encode_message};
pub use pack::pack_updates;

/// The BGP version this speaker talks (RFC 4271).
pub const BGP_VERSION: u8 = 4;

/// Length of the BGP header: marker (16), length (2), type (1).
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended-message capability (RFC 4271 §4).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// AS_TRANS (RFC 6793): the 2-octet stand-in for a 4-octet AS number.
pub const AS_TRANS: u16 = 23456;

/// Context a decoder needs that is not in the bytes themselves: what was negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeCxt {
    /// Both sides advertised the 4-octet AS capability: AS_PATH carries 4-octet ASNs.
    pub four_octet_as: bool,
}

impl Default for DecodeCxt {
    fn default() -> Self {
        Self {
            four_octet_as: true,
        }
    }
}

/// Address family identifier (IANA "Address Family Numbers").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    Ipv4,
    Ipv6,
    Other(u16),
}

/// Subsequent address family identifier (IANA "SAFI Values").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Safi {
    Unicast,
    Other(u8),
}

/// One BGP message.
// UPDATE dominates both size and traffic; boxing it would add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// OPEN (RFC 4271 §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// Always 4.
    pub version: u8,
    /// The 2-octet "My Autonomous System" field (AS_TRANS when the real ASN needs 4 octets).
    pub my_as: u16,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    /// Capabilities from optional parameter type 2 (RFC 5492), in wire order.
    pub capabilities: Vec<Capability>,
}

/// A capability advertised in OPEN (IANA "Capability Codes").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Code 1, RFC 4760.
    Multiprotocol { afi: Afi, safi: Safi },
    /// Code 2, RFC 2918.
    RouteRefresh,
    /// Code 5, RFC 8950: NLRI of (AFI, SAFI) may carry a next hop of the third AFI.
    ExtendedNextHop(Vec<(Afi, Safi, Afi)>),
    /// Code 64, RFC 4724.
    GracefulRestart {
        /// The R bit: the sender has restarted.
        restarting: bool,
        /// Restart time in seconds (12 bits).
        restart_time: u16,
        /// Per family: (afi, safi, forwarding state preserved).
        families: Vec<(Afi, Safi, bool)>,
    },
    /// Code 65, RFC 6793.
    FourOctetAs(u32),
    /// Any other capability, kept as is.
    Other { code: u8, value: Vec<u8> },
}

/// UPDATE (RFC 4271 §4.3). IPv4 unicast NLRI live in `withdrawn`/`nlri`; other families
/// in `attrs.mp_reach` / `attrs.mp_unreach` (RFC 4760).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<IpNet>,
    pub attrs: PathAttributes,
    pub nlri: Vec<IpNet>,
}

/// ORIGIN values (RFC 4271 §5.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Origin {
    #[default]
    Igp,
    Egp,
    Incomplete,
}

/// One AS_PATH segment (RFC 4271 §4.3, RFC 5065 for the confederation kinds).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AsSegment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
    ConfedSequence(Vec<u32>),
    ConfedSet(Vec<u32>),
}

/// A large community (RFC 8092).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local_data1: u32,
    pub local_data2: u32,
}

/// MP_REACH_NLRI (RFC 4760 §3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MpReach {
    pub afi: Afi,
    pub safi: Safi,
    /// The global next hop (IPv4 or IPv6).
    pub next_hop: IpAddr,
    /// For IPv6: the link-local next hop when 32 octets were sent (RFC 2545).
    pub link_local_next_hop: Option<std::net::Ipv6Addr>,
    pub nlri: Vec<IpNet>,
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MpUnreach {
    pub afi: Afi,
    pub safi: Safi,
    pub withdrawn: Vec<IpNet>,
}

/// An attribute this speaker does not interpret, kept for passing on (optional transitive)
/// or dropping (optional non-transitive).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of an UPDATE, decoded. Absent attributes are `None`/empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathAttributes {
    /// Type 1.
    pub origin: Option<Origin>,
    /// Type 2, with 4-octet ASNs once AS4_PATH (type 17) has been merged (RFC 6793 §4.2.3).
    pub as_path: Vec<AsSegment>,
    /// Type 3.
    pub next_hop: Option<Ipv4Addr>,
    /// Type 4.
    pub med: Option<u32>,
    /// Type 5.
    pub local_pref: Option<u32>,
    /// Type 6.
    pub atomic_aggregate: bool,
    /// Type 7: (AS, address).
    pub aggregator: Option<(u32, Ipv4Addr)>,
    /// Type 8 (RFC 1997).
    pub communities: Vec<u32>,
    /// Type 9 (RFC 4456).
    pub originator_id: Option<Ipv4Addr>,
    /// Type 10 (RFC 4456).
    pub cluster_list: Vec<Ipv4Addr>,
    /// Type 14 (RFC 4760).
    pub mp_reach: Option<MpReach>,
    /// Type 15 (RFC 4760).
    pub mp_unreach: Option<MpUnreach>,
    /// Type 32 (RFC 8092).
    pub large_communities: Vec<LargeCommunity>,
    /// Anything else (optional transitive ones are passed on with the partial bit set).
    pub unknown: Vec<RawAttribute>,
}

/// NOTIFICATION (RFC 4271 §4.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// ROUTE-REFRESH (RFC 2918 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: Afi,
    pub safi: Safi,
}

// The codec's entry points (implemented in `message.rs`, re-exported above; the contract
// other modules code against):
//
//   pub fn decode_message(buf: &mut bytes::BytesMut, cxt: &DecodeCxt)
//       -> Result<Option<Message>, DecodeError>
//     Streaming: `Ok(None)` while `buf` holds less than one whole message; otherwise consumes
//     exactly one message from the front of `buf`.
//   pub fn encode_message(msg: &Message, cxt: &DecodeCxt, buf: &mut bytes::BytesMut)
//   impl DecodeError { pub fn notification(&self) -> Option<Notification> }
//     `None` only for RFC 7606 treat-as-withdraw: `DecodeError::TreatAsWithdraw { withdrawn }`
//     carries every prefix of the bad UPDATE (IPv4 NLRI and MP_REACH/MP_UNREACH ones) and the
//     session stays up; every other error is the NOTIFICATION to send before closing.
