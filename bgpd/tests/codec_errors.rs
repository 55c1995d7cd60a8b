//! Hand-built malformed messages: each gets the exact NOTIFICATION code/subcode/data of
//! RFC 4271 §6 as revised by RFC 7606, or the RFC 7606 treat-as-withdraw / attribute
//! discard outcome.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;

use bytes::BytesMut;
use ipnet::IpNet;
use twill_bgpd::packet::{
    AsSegment, Capability, DecodeCxt, DecodeError, Message, Notification, Open, PathAttributes,
    RawAttribute, Update, decode_message, encode_message,
};

const FOUR: DecodeCxt = DecodeCxt {
    four_octet_as: true,
};
const TWO: DecodeCxt = DecodeCxt {
    four_octet_as: false,
};

fn msg(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    m.push(msg_type);
    m.extend_from_slice(body);
    m
}

fn attr(flags: u8, type_code: u8, value: &[u8]) -> Vec<u8> {
    let mut a = vec![flags, type_code];
    if flags & 0x10 != 0 {
        a.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    } else {
        a.push(u8::try_from(value.len()).unwrap());
    }
    a.extend_from_slice(value);
    a
}

fn update(withdrawn: &[u8], attrs: &[Vec<u8>], nlri: &[u8]) -> Vec<u8> {
    let attrs: Vec<u8> = attrs.concat();
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(withdrawn.len()).unwrap().to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&attrs);
    body.extend_from_slice(nlri);
    msg(2, &body)
}

fn origin() -> Vec<u8> {
    attr(0x40, 1, &[0])
}
fn as_path() -> Vec<u8> {
    attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xe9]) // [65001], 4-octet form
}
fn next_hop() -> Vec<u8> {
    attr(0x40, 3, &[192, 0, 2, 1])
}
/// 10.244.1.0/24
const NLRI: &[u8] = &[24, 10, 244, 1];

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn decode(raw: &[u8], cxt: DecodeCxt) -> Result<Option<Message>, DecodeError> {
    decode_message(&mut BytesMut::from(raw), &cxt)
}

/// Asserts the NOTIFICATION `raw` must be answered with.
fn notification(raw: &[u8], cxt: DecodeCxt, code: u8, subcode: u8, data: &[u8]) {
    let err = decode(raw, cxt).unwrap_err();
    assert_eq!(
        err.notification(),
        Some(Notification {
            code,
            subcode,
            data: data.to_vec()
        }),
        "{err}"
    );
}

fn treat_as_withdraw(raw: &[u8], cxt: DecodeCxt, withdrawn: &[&str]) {
    let err = decode(raw, cxt).unwrap_err();
    assert_eq!(err.notification(), None);
    let want: Vec<IpNet> = withdrawn.iter().map(|s| net(s)).collect();
    assert_eq!(err, DecodeError::TreatAsWithdraw { withdrawn: want });
}

fn decoded_update(raw: &[u8], cxt: DecodeCxt) -> Update {
    match decode(raw, cxt).unwrap().unwrap() {
        Message::Update(u) => u,
        other => panic!("not an UPDATE: {other:?}"),
    }
}

fn open_body(version: u8, my_as: u16, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(u8::try_from(params.len()).unwrap());
    b.extend_from_slice(params);
    b
}

// ---- Message header (code 1) ------------------------------------------------------------

#[test]
fn marker_not_all_ones_is_connection_not_synchronized() {
    let mut raw = msg(4, &[]);
    raw[3] = 0xfe;
    notification(&raw, FOUR, 1, 1, &[]);
}

#[test]
fn length_below_19_or_above_4096_is_bad_message_length_with_the_length() {
    let mut raw = msg(4, &[]);
    raw[16..18].copy_from_slice(&18u16.to_be_bytes());
    notification(&raw, FOUR, 1, 2, &[0, 18]);
    raw[16..18].copy_from_slice(&4097u16.to_be_bytes());
    notification(&raw, FOUR, 1, 2, &[0x10, 0x01]);
}

#[test]
fn type_specific_minimum_lengths_are_bad_message_length() {
    notification(&msg(4, &[0]), FOUR, 1, 2, &[0, 20]); // KEEPALIVE must be 19
    notification(&msg(1, &[4; 9]), FOUR, 1, 2, &[0, 28]); // OPEN at least 29
    notification(&msg(2, &[0, 0, 0]), FOUR, 1, 2, &[0, 22]); // UPDATE at least 23
    notification(&msg(3, &[6]), FOUR, 1, 2, &[0, 20]); // NOTIFICATION at least 21
}

