//! Conversions between IANA registry numbers and the codec's enums. Unknown values are
//! kept (`Other`), never rejected here: deciding what is unsupported is the caller's job.

use super::{Afi, Safi};

impl Afi {
    /// IANA "Address Family Numbers": 1 = IP (IPv4), 2 = IP6.
    pub fn from_u16(value: u16) -> Afi {
        match value {
            1 => Afi::Ipv4,
            2 => Afi::Ipv6,
            other => Afi::Other(other),
        }
    }

    pub fn to_u16(self) -> u16 {
        match self {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
            Afi::Other(v) => v,
        }
    }
}

impl From<u16> for Afi {
    fn from(value: u16) -> Self {
        Afi::from_u16(value)
    }
}

impl From<Afi> for u16 {
    fn from(afi: Afi) -> Self {
        afi.to_u16()
    }
}

impl Safi {
    /// IANA "Subsequent Address Family Identifiers (SAFI) Parameters": 1 = unicast.
    pub fn from_u8(value: u8) -> Safi {
        match value {
            1 => Safi::Unicast,
            other => Safi::Other(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            Safi::Unicast => 1,
            Safi::Other(v) => v,
        }
    }
}

impl From<u8> for Safi {
    fn from(value: u8) -> Self {
        Safi::from_u8(value)
    }
}

impl From<Safi> for u8 {
    fn from(safi: Safi) -> Self {
        safi.to_u8()
    }
}

/// Message types (IANA "BGP Message Types").
pub mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    /// RFC 2918.
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Path attribute type codes (IANA "BGP Path Attributes").
pub mod attr_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// Path attribute flag bits (RFC 4271 §4.3).
pub mod attr_flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Capability codes (IANA "Capability Codes").
pub mod capability_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
}
