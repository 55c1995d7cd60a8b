//! BGP rules: AS numbers 1-4294967295, a valid `peerIP`, at most one of `node` and
//! `nodeSelector`, selectors that parse, filter rules with known actions and operators.

use super::bfd::check_profile_ref;
use super::meta::check_name;
use super::net::{parse_cidr_masked, parse_ip_maybe_prefix, parse_peer_ip};
use super::{Validate, ValidationError};
use crate::resources::common::AsNumber;
use crate::resources::{BGPConfiguration, BGPFilter, BGPFilterRule, BGPPeer, Node};
use crate::selector::Selector;

pub(super) fn check_asn(field: &str, asn: Option<AsNumber>) -> Result<(), ValidationError> {
    match asn {
        Some(AsNumber(0)) => Err(ValidationError::new(
            field,
            "AS number 0 is reserved: AS numbers are 1-4294967295",
        )),
        _ => Ok(()),
    }
}

pub(super) fn check_selector(field: &str, selector: Option<&str>) -> Result<(), ValidationError> {
    if let Some(selector) = selector {
        Selector::parse(selector).map_err(|e| ValidationError::new(field, e.to_string()))?;
    }
    Ok(())
}

impl Validate for BGPPeer {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        let spec = &self.spec;
        if spec.node.is_some() && spec.node_selector.is_some() {
            return Err(ValidationError::new(
                "spec.nodeSelector",
                "set at most one of node and nodeSelector",
            ));
        }
        if let Some(name) = &spec.interface {
            if spec.peer_ip.is_some() || spec.peer_selector.is_some() {
                return Err(ValidationError::new(
                    "spec.interface",
                    "set only one of peerIP, peerSelector and interface",
                ));
            }
            let valid = !name.is_empty()
                && name.len() <= 15
                && !name.contains(['/', ':'])
                && !name.chars().any(char::is_whitespace);
            if !valid {
                return Err(ValidationError::new(
                    "spec.interface",
                    format!("{name:?} is not an interface name (1 to 15 bytes)"),
                ));
            }
            if spec.as_number.is_none() {
                return Err(ValidationError::new(
                    "spec.asNumber",
                    "is required with interface",
                ));
            }
        }
        match (&spec.peer_ip, &spec.peer_selector) {
            (None, None) if spec.interface.is_some() => {}
            (Some(_), Some(_)) => {
                return Err(ValidationError::new(
                    "spec.peerSelector",
                    "set at most one of peerIP and peerSelector",
                ));
            }
            (None, None) => {
                return Err(ValidationError::new(
                    "spec.peerIP",
                    "is required (or peerSelector, or interface)",
                ));
            }
            (Some(ip), None) => {
                parse_peer_ip("spec.peerIP", ip)?;
                if spec.as_number.is_none() {
                    return Err(ValidationError::new(
                        "spec.asNumber",
                        "is required with peerIP",
                    ));
                }
            }
            (None, Some(_)) => {}
        }
        check_asn("spec.asNumber", spec.as_number)?;
        check_selector("spec.nodeSelector", spec.node_selector.as_deref())?;
        check_selector("spec.peerSelector", spec.peer_selector.as_deref())?;
        if let Some(source) = &spec.source_address
            && source != "UseNodeIP"
            && source != "None"
        {
            return Err(ValidationError::new(
                "spec.sourceAddress",
                format!("{source:?} must be UseNodeIP or None"),
            ));
        }
        check_profile_ref("spec.bfdProfile", spec.bfd_profile.as_deref())?;
        Ok(())
    }
}

