//! The BFD Control packet (RFC 5880 §4.1): a pure codec with the packet-level checks of
//! §6.8.6. It never looks at sessions, sockets or clocks; the checks that need session
//! state (which discriminator belongs to whom, TTL) live in the session and the driver.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Your Discriminator                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Desired Min TX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Required Min RX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Intervals are in microseconds. Authentication (the A bit) is not implemented, so a
//! packet asking for it is discarded, as §6.8.6 requires when no authentication is in use.

use bytes::{BufMut, BytesMut};

/// Length of a Control packet without authentication.
pub const PACKET_LEN: usize = 24;

/// The protocol version this codec speaks.
pub const VERSION: u8 = 1;

/// Session state as carried on the wire (RFC 5880 §4.1 "Sta").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    AdminDown,
    Down,
    Init,
    Up,
}

impl State {
    fn from_bits(b: u8) -> Self {
        match b & 0x3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    fn to_bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

/// Diagnostic codes (RFC 5880 §4.1, IANA "BFD Diagnostic Codes"); unknown values kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Diag {
    None,
    ControlDetectionTimeExpired,
    EchoFunctionFailed,
    NeighborSignaledSessionDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    Other(u8),
}

impl Diag {
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFunctionFailed,
            3 => Diag::NeighborSignaledSessionDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            o => Diag::Other(o),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFunctionFailed => 2,
            Diag::NeighborSignaledSessionDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Other(o) => o,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Diag::None => "none",
            Diag::ControlDetectionTimeExpired => "control detection time expired",
            Diag::EchoFunctionFailed => "echo function failed",
            Diag::NeighborSignaledSessionDown => "neighbor signaled session down",
            Diag::ForwardingPlaneReset => "forwarding plane reset",
            Diag::PathDown => "path down",
            Diag::ConcatenatedPathDown => "concatenated path down",
            Diag::AdministrativelyDown => "administratively down",
            Diag::ReverseConcatenatedPathDown => "reverse concatenated path down",
            Diag::Other(_) => "unknown",
        }
    }
}

/// One BFD Control packet (without authentication section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diag,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    /// Control Plane Independent.
    pub cpi: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discr: u32,
    pub your_discr: u32,
    /// Microseconds.
    pub desired_min_tx: u32,
    /// Microseconds.
    pub required_min_rx: u32,
    /// Microseconds; 0 = this system does not take echo packets.
    pub required_min_echo_rx: u32,
}

/// Why a received packet was discarded (RFC 5880 §6.8.6, packet-level checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {0} bytes is shorter than a BFD Control packet")]
    Short(usize),
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("length field {length} invalid for a {payload}-byte payload")]
    Length { length: u8, payload: usize },
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator is zero")]
    ZeroMyDiscr,
    #[error("your discriminator is zero in state {0:?}")]
    ZeroYourDiscr(State),
    #[error("authentication requested but none is configured")]
    Authentication,
    #[error("poll and final both set")]
    PollAndFinal,
}

impl DecodeError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Short(_) => "short",
            DecodeError::Version(_) => "version",
            DecodeError::Length { .. } => "length",
            DecodeError::ZeroDetectMult => "zero_detect_mult",
            DecodeError::Multipoint => "multipoint",
            DecodeError::ZeroMyDiscr => "zero_my_discr",
            DecodeError::ZeroYourDiscr(_) => "zero_your_discr",
            DecodeError::Authentication => "authentication",
            DecodeError::PollAndFinal => "poll_and_final",
        }
    }
}

const P: u8 = 0x20;
const F: u8 = 0x10;
const C: u8 = 0x08;
const A: u8 = 0x04;
const D: u8 = 0x02;
const M: u8 = 0x01;

impl ControlPacket {
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(PACKET_LEN);
        buf.put_u8((VERSION << 5) | (self.diag.to_u8() & 0x1f));
        let mut flags = self.state.to_bits() << 6;
        for (set, bit) in [
            (self.poll, P),
            (self.final_, F),
            (self.cpi, C),
            (self.demand, D),
        ] {
            if set {
                flags |= bit;
            }
        }
        buf.put_u8(flags);
        buf.put_u8(self.detect_mult);
        buf.put_u8(PACKET_LEN as u8);
        buf.put_u32(self.my_discr);
        buf.put_u32(self.your_discr);
        buf.put_u32(self.desired_min_tx);
        buf.put_u32(self.required_min_rx);
        buf.put_u32(self.required_min_echo_rx);
    }

    /// The packet as bytes.
    pub fn to_bytes(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(PACKET_LEN);
        self.encode(&mut b);
        b
    }

    /// Decodes one UDP payload, applying every check of §6.8.6 that needs no session.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let Some((head, _)) = buf.split_first_chunk::<PACKET_LEN>() else {
            return Err(DecodeError::Short(buf.len()));
        };
        let version = head[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = head[1];
        let length = head[3];
        if usize::from(length) < PACKET_LEN || usize::from(length) > buf.len() {
            return Err(DecodeError::Length {
                length,
                payload: buf.len(),
            });
        }
        if flags & A != 0 {
            return Err(DecodeError::Authentication);
        }
        let detect_mult = head[2];
        if detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if flags & M != 0 {
            return Err(DecodeError::Multipoint);
        }
        if flags & P != 0 && flags & F != 0 {
            return Err(DecodeError::PollAndFinal);
        }
        let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let my_discr = word(4);
        let your_discr = word(8);
        if my_discr == 0 {
            return Err(DecodeError::ZeroMyDiscr);
        }
        let state = State::from_bits(flags >> 6);
        if your_discr == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(DecodeError::ZeroYourDiscr(state));
        }
        Ok(Self {
            diag: Diag::from_u8(head[0] & 0x1f),
            state,
            poll: flags & P != 0,
            final_: flags & F != 0,
            cpi: flags & C != 0,
            demand: flags & D != 0,
            detect_mult,
            my_discr,
            your_discr,
            desired_min_tx: word(12),
            required_min_rx: word(16),
            required_min_echo_rx: word(20),
        })
    }
}
