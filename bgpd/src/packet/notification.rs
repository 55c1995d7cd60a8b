//! NOTIFICATION (RFC 4271 §4.5) and KEEPALIVE (§4.4, a bare header).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A NOTIFICATION is never answered with another one, so decoding it cannot fail once the
//! header has checked its minimum length.

use bytes::{BufMut, BytesMut};

use super::Notification;
use super::error::{code, subcode};

impl Notification {
    /// A NOTIFICATION without data.
    pub fn new(code: u8, subcode: u8) -> Notification {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// Cease (code 6) with a subcode from RFC 4486, e.g. `subcode::ADMINISTRATIVE_SHUTDOWN`.
    pub fn cease(cease_subcode: u8) -> Notification {
        Notification::new(code::CEASE, cease_subcode)
    }

    /// Cease / Maximum Number of Prefixes Reached, data = AFI (2), SAFI (1), limit (4)
    /// (RFC 4486 §4).
    pub fn max_prefixes(afi: super::Afi, safi: super::Safi, limit: u32) -> Notification {
        let mut data = Vec::with_capacity(7);
        data.extend_from_slice(&afi.to_u16().to_be_bytes());
        data.push(safi.to_u8());
        data.extend_from_slice(&limit.to_be_bytes());
        Notification {
            code: code::CEASE,
            subcode: subcode::MAXIMUM_PREFIXES_REACHED,
            data,
        }
    }

    /// Hold Timer Expired (code 4).
    pub fn hold_timer_expired() -> Notification {
        Notification::new(code::HOLD_TIMER_EXPIRED, 0)
    }

    /// Decodes a NOTIFICATION body (at least 2 octets, checked by the header).
    pub fn decode(body: &[u8]) -> Notification {
        match body {
            [code, subcode, data @ ..] => Notification {
                code: *code,
                subcode: *subcode,
                data: data.to_vec(),
            },
            _ => Notification::new(0, 0),
        }
    }

    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(self.code);
        buf.put_u8(self.subcode);
        buf.put_slice(&self.data);
    }
}
