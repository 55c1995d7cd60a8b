//! Rules of Kubernetes `NetworkPolicy` as the API server checks them, for etcd mode where no
//! API server does: label selectors with known operators (`In`, `NotIn` with values;
//! `Exists`, `DoesNotExist` without), known `policyTypes` and protocols, and `ipBlock`s that
//! parse. A policy that breaks one would otherwise be stored and then fail closed in felix.

use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::meta::check_name;
use super::{Validate, ValidationError};
use crate::resources::native::NetworkPolicy;

/// The operators of a Kubernetes label selector requirement.
pub const LABEL_SELECTOR_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

impl Validate for NetworkPolicy {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        let Some(spec) = &self.spec else {
            return Ok(());
        };
        if let Some(selector) = &spec.pod_selector {
            check_label_selector("spec.podSelector", selector)?;
        }
        for (i, t) in spec.policy_types.iter().flatten().enumerate() {
            if t != "Ingress" && t != "Egress" {
                return Err(ValidationError::new(
                    format!("spec.policyTypes[{i}]"),
                    format!("{t:?} is not Ingress or Egress"),
                ));
            }
        }
        for (i, rule) in spec.ingress.iter().flatten().enumerate() {
            let field = format!("spec.ingress[{i}]");
            check_peers(&format!("{field}.from"), rule.from.as_deref())?;
            check_ports(&format!("{field}.ports"), rule.ports.as_deref())?;
        }
        for (i, rule) in spec.egress.iter().flatten().enumerate() {
            let field = format!("spec.egress[{i}]");
            check_peers(&format!("{field}.to"), rule.to.as_deref())?;
            check_ports(&format!("{field}.ports"), rule.ports.as_deref())?;
        }
        Ok(())
    }
}

/// A Kubernetes label selector: every requirement with a known operator and the values
/// that operator needs.
pub fn check_label_selector(field: &str, selector: &LabelSelector) -> Result<(), ValidationError> {
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let at = |what: &str| format!("{field}.matchExpressions[{i}].{what}");
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(ValidationError::new(
                    at("values"),
                    format!("must be non-empty with operator {}", req.operator),
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(ValidationError::new(
                    at("values"),
                    format!("must be empty with operator {}", req.operator),
                ));
            }
            op if !LABEL_SELECTOR_OPERATORS.contains(&op) => {
                return Err(ValidationError::new(
                    at("operator"),
                    format!("{op:?} is not In, NotIn, Exists or DoesNotExist"),
                ));
            }
            _ => {}
        }
        if req.key.is_empty() {
            return Err(ValidationError::new(at("key"), "is required"));
        }
    }
    Ok(())
}

fn check_peers(field: &str, peers: Option<&[NetworkPolicyPeer]>) -> Result<(), ValidationError> {
    for (i, peer) in peers.into_iter().flatten().enumerate() {
        let at = format!("{field}[{i}]");
        if let Some(selector) = &peer.pod_selector {
            check_label_selector(&format!("{at}.podSelector"), selector)?;
        }
        if let Some(selector) = &peer.namespace_selector {
            check_label_selector(&format!("{at}.namespaceSelector"), selector)?;
        }
        if let Some(block) = &peer.ip_block {
            let cidr = |f: String, text: &str| {
                text.parse::<ipnet::IpNet>()
                    .map(drop)
                    .map_err(|e| ValidationError::new(f, format!("{text:?}: {e}")))
            };
            cidr(format!("{at}.ipBlock.cidr"), &block.cidr)?;
            for (j, except) in block.except.iter().flatten().enumerate() {
                cidr(format!("{at}.ipBlock.except[{j}]"), except)?;
            }
        }
    }
    Ok(())
}

fn check_ports(field: &str, ports: Option<&[NetworkPolicyPort]>) -> Result<(), ValidationError> {
    for (i, port) in ports.into_iter().flatten().enumerate() {
        if let Some(protocol) = &port.protocol
            && !["TCP", "UDP", "SCTP"].contains(&protocol.as_str())
        {
            return Err(ValidationError::new(
                format!("{field}[{i}].protocol"),
                format!("{protocol:?} is not TCP, UDP or SCTP"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(spec: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(json!({"apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "n"}, "spec": spec}))
        .unwrap()
    }

    #[test]
    fn an_unknown_operator_is_refused_naming_the_field() {
        let p = policy(json!({"podSelector": {"matchExpressions":
            [{"key": "app", "operator": "Frob", "values": ["web"]}]}}));
        let e = p.validate().unwrap_err();
        assert_eq!(e.field, "spec.podSelector.matchExpressions[0].operator");
        let p = policy(
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector":
            {"matchExpressions": [{"key": "team", "operator": "Frob"}]}}]}]}),
        );
        assert_eq!(
            p.validate().unwrap_err().field,
            "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].operator"
        );
    }

    #[test]
    fn operators_need_their_values() {
        let p =
            policy(json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}));
        assert!(p.validate().unwrap_err().field.ends_with(".values"));
        let p = policy(json!({"podSelector": {"matchExpressions":
            [{"key": "a", "operator": "Exists", "values": ["x"]}]}}));
        assert!(p.validate().unwrap_err().field.ends_with(".values"));
    }

    #[test]
    fn a_valid_policy_passes() {
        let p = policy(json!({"podSelector": {"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.0/28"]}}],
                         "ports": [{"protocol": "TCP", "port": 80}]}],
            "egress": [{"to": [{"podSelector": {}}]}]}));
        p.validate().unwrap();
    }
}
