//! The message header (RFC 4271 §4.1) and the codec's entry points: `decode_message`
//! (streaming, one message at a time) and `encode_message`.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                           Marker (16 octets of 1s)            |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use bytes::{Buf, BufMut, BytesMut};

use super::error::{DecodeError, HeaderError};
use super::iana::msg_type as mt;
use super::open::OPEN_FIXED_LEN;
use super::{
    DecodeCxt, HEADER_LEN, MAX_MESSAGE_LEN, Message, Notification, Open, RouteRefresh, Update,
};

const MARKER: [u8; 16] = [0xff; 16];

/// Decodes one message from the front of `buf`.
///
/// `Ok(None)` while `buf` holds less than one whole message (nothing is consumed). On
/// success, and on every error found after the whole message arrived (including
/// treat-as-withdraw), exactly that message is consumed; header errors consume nothing
/// (the session is closing anyway). Header errors are reported as soon as the 19 header
/// octets are in, without waiting for a body whose length cannot be trusted.
pub fn decode_message(buf: &mut BytesMut, cxt: &DecodeCxt) -> Result<Option<Message>, DecodeError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    if header[..16] != MARKER {
        return Err(HeaderError::ConnectionNotSynchronized.into());
    }
    let length = u16::from_be_bytes([header[16], header[17]]);
    let msg_type = header[18];
    let len = usize::from(length);
    let bad_length = HeaderError::BadMessageLength { length, msg_type };
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(bad_length.into());
    }
    let length_ok = match msg_type {
        mt::OPEN => len >= HEADER_LEN + OPEN_FIXED_LEN,
        mt::UPDATE => len >= HEADER_LEN + 4,
        mt::NOTIFICATION => len >= HEADER_LEN + 2,
        mt::KEEPALIVE => len == HEADER_LEN,
        // A wrong ROUTE-REFRESH length has its own error (RFC 7313 §5), below.
        mt::ROUTE_REFRESH => true,
        other => return Err(HeaderError::BadMessageType(other).into()),
    };
    if !length_ok {
        return Err(bad_length.into());
    }
    if buf.len() < len {
        return Ok(None);
    }

    let message = &buf[..len];
    let body = &message[HEADER_LEN..];
    let decoded = match msg_type {
        mt::OPEN => Open::decode(body)
            .map(Message::Open)
            .map_err(DecodeError::from),
        mt::UPDATE => Update::decode(body, cxt).map(Message::Update),
        mt::NOTIFICATION => Ok(Message::Notification(Notification::decode(body))),
        mt::KEEPALIVE => Ok(Message::Keepalive),
        _ => RouteRefresh::decode(message)
            .map(Message::RouteRefresh)
            .map_err(DecodeError::from),
    };
    buf.advance(len);
    decoded.map(Some)
}

/// Appends `msg`, header included, to `buf`.
///
/// The caller keeps UPDATEs within [`MAX_MESSAGE_LEN`] (see [`super::pack_updates`]); a
/// larger one is written with a wrong length field rather than panicking.
pub fn encode_message(msg: &Message, cxt: &DecodeCxt, buf: &mut BytesMut) {
    let start = buf.len();
    buf.put_slice(&MARKER);
    buf.put_u16(0);
    buf.put_u8(match msg {
        Message::Open(_) => mt::OPEN,
        Message::Update(_) => mt::UPDATE,
        Message::Notification(_) => mt::NOTIFICATION,
        Message::Keepalive => mt::KEEPALIVE,
        Message::RouteRefresh(_) => mt::ROUTE_REFRESH,
    });
    match msg {
        Message::Open(open) => open.encode(buf),
        Message::Update(update) => update.encode(cxt, buf),
        Message::Notification(notification) => notification.encode(buf),
        Message::Keepalive => {}
        Message::RouteRefresh(rr) => rr.encode(buf),
    }
    let len = u16::try_from(buf.len() - start).unwrap_or(u16::MAX);
    buf[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}
