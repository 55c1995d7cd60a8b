//! Path attributes (RFC 4271 §4.3, §5) with RFC 7606 revised error handling.
//!
//! ```text
//! 0                   1
//! 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attr. Flags  |Attr. Type Code|   flags: Optional, Transitive, Partial, Extended Length
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Attr. Length (1, or 2 with Extended Length) | Attr. Value (variable) |
//! +-----------------------------------------------------------------------+
//! ```
//!
//! Every malformed attribute lands in exactly one RFC 7606 bucket: session reset (an
//! [`UpdateError`]), treat-as-withdraw (`Decoded::treat_as_withdraw`), or attribute discard
//! (silently dropped). This file never decides more than that.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};

use super::attr_header::put_header;
use super::error::UpdateError;
use super::iana::{attr_flags as fl, attr_type as ty};
use super::{AS_TRANS, AsSegment, DecodeCxt, LargeCommunity, Origin};
use super::{PathAttributes, RawAttribute, aspath, mp};

/// Optional + Transitive bits: what a recognised attribute's flags are checked against.
const CATEGORY: u8 = fl::OPTIONAL | fl::TRANSITIVE;
const WELL_KNOWN: u8 = fl::TRANSITIVE;
const OPTIONAL: u8 = fl::OPTIONAL;
const OPTIONAL_TRANSITIVE: u8 = fl::OPTIONAL | fl::TRANSITIVE;

/// The result of decoding a Path Attributes field that did not call for a session reset.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) attrs: PathAttributes,
    /// RFC 7606 treat-as-withdraw: a malformed attribute (or framing that breaks before the
    /// end of the field) means every prefix of this UPDATE is to be withdrawn.
    pub(crate) treat_as_withdraw: bool,
    /// Which attribute types were present (for the well-known mandatory check).
    seen: [u64; 4],
}

impl Decoded {
    pub(crate) fn has(&self, type_code: u8) -> bool {
        self.seen[usize::from(type_code / 64)] & (1 << (type_code % 64)) != 0
    }

    fn mark(&mut self, type_code: u8) {
        self.seen[usize::from(type_code / 64)] |= 1 << (type_code % 64);
    }
}

/// The whole attribute (flags, type, length, value) as NOTIFICATION data.
fn whole(raw: &[u8]) -> Vec<u8> {
    raw.to_vec()
}

