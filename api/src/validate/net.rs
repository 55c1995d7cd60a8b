//! Address and network parsing with field-naming errors.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::ValidationError;

/// Parses a network that must be masked (`10.244.0.0/16`, not `10.244.0.1/16`).
pub fn parse_cidr_masked(field: &str, text: &str) -> Result<IpNet, ValidationError> {
    let net: IpNet = text.parse().map_err(|_| {
        ValidationError::new(field, format!("{text:?} is not a network in CIDR notation"))
    })?;
    if net.trunc() != net {
        return Err(ValidationError::new(
            field,
            format!(
                "{text:?} is not a masked network (did you mean {}?)",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

/// Parses a network or a bare address (taken as /32 or /128).
pub(super) fn parse_cidr_or_ip(field: &str, text: &str) -> Result<IpNet, ValidationError> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    parse_cidr_masked(field, text)
}

/// Parses a `peerIP`: `192.0.2.1`, `192.0.2.1:1179`, `2001:db8::1`, `[2001:db8::1]:1179`.
pub fn parse_peer_ip(field: &str, text: &str) -> Result<(IpAddr, Option<u16>), ValidationError> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok((addr.ip(), Some(addr.port()))),
        _ => Err(ValidationError::new(
            field,
            format!("{text:?} is not an IP address or ip:port"),
        )),
    }
}

/// Parses an interface address: a bare IP or an IP with prefix length (`192.0.2.10/24`).
pub(super) fn parse_ip_maybe_prefix(
    field: &str,
    text: &str,
    v6: bool,
) -> Result<(), ValidationError> {
    let ip = match text.split_once('/') {
        Some((ip, len)) => {
            let max = if v6 { 128 } else { 32 };
            if len.parse::<u8>().map_or(true, |len| len > max) {
                return Err(ValidationError::new(
                    field,
                    format!("{text:?} has an invalid prefix length"),
                ));
            }
            ip
        }
        None => text,
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) if !v6 => Ok(()),
        Ok(IpAddr::V6(_)) if v6 => Ok(()),
        _ => Err(ValidationError::new(
            field,
            format!(
                "{text:?} is not an {} address",
                if v6 { "IPv6" } else { "IPv4" }
            ),
        )),
    }
}
