//! `BFDProfile`: the Bidirectional Forwarding Detection settings (RFC 5880) a BGP peering
//! uses, named by `BGPPeer.spec.bfdProfile` and `BGPConfiguration.spec.nodeMeshBFDProfile`.
//! A session whose BFD goes Down is taken down at once instead of at hold-timer expiry.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Receive and transmit interval when a profile leaves them out (milliseconds).
pub const DEFAULT_BFD_INTERVAL_MS: u32 = 300;
/// Detection multiplier when a profile leaves it out.
pub const DEFAULT_BFD_DETECT_MULTIPLIER: u32 = 3;
/// Minimum TTL of multi-hop packets when a profile leaves it out.
pub const DEFAULT_BFD_MINIMUM_TTL: u32 = 254;

/// BFD timers and role for the peerings that name this profile.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "BFDProfile",
    plural = "bfdprofiles",
    category = "twill",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "RX", type_ = "integer", json_path = ".spec.receiveInterval"),
    printcolumn(name = "TX", type_ = "integer", json_path = ".spec.transmitInterval"),
    printcolumn(
        name = "Multiplier",
        type_ = "integer",
        json_path = ".spec.detectMultiplier"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BFDProfileSpec {
    /// Required Min RX Interval: the fastest the peer may send, in milliseconds
    /// (10-60000, default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_interval: Option<u32>,
    /// Desired Min TX Interval once Up, in milliseconds (10-60000, default 300; 1 s until
    /// the session is Up). The slower of this and the peer's receive interval is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmit_interval: Option<u32>,
    /// Packets missed before the peer declares the session down (1-255, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_multiplier: Option<u32>,
    /// Send nothing until the peer has (RFC 5880 passive role; default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_mode: Option<bool>,
    /// Multi-hop sessions (peers not on a directly connected network): packets arriving
    /// with a lower TTL are dropped (1-255, default 254). Single-hop always needs 255.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ttl: Option<u32>,
}