/// Decodes the Path Attributes field of an UPDATE.
pub(crate) fn decode(mut bytes: &[u8], cxt: &DecodeCxt) -> Result<Decoded, UpdateError> {
    let mut out = Decoded::default();
    let mut as4_path: Option<Vec<AsSegment>> = None;
    let mut as4_aggregator: Option<(u32, Ipv4Addr)> = None;
    while !bytes.is_empty() {
        // RFC 7606 §4: an attribute header or value that overruns the field is
        // treat-as-withdraw; the Total Path Attribute Length still locates the NLRI.
        let (flags, type_code) = match bytes {
            [f, t, ..] if bytes.len() >= 3 => (*f, *t),
            _ => {
                out.treat_as_withdraw = true;
                break;
            }
        };
        let (header, len) = if flags & fl::EXTENDED_LENGTH != 0 {
            match bytes.get(2..4) {
                Some(l) => (4, usize::from(u16::from_be_bytes([l[0], l[1]]))),
                None => {
                    out.treat_as_withdraw = true;
                    break;
                }
            }
        } else {
            (3, usize::from(bytes[2]))
        };
        let Some(raw) = bytes.get(..header + len) else {
            out.treat_as_withdraw = true;
            break;
        };
        bytes = &bytes[header + len..];
        let value = &raw[header..];

        if out.has(type_code) {
            // RFC 7606 §3 g: duplicates are discarded, except the MP ones, which reset.
            if type_code == ty::MP_REACH_NLRI || type_code == ty::MP_UNREACH_NLRI {
                return Err(UpdateError::MalformedAttributeList(
                    "MP_REACH/MP_UNREACH appears twice",
                ));
            }
            continue;
        }
        out.mark(type_code);

        let category = flags & CATEGORY;
        let attrs = &mut out.attrs;
        match type_code {
            ty::ORIGIN => match (category, value) {
                (WELL_KNOWN, [0]) => attrs.origin = Some(Origin::Igp),
                (WELL_KNOWN, [1]) => attrs.origin = Some(Origin::Egp),
                (WELL_KNOWN, [2]) => attrs.origin = Some(Origin::Incomplete),
                _ => out.treat_as_withdraw = true,
            },
            ty::AS_PATH => match aspath::decode(value, cxt.four_octet_as) {
                Ok(path) if category == WELL_KNOWN => attrs.as_path = path,
                _ => out.treat_as_withdraw = true,
            },
            ty::NEXT_HOP => match (category, <[u8; 4]>::try_from(value)) {
                (WELL_KNOWN, Ok(a)) if valid_ipv4_next_hop(Ipv4Addr::from(a)) => {
                    attrs.next_hop = Some(Ipv4Addr::from(a));
                }
                _ => out.treat_as_withdraw = true,
            },
            ty::MULTI_EXIT_DISC => match (category, <[u8; 4]>::try_from(value)) {
                (OPTIONAL, Ok(v)) => attrs.med = Some(u32::from_be_bytes(v)),
                _ => out.treat_as_withdraw = true,
            },
            ty::LOCAL_PREF => match (category, <[u8; 4]>::try_from(value)) {
                (WELL_KNOWN, Ok(v)) => attrs.local_pref = Some(u32::from_be_bytes(v)),
                _ => out.treat_as_withdraw = true,
            },
            // RFC 7606 §7.6, §7.7: attribute discard.
            ty::ATOMIC_AGGREGATE => {
                attrs.atomic_aggregate = category == WELL_KNOWN && value.is_empty();
            }
            ty::AGGREGATOR => {
                attrs.aggregator = (category == OPTIONAL_TRANSITIVE)
                    .then(|| decode_aggregator(value, cxt.four_octet_as))
                    .flatten();
            }
            ty::COMMUNITIES => match category {
                OPTIONAL_TRANSITIVE if !value.is_empty() && value.len() % 4 == 0 => {
                    attrs.communities = value
                        .chunks_exact(4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                }
                _ => out.treat_as_withdraw = true,
            },
            ty::ORIGINATOR_ID => match (category, <[u8; 4]>::try_from(value)) {
                (OPTIONAL, Ok(v)) => attrs.originator_id = Some(Ipv4Addr::from(v)),
                _ => out.treat_as_withdraw = true,
            },
            ty::CLUSTER_LIST => match category {
                OPTIONAL if !value.is_empty() && value.len() % 4 == 0 => {
                    attrs.cluster_list = value
                        .chunks_exact(4)
                        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                        .collect();
                }
                _ => out.treat_as_withdraw = true,
            },
            ty::MP_REACH_NLRI | ty::MP_UNREACH_NLRI => {
                if category != OPTIONAL {
                    return Err(UpdateError::AttributeFlags { attr: whole(raw) });
                }
                let known = mp::decode(type_code, value, attrs).map_err(|reason| {
                    UpdateError::OptionalAttribute {
                        attr: whole(raw),
                        reason,
                    }
                })?;
                if !known {
                    attrs.unknown.push(raw_attribute(flags, type_code, value));
                }
            }
            // RFC 6793 §6: AS4_PATH/AS4_AGGREGATOR from a 4-octet peer, or malformed ones,
            // are discarded.
            ty::AS4_PATH => {
                if !cxt.four_octet_as && category == OPTIONAL_TRANSITIVE {
                    as4_path = aspath::decode(value, true).ok().map(|p| {
                        p.into_iter()
                            .filter(|s| {
                                !matches!(s, AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_))
                            })
                            .collect()
                    });
                }
            }
            ty::AS4_AGGREGATOR => {
                if !cxt.four_octet_as && category == OPTIONAL_TRANSITIVE {
                    as4_aggregator = decode_aggregator(value, true);
                }
            }
            ty::LARGE_COMMUNITY => match category {
                OPTIONAL_TRANSITIVE if !value.is_empty() && value.len() % 12 == 0 => {
                    attrs.large_communities = value
                        .chunks_exact(12)
                        .map(|c| LargeCommunity {
                            global_admin: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                            local_data1: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                            local_data2: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                        })
                        .collect();
                }
                _ => out.treat_as_withdraw = true,
            },
            _ if flags & fl::OPTIONAL == 0 => {
                return Err(UpdateError::UnrecognizedWellKnownAttribute { attr: whole(raw) });
            }
            _ => attrs.unknown.push(raw_attribute(flags, type_code, value)),
        }
    }

    if !cxt.four_octet_as {
        reconcile_as4(&mut out.attrs, as4_path, as4_aggregator);
    }
    Ok(out)
}

