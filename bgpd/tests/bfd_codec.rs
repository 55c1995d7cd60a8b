//! BFD Control packet vectors both ways (`decode(raw) == packet`, `encode(packet) == raw`)
//! with bytes captured from a BIRD 2.0.12 ↔ BIRD 2.0.12 session at 100 ms × 3:
//!
//! ```text
//! sudo bash bgpd/tests/vectors/bfd_capture.sh     # two namespaces, two BIRDs, tcpdump
//! tcpdump -r /tmp/h5cap/bfd.pcap -nn -x           # UDP payload = bytes 28.. of each packet
//! ```
//! Then every rule of RFC 5880 §6.8.6 that needs no session state, each on a packet that
//! differs from a valid one in that rule only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use twill_bgpd::bfd::packet::{ControlPacket, DecodeError, Diag, PACKET_LEN, State};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn both_ways(raw: &[u8], pkt: ControlPacket) {
    assert_eq!(ControlPacket::decode(raw).unwrap(), pkt);
    assert_eq!(&pkt.to_bytes()[..], raw);
}

/// 192.0.2.1 → 192.0.2.2, slow start (1 s) while Down, no peer discriminator yet.
#[test]
fn bird_down_packet_in_slow_start() {
    both_ways(
        &hex("2040 0318 cfb5 f4a0 0000 0000 000f 4240 0001 86a0 0000 0000"),
        ControlPacket {
            diag: Diag::None,
            state: State::Down,
            poll: false,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 0xcfb5_f4a0,
            your_discr: 0,
            desired_min_tx: 1_000_000,
            required_min_rx: 100_000,
            required_min_echo_rx: 0,
        },
    );
}

#[test]
fn bird_init_packet() {
    both_ways(
        &hex("2080 0318 cfb5 f4a0 b198 2e6d 000f 4240 0001 86a0 0000 0000"),
        ControlPacket {
            diag: Diag::None,
            state: State::Init,
            poll: false,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 0xcfb5_f4a0,
            your_discr: 0xb198_2e6d,
            desired_min_tx: 1_000_000,
            required_min_rx: 100_000,
            required_min_echo_rx: 0,
        },
    );
}

/// Up with Poll: BIRD announces its 100 ms transmit interval after slow start.
#[test]
fn bird_up_poll_and_final() {
    let poll = ControlPacket {
        diag: Diag::None,
        state: State::Up,
        poll: true,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discr: 0xb198_2e6d,
        your_discr: 0xcfb5_f4a0,
        desired_min_tx: 100_000,
        required_min_rx: 100_000,
        required_min_echo_rx: 0,
    };
    both_ways(
        &hex("20e0 0318 b198 2e6d cfb5 f4a0 0001 86a0 0001 86a0 0000 0000"),
        poll,
    );
    both_ways(
        &hex("20d0 0318 cfb5 f4a0 b198 2e6d 0001 86a0 0001 86a0 0000 0000"),
        ControlPacket {
            poll: false,
            final_: true,
            my_discr: 0xcfb5_f4a0,
            your_discr: 0xb198_2e6d,
            ..poll
        },
    );
}

/// After its peer went silent: Down, diag 1, back to slow start, discriminator cleared.
#[test]
fn bird_down_after_detection_time_expired() {
    both_ways(
        &hex("2140 0318 b198 2e6d 0000 0000 000f 4240 0001 86a0 0000 0000"),
        ControlPacket {
            diag: Diag::ControlDetectionTimeExpired,
            state: State::Down,
            poll: false,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 0xb198_2e6d,
            your_discr: 0,
            desired_min_tx: 1_000_000,
            required_min_rx: 100_000,
            required_min_echo_rx: 0,
        },
    );
}

fn valid() -> Vec<u8> {
    hex("20c0 0318 b198 2e6d cfb5 f4a0 0001 86a0 0001 86a0 0000 0000")
}

