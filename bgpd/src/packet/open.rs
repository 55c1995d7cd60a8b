//! OPEN (RFC 4271 §4.2) with capabilities (RFC 5492) and extended optional parameters
//! (RFC 9072).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Optional Parameters (variable)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Optional parameter:            RFC 9072 extended form (Opt Parm Len = 255,
//! +------------------+           first parameter type = 255):
//! | Parm. Type (1)   |           | 255 | 255 | Ext. Opt. Parm. Len (2) |
//! | Parm. Length (1) |           then each: | Parm. Type (1) | Parm. Length (2) | Value |
//! | Parm. Value      |
//! +------------------+
//! ```
//!
//! The decoder checks what the bytes alone can show (version, AS 0, identifier 0, hold
//! time 1 or 2, parameter framing); matching the peer AS and our own identifier is the
//! speaker's job.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};

use super::error::OpenError;
use super::{BGP_VERSION, Capability, Open, capability};

/// Optional parameter type 2 (IANA "BGP OPEN Optional Parameter Types").
const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072: Opt Parm Len and Non-Ext OP Type both 255 announce the extended form.
const PARAM_EXTENDED: u8 = 255;
/// Fixed part of the body: version, AS, hold time, identifier, Opt Parm Len.
pub(crate) const OPEN_FIXED_LEN: usize = 10;

impl Open {
    /// An OPEN for `asn` (written as AS_TRANS in the 2-octet field when it does not fit;
    /// the caller adds `Capability::FourOctetAs` itself).
    pub fn new(
        asn: u32,
        hold_time: u16,
        router_id: Ipv4Addr,
        capabilities: Vec<Capability>,
    ) -> Open {
        Open {
            version: BGP_VERSION,
            my_as: u16::try_from(asn).unwrap_or(super::AS_TRANS),
            hold_time,
            router_id,
            capabilities,
        }
    }

    /// The peer's AS: the 4-octet capability's when present (RFC 6793 §4.1), else `my_as`.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    /// The ASN of the 4-octet AS capability, if advertised.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// Whether the route refresh capability (code 2) was advertised.
    pub fn route_refresh(&self) -> bool {
        self.capabilities.contains(&Capability::RouteRefresh)
    }

    /// The (AFI, SAFI) pairs of the multiprotocol capabilities, in wire order.
    pub fn multiprotocol(&self) -> impl Iterator<Item = (super::Afi, super::Safi)> + '_ {
        self.capabilities.iter().filter_map(|c| match c {
            Capability::Multiprotocol { afi, safi } => Some((*afi, *safi)),
            _ => None,
        })
    }

    /// The graceful restart capability, if advertised.
    pub fn graceful_restart(&self) -> Option<&Capability> {
        self.capabilities
            .iter()
            .find(|c| matches!(c, Capability::GracefulRestart { .. }))
    }

    /// Decodes an OPEN body (everything after the 19-octet header).
    pub fn decode(body: &[u8]) -> Result<Open, OpenError> {
        let Some((fixed, params)) = body.split_first_chunk::<OPEN_FIXED_LEN>() else {
            return Err(OpenError::Malformed("OPEN shorter than its fixed part"));
        };
        let version = fixed[0];
        if version != BGP_VERSION {
            return Err(OpenError::UnsupportedVersion(version));
        }
        let my_as = u16::from_be_bytes([fixed[1], fixed[2]]);
        let hold_time = u16::from_be_bytes([fixed[3], fixed[4]]);
        let router_id = Ipv4Addr::new(fixed[5], fixed[6], fixed[7], fixed[8]);
        let opt_len = usize::from(fixed[9]);
        if my_as == 0 {
            return Err(OpenError::BadPeerAs(0));
        }
        if router_id.is_unspecified() {
            return Err(OpenError::BadBgpIdentifier(router_id));
        }
        if hold_time == 1 || hold_time == 2 {
            return Err(OpenError::UnacceptableHoldTime(hold_time));
        }

        let mut capabilities = Vec::new();
        let extended =
            opt_len == usize::from(PARAM_EXTENDED) && params.first() == Some(&PARAM_EXTENDED);
        if extended {
            let [_, l0, l1, rest @ ..] = params else {
                return Err(OpenError::Malformed(
                    "extended optional parameters length missing",
                ));
            };
            if usize::from(u16::from_be_bytes([*l0, *l1])) != rest.len() {
                return Err(OpenError::Malformed(
                    "extended optional parameters length mismatch",
                ));
            }
            let mut rest = rest;
            while !rest.is_empty() {
                let [ptype, p0, p1, tail @ ..] = rest else {
                    return Err(OpenError::Malformed("optional parameter header overruns"));
                };
                let plen = usize::from(u16::from_be_bytes([*p0, *p1]));
                let value = tail
                    .get(..plen)
                    .ok_or(OpenError::Malformed("optional parameter overruns"))?;
                decode_param(*ptype, value, &mut capabilities)?;
                rest = &tail[plen..];
            }
        } else {
            if opt_len != params.len() {
                return Err(OpenError::Malformed("optional parameters length mismatch"));
            }
            let mut rest = params;
            while !rest.is_empty() {
                let [ptype, plen, tail @ ..] = rest else {
                    return Err(OpenError::Malformed("optional parameter header overruns"));
                };
                let plen = usize::from(*plen);
                let value = tail
                    .get(..plen)
                    .ok_or(OpenError::Malformed("optional parameter overruns"))?;
                decode_param(*ptype, value, &mut capabilities)?;
                rest = &tail[plen..];
            }
        }
        if let Some(0) = capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        }) {
            return Err(OpenError::BadPeerAs(0));
        }
        Ok(Open {
            version,
            my_as,
            hold_time,
            router_id,
            capabilities,
        })
    }

    /// Writes the OPEN body: all capabilities in one Capabilities parameter (as BIRD and
    /// FRR do), switching to the RFC 9072 extended form only when they exceed 255 octets.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.version);
        buf.put_u16(self.my_as);
        buf.put_u16(self.hold_time);
        buf.put_slice(&self.router_id.octets());
        let caps_len: usize = self.capabilities.iter().map(Capability::encoded_len).sum();
        if caps_len == 0 {
            buf.put_u8(0);
        } else if caps_len + 2 <= 255 {
            buf.put_u8((caps_len + 2) as u8);
            buf.put_u8(PARAM_CAPABILITIES);
            buf.put_u8(caps_len as u8);
            self.capabilities.iter().for_each(|c| c.encode(buf));
        } else {
            // One parameter can hold at most 65535 octets; capabilities beyond that are a
            // caller bug with no wire representation, so they are cut at a TLV boundary.
            let mut taken = 0;
            let fitting: Vec<&Capability> = self
                .capabilities
                .iter()
                .take_while(|c| {
                    taken += c.encoded_len();
                    taken <= usize::from(u16::MAX) - 3
                })
                .collect();
            let len: usize = fitting.iter().map(|c| c.encoded_len()).sum();
            buf.put_u8(PARAM_EXTENDED);
            buf.put_u8(PARAM_EXTENDED);
            buf.put_u16((len + 3) as u16);
            buf.put_u8(PARAM_CAPABILITIES);
            buf.put_u16(len as u16);
            fitting.iter().for_each(|c| c.encode(buf));
        }
    }
}

fn decode_param(ptype: u8, value: &[u8], caps: &mut Vec<Capability>) -> Result<(), OpenError> {
    match ptype {
        PARAM_CAPABILITIES => capability::decode_all(value, caps),
        other => Err(OpenError::UnsupportedOptionalParameter(other)),
    }
}