fn raw_attribute(flags: u8, type_code: u8, value: &[u8]) -> RawAttribute {
    RawAttribute {
        flags: flags & !fl::EXTENDED_LENGTH,
        type_code,
        value: value.to_vec(),
    }
}

/// RFC 4271 §6.3: the NEXT_HOP must be a usable unicast host address.
fn valid_ipv4_next_hop(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast())
}

/// AGGREGATOR / AS4_AGGREGATOR: AS (2 or 4 octets) + IPv4 address. Wrong length or AS 0
/// (RFC 7607) discards it.
fn decode_aggregator(value: &[u8], four_octet: bool) -> Option<(u32, Ipv4Addr)> {
    let (asn, addr) = match (four_octet, value) {
        (true, [a0, a1, a2, a3, rest @ ..]) => (u32::from_be_bytes([*a0, *a1, *a2, *a3]), rest),
        (false, [a0, a1, rest @ ..]) => (u32::from(u16::from_be_bytes([*a0, *a1])), rest),
        _ => return None,
    };
    let addr = <[u8; 4]>::try_from(addr).ok()?;
    (asn != 0).then(|| (asn, Ipv4Addr::from(addr)))
}

/// RFC 6793 §4.2.3, for a 2-octet peer.
fn reconcile_as4(
    attrs: &mut PathAttributes,
    as4_path: Option<Vec<AsSegment>>,
    as4_aggregator: Option<(u32, Ipv4Addr)>,
) {
    if let Some((asn, _)) = attrs.aggregator
        && asn != u32::from(AS_TRANS)
    {
        // The aggregator is a 2-octet speaker: AS4_AGGREGATOR and AS4_PATH are stale.
        return;
    }
    if let (Some(agg4), Some(_)) = (as4_aggregator, attrs.aggregator) {
        attrs.aggregator = Some(agg4);
    }
    if let Some(as4) = as4_path {
        let as_path = std::mem::take(&mut attrs.as_path);
        attrs.as_path = aspath::merge_as4(as_path, as4);
    }
}

// ---------------------------------------------------------------------------------------
// Encoding.

