//! Packing many prefixes into as few UPDATEs as fit in [`MAX_MESSAGE_LEN`]: what the
//! speaker uses to send a table. Path attributes are encoded once per call, not per message.

use bytes::{BufMut, BytesMut};
use ipnet::IpNet;

use super::iana::msg_type;
use super::{
    DecodeCxt, HEADER_LEN, MAX_MESSAGE_LEN, Message, MpReach, MpUnreach, PathAttributes, Safi,
    Update, attributes, encode_message, nlri,
};

/// Size of a non-empty MP_UNREACH attribute header (always extended length).
const MP_HEADER: usize = 4;

/// Appends UPDATEs to `buf` that announce `announce` with `attrs` and withdraw `withdraw`,
/// each message within [`MAX_MESSAGE_LEN`]; returns how many messages were written.
///
/// IPv4 prefixes travel in the NLRI and Withdrawn Routes fields (`attrs.next_hop` must be
/// set for them); IPv6 prefixes in MP_REACH_NLRI, whose next hop comes from
/// `attrs.mp_reach` (its own `nlri` is ignored; IPv6 announcements are skipped when it is
/// `None`), and MP_UNREACH_NLRI. `attrs.mp_unreach` is ignored. When `attrs.mp_reach` is of
/// AFI IPv4 (an IPv6 next hop, RFC 8950), it is the IPv4 announcements that go in
/// MP_REACH_NLRI (and IPv6 ones are skipped); IPv4 withdrawals still use Withdrawn Routes.
pub fn pack_updates(
    attrs: &PathAttributes,
    announce: &[IpNet],
    withdraw: &[IpNet],
    cxt: &DecodeCxt,
    buf: &mut BytesMut,
) -> usize {
    let (w4, w6): (Vec<IpNet>, Vec<IpNet>) =
        withdraw.iter().partition(|n| matches!(n, IpNet::V4(_)));
    // RFC 8950: an IPv4 MP_REACH_NLRI template (an IPv6 next hop) takes the IPv4 prefixes.
    let v4_in_mp = attrs
        .mp_reach
        .as_ref()
        .is_some_and(|m| m.afi == super::Afi::Ipv4);
    let (mut a4, mut a6): (Vec<IpNet>, Vec<IpNet>) =
        announce.iter().partition(|n| matches!(n, IpNet::V4(_)));
    if v4_in_mp {
        a6 = std::mem::take(&mut a4);
    }
    let mut messages = 0;

    // IPv4 withdrawals: header, Withdrawn Routes, empty attributes.
    let room = MAX_MESSAGE_LEN - HEADER_LEN - 4;
    for chunk in chunks(&w4, room) {
        let start = begin(buf);
        let wlen: usize = chunk.iter().map(nlri::encoded_len).sum();
        buf.put_u16(wlen as u16);
        nlri::encode_all(chunk, buf);
        buf.put_u16(0);
        finish(buf, start);
        messages += 1;
    }

    // IPv4 announcements: the attributes encoded once, then as many NLRI as fit.
    if !a4.is_empty() {
        let mut plain = attrs.clone();
        plain.mp_reach = None;
        plain.mp_unreach = None;
        let mut encoded = BytesMut::new();
        attributes::encode(&plain, cxt, &mut encoded);
        if let Some(room) = (MAX_MESSAGE_LEN - HEADER_LEN - 4).checked_sub(encoded.len()) {
            for chunk in chunks(&a4, room) {
                let start = begin(buf);
                buf.put_u16(0);
                buf.put_u16(encoded.len() as u16);
                buf.put_slice(&encoded);
                nlri::encode_all(chunk, buf);
                finish(buf, start);
                messages += 1;
            }
        }
    }

    // IPv6: through MP_UNREACH / MP_REACH, one Update value per message.
    let room = MAX_MESSAGE_LEN - HEADER_LEN - 4 - MP_HEADER - 3;
    for chunk in chunks(&w6, room) {
        let mut update = Update::default();
        update.attrs.mp_unreach = Some(MpUnreach {
            afi: super::Afi::Ipv6,
            safi: Safi::Unicast,
            withdrawn: chunk.to_vec(),
        });
        encode_message(&Message::Update(update), cxt, buf);
        messages += 1;
    }
    if let (false, Some(template)) = (a6.is_empty(), &attrs.mp_reach) {
        let mut base = attrs.clone();
        base.mp_unreach = None;
        base.mp_reach = Some(MpReach {
            nlri: Vec::new(),
            ..template.clone()
        });
        // `base` already holds the MP_REACH_NLRI header and next hop (always extended).
        let fixed = HEADER_LEN + 4 + base.encoded_len(cxt);
        if let Some(room) = MAX_MESSAGE_LEN.checked_sub(fixed) {
            for chunk in chunks(&a6, room) {
                let mut attrs = base.clone();
                if let Some(mp) = attrs.mp_reach.as_mut() {
                    mp.nlri = chunk.to_vec();
                }
                let update = Update {
                    attrs,
                    ..Update::default()
                };
                encode_message(&Message::Update(update), cxt, buf);
                messages += 1;
            }
        }
    }
    messages
}

