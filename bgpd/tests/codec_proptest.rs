//! Randomised tests of the codec: (1) random and mutated bytes never panic the decoder and
//! always give a message, `None` (incomplete), a NOTIFICATION, or treat-as-withdraw, and
//! every decoded message consumes bytes; (2) arbitrary valid UPDATEs and OPENs survive
//! encode → decode unchanged, for 4-octet and 2-octet peers.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BytesMut;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use twill_bgpd::packet::{
    Afi, AsSegment, Capability, DecodeCxt, DecodeError, LargeCommunity, Message, MpReach,
    MpUnreach, Open, Origin, PathAttributes, RawAttribute, Safi, Update, decode_message,
    encode_message,
};

const FOUR: DecodeCxt = DecodeCxt {
    four_octet_as: true,
};
const TWO: DecodeCxt = DecodeCxt {
    four_octet_as: false,
};

/// Runs the decoder over `bytes` like a session would, checking the contract at each step.
fn drain(bytes: &[u8], cxt: &DecodeCxt) {
    let mut buf = BytesMut::from(bytes);
    for _ in 0..=bytes.len() {
        let before = buf.len();
        match decode_message(&mut buf, cxt) {
            Ok(Some(_)) => assert!(buf.len() < before, "a message consumes bytes"),
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete message consumes nothing");
                return;
            }
            Err(DecodeError::TreatAsWithdraw { .. }) => {
                assert!(buf.len() < before, "treat-as-withdraw consumes its message");
            }
            Err(e) => {
                let n = e
                    .notification()
                    .expect("every other error has a NOTIFICATION");
                assert!((1..=7).contains(&n.code), "{e}");
                return;
            }
        }
    }
    panic!("the decoder made no progress");
}

fn header(msg_type: u8, body_len: usize) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&u16::try_from(19 + body_len).unwrap_or(0).to_be_bytes());
    m.push(msg_type);
    m
}

// ---- strategies for valid messages ------------------------------------------------------

fn v4_net() -> impl Strategy<Value = IpNet> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()))
}

fn v6_net() -> impl Strategy<Value = IpNet> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
}

fn next_hop_v4() -> impl Strategy<Value = Ipv4Addr> {
    (1u32..0xe000_0000).prop_map(Ipv4Addr::from)
}

fn asn(four: bool) -> BoxedStrategy<u32> {
    if four {
        prop_oneof![1u32..65536, 1u32..=u32::MAX].boxed()
    } else {
        prop_oneof![1u32..65536, 65536u32..=u32::MAX].boxed()
    }
}

fn segment(four: bool, confed: bool) -> BoxedStrategy<AsSegment> {
    let asns = proptest::collection::vec(asn(four), 1..12);
    if confed {
        (0u8..4, asns)
            .prop_map(|(k, v)| match k {
                0 => AsSegment::Set(v),
                1 => AsSegment::Sequence(v),
                2 => AsSegment::ConfedSequence(v),
                _ => AsSegment::ConfedSet(v),
            })
            .boxed()
    } else {
        (any::<bool>(), asns)
            .prop_map(|(set, v)| {
                if set {
                    AsSegment::Set(v)
                } else {
                    AsSegment::Sequence(v)
                }
            })
            .boxed()
    }
}

fn mp_reach() -> impl Strategy<Value = MpReach> {
    prop_oneof![
        (next_hop_v4(), proptest::collection::vec(v4_net(), 0..40)).prop_map(|(nh, nlri)| {
            MpReach {
                afi: Afi::Ipv4,
                safi: Safi::Unicast,
                next_hop: IpAddr::V4(nh),
                link_local_next_hop: None,
                nlri,
            }
        }),
        (
            any::<u128>(),
            proptest::option::of(any::<u128>()),
            proptest::collection::vec(v6_net(), 0..40)
        )
            .prop_map(|(nh, ll, nlri)| MpReach {
                afi: Afi::Ipv6,
                safi: Safi::Unicast,
                next_hop: IpAddr::V6(Ipv6Addr::from(nh)),
                link_local_next_hop: ll.map(Ipv6Addr::from),
                nlri,
            }),
    ]
}

fn mp_unreach() -> impl Strategy<Value = MpUnreach> {
    prop_oneof![
        proptest::collection::vec(v4_net(), 0..40).prop_map(|withdrawn| MpUnreach {
            afi: Afi::Ipv4,
            safi: Safi::Unicast,
            withdrawn
        }),
        proptest::collection::vec(v6_net(), 0..40).prop_map(|withdrawn| MpUnreach {
            afi: Afi::Ipv6,
            safi: Safi::Unicast,
            withdrawn
        }),
    ]
}

