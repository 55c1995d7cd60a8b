//! Compiles one policy object into its IR: which endpoints it applies to, its rules per
//! direction (expanded into plain conjunctions), and the named sets those rules use.
//!
//! Kubernetes `NetworkPolicy` follows the Kubernetes documentation: `podSelector` (absent
//! or empty = every pod of the namespace), `policyTypes` (default Ingress, plus Egress when
//! egress rules exist), peers with `podSelector` (this namespace), `namespaceSelector`,
//! both (AND) or `ipBlock` with `except`, ports TCP/UDP/SCTP numeric, ranged (`endPort`)
//! or named. A rule with no peers matches every source; with no ports, every port.
//!
//! `GlobalNetworkPolicy` follows Calico's v3 shape. Its `types` default as Calico's do:
//! the directions that have rules, Ingress when neither has.
//!
//! Anything that cannot be compiled fails closed: an allow that cannot be expressed is
//! left out (it allows less), a deny that cannot be expressed denies everything its
//! policy selects; a policy whose own selector does not parse (stored before anything
//! checked it) denies, in its directions, every endpoint it could select (the whole
//! namespace for a `NetworkPolicy`); each case is reported as a warning naming the field.

use std::collections::BTreeMap;

use ipnet::IpNet;
use twill_api::resources::common::IntOrString;
use twill_api::selector::Selector;

use super::ir::{Family, IrPolicy, NsMatch, PortRange, SetDef, SetMatch};
use super::labels::Labels;

mod gnp;
mod k8s;

pub use gnp::compile_global_policy;
pub use k8s::compile_network_policy;

/// Which namespaces a selector applies in, parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum NsConstraint {
    Any,
    Name(String),
    Selector(Selector),
}

impl NsConstraint {
    pub fn matches(&self, namespace: &str, labels: &Labels) -> bool {
        match self {
            NsConstraint::Any => true,
            NsConstraint::Name(n) => n == namespace,
            NsConstraint::Selector(s) => s.matches(labels),
        }
    }

    fn to_match(&self) -> NsMatch {
        match self {
            NsConstraint::Any => NsMatch::Any,
            NsConstraint::Name(n) => NsMatch::Name(n.clone()),
            NsConstraint::Selector(s) => NsMatch::Selector(s.to_string()),
        }
    }
}

/// Endpoints in some namespaces whose labels match a selector.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointMatch {
    pub namespaces: NsConstraint,
    pub pods: Selector,
}

impl EndpointMatch {
    pub fn matches(&self, namespace: &str, ns_labels: &Labels, labels: &Labels) -> bool {
        self.namespaces.matches(namespace, ns_labels) && self.pods.matches(labels)
    }
}

/// A set the rules use, with what it takes to compute its members.
#[derive(Clone, Debug, PartialEq)]
pub struct SetSpec {
    pub def: SetDef,
    /// For `Members` sets: who is a member.
    pub members: Option<EndpointMatch>,
}

/// A compiled policy.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledPolicy {
    /// `gnp/NAME` or `np/NAMESPACE/NAME`.
    pub key: String,
    /// `order` of a global policy (unset sorts last).
    pub order: Option<f64>,
    /// Which endpoints it selects; `None` selects none (a broken selector).
    pub applies: Option<EndpointMatch>,
    pub ir: IrPolicy,
    /// Sets its rules refer to, by name.
    pub sets: BTreeMap<String, SetSpec>,
    pub warnings: Vec<String>,
}

#[derive(Default)]
struct Builder {
    sets: BTreeMap<String, SetSpec>,
    warnings: Vec<String>,
}

impl Builder {
    fn members(&mut self, family: Family, m: &EndpointMatch, negate: bool) -> SetMatch {
        let def = SetDef::Members {
            family,
            namespaces: m.namespaces.to_match(),
            pods: m.pods.to_string(),
        };
        self.add(def, Some(m.clone()), negate)
    }

    fn nets(&mut self, family: Family, nets: &[IpNet], except: &[IpNet], negate: bool) -> SetMatch {
        let mut nets: Vec<IpNet> = nets
            .iter()
            .filter(|n| Family::of_net(n) == family)
            .map(IpNet::trunc)
            .collect();
        nets.sort();
        nets.dedup();
        let mut except: Vec<IpNet> = except
            .iter()
            .filter(|n| Family::of_net(n) == family)
            .map(IpNet::trunc)
            .collect();
        except.sort();
        except.dedup();
        self.add(
            SetDef::Nets {
                family,
                nets,
                except,
            },
            None,
            negate,
        )
    }

    fn named_port(&mut self, family: Family, port: &str) -> String {
        self.add(
            SetDef::NamedPort {
                family,
                port: port.to_owned(),
            },
            None,
            false,
        )
        .set
    }

    fn add(&mut self, def: SetDef, members: Option<EndpointMatch>, negate: bool) -> SetMatch {
        let name = def.name();
        self.sets
            .entry(name.clone())
            .or_insert(SetSpec { def, members });
        SetMatch { set: name, negate }
    }
}

/// A port alternative of a rule.
#[derive(Clone, Debug, PartialEq)]
enum PortAlt {
    Any,
    Range(PortRange),
    Named(String),
}

/// Parses a protocol as Kubernetes and Calico write it.
pub fn parse_protocol(p: &IntOrString) -> Result<u8, String> {
    match p {
        IntOrString::Int(n) => u8::try_from(*n).map_err(|_| format!("{n} is not 0-255")),
        IntOrString::String(s) => match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(6),
            "UDP" => Ok(17),
            "ICMP" => Ok(1),
            "ICMPV6" => Ok(58),
            "SCTP" => Ok(132),
            "UDPLITE" => Ok(136),
            _ => s.parse::<u8>().map_err(|_| {
                format!("{s:?} is not a protocol (TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or 0-255)")
            }),
        },
    }
}

fn has_ports(proto: Option<u8>) -> bool {
    matches!(proto, Some(6 | 17 | 132 | 136))
}

fn parse_net(text: &str, field: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{field}: {text:?} is not a CIDR"))
}
