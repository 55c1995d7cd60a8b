//! AS_PATH and AS4_PATH (RFC 4271 §4.3, RFC 6793), and the RFC 6793 §4.2.3 reconciliation
//! of the two when the peer only speaks 2-octet ASNs.
//!
//! ```text
//! AS_PATH is a sequence of segments:
//! +-----------------+-----------------+---------------------------------+
//! | Segment type (1)| Segment len (1) | len ASNs, 2 or 4 octets each    |
//! +-----------------+-----------------+---------------------------------+
//! type: 1 AS_SET, 2 AS_SEQUENCE, 3 AS_CONFED_SEQUENCE, 4 AS_CONFED_SET (RFC 5065)
//! ```

use bytes::{BufMut, BytesMut};

use super::{AS_TRANS, AsSegment};

const AS_SET: u8 = 1;
const AS_SEQUENCE: u8 = 2;
const AS_CONFED_SEQUENCE: u8 = 3;
const AS_CONFED_SET: u8 = 4;

/// The path is malformed in one of the RFC 7606 §7.2 ways (or carries AS 0, RFC 7607).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MalformedPath;

impl AsSegment {
    /// The ASNs of the segment, whatever its kind.
    pub fn asns(&self) -> &[u32] {
        match self {
            AsSegment::Set(v)
            | AsSegment::Sequence(v)
            | AsSegment::ConfedSequence(v)
            | AsSegment::ConfedSet(v) => v,
        }
    }

    fn is_confed(&self) -> bool {
        matches!(self, AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_))
    }

    fn type_code(&self) -> u8 {
        match self {
            AsSegment::Set(_) => AS_SET,
            AsSegment::Sequence(_) => AS_SEQUENCE,
            AsSegment::ConfedSequence(_) => AS_CONFED_SEQUENCE,
            AsSegment::ConfedSet(_) => AS_CONFED_SET,
        }
    }
}

/// The path length for best-path selection and AS4 reconciliation (RFC 4271 §9.1.2.2 a,
/// RFC 5065 §5.3): each AS of a sequence counts 1, a set counts 1, confederation segments 0.
pub fn path_len(path: &[AsSegment]) -> usize {
    path.iter()
        .map(|s| match s {
            AsSegment::Sequence(v) => v.len(),
            AsSegment::Set(_) => 1,
            AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => 0,
        })
        .sum()
}

/// Decodes an AS_PATH (or AS4_PATH with `four_octet`) value.
pub(crate) fn decode(mut bytes: &[u8], four_octet: bool) -> Result<Vec<AsSegment>, MalformedPath> {
    let width = if four_octet { 4 } else { 2 };
    let mut path = Vec::new();
    while !bytes.is_empty() {
        let [kind, count, rest @ ..] = bytes else {
            return Err(MalformedPath);
        };
        let n = usize::from(*count);
        if n == 0 || rest.len() < n * width {
            return Err(MalformedPath);
        }
        let (asns_raw, tail) = rest.split_at(n * width);
        let asns: Vec<u32> = if four_octet {
            asns_raw
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            asns_raw
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .collect()
        };
        if asns.contains(&0) {
            return Err(MalformedPath);
        }
        path.push(match *kind {
            AS_SET => AsSegment::Set(asns),
            AS_SEQUENCE => AsSegment::Sequence(asns),
            AS_CONFED_SEQUENCE => AsSegment::ConfedSequence(asns),
            AS_CONFED_SET => AsSegment::ConfedSet(asns),
            _ => return Err(MalformedPath),
        });
        bytes = tail;
    }
    Ok(path)
}

/// Octets `path` takes on the wire (segments longer than 255 ASNs are split; empty ones
/// are not written).
pub(crate) fn encoded_len(path: &[AsSegment], four_octet: bool) -> usize {
    let width = if four_octet { 4 } else { 2 };
    path.iter()
        .map(|s| {
            let n = s.asns().len();
            n.div_ceil(255) * 2 + n * width
        })
        .sum()
}

/// Writes `path`; in 2-octet form every ASN above 65535 becomes AS_TRANS.
pub(crate) fn encode(path: &[AsSegment], four_octet: bool, buf: &mut BytesMut) {
    for segment in path {
        for chunk in segment.asns().chunks(255) {
            buf.put_u8(segment.type_code());
            buf.put_u8(chunk.len() as u8);
            for &asn in chunk {
                if four_octet {
                    buf.put_u32(asn);
                } else {
                    buf.put_u16(u16::try_from(asn).unwrap_or(AS_TRANS));
                }
            }
        }
    }
}