#[test]
fn unknown_message_type_is_bad_message_type_with_the_type() {
    notification(&msg(6, &[]), FOUR, 1, 3, &[6]);
    notification(&msg(0, &[]), FOUR, 1, 3, &[0]);
}

#[test]
fn header_errors_are_reported_before_the_body_arrives() {
    let mut raw = msg(9, &[0; 100]);
    raw.truncate(19);
    notification(&raw, FOUR, 1, 3, &[9]);
}

#[test]
fn incomplete_message_yields_none_and_consumes_nothing() {
    let raw = update(&[], &[origin(), as_path(), next_hop()], NLRI);
    for cut in [0, 5, 18, 19, raw.len() - 1] {
        let mut buf = BytesMut::from(&raw[..cut]);
        assert_eq!(decode_message(&mut buf, &FOUR), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn messages_are_consumed_one_at_a_time_from_a_stream() {
    let mut stream = msg(4, &[]);
    stream.extend(update(
        &[],
        &[attr(0x40, 1, &[7]), as_path(), next_hop()],
        NLRI,
    ));
    stream.extend(msg(4, &[]));
    stream.extend(&msg(4, &[])[..10]);
    let mut buf = BytesMut::from(&stream[..]);
    assert_eq!(
        decode_message(&mut buf, &FOUR),
        Ok(Some(Message::Keepalive))
    );
    // Treat-as-withdraw consumes its message: the session carries on with the next one.
    assert!(matches!(
        decode_message(&mut buf, &FOUR),
        Err(DecodeError::TreatAsWithdraw { .. })
    ));
    assert_eq!(
        decode_message(&mut buf, &FOUR),
        Ok(Some(Message::Keepalive))
    );
    assert_eq!(decode_message(&mut buf, &FOUR), Ok(None));
    assert_eq!(buf.len(), 10);
}

// ---- OPEN (code 2) ----------------------------------------------------------------------

#[test]
fn open_version_3_is_unsupported_version_with_our_version() {
    let raw = msg(1, &open_body(3, 65001, 90, [192, 0, 2, 1], &[]));
    notification(&raw, FOUR, 2, 1, &[0, 4]);
}

#[test]
fn open_as_zero_is_bad_peer_as() {
    notification(
        &msg(1, &open_body(4, 0, 90, [192, 0, 2, 1], &[])),
        FOUR,
        2,
        2,
        &[],
    );
    let cap_as0 = [2, 6, 65, 4, 0, 0, 0, 0];
    let raw = msg(1, &open_body(4, 23456, 90, [192, 0, 2, 1], &cap_as0));
    notification(&raw, FOUR, 2, 2, &[]);
}

#[test]
fn open_identifier_zero_is_bad_bgp_identifier() {
    notification(
        &msg(1, &open_body(4, 65001, 90, [0, 0, 0, 0], &[])),
        FOUR,
        2,
        3,
        &[],
    );
}

#[test]
fn open_hold_time_1_or_2_is_unacceptable_and_0_or_3_is_fine() {
    for hold in [1, 2] {
        let raw = msg(1, &open_body(4, 65001, hold, [192, 0, 2, 1], &[]));
        notification(&raw, FOUR, 2, 6, &[]);
    }
    for hold in [0, 3] {
        let raw = msg(1, &open_body(4, 65001, hold, [192, 0, 2, 1], &[]));
        assert!(matches!(decode(&raw, FOUR), Ok(Some(Message::Open(_)))));
    }
}

#[test]
fn open_optional_parameter_other_than_capabilities_is_unsupported() {
    // Type 1 (authentication, deprecated by RFC 5492).
    let raw = msg(1, &open_body(4, 65001, 90, [192, 0, 2, 1], &[1, 2, 0, 0]));
    notification(&raw, FOUR, 2, 4, &[]);
}

#[test]
fn open_parameters_that_overrun_are_malformed() {
    // Opt Parm Len says 4, the parameter claims 5.
    let raw = msg(1, &open_body(4, 65001, 90, [192, 0, 2, 1], &[2, 5, 2, 0]));
    notification(&raw, FOUR, 2, 0, &[]);
    // A capability whose value overruns its parameter.
    let raw = msg(1, &open_body(4, 65001, 90, [192, 0, 2, 1], &[2, 2, 65, 4]));
    notification(&raw, FOUR, 2, 0, &[]);
    // Multiprotocol with 3 octets.
    let raw = msg(
        1,
        &open_body(4, 65001, 90, [192, 0, 2, 1], &[2, 5, 1, 3, 0, 1, 0]),
    );
    notification(&raw, FOUR, 2, 0, &[]);
}

#[test]
fn open_extended_optional_parameters_round_trip() {
    // RFC 9072: more than 255 octets of capabilities switch to the extended form.
    let big = Capability::Other {
        code: 200,
        value: vec![7; 250],
    };
    let open = Open::new(
        4_200_000_001,
        90,
        Ipv4Addr::new(192, 0, 2, 1),
        vec![Capability::FourOctetAs(4_200_000_001), big.clone(), big],
    );
    assert_eq!(open.my_as, 23456);
    let mut buf = BytesMut::new();
    encode_message(&Message::Open(open.clone()), &FOUR, &mut buf);
    assert_eq!(
        &buf[28..30],
        &[255, 255],
        "Opt Parm Len and Non-Ext OP Type"
    );
    assert_eq!(buf[32], 2, "one Capabilities parameter");
    assert_eq!(
        decode_message(&mut buf, &FOUR),
        Ok(Some(Message::Open(open)))
    );
}

#[test]
fn open_helpers_read_capabilities() {
    let open = Open::new(
        65001,
        90,
        Ipv4Addr::new(192, 0, 2, 1),
        vec![
            Capability::RouteRefresh,
            Capability::Multiprotocol {
                afi: twill_bgpd::packet::Afi::Ipv6,
                safi: twill_bgpd::packet::Safi::Unicast,
            },
        ],
    );
    assert_eq!(open.asn(), 65001);
    assert_eq!(open.four_octet_as(), None);
    assert!(open.route_refresh());
    assert_eq!(open.multiprotocol().count(), 1);
    assert!(open.graceful_restart().is_none());
}

// ---- UPDATE: session reset (code 3) -----------------------------------------------------

#[test]
fn withdrawn_length_overrunning_the_message_is_malformed_attribute_list() {
    let mut raw = update(&[], &[], &[]);
    raw[19..21].copy_from_slice(&5u16.to_be_bytes());
    notification(&raw, FOUR, 3, 1, &[]);
}

#[test]
fn attribute_length_overrunning_the_message_is_malformed_attribute_list() {
    let mut raw = update(&[], &[origin()], &[]);
    raw[21..23].copy_from_slice(&9u16.to_be_bytes());
    notification(&raw, FOUR, 3, 1, &[]);
}

#[test]
fn unparseable_nlri_or_withdrawn_routes_are_invalid_network_field() {
    let raw = update(
        &[],
        &[origin(), as_path(), next_hop()],
        &[33, 10, 0, 0, 0, 0],
    );
    notification(&raw, FOUR, 3, 10, &[]);
    let raw = update(&[], &[origin(), as_path(), next_hop()], &[24, 10, 244]);
    notification(&raw, FOUR, 3, 10, &[]);
    let raw = update(&[24, 10], &[], &[]);
    notification(&raw, FOUR, 3, 10, &[]);
}

#[test]
fn unrecognized_well_known_attribute_resets_with_the_attribute() {
    let bad = attr(0x40, 99, &[1, 2]);
    let raw = update(&[], &[origin(), as_path(), next_hop(), bad.clone()], NLRI);
    notification(&raw, FOUR, 3, 2, &bad);
}

#[test]
fn duplicate_mp_reach_is_malformed_attribute_list() {
    let reach = attr(
        0x80,
        14,
        &[
            0, 2, 1, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        ],
    );
    let raw = update(&[], &[origin(), as_path(), reach.clone(), reach], &[]);
    notification(&raw, FOUR, 3, 1, &[]);
    let unreach = attr(0x80, 15, &[0, 2, 1]);
    let raw = update(&[], &[unreach.clone(), unreach], &[]);
    notification(&raw, FOUR, 3, 1, &[]);
}

#[test]
fn mp_reach_with_wrong_flags_is_attribute_flags_error() {
    let reach = attr(
        0xc0,
        14,
        &[
            0, 2, 1, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        ],
    );
    let raw = update(&[], &[origin(), as_path(), reach.clone()], &[]);
    notification(&raw, FOUR, 3, 4, &reach);
}

#[test]
fn malformed_mp_reach_or_unreach_is_optional_attribute_error() {
    // IPv6 next hop of 5 octets.
    let reach = attr(0x80, 14, &[0, 2, 1, 5, 0xfd, 0, 0, 0, 1, 0]);
    let raw = update(&[], &[origin(), as_path(), reach.clone()], &[]);
    notification(&raw, FOUR, 3, 9, &reach);
    // IPv6 prefix length 129.
    let reach = attr(
        0x80,
        14,
        &[
            0, 2, 1, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 129,
        ],
    );
    let raw = update(&[], &[origin(), as_path(), reach.clone()], &[]);
    notification(&raw, FOUR, 3, 9, &reach);
    // Next hop overruns the attribute.
    let reach = attr(0x80, 14, &[0, 2, 1, 16, 0xfd]);
    let raw = update(&[], std::slice::from_ref(&reach), &[]);
    notification(&raw, FOUR, 3, 9, &reach);
    // MP_UNREACH shorter than AFI + SAFI.
    let unreach = attr(0x80, 15, &[0, 2]);
    let raw = update(&[], std::slice::from_ref(&unreach), &[]);
    notification(&raw, FOUR, 3, 9, &unreach);
}

#[test]
fn reset_beats_treat_as_withdraw_in_the_same_update() {
    let bad_origin = attr(0x40, 1, &[9]);
    let reach = attr(0x80, 14, &[0, 2, 1, 5, 0xfd, 0, 0, 0, 1, 0]);
    let raw = update(&[], &[bad_origin, as_path(), reach.clone()], &[]);
    notification(&raw, FOUR, 3, 9, &reach);
}

// ---- UPDATE: treat-as-withdraw (RFC 7606 §7) --------------------------------------------

#[test]
fn malformed_well_known_and_optional_attributes_are_treat_as_withdraw() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ORIGIN value 3", attr(0x40, 1, &[3])),
        ("ORIGIN length 2", attr(0x40, 1, &[0, 0])),
        ("ORIGIN flagged optional", attr(0xc0, 1, &[0])),
        (
            "AS_PATH segment overrun",
            attr(0x40, 2, &[2, 2, 0, 0, 0xfd, 0xe9]),
        ),
        (
            "AS_PATH unknown segment type",
            attr(0x40, 2, &[7, 1, 0, 0, 0xfd, 0xe9]),
        ),
        ("AS_PATH with AS 0", attr(0x40, 2, &[2, 1, 0, 0, 0, 0])),
        ("NEXT_HOP length 5", attr(0x40, 3, &[192, 0, 2, 1, 0])),
        ("NEXT_HOP 0.0.0.0", attr(0x40, 3, &[0, 0, 0, 0])),
        ("NEXT_HOP multicast", attr(0x40, 3, &[224, 0, 0, 1])),
        ("MED length 3", attr(0x80, 4, &[0, 0, 1])),
        ("MED flagged well-known", attr(0x40, 4, &[0, 0, 0, 1])),
        ("LOCAL_PREF length 2", attr(0x40, 5, &[0, 100])),
        ("COMMUNITIES empty", attr(0xc0, 8, &[])),
        ("COMMUNITIES length 5", attr(0xc0, 8, &[0, 1, 0, 1, 0])),
        ("ORIGINATOR_ID length 3", attr(0x80, 9, &[192, 0, 2])),
        (
            "CLUSTER_LIST length 6",
            attr(0x80, 10, &[192, 0, 2, 1, 0, 0]),
        ),
        ("LARGE_COMMUNITY length 13", attr(0xc0, 32, &[0; 13])),
    ];
    for (what, bad) in cases {
        let mut attrs = vec![bad.clone()];
        // The malformed one comes first so that the well-formed duplicate is discarded.
        attrs.extend([origin(), as_path(), next_hop()]);
        let raw = update(&[24, 10, 244, 9], &attrs, NLRI);
        let err = decode(&raw, FOUR).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TreatAsWithdraw {
                withdrawn: vec![net("10.244.9.0/24"), net("10.244.1.0/24")]
            },
            "{what}"
        );
    }
}

