//! The header of one path attribute (flags, type code, 1- or 2-octet length, RFC 4271
//! §4.3): written by the attribute encoder and by the MP_REACH/MP_UNREACH encoder, so
//! that neither module depends on the other for it.

use bytes::{BufMut, BytesMut};

use super::iana::attr_flags as fl;

/// Writes an attribute header, choosing the Extended Length form only when needed.
pub(crate) fn put_header(buf: &mut BytesMut, flags: u8, type_code: u8, len: usize) {
    if len > 255 {
        buf.put_u8(flags | fl::EXTENDED_LENGTH);
        buf.put_u8(type_code);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(flags & !fl::EXTENDED_LENGTH);
        buf.put_u8(type_code);
        buf.put_u8(len as u8);
    }
}

/// Writes an attribute header in the Extended Length form whatever the length.
pub(crate) fn put_extended_header(buf: &mut BytesMut, flags: u8, type_code: u8, len: usize) {
    buf.put_u8(flags | fl::EXTENDED_LENGTH);
    buf.put_u8(type_code);
    buf.put_u16(len as u16);
}
