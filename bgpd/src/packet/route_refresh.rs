//! ROUTE-REFRESH (RFC 2918 §3; the reserved octet is RFC 7313's message subtype).
//!
//! ```text
//!  0       7      15      23      31
//! +-------+-------+-------+-------+
//! |      AFI      | Res.  | SAFI  |
//! +-------+-------+-------+-------+
//! ```
//!
//! Enhanced route refresh (RFC 7313) is not advertised, so a peer has no reason to send the
//! BoRR/EoRR subtypes; they decode as a plain refresh request.

use bytes::{BufMut, BytesMut};

use super::error::RouteRefreshError;
use super::{Afi, RouteRefresh, Safi};

impl RouteRefresh {
    /// Decodes a ROUTE-REFRESH message; `message` is the whole message (for error data).
    pub fn decode(message: &[u8]) -> Result<RouteRefresh, RouteRefreshError> {
        match message.get(super::HEADER_LEN..) {
            Some([a0, a1, _subtype, safi]) => Ok(RouteRefresh {
                afi: Afi::from_u16(u16::from_be_bytes([*a0, *a1])),
                safi: Safi::from_u8(*safi),
            }),
            _ => Err(RouteRefreshError::InvalidMessageLength {
                message: message.to_vec(),
            }),
        }
    }

    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u16(self.afi.to_u16());
        buf.put_u8(0);
        buf.put_u8(self.safi.to_u8());
    }
}