/// Unknown optional attributes, in type order with distinct types (as the decoder yields).
fn unknown_attrs() -> impl Strategy<Value = Vec<RawAttribute>> {
    let known = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 17, 18, 32];
    proptest::collection::btree_map(
        any::<u8>().prop_filter("known type", move |t| !known.contains(t)),
        (
            prop_oneof![Just(0x80u8), Just(0xc0), Just(0xe0)],
            proptest::collection::vec(any::<u8>(), 0..300),
        ),
        0..3,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(type_code, (flags, value))| RawAttribute {
                flags,
                type_code,
                value,
            })
            .collect()
    })
}

prop_compose! {
    fn update(four: bool)(
        withdrawn in proptest::collection::vec(v4_net(), 0..40),
        nlri in proptest::collection::vec(v4_net(), 0..40),
        origin in prop_oneof![Just(Origin::Igp), Just(Origin::Egp), Just(Origin::Incomplete)],
        announce in any::<bool>(),
        as_path in proptest::collection::vec(segment(four, four), 0..5),
        next_hop in next_hop_v4(),
        med in proptest::option::of(any::<u32>()),
        local_pref in proptest::option::of(any::<u32>()),
        atomic_aggregate in any::<bool>(),
        aggregator in proptest::option::of((asn(four), any::<u32>())),
        communities in proptest::collection::vec(any::<u32>(), 0..20),
        originator_id in proptest::option::of(any::<u32>()),
        cluster_list in proptest::collection::vec(any::<u32>(), 0..5),
        mp_reach in proptest::option::of(mp_reach()),
        mp_unreach in proptest::option::of(mp_unreach()),
        large in proptest::collection::vec(any::<(u32, u32, u32)>(), 0..10),
        unknown in unknown_attrs(),
    ) -> Update {
        let announce = announce || !nlri.is_empty();
        let aggregator = aggregator
            // RFC 6793 §4.2.3: a 2-octet aggregator other than AS_TRANS voids AS4_PATH, so it
            // cannot round-trip with a 4-octet path for a 2-octet peer.
            .filter(|(asn, _)| four || *asn > 65535)
            .map(|(asn, a)| (asn, Ipv4Addr::from(a)));
        let attrs = if announce {
            PathAttributes {
                origin: Some(origin),
                as_path,
                next_hop: Some(next_hop),
                med,
                local_pref,
                atomic_aggregate,
                aggregator,
                communities,
                originator_id: originator_id.map(Ipv4Addr::from),
                cluster_list: cluster_list.into_iter().map(Ipv4Addr::from).collect(),
                mp_reach,
                mp_unreach,
                large_communities: large
                    .into_iter()
                    .map(|(global_admin, local_data1, local_data2)| LargeCommunity {
                        global_admin,
                        local_data1,
                        local_data2,
                    })
                    .collect(),
                unknown,
            }
        } else {
            PathAttributes { mp_unreach, ..PathAttributes::default() }
        };
        Update { withdrawn, attrs, nlri }
    }
}

fn capability() -> impl Strategy<Value = Capability> {
    let family = (
        prop_oneof![
            Just(Afi::Ipv4),
            Just(Afi::Ipv6),
            (3u16..).prop_map(Afi::Other)
        ],
        prop_oneof![Just(Safi::Unicast), (2u8..).prop_map(Safi::Other)],
    );
    prop_oneof![
        family
            .clone()
            .prop_map(|(afi, safi)| Capability::Multiprotocol { afi, safi }),
        Just(Capability::RouteRefresh),
        (
            any::<bool>(),
            0u16..4096,
            proptest::collection::vec((family, any::<bool>()), 0..4)
        )
            .prop_map(
                |(restarting, restart_time, fams)| Capability::GracefulRestart {
                    restarting,
                    restart_time,
                    families: fams.into_iter().map(|((a, s), f)| (a, s, f)).collect(),
                }
            ),
        (1u32..).prop_map(Capability::FourOctetAs),
        (
            prop_oneof![3u8..5, 6u8..64, 66u8..=255],
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(code, value)| Capability::Other { code, value }),
    ]
}

prop_compose! {
    fn open()(
        asn in 1u32..,
        hold in prop_oneof![Just(0u16), 3u16..],
        id in 1u32..,
        caps in proptest::collection::vec(capability(), 0..12),
    ) -> Open {
        Open::new(asn, hold, Ipv4Addr::from(id), caps)
    }
}

fn encode(msg: &Message, cxt: &DecodeCxt) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_message(msg, cxt, &mut buf);
    buf.to_vec()
}