#[test]
fn missing_mandatory_attributes_with_nlri_are_treat_as_withdraw() {
    treat_as_withdraw(
        &update(&[], &[as_path(), next_hop()], NLRI),
        FOUR,
        &["10.244.1.0/24"],
    );
    treat_as_withdraw(
        &update(&[], &[origin(), next_hop()], NLRI),
        FOUR,
        &["10.244.1.0/24"],
    );
    treat_as_withdraw(
        &update(&[], &[origin(), as_path()], NLRI),
        FOUR,
        &["10.244.1.0/24"],
    );
    treat_as_withdraw(&update(&[], &[], NLRI), FOUR, &["10.244.1.0/24"]);
}

#[test]
fn next_hop_is_not_required_when_only_mp_reach_announces() {
    let reach = attr(
        0x80,
        14,
        &[
            0, 2, 1, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 64, 0xfd, 0, 0, 0,
            0, 0, 0, 1,
        ],
    );
    let u = decoded_update(&update(&[], &[origin(), as_path(), reach], &[]), FOUR);
    assert_eq!(u.attrs.mp_reach.unwrap().nlri, vec![net("fd00:0:0:1::/64")]);
}

#[test]
fn mandatory_attributes_are_not_required_without_nlri() {
    let u = decoded_update(
        &update(&[24, 10, 244, 1], &[attr(0xc0, 8, &[0, 1, 0, 1])], &[]),
        FOUR,
    );
    assert_eq!(u.withdrawn, vec![net("10.244.1.0/24")]);
}