#[test]
fn valid_up_packet_decodes() {
    let p = ControlPacket::decode(&valid()).unwrap();
    assert_eq!(p.state, State::Up);
}

#[test]
fn shorter_than_24_bytes_is_discarded() {
    let v = valid();
    for n in 0..PACKET_LEN {
        assert_eq!(ControlPacket::decode(&v[..n]), Err(DecodeError::Short(n)));
    }
}

#[test]
fn version_other_than_1_is_discarded() {
    for version in [0u8, 2, 7] {
        let mut v = valid();
        v[0] = (version << 5) | (v[0] & 0x1f);
        assert_eq!(
            ControlPacket::decode(&v),
            Err(DecodeError::Version(version))
        );
    }
}

#[test]
fn length_field_below_24_or_beyond_the_payload_is_discarded() {
    for len in [0u8, 23, 25, 255] {
        let mut v = valid();
        v[3] = len;
        assert!(
            matches!(ControlPacket::decode(&v), Err(DecodeError::Length { .. })),
            "length {len}"
        );
    }
    // A longer length is fine when the payload really is that long (§6.8.6 only bounds it
    // by the payload); the extra bytes are ignored.
    let mut v = valid();
    v[3] = 28;
    v.extend_from_slice(&[0; 4]);
    assert!(ControlPacket::decode(&v).is_ok());
}

#[test]
fn zero_detect_multiplier_is_discarded() {
    let mut v = valid();
    v[2] = 0;
    assert_eq!(ControlPacket::decode(&v), Err(DecodeError::ZeroDetectMult));
}

#[test]
fn multipoint_bit_is_discarded() {
    let mut v = valid();
    v[1] |= 0x01;
    assert_eq!(ControlPacket::decode(&v), Err(DecodeError::Multipoint));
}

#[test]
fn authentication_bit_without_authentication_configured_is_discarded() {
    let mut v = valid();
    v[1] |= 0x04;
    v[3] = 33;
    v.extend_from_slice(&[2, 9, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ControlPacket::decode(&v), Err(DecodeError::Authentication));
}

#[test]
fn zero_my_discriminator_is_discarded() {
    let mut v = valid();
    v[4..8].copy_from_slice(&[0; 4]);
    assert_eq!(ControlPacket::decode(&v), Err(DecodeError::ZeroMyDiscr));
}

#[test]
fn zero_your_discriminator_is_discarded_unless_down_or_admin_down() {
    for (bits, state, ok) in [
        (0x00u8, State::AdminDown, true),
        (0x40, State::Down, true),
        (0x80, State::Init, false),
        (0xc0, State::Up, false),
    ] {
        let mut v = valid();
        v[1] = bits;
        v[8..12].copy_from_slice(&[0; 4]);
        let r = ControlPacket::decode(&v);
        if ok {
            assert_eq!(r.unwrap().state, state);
        } else {
            assert_eq!(r, Err(DecodeError::ZeroYourDiscr(state)));
        }
    }
}

#[test]
fn poll_and_final_together_are_discarded() {
    let mut v = valid();
    v[1] |= 0x30;
    assert_eq!(ControlPacket::decode(&v), Err(DecodeError::PollAndFinal));
}

#[test]
fn unknown_diagnostic_is_kept() {
    let mut v = valid();
    v[0] = 0x20 | 0x1f;
    let p = ControlPacket::decode(&v).unwrap();
    assert_eq!(p.diag, Diag::Other(31));
    assert_eq!(&p.to_bytes()[..], &v[..]);
}

proptest! {
    /// Any bytes: decoding never panics, and whatever decodes re-encodes to a packet that
    /// decodes to the same value.
    #[test]
    fn arbitrary_bytes_never_panic_and_round_trip(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(p) = ControlPacket::decode(&raw) {
            let again = ControlPacket::decode(&p.to_bytes()).unwrap();
            prop_assert_eq!(again, p);
        }
    }
}
