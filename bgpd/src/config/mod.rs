//! The standalone speaker's YAML configuration (docs/ARCHITECTURE.md "Standalone bgpd configuration"):
//! parsing, defaults and validation. Every error names the field at fault.
//!
//! This module only turns text into checked values; it never opens sockets or files other
//! than the one it is asked to read.

mod peer;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

pub use peer::{BfdConfig, Family, GracefulRestartConfig, PeerConfig};

use crate::policy::Filter;

/// A configuration that failed to load, with the field at fault named in the message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// serde_yaml's message already carries the path (`peers[0].asn: ...`).
    #[error("{0}")]
    Parse(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl From<crate::policy::InvalidRule> for ConfigError {
    fn from(e: crate::policy::InvalidRule) -> Self {
        Self::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Where to accept incoming BGP connections.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    #[serde(default = "default_listen_address")]
    pub address: IpAddr,
    /// 0 = do not listen (active sessions only).
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_listen_address() -> IpAddr {
    IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)
}

fn default_port() -> u16 {
    179
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            address: default_listen_address(),
            port: default_port(),
        }
    }
}

/// Kernel route installation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelConfig {
    #[serde(default)]
    pub install: bool,
    /// Routing table (default: main, 254).
    #[serde(default)]
    pub table: Option<u32>,
    /// Route protocol number marking Twill's routes (default 82, `kernel::KernelConfig`'s:
    /// clear of the numbers iproute2 names for BIRD, FRR and the kernel itself).
    #[serde(default)]
    pub protocol: Option<u8>,
}

/// Route reflection (RFC 4456).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteReflectorConfig {
    pub cluster_id: Ipv4Addr,
}

/// The whole standalone configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This speaker's AS (4-octet ASNs allowed).
    pub asn: u32,
    pub router_id: Ipv4Addr,
    #[serde(default)]
    pub listen: ListenConfig,
    /// Prefixes announced from this speaker.
    #[serde(default)]
    pub originate: Vec<IpNet>,
    #[serde(default)]
    pub kernel: KernelConfig,
    #[serde(default)]
    pub route_reflector: Option<RouteReflectorConfig>,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Named filters (BGPFilter-shaped) referenced by peers' `import`/`export` lists.
    #[serde(default)]
    pub filters: std::collections::BTreeMap<String, Filter>,
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Semantic checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.asn == 0 {
            return Err(ConfigError::invalid("asn", "AS 0 is reserved (RFC 7607)"));
        }
        if self.router_id.is_unspecified() {
            return Err(ConfigError::invalid("router_id", "must not be 0.0.0.0"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            p.validate(&format!("peers[{i}]"), self)?;
            let (field, key) = match &p.interface {
                Some(name) => ("interface", name.clone()),
                None => ("address", p.address.to_string()),
            };
            if !seen.insert(key.clone()) {
                return Err(ConfigError::invalid(
                    format!("peers[{i}].{field}"),
                    format!("{key} is configured twice"),
                ));
            }
        }
        for (name, f) in &self.filters {
            f.validate(&format!("filters.{name}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