/// Splits `nets` into runs whose encoded size fits in `room` octets.
fn chunks(nets: &[IpNet], room: usize) -> impl Iterator<Item = &[IpNet]> {
    let mut rest = nets;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut used = 0;
        let n = rest
            .iter()
            .take_while(|net| {
                used += nlri::encoded_len(net);
                used <= room
            })
            .count()
            .max(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

fn begin(buf: &mut BytesMut) -> usize {
    let start = buf.len();
    buf.put_slice(&[0xff; 16]);
    buf.put_u16(0);
    buf.put_u8(msg_type::UPDATE);
    start
}

fn finish(buf: &mut BytesMut, start: usize) {
    let len = (buf.len() - start) as u16;
    buf[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ipv6_updates_use_all_the_room_there_is() {
        let attrs = PathAttributes {
            origin: Some(super::super::Origin::Igp),
            mp_reach: Some(MpReach {
                afi: super::super::Afi::Ipv6,
                safi: Safi::Unicast,
                next_hop: "fd00::1"
                    .parse()
                    .unwrap_or(std::net::IpAddr::from([0u8; 16])),
                link_local_next_hop: None,
                nlri: Vec::new(),
            }),
            ..PathAttributes::default()
        };
        // /128s: 17 octets each.
        let nets: Vec<IpNet> = (0..1000u32)
            .map(|i| IpNet::new(std::net::Ipv6Addr::from(u128::from(i)).into(), 128).unwrap())
            .collect();
        let mut buf = BytesMut::new();
        let n = pack_updates(&attrs, &nets, &[], &DecodeCxt::default(), &mut buf);
        let first_len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
        assert!(first_len <= MAX_MESSAGE_LEN);
        assert!(
            first_len > MAX_MESSAGE_LEN - 17,
            "a full message leaves less than one prefix of room"
        );
        assert_eq!(
            n,
            1000usize.div_ceil((first_len - (HEADER_LEN + 4 + 4 + 5 + 16 + 7)) / 17)
        );
    }

    #[test]
    fn withdrawals_only_write_no_attributes() {
        let nets: Vec<IpNet> = vec!["10.244.1.0/24".parse().unwrap()];
        let mut buf = BytesMut::new();
        assert_eq!(
            pack_updates(
                &PathAttributes::default(),
                &[],
                &nets,
                &DecodeCxt::default(),
                &mut buf
            ),
            1
        );
        assert_eq!(&buf[16..], &[0, 27, 2, 0, 4, 24, 10, 244, 1, 0, 0]);
    }

    #[test]
    fn ipv4_prefixes_with_an_ipv6_next_hop_go_in_mp_reach() {
        let attrs = PathAttributes {
            origin: Some(super::super::Origin::Igp),
            mp_reach: Some(MpReach {
                afi: super::super::Afi::Ipv4,
                safi: Safi::Unicast,
                next_hop: "2001:db8::1".parse().unwrap(),
                link_local_next_hop: Some("fe80::1".parse().unwrap()),
                nlri: Vec::new(),
            }),
            ..PathAttributes::default()
        };
        let nets: Vec<IpNet> = vec![
            "10.244.1.0/26".parse().unwrap(),
            "10.244.1.64/26".parse().unwrap(),
        ];
        let mut buf = BytesMut::new();
        let cxt = DecodeCxt::default();
        assert_eq!(pack_updates(&attrs, &nets, &[], &cxt, &mut buf), 1);
        let Ok(Some(Message::Update(u))) = super::super::decode_message(&mut buf, &cxt) else {
            panic!("not one UPDATE");
        };
        assert!(u.nlri.is_empty(), "no IPv4 NLRI field: {u:?}");
        assert_eq!(u.attrs.next_hop, None);
        let mp = u.attrs.mp_reach.unwrap();
        assert_eq!(mp.afi, super::super::Afi::Ipv4);
        assert_eq!(
            mp.next_hop,
            "2001:db8::1".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(mp.link_local_next_hop, Some("fe80::1".parse().unwrap()));
        assert_eq!(mp.nlri, nets);
    }
}
