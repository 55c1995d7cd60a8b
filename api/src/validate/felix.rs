//! `FelixConfiguration`: what felix applies live is checked value by value; what it does
//! not support is refused, naming the field and what to do instead, rather than stored
//! and ignored.

use super::ValidationError;
use crate::resources::FelixConfiguration;

/// Calico's `logSeverityScreen` values.
pub const LOG_SEVERITIES: [&str; 5] = ["Debug", "Info", "Warning", "Error", "Fatal"];
/// Calico's `defaultEndpointToHostAction` values.
pub const ENDPOINT_TO_HOST_ACTIONS: [&str; 3] = ["Drop", "Accept", "Return"];
/// BGP's port: pods never reach it.
const BGP_PORT: u16 = 179;

/// A duration as Calico writes them (`90s`, `5m`, `1h`, `1m30s`), in whole seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
        any = true;
    }
    if !num.is_empty() {
        // A bare number is seconds.
        total = total.checked_add(num.parse().ok()?)?;
        any = true;
    }
    any.then_some(total)
}

fn unsupported(field: &str, instead: &str) -> ValidationError {
    ValidationError::new(field, format!("not supported by Twill's felix: {instead}"))
}

/// Checks a `FelixConfiguration`.
pub fn check(fc: &FelixConfiguration) -> Result<(), ValidationError> {
    let name = fc.metadata.name.as_deref().unwrap_or_default();
    if name != "default" && !name.starts_with("node.") {
        return Err(ValidationError::new(
            "metadata.name",
            format!("{name:?}: felix reads only \"default\" and \"node.<node name>\""),
        ));
    }
    let s = &fc.spec;
    if let Some(v) = &s.log_severity_screen
        && !LOG_SEVERITIES.contains(&v.as_str())
    {
        return Err(ValidationError::new(
            "spec.logSeverityScreen",
            format!("{v:?} must be one of {}", LOG_SEVERITIES.join(", ")),
        ));
    }
    if let Some(v) = &s.route_refresh_interval
        && parse_duration(v).is_none_or(|secs| secs == 0)
    {
        return Err(ValidationError::new(
            "spec.routeRefreshInterval",
            format!("{v:?} must be a duration of at least 1s, e.g. 90s or 5m"),
        ));
    }
    if let Some(v) = &s.default_endpoint_to_host_action
        && !ENDPOINT_TO_HOST_ACTIONS.contains(&v.as_str())
    {
        return Err(ValidationError::new(
            "spec.defaultEndpointToHostAction",
            format!(
                "{v:?} must be one of {}",
                ENDPOINT_TO_HOST_ACTIONS.join(", ")
            ),
        ));
    }
    for (i, p) in s.failsafe_inbound_host_ports.iter().flatten().enumerate() {
        let field = format!("spec.failsafeInboundHostPorts[{i}]");
        let proto = p.protocol.to_ascii_uppercase();
        if !["TCP", "UDP", "SCTP"].contains(&proto.as_str()) {
            return Err(ValidationError::new(
                format!("{field}.protocol"),
                format!("{:?} must be TCP, UDP or SCTP", p.protocol),
            ));
        }
        if p.port == 0 {
            return Err(ValidationError::new(
                format!("{field}.port"),
                "must be 1-65535",
            ));
        }
        if proto == "TCP" && p.port == BGP_PORT {
            return Err(ValidationError::new(
                field,
                "BGP (TCP 179) is never reachable from pods",
            ));
        }
    }
    if let Some(mtu) = s.mtu
        && mtu != 0
        && !(576..=65535).contains(&mtu)
    {
        return Err(ValidationError::new(
            "spec.mtu",
            format!("{mtu} must be 0 (the uplink's) or 576-65535"),
        ));
    }
    if s.dataplane.is_some() {
        return Err(unsupported(
            "spec.dataplane",
            "the dataplane is chosen when felix starts (--dataplane / TWILL_DATAPLANE)",
        ));
    }
    if s.interface_prefix.as_deref().is_some_and(|p| p != "tw") {
        return Err(unsupported(
            "spec.interfacePrefix",
            "pod interfaces are always named tw…",
        ));
    }
    if s.ipv6_support.is_some() {
        return Err(unsupported(
            "spec.ipv6Support",
            "IPv6 follows the IP pools (an IPv6 pool turns it on)",
        ));
    }
    if s.health_enabled.is_some() || s.health_port.is_some() {
        let field = if s.health_enabled.is_some() {
            "spec.healthEnabled"
        } else {
            "spec.healthPort"
        };
        return Err(unsupported(
            field,
            "health and metrics are served where felix's --health-listen says",
        ));
    }
    if s.route_protocol.is_some() {
        return Err(unsupported(
            "spec.routeProtocol",
            "felix's route protocol number is fixed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::FelixConfigurationSpec;
    use crate::resources::felix::ProtoPort;

    fn fc(name: &str, spec: FelixConfigurationSpec) -> FelixConfiguration {
        FelixConfiguration::new(name, spec)
    }

    #[test]
    fn supported_settings_pass() {
        let spec = FelixConfigurationSpec {
            log_severity_screen: Some("Debug".into()),
            route_refresh_interval: Some("1m30s".into()),
            default_endpoint_to_host_action: Some("Accept".into()),
            failsafe_inbound_host_ports: Some(vec![ProtoPort {
                protocol: "udp".into(),
                port: 53,
            }]),
            mtu: Some(1400),
            interface_prefix: Some("tw".into()),
            ..Default::default()
        };
        assert_eq!(check(&fc("default", spec.clone())), Ok(()));
        assert_eq!(check(&fc("node.node1", spec)), Ok(()));
        assert_eq!(parse_duration("1m30s"), Some(90));
        assert_eq!(parse_duration("45"), Some(45));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn unsupported_fields_and_bad_values_are_refused_by_name() {
        let cases: Vec<(FelixConfigurationSpec, &str, &str)> = vec![
            (
                FelixConfigurationSpec {
                    dataplane: Some("iptables".into()),
                    ..Default::default()
                },
                "spec.dataplane",
                "not supported",
            ),
            (
                FelixConfigurationSpec {
                    health_port: Some(9100),
                    ..Default::default()
                },
                "spec.healthPort",
                "--health-listen",
            ),
            (
                FelixConfigurationSpec {
                    ipv6_support: Some(true),
                    ..Default::default()
                },
                "spec.ipv6Support",
                "not supported",
            ),
            (
                FelixConfigurationSpec {
                    route_protocol: Some(80),
                    ..Default::default()
                },
                "spec.routeProtocol",
                "not supported",
            ),
            (
                FelixConfigurationSpec {
                    interface_prefix: Some("cali".into()),
                    ..Default::default()
                },
                "spec.interfacePrefix",
                "tw",
            ),
            (
                FelixConfigurationSpec {
                    log_severity_screen: Some("Loud".into()),
                    ..Default::default()
                },
                "spec.logSeverityScreen",
                "Debug",
            ),
            (
                FelixConfigurationSpec {
                    route_refresh_interval: Some("0s".into()),
                    ..Default::default()
                },
                "spec.routeRefreshInterval",
                "at least 1s",
            ),
            (
                FelixConfigurationSpec {
                    default_endpoint_to_host_action: Some("Allow".into()),
                    ..Default::default()
                },
                "spec.defaultEndpointToHostAction",
                "Drop",
            ),
            (
                FelixConfigurationSpec {
                    failsafe_inbound_host_ports: Some(vec![ProtoPort {
                        protocol: "TCP".into(),
                        port: 179,
                    }]),
                    ..Default::default()
                },
                "spec.failsafeInboundHostPorts[0]",
                "BGP",
            ),
            (
                FelixConfigurationSpec {
                    mtu: Some(100),
                    ..Default::default()
                },
                "spec.mtu",
                "576",
            ),
        ];
        for (spec, field, words) in cases {
            let e = check(&fc("default", spec)).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(words), "{field}: {e}");
        }
        let e = check(&fc("mine", FelixConfigurationSpec::default())).unwrap_err();
        assert_eq!(e.field, "metadata.name");
    }
}
