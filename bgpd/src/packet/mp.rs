//! MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760 §3, §4): the attributes that carry IPv6
//! (and optionally IPv4) prefixes with their next hop (RFC 2545: global, or global plus
//! link-local).
//!
//! A family whose NLRI this codec cannot parse is not an error here: the attribute is kept
//! raw. Anything malformed is, because RFC 7606 §7.11 leaves no safe way to carry on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};

use super::attr_header::{put_extended_header, put_header};
use super::iana::{attr_flags as fl, attr_type as ty};
use super::{Afi, MpReach, MpUnreach, PathAttributes, Safi, nlri};

const OPTIONAL: u8 = fl::OPTIONAL;

/// MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760 §3, §4). Returns `Ok(false)` for a family whose
/// NLRI this codec cannot parse (kept as a raw attribute), `Err` when it is malformed.
///
/// ```text
/// MP_REACH_NLRI:                                MP_UNREACH_NLRI:
/// +---------------------------------------+     +-----------------------------------+
/// | AFI (2) | SAFI (1)                    |     | AFI (2) | SAFI (1)                |
/// | Length of Next Hop Network Address (1)|     | Withdrawn Routes (variable)     |
/// | Network Address of Next Hop (var)     |     +-----------------------------------+
/// | Reserved (1)                          |
/// | Network Layer Reachability Info (var) |
/// +---------------------------------------+
/// ```
pub(crate) fn decode(
    type_code: u8,
    value: &[u8],
    attrs: &mut PathAttributes,
) -> Result<bool, &'static str> {
    let [a0, a1, safi, rest @ ..] = value else {
        return Err("shorter than AFI and SAFI");
    };
    let afi = Afi::from_u16(u16::from_be_bytes([*a0, *a1]));
    let safi = Safi::from_u8(*safi);
    let supported = matches!(afi, Afi::Ipv4 | Afi::Ipv6) && safi == Safi::Unicast;
    if type_code == ty::MP_UNREACH_NLRI {
        if !supported {
            return Ok(false);
        }
        let mut withdrawn = Vec::new();
        nlri::decode(afi, rest, &mut withdrawn).map_err(|_| "withdrawn routes malformed")?;
        attrs.mp_unreach = Some(MpUnreach {
            afi,
            safi,
            withdrawn,
        });
        return Ok(true);
    }
    let [nh_len, rest @ ..] = rest else {
        return Err("next hop length missing");
    };
    let nh_len = usize::from(*nh_len);
    let (Some(nh), Some(nlri_bytes)) = (rest.get(..nh_len), rest.get(nh_len + 1..)) else {
        return Err("next hop overruns the attribute");
    };
    if !supported {
        return Ok(false);
    }
    let (next_hop, link_local_next_hop) = match (afi, nh.len()) {
        (Afi::Ipv4, 4) => (IpAddr::V4(Ipv4Addr::from(take::<4>(nh))), None),
        (_, 16) => (IpAddr::V6(Ipv6Addr::from(take::<16>(nh))), None),
        (_, 32) => (
            IpAddr::V6(Ipv6Addr::from(take::<16>(nh))),
            Some(Ipv6Addr::from(take::<16>(&nh[16..]))),
        ),
        _ => return Err("next hop length invalid for the family"),
    };
    let mut prefixes = Vec::new();
    nlri::decode(afi, nlri_bytes, &mut prefixes).map_err(|_| "NLRI malformed")?;
    attrs.mp_reach = Some(MpReach {
        afi,
        safi,
        next_hop,
        link_local_next_hop,
        nlri: prefixes,
    });
    Ok(true)
}

/// The first N octets of `bytes` (which the caller has checked are there).
fn take<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = bytes.len().min(N);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// Writes MP_REACH_NLRI, always in the Extended Length form (as BIRD and FRR do).
pub(crate) fn encode_mp_reach(mp: &MpReach, buf: &mut BytesMut) {
    let nh_len = match (mp.next_hop, mp.link_local_next_hop) {
        (IpAddr::V4(_), _) => 4,
        (IpAddr::V6(_), None) => 16,
        (IpAddr::V6(_), Some(_)) => 32,
    };
    let len = 5 + nh_len + mp.nlri.iter().map(nlri::encoded_len).sum::<usize>();
    put_extended_header(buf, OPTIONAL, ty::MP_REACH_NLRI, len);
    buf.put_u16(mp.afi.to_u16());
    buf.put_u8(mp.safi.to_u8());
    buf.put_u8(nh_len as u8);
    match mp.next_hop {
        IpAddr::V4(a) => buf.put_slice(&a.octets()),
        IpAddr::V6(a) => {
            buf.put_slice(&a.octets());
            if let Some(ll) = mp.link_local_next_hop {
                buf.put_slice(&ll.octets());
            }
        }
    }
    buf.put_u8(0);
    nlri::encode_all(&mp.nlri, buf);
}

/// Writes MP_UNREACH_NLRI: Extended Length form when it withdraws anything, the short form
/// for the empty one of an End-of-RIB marker (as BIRD and FRR do).
pub(crate) fn encode_mp_unreach(mp: &MpUnreach, buf: &mut BytesMut) {
    let len = 3 + mp.withdrawn.iter().map(nlri::encoded_len).sum::<usize>();
    if mp.withdrawn.is_empty() {
        put_header(buf, OPTIONAL, ty::MP_UNREACH_NLRI, len);
    } else {
        put_extended_header(buf, OPTIONAL, ty::MP_UNREACH_NLRI, len);
    }
    buf.put_u16(mp.afi.to_u16());
    buf.put_u8(mp.safi.to_u8());
    nlri::encode_all(&mp.withdrawn, buf);
}