impl Validate for BGPConfiguration {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        check_asn("spec.asNumber", self.spec.as_number)?;
        if self.spec.listen_port == Some(0) {
            return Err(ValidationError::new("spec.listenPort", "must be 1-65535"));
        }
        check_profile_ref(
            "spec.nodeMeshBFDProfile",
            self.spec.node_mesh_bfd_profile.as_deref(),
        )?;
        for (field, ranges) in [
            ("spec.serviceClusterIPs", &self.spec.service_cluster_ips),
            ("spec.serviceExternalIPs", &self.spec.service_external_ips),
            (
                "spec.serviceLoadBalancerIPs",
                &self.spec.service_load_balancer_ips,
            ),
        ] {
            for (i, range) in ranges.iter().enumerate() {
                parse_cidr_masked(&format!("{field}[{i}].cidr"), &range.cidr)?;
            }
        }
        for (i, community) in self.spec.communities.iter().enumerate() {
            check_community(&format!("spec.communities[{i}].value"), &community.value)?;
        }
        for (i, adv) in self.spec.prefix_advertisements.iter().enumerate() {
            parse_cidr_masked(&format!("spec.prefixAdvertisements[{i}].cidr"), &adv.cidr)?;
            for (j, community) in adv.communities.iter().enumerate() {
                let named = self.spec.communities.iter().any(|c| &c.name == community);
                if !named {
                    check_community(
                        &format!("spec.prefixAdvertisements[{i}].communities[{j}]"),
                        community,
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// `aa:nn` (16-bit parts) or `aa:nn:mm` (32-bit parts, large community).
fn check_community(field: &str, value: &str) -> Result<(), ValidationError> {
    let parts: Vec<&str> = value.split(':').collect();
    let ok = match parts.len() {
        2 => parts.iter().all(|p| p.parse::<u16>().is_ok()),
        3 => parts.iter().all(|p| p.parse::<u32>().is_ok()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!("{value:?} is not a community (aa:nn or aa:nn:mm)"),
        ))
    }
}

impl Validate for BGPFilter {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        let lists = [
            ("exportV4", &self.spec.export_v4, false),
            ("importV4", &self.spec.import_v4, false),
            ("exportV6", &self.spec.export_v6, true),
            ("importV6", &self.spec.import_v6, true),
        ];
        for (name, rules, v6) in lists {
            for (i, rule) in rules.iter().enumerate() {
                check_filter_rule(&format!("spec.{name}[{i}]"), rule, v6)?;
            }
        }
        Ok(())
    }
}

fn check_filter_rule(field: &str, rule: &BGPFilterRule, v6: bool) -> Result<(), ValidationError> {
    if rule.action != "Accept" && rule.action != "Reject" {
        return Err(ValidationError::new(
            format!("{field}.action"),
            format!("{:?} must be Accept or Reject", rule.action),
        ));
    }
    if let Some(op) = &rule.match_operator
        && !matches!(op.as_str(), "Equal" | "NotEqual" | "In" | "NotIn")
    {
        return Err(ValidationError::new(
            format!("{field}.matchOperator"),
            format!("{op:?} must be Equal, NotEqual, In or NotIn"),
        ));
    }
    if let Some(cidr) = &rule.cidr {
        let net = parse_cidr_masked(&format!("{field}.cidr"), cidr)?;
        if matches!(net, ipnet::IpNet::V6(_)) != v6 {
            return Err(ValidationError::new(
                format!("{field}.cidr"),
                format!("{cidr} is of the wrong address family for this list"),
            ));
        }
        if rule.match_operator.is_none() {
            return Err(ValidationError::new(
                format!("{field}.matchOperator"),
                "is required with cidr",
            ));
        }
    }
    if let Some(len) = &rule.prefix_length {
        let max = if v6 { 128 } else { 32 };
        for (name, value) in [("min", len.min), ("max", len.max)] {
            if value.is_some_and(|v| v > max) {
                return Err(ValidationError::new(
                    format!("{field}.prefixLength.{name}"),
                    format!("must be 0-{max}"),
                ));
            }
        }
    }
    Ok(())
}

impl Validate for Node {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        if let Some(bgp) = &self.spec.bgp {
            if let Some(v4) = &bgp.ipv4_address {
                parse_ip_maybe_prefix("spec.bgp.ipv4Address", v4, false)?;
            }
            if let Some(v6) = &bgp.ipv6_address {
                parse_ip_maybe_prefix("spec.bgp.ipv6Address", v6, true)?;
            }
            check_asn("spec.bgp.asNumber", bgp.as_number)?;
            if let Some(id) = &bgp.route_reflector_cluster_id
                && id.parse::<std::net::Ipv4Addr>().is_err()
            {
                return Err(ValidationError::new(
                    "spec.bgp.routeReflectorClusterID",
                    format!("{id:?} must be an IPv4 address"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::BGPPeerSpec;

    fn peer(spec: BGPPeerSpec) -> BGPPeer {
        BGPPeer::new("p", spec)
    }

    #[test]
    fn service_ranges_must_be_masked_networks() {
        use crate::resources::bgp::ServiceCidr;
        use crate::resources::{BGPConfiguration, BGPConfigurationSpec};
        let range = |c: &str| vec![ServiceCidr { cidr: c.to_owned() }];
        let ok = BGPConfiguration::new(
            "default",
            BGPConfigurationSpec {
                service_cluster_ips: range("10.96.0.0/12"),
                service_external_ips: range("198.51.100.0/24"),
                service_load_balancer_ips: range("203.0.113.0/24"),
                ..Default::default()
            },
        );
        ok.validate().unwrap();
        let mut bad = ok.clone();
        bad.spec.service_load_balancer_ips = range("203.0.113.1/24");
        assert_eq!(
            bad.validate().unwrap_err().field,
            "spec.serviceLoadBalancerIPs[0].cidr"
        );
        let mut bad = ok;
        bad.spec.service_cluster_ips = range("not-a-cidr");
        assert_eq!(
            bad.validate().unwrap_err().field,
            "spec.serviceClusterIPs[0].cidr"
        );
    }

    #[test]
    fn peer_with_ip_port_and_asn_is_valid() {
        for ip in [
            "192.0.2.1",
            "192.0.2.1:1179",
            "2001:db8::1",
            "[2001:db8::1]:1179",
        ] {
            peer(BGPPeerSpec {
                peer_ip: Some(ip.into()),
                as_number: Some(AsNumber(65000)),
                ..Default::default()
            })
            .validate()
            .unwrap();
        }
    }

    #[test]
    fn unnumbered_peer_names_an_interface_alone_with_an_asn() {
        let unnumbered = |interface: &str, asn: Option<u32>| BGPPeerSpec {
            interface: Some(interface.into()),
            as_number: asn.map(AsNumber),
            ..Default::default()
        };
        peer(unnumbered("eth0", Some(65000))).validate().unwrap();
        let no_asn = peer(unnumbered("eth0", None)).validate().unwrap_err();
        assert_eq!(no_asn.field, "spec.asNumber");
        for bad in ["", "a/b", "sixteen-bytes-xx", "eth 0"] {
            let e = peer(unnumbered(bad, Some(65000))).validate().unwrap_err();
            assert_eq!(e.field, "spec.interface", "{bad:?}");
        }
        let both = peer(BGPPeerSpec {
            peer_ip: Some("192.0.2.1".into()),
            ..unnumbered("eth0", Some(65000))
        })
        .validate()
        .unwrap_err();
        assert_eq!(both.field, "spec.interface");
    }

    #[test]
    fn peer_with_bad_ip_is_refused_naming_peer_ip() {
        let err = peer(BGPPeerSpec {
            peer_ip: Some("192.0.2.300".into()),
            as_number: Some(AsNumber(65000)),
            ..Default::default()
        })
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "spec.peerIP");
    }

    #[test]
    fn peer_with_node_and_node_selector_is_refused() {
        let err = peer(BGPPeerSpec {
            peer_ip: Some("192.0.2.1".into()),
            as_number: Some(AsNumber(65000)),
            node: Some("n1".into()),
            node_selector: Some("all()".into()),
            ..Default::default()
        })
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "spec.nodeSelector");
    }

    #[test]
    fn bfd_profile_references_must_be_names() {
        let err = peer(BGPPeerSpec {
            peer_ip: Some("192.0.2.1".into()),
            as_number: Some(AsNumber(65000)),
            bfd_profile: Some("Fast_100".into()),
            ..Default::default()
        })
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "spec.bfdProfile");
        let err = BGPConfiguration::new(
            "default",
            crate::resources::BGPConfigurationSpec {
                node_mesh_bfd_profile: Some(String::new()),
                ..Default::default()
            },
        )
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "spec.nodeMeshBFDProfile");
    }

    #[test]
    fn as_number_zero_is_refused() {
        let err = peer(BGPPeerSpec {
            peer_ip: Some("192.0.2.1".into()),
            as_number: Some(AsNumber(0)),
            ..Default::default()
        })
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "spec.asNumber");
    }
}