#[test]
fn treat_as_withdraw_lists_every_prefix_of_the_update() {
    let reach = attr(
        0x80,
        14,
        &[
            0, 2, 1, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 48, 0xfd, 0, 0, 0,
            0, 1,
        ],
    );
    let unreach = attr(0x80, 15, &[0, 2, 1, 48, 0xfd, 0, 0, 0, 0, 2]);
    let raw = update(
        &[24, 10, 244, 9],
        &[attr(0x40, 1, &[5]), as_path(), next_hop(), reach, unreach],
        NLRI,
    );
    treat_as_withdraw(
        &raw,
        FOUR,
        &[
            "10.244.9.0/24",
            "10.244.1.0/24",
            "fd00:0:1::/48",
            "fd00:0:2::/48",
        ],
    );
}

#[test]
fn attribute_overrunning_the_attribute_field_is_treat_as_withdraw() {
    // RFC 7606 §4: the last attribute claims more than the field holds; the Total Path
    // Attribute Length still locates the NLRI.
    let mut attrs = [origin(), as_path(), next_hop()].concat();
    attrs.extend([0xc0, 8, 8, 0, 1]);
    let raw = update(&[], &[attrs], NLRI);
    treat_as_withdraw(&raw, FOUR, &["10.244.1.0/24"]);
    // Fewer than three octets left for an attribute header.
    let mut attrs = [origin(), as_path(), next_hop()].concat();
    attrs.extend([0xc0, 8]);
    treat_as_withdraw(&update(&[], &[attrs], NLRI), FOUR, &["10.244.1.0/24"]);
}

