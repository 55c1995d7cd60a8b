//! `FelixConfiguration` applied live: `default` for every node, then `node.<name>` field
//! by field on top, then felix's command line for whatever neither sets. The result is
//! plain data ([`Effective`]); the reconciler applies what changed (log filter, resync
//! period, host-facing policy, default pod MTU) without a restart.
//!
//! What felix cannot apply is refused when the object is written (the API's validation);
//! an object that slipped through (stored before) is skipped field by field here, with a
//! warning, never half-applied.

use std::collections::BTreeMap;
use std::time::Duration;

use twill_api::resources::FelixConfiguration;
use twill_api::validate::felix::parse_duration;

use crate::config::Config;
use crate::policy::ir::{EndpointToHostAction, HostPolicy, HostPort};

/// The settings felix runs with now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    /// Log filter (tracing `EnvFilter` syntax).
    pub log: String,
    pub resync: Duration,
    pub host: HostPolicy,
    /// Pod MTU when the CNI configuration gives none (`None`: the uplink's).
    pub mtu: Option<u32>,
}

/// Calico's severities as tracing filter directives.
fn log_directive(severity: &str) -> Option<&'static str> {
    match severity {
        "Debug" => Some("debug"),
        "Info" => Some("info"),
        "Warning" => Some("warn"),
        "Error" | "Fatal" => Some("error"),
        _ => None,
    }
}

/// The effective settings for `node`, and warnings about values that were skipped.
pub fn effective(
    base: &Config,
    configs: &BTreeMap<String, FelixConfiguration>,
    node: &str,
) -> (Effective, Vec<String>) {
    let mut e = Effective {
        log: base.log.clone(),
        resync: base.resync,
        host: base.host_policy.clone(),
        mtu: base.mtu,
    };
    let mut warnings = Vec::new();
    let layers = [configs.get("default"), configs.get(&format!("node.{node}"))];
    for fc in layers.into_iter().flatten() {
        let name = fc.metadata.name.clone().unwrap_or_default();
        let s = &fc.spec;
        if let Some(v) = &s.log_severity_screen {
            match log_directive(v) {
                Some(d) => e.log = d.to_owned(),
                None => warnings.push(format!("{name}: logSeverityScreen {v:?} skipped")),
            }
        }
        if let Some(v) = &s.route_refresh_interval {
            match parse_duration(v).filter(|s| *s > 0) {
                Some(secs) => e.resync = Duration::from_secs(secs),
                None => warnings.push(format!("{name}: routeRefreshInterval {v:?} skipped")),
            }
        }
        if let Some(v) = &s.default_endpoint_to_host_action {
            match v.as_str() {
                "Drop" => e.host.endpoint_to_host = EndpointToHostAction::Drop,
                "Accept" | "Return" => e.host.endpoint_to_host = EndpointToHostAction::Accept,
                _ => warnings.push(format!("{name}: defaultEndpointToHostAction {v:?} skipped")),
            }
        }
        if let Some(ports) = &s.failsafe_inbound_host_ports {
            let mut parsed = Vec::new();
            for p in ports {
                match HostPort::parse(&format!("{}:{}", p.protocol, p.port)) {
                    Ok(hp) => parsed.push(hp),
                    Err(err) => warnings.push(format!("{name}: failsafeInboundHostPorts {err}")),
                }
            }
            e.host.failsafe_inbound = parsed;
        }
        match s.mtu {
            Some(0) => e.mtu = None,
            Some(m) if (576..=65535).contains(&m) => e.mtu = Some(m),
            Some(m) => warnings.push(format!("{name}: mtu {m} skipped")),
            None => {}
        }
        for (set, field) in [
            (s.dataplane.is_some(), "dataplane"),
            (s.ipv6_support.is_some(), "ipv6Support"),
            (s.health_enabled.is_some(), "healthEnabled"),
            (s.health_port.is_some(), "healthPort"),
            (s.route_protocol.is_some(), "routeProtocol"),
            (
                s.interface_prefix.as_deref().is_some_and(|p| p != "tw"),
                "interfacePrefix",
            ),
        ] {
            if set {
                warnings.push(format!("{name}: {field} is not supported; ignored"));
            }
        }
    }
    (e, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use twill_api::resources::FelixConfigurationSpec;
    use twill_api::resources::felix::ProtoPort;

    fn base() -> Config {
        crate::config::Args::try_parse_from(["twill-felix", "--node-name", "n1"])
            .unwrap()
            .into_config()
            .unwrap()
    }

    fn configs(list: Vec<(&str, FelixConfigurationSpec)>) -> BTreeMap<String, FelixConfiguration> {
        list.into_iter()
            .map(|(n, s)| (n.to_string(), FelixConfiguration::new(n, s)))
            .collect()
    }

    #[test]
    fn node_settings_override_default_which_overrides_the_command_line() {
        let b = base();
        let (e, w) = effective(&b, &BTreeMap::new(), "n1");
        assert!(w.is_empty());
        assert_eq!(
            (e.log.as_str(), e.resync, e.mtu),
            ("info", Duration::from_secs(30), None)
        );
        assert_eq!(e.host, HostPolicy::default());
        let c = configs(vec![
            (
                "default",
                FelixConfigurationSpec {
                    log_severity_screen: Some("Debug".into()),
                    route_refresh_interval: Some("90s".into()),
                    default_endpoint_to_host_action: Some("Accept".into()),
                    mtu: Some(1400),
                    ..Default::default()
                },
            ),
            (
                "node.n1",
                FelixConfigurationSpec {
                    log_severity_screen: Some("Warning".into()),
                    default_endpoint_to_host_action: Some("Drop".into()),
                    failsafe_inbound_host_ports: Some(vec![ProtoPort {
                        protocol: "TCP".into(),
                        port: 22,
                    }]),
                    ..Default::default()
                },
            ),
            (
                "node.n2",
                FelixConfigurationSpec {
                    mtu: Some(9000),
                    ..Default::default()
                },
            ),
        ]);
        let (e, w) = effective(&b, &c, "n1");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(e.log, "warn");
        assert_eq!(e.resync, Duration::from_secs(90));
        assert_eq!(e.mtu, Some(1400));
        assert_eq!(e.host.endpoint_to_host, EndpointToHostAction::Drop);
        assert_eq!(
            e.host.failsafe_inbound,
            vec![HostPort {
                protocol: 6,
                port: 22
            }]
        );
        let (e2, _) = effective(&b, &c, "n2");
        assert_eq!(e2.host.endpoint_to_host, EndpointToHostAction::Accept);
        assert_eq!(e2.mtu, Some(9000));
    }

    #[test]
    fn stored_values_felix_cannot_apply_are_skipped_with_warnings() {
        let c = configs(vec![(
            "default",
            FelixConfigurationSpec {
                failsafe_inbound_host_ports: Some(vec![ProtoPort {
                    protocol: "tcp".into(),
                    port: 179,
                }]),
                dataplane: Some("iptables".into()),
                ..Default::default()
            },
        )]);
        let (e, w) = effective(&base(), &c, "n1");
        assert!(e.host.failsafe_inbound.is_empty(), "{e:?}");
        assert_eq!(w.len(), 2, "{w:?}");
    }
}
