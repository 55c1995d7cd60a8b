//! OPEN messages: the one we send, and checking the one we receive against our
//! configuration (RFC 4271 §6.2, RFC 5492, RFC 6793), yielding what was negotiated.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::config::Family;
use crate::packet::{AS_TRANS, Afi, Capability, Notification, Open, Safi};

/// NOTIFICATION codes (RFC 4271 §4.5, IANA "BGP Error Codes").
pub mod code {
    pub const HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
}

/// OPEN error subcodes (IANA "OPEN Message Error subcodes").
pub mod open_sub {
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_ID: u8 = 3;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
}

/// Cease subcodes (RFC 4486).
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const OTHER_CONFIG_CHANGE: u8 = 6;
    pub const COLLISION: u8 = 7;
    /// RFC 9384.
    pub const BFD_DOWN: u8 = 10;
}

/// What our side of the session is configured to offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSide {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub peer_as: u32,
    pub hold_time: u16,
    pub families: Vec<Family>,
    /// Restart time to advertise, `None` = no graceful-restart capability.
    pub graceful_restart: Option<u16>,
    /// RFC 4724 R bit: this speaker has just restarted (it found its forwarding state,
    /// kernel routes of a previous run, and has not resynchronised yet).
    pub restarting: bool,
    /// RFC 4724 F bit per family: forwarding survives our restart (kernel routes are
    /// left in place when we stop), so peers may keep using our routes meanwhile.
    pub forwarding_preserved: bool,
    /// Offer RFC 8950 extended next hop: IPv4 unicast routes with IPv6 next hops.
    pub extended_next_hop: bool,
}

/// The peer's graceful-restart capability (RFC 4724 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRestart {
    pub restart_time: u16,
    /// The R bit: the peer has just restarted.
    pub restarting: bool,
    /// Families whose forwarding state the peer preserved.
    pub preserved: Vec<Family>,
}

/// The outcome of the OPEN exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_id: Ipv4Addr,
    /// min(ours, theirs); 0 = no hold timer and no keepalives.
    pub hold_time: u16,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    /// Families both sides announced (IPv4 unicast implied without any MP capability).
    pub families: Vec<Family>,
    pub graceful_restart: Option<PeerRestart>,
    /// RFC 8950: both sides offered IPv4 unicast NLRI with IPv6 next hops.
    pub extended_next_hop: bool,
}

impl Negotiated {
    /// Keepalive interval: a third of the hold time (RFC 4271 §10).
    pub fn keepalive_interval(&self) -> Option<Duration> {
        (self.hold_time > 0).then(|| Duration::from_secs(u64::from((self.hold_time / 3).max(1))))
    }

    pub fn hold_duration(&self) -> Option<Duration> {
        (self.hold_time > 0).then(|| Duration::from_secs(u64::from(self.hold_time)))
    }
}

fn family_afi_safi(f: Family) -> (Afi, Safi) {
    match f {
        Family::Ipv4Unicast => (Afi::Ipv4, Safi::Unicast),
        Family::Ipv6Unicast => (Afi::Ipv6, Safi::Unicast),
    }
}

fn afi_safi_family(afi: Afi, safi: Safi) -> Option<Family> {
    match (afi, safi) {
        (Afi::Ipv4, Safi::Unicast) => Some(Family::Ipv4Unicast),
        (Afi::Ipv6, Safi::Unicast) => Some(Family::Ipv6Unicast),
        _ => None,
    }
}

/// The one RFC 8950 combination this speaker offers and uses: IPv4 unicast, IPv6 next hop.
const IPV4_OVER_IPV6: (Afi, Safi, Afi) = (Afi::Ipv4, Safi::Unicast, Afi::Ipv6);

