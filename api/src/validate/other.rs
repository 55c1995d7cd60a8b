//! Rules of the remaining kinds: IPAM records, workload endpoints, policies, felix
//! configuration, and the native Kubernetes kinds but NetworkPolicy (Pod, Node, Namespace,
//! Service, EndpointSlice: names only; the API server owns the rest).

use super::bgp::check_selector;
use super::meta::check_name;
use super::net::{parse_cidr_masked, parse_cidr_or_ip};
use super::{Validate, ValidationError};
use crate::resources::native::{EndpointSlice, KubeNode, Namespace, Pod, Service};
use crate::resources::policy::{EntityRule, Rule};
use crate::resources::{
    BlockAffinity, FelixConfiguration, GlobalNetworkPolicy, IPAMBlock, IPAMConfig, IPAMHandle,
    IPReservation, WorkloadEndpoint,
};

impl Validate for IPAMBlock {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        parse_cidr_masked("spec.cidr", &self.spec.cidr)?;
        if let Some(affinity) = &self.spec.affinity
            && !affinity.starts_with("host:")
        {
            return Err(ValidationError::new(
                "spec.affinity",
                format!("{affinity:?} must be host:<node>"),
            ));
        }
        let attributes = self.spec.attributes.len();
        for (i, slot) in self.spec.allocations.iter().enumerate() {
            if slot.is_some_and(|index| index as usize >= attributes) {
                return Err(ValidationError::new(
                    format!("spec.allocations[{i}]"),
                    "points past the end of attributes",
                ));
            }
        }
        Ok(())
    }
}

impl Validate for BlockAffinity {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        parse_cidr_masked("spec.cidr", &self.spec.cidr)?;
        if self.spec.node.is_empty() {
            return Err(ValidationError::new("spec.node", "is required"));
        }
        Ok(())
    }
}

impl Validate for IPAMHandle {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        if self.spec.handle_id.is_empty() {
            return Err(ValidationError::new("spec.handleID", "is required"));
        }
        for cidr in self.spec.block.keys() {
            parse_cidr_masked(&format!("spec.block.{cidr}"), cidr)?;
        }
        Ok(())
    }
}

impl Validate for IPAMConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        if self.metadata.name.as_deref() != Some("default") {
            return Err(ValidationError::new(
                "metadata.name",
                "the IPAMConfig must be named \"default\"",
            ));
        }
        Ok(())
    }
}

impl Validate for IPReservation {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        for (i, cidr) in self.spec.reserved_cidrs.iter().enumerate() {
            parse_cidr_or_ip(&format!("spec.reservedCIDRs[{i}]"), cidr)?;
        }
        Ok(())
    }
}

impl Validate for WorkloadEndpoint {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        if self.spec.node.is_empty() {
            return Err(ValidationError::new("spec.node", "is required"));
        }
        for (i, net) in self.spec.ip_networks.iter().enumerate() {
            parse_cidr_or_ip(&format!("spec.ipNetworks[{i}]"), net)?;
        }
        for (i, port) in self.spec.ports.iter().enumerate() {
            if port.name.is_empty() {
                return Err(ValidationError::new(
                    format!("spec.ports[{i}].name"),
                    "is required",
                ));
            }
            if !matches!(port.protocol.as_str(), "TCP" | "UDP" | "SCTP") {
                return Err(ValidationError::new(
                    format!("spec.ports[{i}].protocol"),
                    format!("{:?} must be TCP, UDP or SCTP", port.protocol),
                ));
            }
            if port.port == 0 {
                return Err(ValidationError::new(
                    format!("spec.ports[{i}].port"),
                    "must be 1-65535",
                ));
            }
        }
        Ok(())
    }
}

impl Validate for GlobalNetworkPolicy {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        check_selector("spec.selector", self.spec.selector.as_deref())?;
        check_selector(
            "spec.namespaceSelector",
            self.spec.namespace_selector.as_deref(),
        )?;
        for (i, rule) in self.spec.ingress.iter().enumerate() {
            check_rule(&format!("spec.ingress[{i}]"), rule)?;
        }
        for (i, rule) in self.spec.egress.iter().enumerate() {
            check_rule(&format!("spec.egress[{i}]"), rule)?;
        }
        Ok(())
    }
}

fn check_rule(field: &str, rule: &Rule) -> Result<(), ValidationError> {
    if let Some(v) = rule.ip_version
        && v != 4
        && v != 6
    {
        return Err(ValidationError::new(
            format!("{field}.ipVersion"),
            "must be 4 or 6",
        ));
    }
    if let Some(side) = &rule.source {
        check_entity(&format!("{field}.source"), side)?;
    }
    if let Some(side) = &rule.destination {
        check_entity(&format!("{field}.destination"), side)?;
    }
    Ok(())
}

fn check_entity(field: &str, side: &EntityRule) -> Result<(), ValidationError> {
    for (i, net) in side.nets.iter().enumerate() {
        parse_cidr_or_ip(&format!("{field}.nets[{i}]"), net)?;
    }
    for (i, net) in side.not_nets.iter().enumerate() {
        parse_cidr_or_ip(&format!("{field}.notNets[{i}]"), net)?;
    }
    check_selector(&format!("{field}.selector"), side.selector.as_deref())?;
    check_selector(
        &format!("{field}.notSelector"),
        side.not_selector.as_deref(),
    )?;
    check_selector(
        &format!("{field}.namespaceSelector"),
        side.namespace_selector.as_deref(),
    )?;
    Ok(())
}

impl Validate for FelixConfiguration {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        super::felix::check(self)
    }
}

macro_rules! names_only {
    ($($ty:ty),*) => {
        $(impl Validate for $ty {
            fn validate(&self) -> Result<(), ValidationError> {
                check_name(&self.metadata)
            }
        })*
    };
}

names_only!(Namespace, Pod, KubeNode, Service, EndpointSlice);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{EndpointPort, WorkloadEndpointSpec};

    fn wep(ports: Vec<EndpointPort>) -> WorkloadEndpoint {
        let mut wep = WorkloadEndpoint::new(
            "web",
            WorkloadEndpointSpec {
                node: "node1".into(),
                ports,
                ..Default::default()
            },
        );
        wep.metadata.namespace = Some("default".into());
        wep
    }

    #[test]
    fn named_ports_are_checked_field_by_field() {
        let good = EndpointPort {
            name: "http".into(),
            protocol: "TCP".into(),
            port: 8080,
        };
        assert!(wep(vec![good.clone()]).validate().is_ok());
        let bad_proto = EndpointPort {
            protocol: "ICMP".into(),
            ..good.clone()
        };
        let err = wep(vec![good.clone(), bad_proto]).validate().unwrap_err();
        assert_eq!(err.field, "spec.ports[1].protocol");
        let zero = EndpointPort { port: 0, ..good };
        assert_eq!(
            wep(vec![zero]).validate().unwrap_err().field,
            "spec.ports[0].port"
        );
    }

    #[test]
    fn named_port_protocol_defaults_to_tcp() {
        let port: EndpointPort = serde_json::from_str(r#"{"name":"dns","port":53}"#).unwrap();
        assert_eq!(port.protocol, "TCP");
    }
}