/// The AS4_PATH to send a 2-octet peer alongside `path` (RFC 6793 §4.2.2): `None` when every
/// ASN fits in 2 octets; otherwise the path without its confederation segments.
pub(crate) fn as4_path_for(path: &[AsSegment]) -> Option<Vec<AsSegment>> {
    let needs = path
        .iter()
        .filter(|s| !s.is_confed())
        .any(|s| s.asns().iter().any(|&asn| asn > u32::from(u16::MAX)));
    needs.then(|| path.iter().filter(|s| !s.is_confed()).cloned().collect())
}

/// RFC 6793 §4.2.3: rebuilds the real path from a 2-octet peer's AS_PATH and AS4_PATH.
/// When AS_PATH is shorter than AS4_PATH, AS4_PATH is ignored; otherwise the leading
/// ASNs of AS_PATH that AS4_PATH does not cover (with any confederation segments among
/// them) are prepended to AS4_PATH.
pub(crate) fn merge_as4(as_path: Vec<AsSegment>, as4_path: Vec<AsSegment>) -> Vec<AsSegment> {
    let (len, len4) = (path_len(&as_path), path_len(&as4_path));
    if len < len4 {
        return as_path;
    }
    let mut take = len - len4;
    let mut merged: Vec<AsSegment> = Vec::with_capacity(as_path.len() + as4_path.len());
    for segment in as_path {
        match segment {
            AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => merged.push(segment),
            _ if take == 0 => break,
            AsSegment::Set(_) => {
                merged.push(segment);
                take -= 1;
            }
            AsSegment::Sequence(mut asns) => {
                let n = asns.len().min(take);
                asns.truncate(n);
                take -= n;
                merged.push(AsSegment::Sequence(asns));
            }
        }
    }
    let mut as4 = as4_path.into_iter();
    if let (Some(AsSegment::Sequence(tail)), Some(AsSegment::Sequence(_))) =
        (merged.last_mut(), as4.as_slice().first())
        && let Some(AsSegment::Sequence(head)) = as4.next()
    {
        tail.extend(head);
    }
    merged.extend(as4);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_replaces_as_trans_with_the_as4_path() {
        let as_path = vec![AsSegment::Sequence(vec![65001, 23456, 65002])];
        let as4 = vec![AsSegment::Sequence(vec![4_200_000_000, 65002])];
        assert_eq!(
            merge_as4(as_path, as4),
            vec![AsSegment::Sequence(vec![65001, 4_200_000_000, 65002])]
        );
    }

    #[test]
    fn merge_ignores_an_as4_path_longer_than_the_as_path() {
        let as_path = vec![AsSegment::Sequence(vec![65001])];
        let as4 = vec![AsSegment::Sequence(vec![4_200_000_000, 65002])];
        assert_eq!(merge_as4(as_path.clone(), as4), as_path);
    }

    #[test]
    fn merge_keeps_leading_confederation_segments() {
        let as_path = vec![
            AsSegment::ConfedSequence(vec![64512]),
            AsSegment::Sequence(vec![23456]),
        ];
        let as4 = vec![AsSegment::Sequence(vec![4_200_000_000])];
        assert_eq!(
            merge_as4(as_path, as4),
            vec![
                AsSegment::ConfedSequence(vec![64512]),
                AsSegment::Sequence(vec![4_200_000_000])
            ]
        );
    }

    #[test]
    fn segments_longer_than_255_are_split_on_encode() {
        let path = vec![AsSegment::Sequence((1..=300).collect())];
        let mut buf = BytesMut::new();
        encode(&path, true, &mut buf);
        assert_eq!(buf.len(), encoded_len(&path, true));
        let decoded = decode(&buf, true).unwrap();
        assert_eq!(
            decoded,
            vec![
                AsSegment::Sequence((1..=255).collect()),
                AsSegment::Sequence((256..=300).collect())
            ]
        );
    }

    #[test]
    fn zero_length_segment_and_as_zero_are_malformed() {
        assert_eq!(decode(&[2, 0], true), Err(MalformedPath));
        assert_eq!(decode(&[2, 1, 0, 0], false), Err(MalformedPath));
        assert_eq!(decode(&[2, 1, 0], false), Err(MalformedPath));
        assert_eq!(decode(&[9, 1, 0, 1], false), Err(MalformedPath));
    }
}
