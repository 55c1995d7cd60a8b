//! One peer's configuration and its checks.

use std::net::IpAddr;

use serde::Deserialize;

use super::{Config, ConfigError};

/// An address family this speaker can exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum Family {
    #[serde(rename = "ipv4-unicast")]
    Ipv4Unicast,
    #[serde(rename = "ipv6-unicast")]
    Ipv6Unicast,
}

impl Family {
    /// The family a prefix belongs to.
    pub fn of(net: &ipnet::IpNet) -> Self {
        match net {
            ipnet::IpNet::V4(_) => Family::Ipv4Unicast,
            ipnet::IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4Unicast => "ipv4-unicast",
            Family::Ipv6Unicast => "ipv6-unicast",
        }
    }
}

/// Graceful restart (RFC 4724).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GracefulRestartConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Seconds the peer should keep our routes while we restart (12 bits).
    #[serde(default = "default_restart_time")]
    pub restart_time: u16,
}

fn yes() -> bool {
    true
}

fn default_restart_time() -> u16 {
    120
}

impl Default for GracefulRestartConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            restart_time: default_restart_time(),
        }
    }
}

/// BFD for a peer (RFC 5880; single-hop RFC 5881 or multi-hop RFC 5883). A BFD session
/// going Down takes the BGP session down at once, and BGP stays down until BFD is Up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BfdConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Required Min RX Interval: the fastest we want the peer to send (milliseconds).
    #[serde(default = "default_bfd_interval")]
    pub receive_interval_ms: u32,
    /// Desired Min TX Interval once Up (milliseconds; 1 s until then).
    #[serde(default = "default_bfd_interval")]
    pub transmit_interval_ms: u32,
    /// Packets missed before the peer declares us down.
    #[serde(default = "default_detect_multiplier")]
    pub detect_multiplier: u8,
    /// UDP 4784, for a peer that is not on a shared link (RFC 5883).
    #[serde(default)]
    pub multihop: bool,
    /// Send nothing until the peer has (RFC 5880 §6.1 passive role).
    #[serde(default)]
    pub passive: bool,
    /// Multi-hop: drop packets that arrive with a lower TTL (single-hop always needs 255).
    #[serde(default = "default_minimum_ttl")]
    pub minimum_ttl: u8,
}

fn default_bfd_interval() -> u32 {
    300
}

fn default_detect_multiplier() -> u8 {
    3
}

fn default_minimum_ttl() -> u8 {
    254
}

impl Default for BfdConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            receive_interval_ms: default_bfd_interval(),
            transmit_interval_ms: default_bfd_interval(),
            detect_multiplier: default_detect_multiplier(),
            multihop: false,
            passive: false,
            minimum_ttl: default_minimum_ttl(),
        }
    }
}

impl BfdConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        for (name, v) in [
            ("receive_interval_ms", self.receive_interval_ms),
            ("transmit_interval_ms", self.transmit_interval_ms),
        ] {
            if !(10..=60_000).contains(&v) {
                return Err(ConfigError::invalid(
                    format!("{at}.bfd.{name}"),
                    "must be 10 to 60000 milliseconds",
                ));
            }
        }
        if self.detect_multiplier == 0 {
            return Err(ConfigError::invalid(
                format!("{at}.bfd.detect_multiplier"),
                "must be 1 to 255 (RFC 5880 §6.8.6 discards 0)",
            ));
        }
        if self.minimum_ttl == 0 {
            return Err(ConfigError::invalid(
                format!("{at}.bfd.minimum_ttl"),
                "must be 1 to 255",
            ));
        }
        Ok(())
    }
}

fn default_families() -> Vec<Family> {
    vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
}

fn unspecified_address() -> IpAddr {
    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
}

fn default_hold_time() -> u16 {
    90
}

fn default_peer_port() -> u16 {
    179
}

/// One BGP neighbor.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's address; for an unnumbered peer (`interface`), its link-local address
    /// once discovered (left out, `::`, in the configuration file).
    #[serde(default = "unspecified_address")]
    pub address: IpAddr,
    /// Unnumbered peering: peer over this interface's IPv6 link-local address, the
    /// neighbour's address discovered on the link (router advertisements, echo replies).
    /// IPv4 routes then travel with IPv6 next hops (extended next hop, RFC 8950).
    #[serde(default)]
    pub interface: Option<String>,
    pub asn: u32,
    /// Never connect; wait for the peer to connect.
    #[serde(default)]
    pub passive: bool,
    /// TCP-MD5 key (RFC 2385).
    #[serde(default)]
    pub password: Option<String>,
    /// Proposed hold time in seconds: 0 (no keepalives) or at least 3.
    #[serde(default = "default_hold_time")]
    pub hold_time: u16,
    #[serde(default)]
    pub route_reflector_client: bool,
    #[serde(default)]
    pub next_hop_self: bool,
    #[serde(default = "default_families")]
    pub families: Vec<Family>,
    /// RFC 8950 extended next hop: offer to carry IPv4 unicast routes with IPv6 next
    /// hops (used when the session's own address is IPv6 and the peer agrees).
    #[serde(default)]
    pub extended_next_hop: bool,
    #[serde(default)]
    pub graceful_restart: GracefulRestartConfig,
    /// The peer's TCP port (default 179).
    #[serde(default = "default_peer_port")]
    pub port: u16,
    /// Local address for outgoing connections (Calico's `sourceAddress`).
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// GTSM (RFC 5082): the peer is at most this many hops away (1 = directly connected).
    #[serde(default)]
    pub ttl_security: Option<u8>,
    /// Close the session with Cease/1 when the peer sends more prefixes than this.
    #[serde(default)]
    pub max_prefixes: Option<u32>,
    /// Names of filters (top-level `filters`) applied to routes received, first match wins.
    #[serde(default)]
    pub import: Vec<String>,
    /// Names of filters applied to routes sent.
    #[serde(default)]
    pub export: Vec<String>,
    /// Seconds between connection attempts at first (backoff doubles it up to 60 s).
    #[serde(default)]
    pub connect_retry: Option<u16>,
    /// Advertise only what this speaker originates, never routes learned from other
    /// peers (what a node tells its top-of-rack router: "my blocks", not the whole mesh).
    #[serde(default)]
    pub export_local_only: bool,
    /// Bidirectional Forwarding Detection for this peer (off when absent).
    #[serde(default)]
    pub bfd: Option<BfdConfig>,
    /// Held, with the reason (a reference of the peer's configuration that does not
    /// resolve, e.g. a missing filter or password): no session is started or accepted, so
    /// nothing is imported or exported, until the configuration comes without it.
    #[serde(default)]
    pub held: Option<String>,
}

