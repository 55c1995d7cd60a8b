//! NLRI prefixes (RFC 4271 §4.3, RFC 4760 §5): a run of `(length, prefix)` pairs.
//!
//! ```text
//! +---------------------------+
//! |   Length (1 octet)        |   prefix length in bits
//! +---------------------------+
//! |   Prefix (variable)       |   ceil(length / 8) octets, trailing bits irrelevant
//! +---------------------------+
//! ```
//!
//! This is the hot path of a full-table ingest: decoding allocates nothing per prefix (one
//! exact `reserve` per run) and never copies the message.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::Afi;

/// The run of prefixes is syntactically wrong: a length beyond the family's width, or a
/// prefix that overruns the field (RFC 7606 §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NlriSyntaxError;

/// Walks the run once to validate it and count its prefixes, so the caller can reserve once.
fn count(bytes: &[u8], max_len: u8) -> Result<usize, NlriSyntaxError> {
    let mut i = 0;
    let mut n = 0;
    while i < bytes.len() {
        let len = bytes[i];
        if len > max_len {
            return Err(NlriSyntaxError);
        }
        i += 1 + usize::from(len).div_ceil(8);
        n += 1;
    }
    if i == bytes.len() {
        Ok(n)
    } else {
        Err(NlriSyntaxError)
    }
}

/// Appends the IPv4 prefixes in `bytes` to `out`. Host bits beyond the length are cleared.
pub(crate) fn decode_ipv4(bytes: &[u8], out: &mut Vec<IpNet>) -> Result<(), NlriSyntaxError> {
    let n = count(bytes, 32)?;
    out.reserve(n);
    let mut i = 0;
    while i < bytes.len() {
        let len = bytes[i];
        let octets = usize::from(len).div_ceil(8);
        let mut addr = [0u8; 4];
        let src = bytes.get(i + 1..i + 1 + octets).ok_or(NlriSyntaxError)?;
        addr[..octets].copy_from_slice(src);
        let bits =
            u32::from_be_bytes(addr) & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        let net = Ipv4Net::new(Ipv4Addr::from(bits), len).map_err(|_| NlriSyntaxError)?;
        out.push(IpNet::V4(net));
        i += 1 + octets;
    }
    Ok(())
}

/// Appends the IPv6 prefixes in `bytes` to `out`. Host bits beyond the length are cleared.
pub(crate) fn decode_ipv6(bytes: &[u8], out: &mut Vec<IpNet>) -> Result<(), NlriSyntaxError> {
    let n = count(bytes, 128)?;
    out.reserve(n);
    let mut i = 0;
    while i < bytes.len() {
        let len = bytes[i];
        let octets = usize::from(len).div_ceil(8);
        let mut addr = [0u8; 16];
        let src = bytes.get(i + 1..i + 1 + octets).ok_or(NlriSyntaxError)?;
        addr[..octets].copy_from_slice(src);
        let bits =
            u128::from_be_bytes(addr) & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        let net = Ipv6Net::new(Ipv6Addr::from(bits), len).map_err(|_| NlriSyntaxError)?;
        out.push(IpNet::V6(net));
        i += 1 + octets;
    }
    Ok(())
}

/// Decodes a run of prefixes of `afi` (IPv4 or IPv6 only).
pub(crate) fn decode(afi: Afi, bytes: &[u8], out: &mut Vec<IpNet>) -> Result<(), NlriSyntaxError> {
    match afi {
        Afi::Ipv4 => decode_ipv4(bytes, out),
        Afi::Ipv6 => decode_ipv6(bytes, out),
        Afi::Other(_) => Err(NlriSyntaxError),
    }
}

/// Octets `net` takes on the wire: the length octet plus the significant prefix octets.
pub fn encoded_len(net: &IpNet) -> usize {
    1 + usize::from(net.prefix_len()).div_ceil(8)
}

/// Writes one prefix: its length and its significant octets (host bits cleared).
pub(crate) fn encode(net: &IpNet, buf: &mut BytesMut) {
    let len = net.prefix_len();
    let octets = usize::from(len).div_ceil(8);
    buf.put_u8(len);
    match net.trunc() {
        IpNet::V4(n) => buf.put_slice(&n.network().octets()[..octets]),
        IpNet::V6(n) => buf.put_slice(&n.network().octets()[..octets]),
    }
}

/// Writes every prefix of `nets`.
pub(crate) fn encode_all(nets: &[IpNet], buf: &mut BytesMut) {
    for net in nets {
        encode(net, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_prefixes_decode_with_host_bits_cleared() {
        let mut out = Vec::new();
        decode_ipv4(&[24, 10, 244, 1, 0, 32, 192, 0, 2, 1, 9, 10, 255], &mut out).unwrap();
        let want: Vec<IpNet> = ["10.244.1.0/24", "0.0.0.0/0", "192.0.2.1/32", "10.128.0.0/9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn ipv4_prefix_longer_than_32_is_a_syntax_error() {
        assert_eq!(
            decode_ipv4(&[33, 1, 2, 3, 4, 5], &mut Vec::new()),
            Err(NlriSyntaxError)
        );
    }

    #[test]
    fn prefix_overrunning_the_field_is_a_syntax_error() {
        assert_eq!(
            decode_ipv4(&[24, 10, 244], &mut Vec::new()),
            Err(NlriSyntaxError)
        );
        assert_eq!(
            decode_ipv6(&[64, 0xfd, 0], &mut Vec::new()),
            Err(NlriSyntaxError)
        );
    }

    #[test]
    fn ipv6_prefixes_round_trip() {
        let nets: Vec<IpNet> = [
            "fd00:10:244:1::/64",
            "::/0",
            "fd00::1/128",
            "fd00:8000::/17",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let mut buf = BytesMut::new();
        encode_all(&nets, &mut buf);
        assert_eq!(buf.len(), nets.iter().map(encoded_len).sum::<usize>());
        let mut out = Vec::new();
        decode_ipv6(&buf, &mut out).unwrap();
        assert_eq!(out, nets);
    }
}