#[test]
fn four_octet_as_path_read_as_two_octet_is_treat_as_withdraw_or_a_different_path() {
    // [65001] in 4-octet form read by a 2-octet session: segment of one 2-octet AS, then two
    // leftover octets (0xfd 0xe9) that are a segment header claiming 233 ASNs: overrun.
    treat_as_withdraw(
        &update(&[], &[origin(), as_path(), next_hop()], NLRI),
        TWO,
        &["10.244.1.0/24"],
    );
}

// ---- UPDATE: attribute discard and duplicates -------------------------------------------

#[test]
fn malformed_atomic_aggregate_and_aggregator_are_discarded() {
    let raw = update(
        &[],
        &[
            origin(),
            as_path(),
            next_hop(),
            attr(0x40, 6, &[1]),
            attr(0xc0, 7, &[0, 0, 0xfd, 0xe9, 192, 0, 2]),
        ],
        NLRI,
    );
    let u = decoded_update(&raw, FOUR);
    assert!(!u.attrs.atomic_aggregate);
    assert_eq!(u.attrs.aggregator, None);
    assert_eq!(u.nlri, vec![net("10.244.1.0/24")]);
    // AS 0 in AGGREGATOR (RFC 7607).
    let raw = update(
        &[],
        &[
            origin(),
            as_path(),
            next_hop(),
            attr(0xc0, 7, &[0, 0, 0, 0, 192, 0, 2, 1]),
        ],
        NLRI,
    );
    assert_eq!(decoded_update(&raw, FOUR).attrs.aggregator, None);
}