/// Valid messages to mutate: a few of each kind.
fn seed() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        update(true).prop_map(|u| encode(&Message::Update(u), &FOUR)),
        open().prop_map(|o| encode(&Message::Open(o), &FOUR)),
        Just(encode(&Message::Keepalive, &FOUR)),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(
        prop_oneof![
            4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
            1 => any::<usize>().prop_map(Mutation::Truncate),
            1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            1 => any::<usize>().prop_map(Mutation::Remove),
        ],
        1..6,
    )
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let n = bytes.len();
        match *m {
            // Past the marker: a broken marker only ever tests one error.
            Mutation::Set(i, b) => {
                let at = if n > 16 { 16 + i % (n - 16) } else { i % n };
                bytes[at] = b;
            }
            Mutation::Truncate(i) => bytes.truncate(i % n),
            Mutation::Insert(i, b) => bytes.insert(i % n, b),
            Mutation::Remove(i) => {
                bytes.remove(i % n);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        drain(&bytes, &FOUR);
        drain(&bytes, &TWO);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        msg_type in 0u8..8,
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = header(msg_type, body.len());
        bytes.extend_from_slice(&body);
        drain(&bytes, &FOUR);
        drain(&bytes, &TWO);
    }

    #[test]
    fn mutated_valid_messages_never_panic(seed in seed(), mutations in mutations()) {
        let mut bytes = seed.clone();
        bytes.extend_from_slice(&seed);
        let bytes = mutate(bytes, &mutations);
        drain(&bytes, &FOUR);
        drain(&bytes, &TWO);
    }

    #[test]
    fn mutated_update_lengths_and_attribute_bytes_never_panic(
        u in update(true),
        at in any::<usize>(),
        value in any::<u8>(),
    ) {
        let mut bytes = encode(&Message::Update(u), &FOUR);
        // Aim inside the UPDATE body, where the lengths and attribute headers are.
        let n = bytes.len();
        bytes[19 + at % (n - 19)] = value;
        drain(&bytes, &FOUR);
        drain(&bytes, &TWO);
    }

    #[test]
    fn updates_round_trip_for_a_four_octet_peer(u in update(true)) {
        let bytes = encode(&Message::Update(u.clone()), &FOUR);
        prop_assert!(bytes.len() <= 4096);
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode_message(&mut buf, &FOUR), Ok(Some(Message::Update(u))));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn updates_round_trip_for_a_two_octet_peer(u in update(false)) {
        let bytes = encode(&Message::Update(u.clone()), &TWO);
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode_message(&mut buf, &TWO), Ok(Some(Message::Update(u))));
    }

    #[test]
    fn opens_round_trip(o in open()) {
        let bytes = encode(&Message::Open(o.clone()), &FOUR);
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode_message(&mut buf, &FOUR), Ok(Some(Message::Open(o))));
    }

}

proptest! {
    // Packing thousands of prefixes is slow in a debug build: fewer, larger cases.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn packed_updates_carry_every_prefix_within_the_size_limit(
        v4 in proptest::collection::vec(v4_net(), 0..3000),
        v6 in proptest::collection::vec(v6_net(), 0..800),
        withdraw in proptest::collection::vec(prop_oneof![v4_net(), v6_net()], 0..2000),
    ) {
        let attrs = PathAttributes {
            origin: Some(Origin::Igp),
            as_path: vec![AsSegment::Sequence(vec![65001])],
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            communities: vec![1, 2, 3],
            mp_reach: Some(MpReach {
                afi: Afi::Ipv6,
                safi: Safi::Unicast,
                next_hop: IpAddr::V6("fd00::1".parse().unwrap()),
                link_local_next_hop: Some("fe80::1".parse().unwrap()),
                nlri: vec![],
            }),
            ..PathAttributes::default()
        };
        let announce: Vec<IpNet> = v4.iter().chain(&v6).copied().collect();
        let mut buf = BytesMut::new();
        let n = twill_bgpd::packet::pack_updates(&attrs, &announce, &withdraw, &FOUR, &mut buf);
        let (mut got_announce, mut got_withdraw, mut messages) = (Vec::new(), Vec::new(), 0);
        while !buf.is_empty() {
            prop_assert!(u16::from_be_bytes([buf[16], buf[17]]) <= 4096);
            let Ok(Some(Message::Update(u))) = decode_message(&mut buf, &FOUR) else {
                return Err(TestCaseError::fail("not an UPDATE"));
            };
            messages += 1;
            got_announce.extend(u.nlri);
            got_withdraw.extend(u.withdrawn);
            if let Some(mp) = u.attrs.mp_reach {
                prop_assert_eq!(mp.next_hop, attrs.mp_reach.as_ref().unwrap().next_hop);
                got_announce.extend(mp.nlri);
            }
            if let Some(mp) = u.attrs.mp_unreach {
                got_withdraw.extend(mp.withdrawn);
            }
        }
        prop_assert_eq!(messages, n);
        let mut want_announce = announce.clone();
        let mut want_withdraw = withdraw.clone();
        for v in [&mut got_announce, &mut got_withdraw, &mut want_announce, &mut want_withdraw] {
            v.sort();
        }
        prop_assert_eq!(got_announce, want_announce);
        prop_assert_eq!(got_withdraw, want_withdraw);
    }
}
