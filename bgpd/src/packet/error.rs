//! Decode errors, one enum per message kind, and their mapping to the NOTIFICATION that
//! RFC 4271 §6 (as revised by RFC 7606) says to send.
//!
//! This file only classifies errors; it never decides to close a session itself. The one
//! error that must not close the session is [`DecodeError::TreatAsWithdraw`].

use ipnet::IpNet;

use super::Notification;

/// NOTIFICATION error codes (IANA "BGP Error (Notification) Codes").
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    /// RFC 7313.
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;
}

/// NOTIFICATION error subcodes (IANA "BGP Error Subcodes" and "BGP Cease NOTIFICATION
/// message subcodes").
pub mod subcode {
    // Message Header Error.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
    // OPEN Message Error.
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    // UPDATE Message Error.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
    // ROUTE-REFRESH Message Error (RFC 7313).
    pub const INVALID_MESSAGE_LENGTH: u8 = 1;
    // Cease (RFC 4486).
    pub const MAXIMUM_PREFIXES_REACHED: u8 = 1;
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
}

/// Anything wrong with a received message. Every variant except `TreatAsWithdraw` closes the
/// session with the NOTIFICATION from [`DecodeError::notification`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message header: {0}")]
    Header(#[from] HeaderError),
    #[error("OPEN: {0}")]
    Open(#[from] OpenError),
    #[error("UPDATE: {0}")]
    Update(#[from] UpdateError),
    #[error("ROUTE-REFRESH: {0}")]
    RouteRefresh(#[from] RouteRefreshError),
    /// RFC 7606 §2 "treat-as-withdraw": the UPDATE carried a malformed attribute whose
    /// error does not justify a reset. Every prefix the UPDATE mentioned (withdrawn, IPv4
    /// NLRI, MP_REACH and MP_UNREACH NLRI) is to be withdrawn; the session stays up.
    #[error("malformed UPDATE treated as withdraw of {} prefixes", withdrawn.len())]
    TreatAsWithdraw { withdrawn: Vec<IpNet> },
}

impl DecodeError {
    /// The NOTIFICATION to send before closing, or `None` for treat-as-withdraw.
    pub fn notification(&self) -> Option<Notification> {
        let (code, subcode, data) = match self {
            DecodeError::Header(e) => (code::MESSAGE_HEADER, e.subcode(), e.data()),
            DecodeError::Open(e) => (code::OPEN_MESSAGE, e.subcode(), e.data()),
            DecodeError::Update(e) => (code::UPDATE_MESSAGE, e.subcode(), e.data()),
            DecodeError::RouteRefresh(e) => (code::ROUTE_REFRESH_MESSAGE, e.subcode(), e.data()),
            DecodeError::TreatAsWithdraw { .. } => return None,
        };
        Some(Notification {
            code,
            subcode,
            data,
        })
    }
}

/// Each per-message error is also directly the NOTIFICATION to send, so that the speaker can
/// raise e.g. `OpenError::BadPeerAs` itself: `Notification::from(OpenError::BadPeerAs(asn))`.
macro_rules! into_notification {
    ($error:ty, $code:expr) => {
        impl From<$error> for Notification {
            fn from(e: $error) -> Notification {
                Notification {
                    code: $code,
                    subcode: e.subcode(),
                    data: e.data(),
                }
            }
        }
    };
}
into_notification!(HeaderError, code::MESSAGE_HEADER);
into_notification!(OpenError, code::OPEN_MESSAGE);
into_notification!(UpdateError, code::UPDATE_MESSAGE);
into_notification!(RouteRefreshError, code::ROUTE_REFRESH_MESSAGE);

/// Message Header Error (RFC 4271 §6.1), NOTIFICATION code 1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Subcode 1: the marker is not all ones.
    #[error("marker is not all ones")]
    ConnectionNotSynchronized,
    /// Subcode 2, data = the erroneous length field.
    #[error("bad message length {length} for type {msg_type}")]
    BadMessageLength { length: u16, msg_type: u8 },
    /// Subcode 3, data = the erroneous type field.
    #[error("bad message type {0}")]
    BadMessageType(u8),
}

impl HeaderError {
    fn subcode(&self) -> u8 {
        match self {
            HeaderError::ConnectionNotSynchronized => subcode::CONNECTION_NOT_SYNCHRONIZED,
            HeaderError::BadMessageLength { .. } => subcode::BAD_MESSAGE_LENGTH,
            HeaderError::BadMessageType(_) => subcode::BAD_MESSAGE_TYPE,
        }
    }

    fn data(&self) -> Vec<u8> {
        match self {
            HeaderError::ConnectionNotSynchronized => Vec::new(),
            HeaderError::BadMessageLength { length, .. } => length.to_be_bytes().to_vec(),
            HeaderError::BadMessageType(t) => vec![*t],
        }
    }
}

/// OPEN Message Error (RFC 4271 §6.2, RFC 5492, RFC 9072), NOTIFICATION code 2.
///
/// The decoder detects what the bytes alone show; the speaker raises `BadPeerAs`,
/// `BadBgpIdentifier`, `UnacceptableHoldTime` and `UnsupportedCapability` against its
/// configuration too, so they are public constructors of the right NOTIFICATION.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Subcode 1, data = the largest version we support (2 octets), per RFC 4271 §6.2.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// Subcode 2: AS 0 (RFC 7607) or an AS the configuration does not expect.
    #[error("bad peer AS {0}")]
    BadPeerAs(u32),
    /// Subcode 3: identifier 0.0.0.0 (RFC 6286) or our own.
    #[error("bad BGP identifier {0}")]
    BadBgpIdentifier(std::net::Ipv4Addr),
    /// Subcode 4: an optional parameter type other than Capabilities.
    #[error("unsupported optional parameter type {0}")]
    UnsupportedOptionalParameter(u8),
    /// Subcode 6: hold time 1 or 2 seconds (or refused by local policy).
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    /// Subcode 7, data = the capabilities we require and the peer lacks (RFC 5492 §5).
    #[error("unsupported capability")]
    UnsupportedCapability(Vec<u8>),
    /// Subcode 0 (unspecific): optional parameters or capabilities that overrun or have the
    /// wrong length for their code.
    #[error("malformed optional parameters: {0}")]
    Malformed(&'static str),
}

impl OpenError {
    fn subcode(&self) -> u8 {
        match self {
            OpenError::UnsupportedVersion(_) => subcode::UNSUPPORTED_VERSION_NUMBER,
            OpenError::BadPeerAs(_) => subcode::BAD_PEER_AS,
            OpenError::BadBgpIdentifier(_) => subcode::BAD_BGP_IDENTIFIER,
            OpenError::UnsupportedOptionalParameter(_) => subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
            OpenError::UnacceptableHoldTime(_) => subcode::UNACCEPTABLE_HOLD_TIME,
            OpenError::UnsupportedCapability(_) => subcode::UNSUPPORTED_CAPABILITY,
            OpenError::Malformed(_) => 0,
        }
    }

    fn data(&self) -> Vec<u8> {
        match self {
            OpenError::UnsupportedVersion(_) => {
                u16::from(super::BGP_VERSION).to_be_bytes().to_vec()
            }
            OpenError::UnsupportedCapability(caps) => caps.clone(),
            _ => Vec::new(),
        }
    }
}

/// UPDATE Message Error (RFC 4271 §6.3) that RFC 7606 still answers with a session reset,
/// NOTIFICATION code 3. Errors RFC 7606 downgrades never appear here: they become
/// [`DecodeError::TreatAsWithdraw`] or a silently discarded attribute.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Subcode 1: the withdrawn/attribute lengths do not fit the message (RFC 7606 §5.3 keeps
    /// the reset when the NLRI cannot be located), or MP_REACH_NLRI / MP_UNREACH_NLRI appear
    /// twice (RFC 7606 §3 g).
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    /// Subcode 2, data = the attribute: a well-known (non-optional) attribute we do not know.
    #[error("unrecognized well-known attribute {}", attr.get(1).copied().unwrap_or(0))]
    UnrecognizedWellKnownAttribute { attr: Vec<u8> },
    /// Subcode 4, data = the attribute: MP_REACH/MP_UNREACH with wrong flags.
    #[error("attribute flags error")]
    AttributeFlags { attr: Vec<u8> },
    /// Subcode 9, data = the attribute: MP_REACH/MP_UNREACH whose contents are malformed
    /// (RFC 7606 §7.11 allows a reset; the AFI/SAFI cannot be trusted).
    #[error("optional attribute error: {reason}")]
    OptionalAttribute { attr: Vec<u8>, reason: &'static str },
    /// Subcode 10: withdrawn routes or NLRI that cannot be parsed (RFC 7606 §5.3).
    #[error("invalid network field")]
    InvalidNetworkField,
}

impl UpdateError {
    fn subcode(&self) -> u8 {
        match self {
            UpdateError::MalformedAttributeList(_) => subcode::MALFORMED_ATTRIBUTE_LIST,
            UpdateError::UnrecognizedWellKnownAttribute { .. } => {
                subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE
            }
            UpdateError::AttributeFlags { .. } => subcode::ATTRIBUTE_FLAGS_ERROR,
            UpdateError::OptionalAttribute { .. } => subcode::OPTIONAL_ATTRIBUTE_ERROR,
            UpdateError::InvalidNetworkField => subcode::INVALID_NETWORK_FIELD,
        }
    }

    fn data(&self) -> Vec<u8> {
        match self {
            UpdateError::UnrecognizedWellKnownAttribute { attr }
            | UpdateError::AttributeFlags { attr }
            | UpdateError::OptionalAttribute { attr, .. } => attr.clone(),
            UpdateError::MalformedAttributeList(_) | UpdateError::InvalidNetworkField => Vec::new(),
        }
    }
}

/// ROUTE-REFRESH Message Error (RFC 7313 §5), NOTIFICATION code 7.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteRefreshError {
    /// Subcode 1, data = the whole message: length other than 23.
    #[error("invalid ROUTE-REFRESH length")]
    InvalidMessageLength { message: Vec<u8> },
}

impl RouteRefreshError {
    fn subcode(&self) -> u8 {
        match self {
            RouteRefreshError::InvalidMessageLength { .. } => subcode::INVALID_MESSAGE_LENGTH,
        }
    }

    fn data(&self) -> Vec<u8> {
        match self {
            RouteRefreshError::InvalidMessageLength { message } => message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaker_raised_open_errors_map_to_their_subcodes() {
        assert_eq!(
            Notification::from(OpenError::BadPeerAs(65001)),
            Notification::new(2, 2)
        );
        assert_eq!(
            Notification::from(OpenError::BadBgpIdentifier(std::net::Ipv4Addr::new(
                192, 0, 2, 1
            ))),
            Notification::new(2, 3)
        );
        assert_eq!(
            Notification::from(OpenError::UnacceptableHoldTime(5)),
            Notification::new(2, 6)
        );
        assert_eq!(
            Notification::from(OpenError::UnsupportedCapability(vec![
                65, 4, 0, 0, 0xfd, 0xe9
            ]))
            .data,
            vec![65, 4, 0, 0, 0xfd, 0xe9]
        );
    }

    #[test]
    fn treat_as_withdraw_has_no_notification() {
        assert_eq!(
            DecodeError::TreatAsWithdraw { withdrawn: vec![] }.notification(),
            None
        );
    }
}