#[test]
fn duplicate_attributes_keep_the_first() {
    let raw = update(
        &[],
        &[
            origin(),
            as_path(),
            next_hop(),
            attr(0x40, 1, &[2]),
            attr(0x40, 3, &[192, 0, 2, 7]),
        ],
        NLRI,
    );
    let u = decoded_update(&raw, FOUR);
    assert_eq!(u.attrs.origin, Some(twill_bgpd::packet::Origin::Igp));
    assert_eq!(u.attrs.next_hop, Some(Ipv4Addr::new(192, 0, 2, 1)));
}

#[test]
fn extended_length_flag_is_accepted_on_any_attribute() {
    let raw = update(
        &[],
        &[
            attr(0x50, 1, &[1]),
            attr(0x50, 2, &[2, 1, 0, 0, 0xfd, 0xe9]),
            next_hop(),
        ],
        NLRI,
    );
    let u = decoded_update(&raw, FOUR);
    assert_eq!(u.attrs.origin, Some(twill_bgpd::packet::Origin::Egp));
    assert_eq!(u.attrs.as_path, vec![AsSegment::Sequence(vec![65001])]);
}

#[test]
fn unknown_optional_attributes_are_kept_and_only_transitive_ones_pass_on_with_partial() {
    let raw = update(
        &[],
        &[
            origin(),
            as_path(),
            next_hop(),
            attr(0xc0, 99, &[1, 2, 3]),
            attr(0x80, 98, &[4]),
        ],
        NLRI,
    );
    let u = decoded_update(&raw, FOUR);
    assert_eq!(
        u.attrs.unknown,
        vec![
            RawAttribute {
                flags: 0xc0,
                type_code: 99,
                value: vec![1, 2, 3]
            },
            RawAttribute {
                flags: 0x80,
                type_code: 98,
                value: vec![4]
            },
        ]
    );
    assert_eq!(
        u.attrs.unknown_for_readvertisement(),
        vec![RawAttribute {
            flags: 0xe0,
            type_code: 99,
            value: vec![1, 2, 3]
        }]
    );
}

#[test]
fn mp_reach_of_a_family_we_do_not_parse_is_kept_raw() {
    // AFI 1 / SAFI 128 (VPNv4): its NLRI format is not ours to interpret.
    let value = [0, 1, 128, 12, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1, 0, 1, 2];
    let raw = update(&[], &[origin(), as_path(), attr(0x80, 14, &value)], &[]);
    let u = decoded_update(&raw, FOUR);
    assert_eq!(u.attrs.mp_reach, None);
    assert_eq!(u.attrs.unknown.len(), 1);
    assert_eq!(u.attrs.unknown[0].type_code, 14);
}

// ---- RFC 6793 with a 2-octet peer -------------------------------------------------------

#[test]
fn as4_path_from_a_four_octet_peer_is_discarded() {
    let as4 = attr(0xc0, 17, &[2, 1, 0xfa, 0x56, 0xea, 0x01]);
    let u = decoded_update(
        &update(&[], &[origin(), as_path(), next_hop(), as4], NLRI),
        FOUR,
    );
    assert_eq!(u.attrs.as_path, vec![AsSegment::Sequence(vec![65001])]);
    assert!(u.attrs.unknown.is_empty());
}

#[test]
fn malformed_as4_path_is_discarded_and_as_path_kept() {
    let path2 = attr(0x40, 2, &[2, 1, 0x5b, 0xa0]);
    let as4 = attr(0xc0, 17, &[2, 2, 0xfa, 0x56, 0xea, 0x01]);
    let u = decoded_update(&update(&[], &[origin(), path2, next_hop(), as4], NLRI), TWO);
    assert_eq!(u.attrs.as_path, vec![AsSegment::Sequence(vec![23456])]);
}