impl PeerConfig {
    /// A peer with every optional field at its default.
    pub fn new(address: IpAddr, asn: u32) -> Self {
        Self {
            address,
            interface: None,
            asn,
            passive: false,
            password: None,
            hold_time: default_hold_time(),
            route_reflector_client: false,
            next_hop_self: false,
            families: default_families(),
            extended_next_hop: false,
            graceful_restart: GracefulRestartConfig::default(),
            port: default_peer_port(),
            source_address: None,
            ttl_security: None,
            max_prefixes: None,
            import: Vec::new(),
            export: Vec::new(),
            connect_retry: None,
            export_local_only: false,
            bfd: None,
            held: None,
        }
    }

    /// The BFD settings when BFD is on for this peer.
    pub fn bfd_enabled(&self) -> Option<&BfdConfig> {
        self.bfd.as_ref().filter(|b| b.enabled)
    }

    pub(crate) fn validate(&self, at: &str, cfg: &Config) -> Result<(), ConfigError> {
        if self.asn == 0 {
            return Err(ConfigError::invalid(
                format!("{at}.asn"),
                "AS 0 is reserved (RFC 7607)",
            ));
        }
        if let Some(name) = &self.interface {
            if name.is_empty() || name.len() > 15 || name.contains('/') {
                return Err(ConfigError::invalid(
                    format!("{at}.interface"),
                    "must be an interface name (1 to 15 bytes)",
                ));
            }
            if !self.address.is_unspecified() && !crate::kernel::is_link_local(&self.address) {
                return Err(ConfigError::invalid(
                    format!("{at}.address"),
                    "an unnumbered peer (interface) has no address, or a link-local one",
                ));
            }
        } else if self.address.is_unspecified() || self.address.is_multicast() {
            return Err(ConfigError::invalid(
                format!("{at}.address"),
                "must be a unicast address (or give an interface)",
            ));
        }
        if self.hold_time != 0 && self.hold_time < 3 {
            return Err(ConfigError::invalid(
                format!("{at}.hold_time"),
                "must be 0 or at least 3 seconds (RFC 4271 §4.2)",
            ));
        }
        if self.families.is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.families"),
                "at least one family is needed",
            ));
        }
        if let Some(pw) = &self.password {
            // The kernel's TCP_MD5SIG_MAXKEYLEN.
            if pw.is_empty() || pw.len() > 80 {
                return Err(ConfigError::invalid(
                    format!("{at}.password"),
                    "must be 1 to 80 bytes",
                ));
            }
        }
        if self.graceful_restart.restart_time > 4095 {
            return Err(ConfigError::invalid(
                format!("{at}.graceful_restart.restart_time"),
                "at most 4095 seconds (12 bits, RFC 4724)",
            ));
        }
        if self.route_reflector_client && cfg.route_reflector.is_none() {
            return Err(ConfigError::invalid(
                format!("{at}.route_reflector_client"),
                "needs a top-level route_reflector with a cluster_id",
            ));
        }
        if self.route_reflector_client && self.asn != cfg.asn {
            return Err(ConfigError::invalid(
                format!("{at}.route_reflector_client"),
                "only iBGP peers (same asn) can be route-reflector clients",
            ));
        }
        if self.ttl_security == Some(0) {
            return Err(ConfigError::invalid(
                format!("{at}.ttl_security"),
                "hop count must be 1 to 254",
            ));
        }
        if let Some(b) = &self.bfd {
            b.validate(at)?;
        }
        for (kind, names) in [("import", &self.import), ("export", &self.export)] {
            for (j, name) in names.iter().enumerate() {
                if !cfg.filters.contains_key(name) {
                    return Err(ConfigError::invalid(
                        format!("{at}.{kind}[{j}]"),
                        format!("no filter named {name:?} under filters"),
                    ));
                }
            }
        }
        Ok(())
    }
}