/// Writes the Path Attributes field the way BIRD 2 and FRR do (so that our UPDATEs look
/// like theirs on the wire): MP_REACH_NLRI first, then MP_UNREACH_NLRI, both with the
/// Extended Length flag (except the empty MP_UNREACH of an End-of-RIB marker), then the
/// rest in ascending type code order (RFC 4271 §5), unknown attributes slotted in by type.
/// A 2-octet peer gets AS_TRANS plus AS4_PATH / AS4_AGGREGATOR (RFC 6793 §4.2.2).
///
/// AS_PATH is written whenever ORIGIN is (an announcement), even when empty.
pub(crate) fn encode(attrs: &PathAttributes, cxt: &DecodeCxt, buf: &mut BytesMut) {
    let four = cxt.four_octet_as;
    let mut unknown = attrs.unknown.iter().peekable();
    let mut flush_unknown_below = |buf: &mut BytesMut, type_code: u16| {
        while let Some(raw) = unknown.next_if(|r| u16::from(r.type_code) < type_code) {
            put_header(buf, raw.flags, raw.type_code, raw.value.len());
            buf.put_slice(&raw.value);
        }
    };

    if let Some(mp) = &attrs.mp_reach {
        mp::encode_mp_reach(mp, buf);
    }
    if let Some(mp) = &attrs.mp_unreach {
        mp::encode_mp_unreach(mp, buf);
    }
    if let Some(origin) = attrs.origin {
        put_header(buf, WELL_KNOWN, ty::ORIGIN, 1);
        buf.put_u8(match origin {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        });
    }
    if attrs.origin.is_some() || !attrs.as_path.is_empty() {
        put_header(
            buf,
            WELL_KNOWN,
            ty::AS_PATH,
            aspath::encoded_len(&attrs.as_path, four),
        );
        aspath::encode(&attrs.as_path, four, buf);
    }
    if let Some(nh) = attrs.next_hop {
        put_header(buf, WELL_KNOWN, ty::NEXT_HOP, 4);
        buf.put_slice(&nh.octets());
    }
    if let Some(med) = attrs.med {
        put_header(buf, OPTIONAL, ty::MULTI_EXIT_DISC, 4);
        buf.put_u32(med);
    }
    if let Some(lp) = attrs.local_pref {
        put_header(buf, WELL_KNOWN, ty::LOCAL_PREF, 4);
        buf.put_u32(lp);
    }
    if attrs.atomic_aggregate {
        put_header(buf, WELL_KNOWN, ty::ATOMIC_AGGREGATE, 0);
    }
    if let Some((asn, addr)) = attrs.aggregator {
        put_header(
            buf,
            OPTIONAL_TRANSITIVE,
            ty::AGGREGATOR,
            if four { 8 } else { 6 },
        );
        if four {
            buf.put_u32(asn);
        } else {
            buf.put_u16(u16::try_from(asn).unwrap_or(AS_TRANS));
        }
        buf.put_slice(&addr.octets());
    }
    if !attrs.communities.is_empty() {
        put_header(
            buf,
            OPTIONAL_TRANSITIVE,
            ty::COMMUNITIES,
            4 * attrs.communities.len(),
        );
        attrs.communities.iter().for_each(|c| buf.put_u32(*c));
    }
    if let Some(id) = attrs.originator_id {
        put_header(buf, OPTIONAL, ty::ORIGINATOR_ID, 4);
        buf.put_slice(&id.octets());
    }
    if !attrs.cluster_list.is_empty() {
        put_header(
            buf,
            OPTIONAL,
            ty::CLUSTER_LIST,
            4 * attrs.cluster_list.len(),
        );
        attrs
            .cluster_list
            .iter()
            .for_each(|c| buf.put_slice(&c.octets()));
    }
    flush_unknown_below(buf, u16::from(ty::AS4_PATH));
    if !four && let Some(as4) = aspath::as4_path_for(&attrs.as_path) {
        put_header(
            buf,
            OPTIONAL_TRANSITIVE,
            ty::AS4_PATH,
            aspath::encoded_len(&as4, true),
        );
        aspath::encode(&as4, true, buf);
    }
    flush_unknown_below(buf, u16::from(ty::AS4_AGGREGATOR));
    if !four
        && let Some((asn, addr)) = attrs
            .aggregator
            .filter(|(asn, _)| *asn > u32::from(u16::MAX))
    {
        put_header(buf, OPTIONAL_TRANSITIVE, ty::AS4_AGGREGATOR, 8);
        buf.put_u32(asn);
        buf.put_slice(&addr.octets());
    }
    flush_unknown_below(buf, u16::from(ty::LARGE_COMMUNITY));
    if !attrs.large_communities.is_empty() {
        put_header(
            buf,
            OPTIONAL_TRANSITIVE,
            ty::LARGE_COMMUNITY,
            12 * attrs.large_communities.len(),
        );
        for c in &attrs.large_communities {
            buf.put_u32(c.global_admin);
            buf.put_u32(c.local_data1);
            buf.put_u32(c.local_data2);
        }
    }
    flush_unknown_below(buf, 256);
}

impl RawAttribute {
    /// What to pass on to a peer (RFC 4271 §5): an optional transitive attribute with the
    /// Partial bit set, since this speaker did not interpret it; `None` for an optional
    /// non-transitive one, which must not be propagated.
    pub fn for_readvertisement(&self) -> Option<RawAttribute> {
        (self.flags & fl::OPTIONAL != 0 && self.flags & fl::TRANSITIVE != 0).then(|| RawAttribute {
            flags: self.flags | fl::PARTIAL,
            type_code: self.type_code,
            value: self.value.clone(),
        })
    }

    pub fn is_transitive(&self) -> bool {
        self.flags & fl::TRANSITIVE != 0
    }
}

impl PathAttributes {
    /// Unknown attributes to pass on, Partial bit set, non-transitive ones dropped.
    pub fn unknown_for_readvertisement(&self) -> Vec<RawAttribute> {
        self.unknown
            .iter()
            .filter_map(RawAttribute::for_readvertisement)
            .collect()
    }

    /// Octets the attributes take on the wire for `cxt` (without NLRI in MP_REACH counted
    /// separately: the MP attributes are included in full).
    pub fn encoded_len(&self, cxt: &DecodeCxt) -> usize {
        let mut buf = BytesMut::new();
        encode(self, cxt, &mut buf);
        buf.len()
    }
}
