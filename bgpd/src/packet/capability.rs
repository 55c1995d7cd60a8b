//! Capabilities carried in OPEN optional parameter type 2 (RFC 5492).
//!
//! ```text
//! +------------------------------+
//! | Capability Code (1 octet)    |
//! +------------------------------+
//! | Capability Length (1 octet)  |
//! +------------------------------+
//! | Capability Value (variable)  |
//! +------------------------------+
//! ```
//!
//! Capabilities this speaker does not interpret are kept as `Capability::Other`; a known
//! capability with the wrong length is an OPEN error rather than something to guess at.

use bytes::{BufMut, BytesMut};

use super::error::OpenError;
use super::iana::capability_code as cc;
use super::{Afi, Capability, Safi};

/// GR flags (RFC 4724 §3): the Restart State bit of the 16-bit "Restart Flags + Time".
const GR_RESTARTING: u16 = 0x8000;
const GR_TIME_MASK: u16 = 0x0fff;
/// Per-family "Forwarding State" bit.
const GR_FORWARDING: u8 = 0x80;

/// Decodes every capability in one Capabilities optional parameter, appending to `out`.
pub(crate) fn decode_all(mut bytes: &[u8], out: &mut Vec<Capability>) -> Result<(), OpenError> {
    while !bytes.is_empty() {
        let [code, len, rest @ ..] = bytes else {
            return Err(OpenError::Malformed(
                "capability header overruns its parameter",
            ));
        };
        let len = usize::from(*len);
        if rest.len() < len {
            return Err(OpenError::Malformed(
                "capability value overruns its parameter",
            ));
        }
        let (value, tail) = rest.split_at(len);
        out.push(decode_one(*code, value)?);
        bytes = tail;
    }
    Ok(())
}

fn decode_one(code: u8, value: &[u8]) -> Result<Capability, OpenError> {
    Ok(match code {
        // AFI (2) | Reserved (1) | SAFI (1)
        cc::MULTIPROTOCOL => {
            let [a0, a1, _reserved, safi] = value else {
                return Err(OpenError::Malformed(
                    "multiprotocol capability length is not 4",
                ));
            };
            Capability::Multiprotocol {
                afi: Afi::from_u16(u16::from_be_bytes([*a0, *a1])),
                safi: Safi::from_u8(*safi),
            }
        }
        cc::ROUTE_REFRESH => {
            if !value.is_empty() {
                return Err(OpenError::Malformed(
                    "route refresh capability length is not 0",
                ));
            }
            Capability::RouteRefresh
        }
        // (NLRI AFI (2) | NLRI SAFI (2) | Nexthop AFI (2))*
        cc::EXTENDED_NEXT_HOP => {
            if value.is_empty() || !value.len().is_multiple_of(6) {
                return Err(OpenError::Malformed(
                    "extended next hop capability not a list of 6-octet entries",
                ));
            }
            Capability::ExtendedNextHop(
                value
                    .chunks_exact(6)
                    .map(|e| {
                        let safi = u16::from_be_bytes([e[2], e[3]]);
                        (
                            Afi::from_u16(u16::from_be_bytes([e[0], e[1]])),
                            Safi::from_u8(u8::try_from(safi).unwrap_or(u8::MAX)),
                            Afi::from_u16(u16::from_be_bytes([e[4], e[5]])),
                        )
                    })
                    .collect(),
            )
        }
        // Restart Flags (4 bits) | Restart Time (12 bits) | (AFI (2) | SAFI (1) | Flags (1))*
        cc::GRACEFUL_RESTART => {
            let [f0, f1, families @ ..] = value else {
                return Err(OpenError::Malformed(
                    "graceful restart capability too short",
                ));
            };
            if families.len() % 4 != 0 {
                return Err(OpenError::Malformed(
                    "graceful restart families not 4-octet aligned",
                ));
            }
            let flags_time = u16::from_be_bytes([*f0, *f1]);
            Capability::GracefulRestart {
                restarting: flags_time & GR_RESTARTING != 0,
                restart_time: flags_time & GR_TIME_MASK,
                families: families
                    .chunks_exact(4)
                    .map(|f| {
                        (
                            Afi::from_u16(u16::from_be_bytes([f[0], f[1]])),
                            Safi::from_u8(f[2]),
                            f[3] & GR_FORWARDING != 0,
                        )
                    })
                    .collect(),
            }
        }
        cc::FOUR_OCTET_AS => {
            let Ok(asn) = <[u8; 4]>::try_from(value) else {
                return Err(OpenError::Malformed(
                    "4-octet AS capability length is not 4",
                ));
            };
            Capability::FourOctetAs(u32::from_be_bytes(asn))
        }
        code => Capability::Other {
            code,
            value: value.to_vec(),
        },
    })
}

impl Capability {
    /// Octets this capability takes on the wire, header included.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Capability::Multiprotocol { .. } | Capability::FourOctetAs(_) => 4,
            Capability::RouteRefresh => 0,
            Capability::GracefulRestart { families, .. } => 2 + 4 * families.len().min(63),
            Capability::ExtendedNextHop(entries) => 6 * entries.len().min(42),
            Capability::Other { value, .. } => value.len().min(255),
        }
    }

    /// Writes the capability TLV. Values longer than 255 octets cannot be expressed and
    /// are truncated to keep the framing valid (no capability we know comes close).
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Capability::Multiprotocol { afi, safi } => {
                buf.put_slice(&[cc::MULTIPROTOCOL, 4]);
                buf.put_u16(afi.to_u16());
                buf.put_u8(0);
                buf.put_u8(safi.to_u8());
            }
            Capability::RouteRefresh => buf.put_slice(&[cc::ROUTE_REFRESH, 0]),
            Capability::GracefulRestart {
                restarting,
                restart_time,
                families,
            } => {
                let families = &families[..families.len().min(63)];
                buf.put_u8(cc::GRACEFUL_RESTART);
                buf.put_u8(2 + 4 * families.len() as u8);
                let flags = if *restarting { GR_RESTARTING } else { 0 };
                buf.put_u16(flags | (restart_time & GR_TIME_MASK));
                for (afi, safi, forwarding) in families {
                    buf.put_u16(afi.to_u16());
                    buf.put_u8(safi.to_u8());
                    buf.put_u8(if *forwarding { GR_FORWARDING } else { 0 });
                }
            }
            Capability::ExtendedNextHop(entries) => {
                let entries = &entries[..entries.len().min(42)];
                buf.put_u8(cc::EXTENDED_NEXT_HOP);
                buf.put_u8(6 * entries.len() as u8);
                for (afi, safi, nh_afi) in entries {
                    buf.put_u16(afi.to_u16());
                    buf.put_u16(u16::from(safi.to_u8()));
                    buf.put_u16(nh_afi.to_u16());
                }
            }
            Capability::FourOctetAs(asn) => {
                buf.put_slice(&[cc::FOUR_OCTET_AS, 4]);
                buf.put_u32(*asn);
            }
            Capability::Other { code, value } => {
                let value = &value[..value.len().min(255)];
                buf.put_u8(*code);
                buf.put_u8(value.len() as u8);
                buf.put_slice(value);
            }
        }
    }
}