#[test]
fn as4_aggregator_replaces_an_as_trans_aggregator() {
    let path2 = attr(0x40, 2, &[2, 1, 0x5b, 0xa0]);
    let agg = attr(0xc0, 7, &[0x5b, 0xa0, 192, 0, 2, 1]);
    let agg4 = attr(0xc0, 18, &[0xfa, 0x56, 0xea, 0x01, 192, 0, 2, 1]);
    let as4 = attr(0xc0, 17, &[2, 1, 0xfa, 0x56, 0xea, 0x01]);
    let raw = update(
        &[],
        &[
            origin(),
            path2.clone(),
            next_hop(),
            agg,
            as4.clone(),
            agg4.clone(),
        ],
        NLRI,
    );
    let u = decoded_update(&raw, TWO);
    assert_eq!(
        u.attrs.aggregator,
        Some((4_200_000_001, Ipv4Addr::new(192, 0, 2, 1)))
    );
    assert_eq!(
        u.attrs.as_path,
        vec![AsSegment::Sequence(vec![4_200_000_001])]
    );
    // Encoding for the 2-octet peer gives back exactly these attributes.
    let mut buf = BytesMut::new();
    encode_message(&Message::Update(u), &TWO, &mut buf);
    let agg = attr(0xc0, 7, &[0x5b, 0xa0, 192, 0, 2, 1]);
    assert_eq!(
        &buf[..],
        &update(&[], &[origin(), path2, next_hop(), agg, as4, agg4], NLRI)[..]
    );
}

#[test]
fn as4_attributes_are_ignored_when_the_aggregator_is_a_two_octet_speaker() {
    let path2 = attr(0x40, 2, &[2, 1, 0x5b, 0xa0]);
    let agg = attr(0xc0, 7, &[0xfd, 0xe9, 192, 0, 2, 1]);
    let agg4 = attr(0xc0, 18, &[0xfa, 0x56, 0xea, 0x01, 192, 0, 2, 1]);
    let as4 = attr(0xc0, 17, &[2, 1, 0xfa, 0x56, 0xea, 0x01]);
    let u = decoded_update(
        &update(&[], &[origin(), path2, next_hop(), agg, as4, agg4], NLRI),
        TWO,
    );
    assert_eq!(
        u.attrs.aggregator,
        Some((65001, Ipv4Addr::new(192, 0, 2, 1)))
    );
    assert_eq!(u.attrs.as_path, vec![AsSegment::Sequence(vec![23456])]);
}

#[test]
fn two_octet_encoding_leaves_out_as4_path_when_every_asn_fits() {
    let u = Update {
        attrs: PathAttributes {
            origin: Some(twill_bgpd::packet::Origin::Igp),
            as_path: vec![AsSegment::Sequence(vec![65001, 23456])],
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ..PathAttributes::default()
        },
        nlri: vec![net("10.244.1.0/24")],
        withdrawn: vec![],
    };
    let mut buf = BytesMut::new();
    encode_message(&Message::Update(u), &TWO, &mut buf);
    let path2 = attr(0x40, 2, &[2, 2, 0xfd, 0xe9, 0x5b, 0xa0]);
    assert_eq!(
        &buf[..],
        &update(&[], &[origin(), path2, next_hop()], NLRI)[..]
    );
}

// ---- ROUTE-REFRESH (code 7) and NOTIFICATION --------------------------------------------

#[test]
fn route_refresh_of_wrong_length_is_invalid_message_length_with_the_message() {
    let raw = msg(5, &[0, 1, 0, 1, 0]);
    notification(&raw, FOUR, 7, 1, &raw);
}

#[test]
fn notification_data_is_kept() {
    let raw = msg(3, &[6, 1, 0, 1, 1, 0, 0, 0, 100]);
    let n = Notification::max_prefixes(
        twill_bgpd::packet::Afi::Ipv4,
        twill_bgpd::packet::Safi::Unicast,
        100,
    );
    assert_eq!(
        decode(&raw, FOUR),
        Ok(Some(Message::Notification(n.clone())))
    );
    let mut buf = BytesMut::new();
    encode_message(&Message::Notification(n), &FOUR, &mut buf);
    assert_eq!(&buf[..], &raw[..]);
}