/// The OPEN we send.
pub fn build_open(local: &LocalSide, restarting: bool) -> Open {
    let mut capabilities: Vec<Capability> = local
        .families
        .iter()
        .map(|f| {
            let (afi, safi) = family_afi_safi(*f);
            Capability::Multiprotocol { afi, safi }
        })
        .collect();
    capabilities.push(Capability::RouteRefresh);
    if local.extended_next_hop && local.families.contains(&Family::Ipv4Unicast) {
        capabilities.push(Capability::ExtendedNextHop(vec![IPV4_OVER_IPV6]));
    }
    // Always offered: the session reader relies on it (the peer's OPEN alone decides).
    capabilities.push(Capability::FourOctetAs(local.local_as));
    if let Some(restart_time) = local.graceful_restart {
        capabilities.push(Capability::GracefulRestart {
            restarting,
            restart_time,
            families: local
                .families
                .iter()
                .map(|f| {
                    let (afi, safi) = family_afi_safi(*f);
                    (afi, safi, local.forwarding_preserved)
                })
                .collect(),
        });
    }
    Open {
        version: 4,
        my_as: u16::try_from(local.local_as).unwrap_or(AS_TRANS),
        hold_time: local.hold_time,
        router_id: local.router_id,
        capabilities,
    }
}

fn open_error(subcode: u8, data: Vec<u8>) -> Notification {
    Notification {
        code: code::OPEN,
        subcode,
        data,
    }
}

/// Checks a received OPEN (RFC 4271 §6.2) and negotiates the session parameters.
pub fn negotiate(local: &LocalSide, open: &Open) -> Result<Negotiated, Notification> {
    if open.version != 4 {
        return Err(open_error(open_sub::UNSUPPORTED_VERSION, vec![0, 4]));
    }
    let mut four_octet = None;
    let mut route_refresh = false;
    let mut mp = Vec::new();
    let mut gr = None;
    let mut extended_next_hop = false;
    for cap in &open.capabilities {
        match cap {
            Capability::FourOctetAs(asn) => four_octet = Some(*asn),
            Capability::RouteRefresh => route_refresh = true,
            Capability::Multiprotocol { afi, safi } => {
                if let Some(f) = afi_safi_family(*afi, *safi) {
                    mp.push(f);
                }
            }
            Capability::GracefulRestart {
                restarting,
                restart_time,
                families,
            } => {
                gr = Some(PeerRestart {
                    restart_time: *restart_time,
                    restarting: *restarting,
                    preserved: families
                        .iter()
                        .filter(|(_, _, fwd)| *fwd)
                        .filter_map(|(a, s, _)| afi_safi_family(*a, *s))
                        .collect(),
                });
            }
            Capability::ExtendedNextHop(entries) => {
                extended_next_hop |= entries.contains(&IPV4_OVER_IPV6);
            }
            Capability::Other { .. } => {}
        }
    }
    let peer_as = four_octet.unwrap_or(u32::from(open.my_as));
    if peer_as != local.peer_as {
        let data = open.my_as.to_be_bytes().to_vec();
        return Err(open_error(open_sub::BAD_PEER_AS, data));
    }
    if open.hold_time == 1 || open.hold_time == 2 {
        return Err(open_error(open_sub::UNACCEPTABLE_HOLD_TIME, Vec::new()));
    }
    // RFC 6286: zero is never valid; the same identifier as ours is only an error within
    // one AS (for eBGP, RFC 6286 §2.1 allows it, but two routers sharing an id is a
    // misconfiguration we still tolerate there).
    if open.router_id.is_unspecified()
        || (open.router_id == local.router_id && peer_as == local.local_as)
    {
        return Err(open_error(
            open_sub::BAD_BGP_ID,
            open.router_id.octets().to_vec(),
        ));
    }
    if mp.is_empty() {
        // No MP capability at all: plain RFC 4271 IPv4 unicast.
        mp.push(Family::Ipv4Unicast);
    }
    let families: Vec<Family> = local
        .families
        .iter()
        .copied()
        .filter(|f| mp.contains(f))
        .collect();
    let extended_next_hop =
        extended_next_hop && local.extended_next_hop && families.contains(&Family::Ipv4Unicast);
    Ok(Negotiated {
        peer_as,
        peer_id: open.router_id,
        hold_time: local.hold_time.min(open.hold_time),
        four_octet_as: four_octet.is_some(),
        route_refresh,
        families,
        graceful_restart: gr,
        extended_next_hop,
    })
}
