//! The policy IR: what the node must enforce, as plain data independent of nftables or
//! iptables. Renderers turn it into a dataplane; goldens pin it down as JSON.
//!
//! - [`SetDef`]: a named address set — the addresses of the endpoints a selector matches
//!   (`Members`), CIDRs minus exceptions (`Nets`), or `address . protocol . port` of the
//!   endpoints that have a named port (`NamedPort`). Rules refer to sets by name, so a pod
//!   joining a selector changes set elements, never a rule.
//! - [`IrPolicy`]: one policy's rules per direction, shared by every endpoint it selects.
//! - [`IrEndpoint`]: per local endpoint (keyed by its host-side interface) and direction,
//!   the ordered global policies, then the Kubernetes policies, and whether it is isolated.
//!
//! Direction is the pod's: ingress is traffic to the pod (it leaves the host through the
//! pod's veth), egress is traffic from the pod (it arrives on the veth).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

/// IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    /// `4` or `6`, as set names spell it.
    pub fn digit(self) -> char {
        match self {
            Family::V4 => '4',
            Family::V6 => '6',
        }
    }

    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        Family::of(&net.addr())
    }
}

/// Which namespaces a membership set draws from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum NsMatch {
    /// Every namespace.
    Any,
    /// Exactly this namespace.
    Name(String),
    /// Namespaces whose labels match this selector (canonical text).
    Selector(String),
}

/// What a named set holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SetDef {
    /// Addresses of the endpoints in `namespaces` whose labels match `pods`.
    Members {
        family: Family,
        namespaces: NsMatch,
        pods: String,
    },
    /// `nets` minus `except` (static).
    Nets {
        family: Family,
        nets: Vec<IpNet>,
        except: Vec<IpNet>,
    },
    /// `address . protocol . port` of every endpoint with a port called `port`.
    NamedPort { family: Family, port: String },
}

impl SetDef {
    pub fn family(&self) -> Family {
        match self {
            SetDef::Members { family, .. }
            | SetDef::Nets { family, .. }
            | SetDef::NamedPort { family, .. } => *family,
        }
    }

    /// The set's name: a kind letter, the family digit and a hash of the definition, so
    /// every rule with the same selector shares one set.
    pub fn name(&self) -> String {
        let kind = match self {
            SetDef::Members { .. } => 'm',
            SetDef::Nets { .. } => 'n',
            SetDef::NamedPort { .. } => 'p',
        };
        format!(
            "{kind}{}-{}",
            self.family().digit(),
            super::hash::short_hash(&self.to_string())
        )
    }
}

impl fmt::Display for SetDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetDef::Members {
                family,
                namespaces,
                pods,
            } => {
                let ns = match namespaces {
                    NsMatch::Any => "any".to_owned(),
                    NsMatch::Name(n) => format!("name={n}"),
                    NsMatch::Selector(s) => format!("selector={s}"),
                };
                write!(f, "members {family:?} namespaces[{ns}] pods[{pods}]")
            }
            SetDef::Nets {
                family,
                nets,
                except,
            } => {
                let list = |v: &[IpNet]| {
                    v.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                };
                write!(
                    f,
                    "nets {family:?} [{}] except [{}]",
                    list(nets),
                    list(except)
                )
            }
            SetDef::NamedPort { family, port } => write!(f, "named-port {family:?} {port}"),
        }
    }
}

/// One element of a dynamic set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    Addr(IpAddr),
    /// `address . protocol . port`.
    AddrPort(IpAddr, u8, u16),
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Addr(a) => write!(f, "{a}"),
            Element::AddrPort(a, proto, port) => write!(f, "{a} . {} . {port}", proto_name(*proto)),
        }
    }
}

impl Serialize for Element {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `tcp`, `udp`, `sctp` or the number.
pub fn proto_name(proto: u8) -> String {
    match proto {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// A named set with its current elements (empty for `Nets`, whose content is its
/// definition).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IrSet {
    pub def: SetDef,
    pub elements: BTreeSet<Element>,
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RuleAction {
    Allow,
    Deny,
    /// Skip the remaining global policies; go on to the Kubernetes policies.
    Pass,
    /// Log, then go on with the next rule.
    Log,
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// A match on an address against a named set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetMatch {
    pub set: String,
    pub negate: bool,
}

/// One side (source or destination) of a rule. All present parts must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Side {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<SetMatch>,
    /// The port must be in this range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRange>,
    /// The port must be in none of these ranges.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<PortRange>,
    /// `address . protocol . port` must be in this named-port set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub named_port: Option<String>,
}

impl Side {
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
            && self.port.is_none()
            && self.not_ports.is_empty()
            && self.named_port.is_none()
    }
}

/// One rule, already expanded so that it is a plain conjunction (alternatives of peers or
/// ports become several rules).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IrRule {
    pub action: RuleAction,
    /// Only this family (set when the rule matches addresses or ICMP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Side::is_empty")]
    pub src: Side,
    #[serde(skip_serializing_if = "Side::is_empty")]
    pub dst: Side,
    /// Log prefix for `Log` rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_prefix: Option<String>,
}

impl IrRule {
    pub fn new(action: RuleAction) -> Self {
        IrRule {
            action,
            family: None,
            protocol: None,
            not_protocol: None,
            icmp_type: None,
            icmp_code: None,
            src: Side::default(),
            dst: Side::default(),
            log_prefix: None,
        }
    }

    /// Every set the rule refers to.
    pub fn set_names(&self) -> impl Iterator<Item = &str> {
        [&self.src, &self.dst].into_iter().flat_map(|side| {
            side.sets
                .iter()
                .map(|m| m.set.as_str())
                .chain(side.named_port.as_deref())
        })
    }
}

/// Global (Twill) or namespaced (Kubernetes) policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Tier {
    Global,
    Kubernetes,
}

/// One policy as the dataplane needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IrPolicy {
    pub tier: Tier,
    /// `gnp/NAME` or `np/NAMESPACE/NAME`.
    pub id: String,
    /// Rules for traffic to selected pods; `None` when the policy does not cover ingress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IrRule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<IrRule>>,
}

impl IrPolicy {
    pub fn rules(&self, dir: Direction) -> Option<&Vec<IrRule>> {
        match dir {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }

    /// Whether a rule of `dir` may `Pass`.
    pub fn passes(&self, dir: Direction) -> bool {
        self.rules(dir)
            .is_some_and(|rules| rules.iter().any(|r| r.action == RuleAction::Pass))
    }
}

/// Ingress (to the pod) or egress (from the pod).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];
}

/// The policies of one local endpoint in one direction, in evaluation order, by policy
/// key (the key of [`Ir::policies`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EndpointDirection {
    /// Global policies by `order` then name.
    pub global: Vec<String>,
    /// Kubernetes policies (their order does not matter: allows are a union).
    pub kubernetes: Vec<String>,
}

impl EndpointDirection {
    /// A pod selected by any policy for a direction is isolated in that direction.
    pub fn isolated(&self) -> bool {
        !self.global.is_empty() || !self.kubernetes.is_empty()
    }
}

/// One local endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IrEndpoint {
    /// `namespace/name` of the WorkloadEndpoint.
    pub id: String,
    pub ingress: EndpointDirection,
    pub egress: EndpointDirection,
}

impl IrEndpoint {
    pub fn direction(&self, dir: Direction) -> &EndpointDirection {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// Masquerade: traffic from `nat_outgoing` pools to destinations outside every pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IrNat {
    pub pools: BTreeSet<IpNet>,
    pub nat_outgoing: BTreeSet<IpNet>,
}

/// What happens to traffic from a local workload to the host itself, after the
/// workload's egress policy (Calico's `DefaultEndpointToHostAction`; its `Return` means
/// `Accept` here, as Twill has no host endpoints).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum EndpointToHostAction {
    /// Only the failsafe ports: a pod can reach neither BGP nor any other host service.
    #[default]
    Drop,
    Accept,
}

/// A protocol and port on the host that workloads may always reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct HostPort {
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub protocol: u8,
    pub port: u16,
}

impl HostPort {
    /// Protocol name to number: `tcp`, `udp` or `sctp` (any case).
    pub fn protocol_number(name: &str) -> Option<u8> {
        match name.to_ascii_lowercase().as_str() {
            "tcp" => Some(6),
            "udp" => Some(17),
            "sctp" => Some(132),
            _ => None,
        }
    }

    /// `tcp:22`, `udp:68` (Calico's spelling of a failsafe port).
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let (proto, port) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: expected PROTOCOL:PORT, e.g. tcp:22"))?;
        let protocol = HostPort::protocol_number(proto)
            .ok_or_else(|| format!("{text:?}: protocol must be tcp, udp or sctp"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{text:?}: port must be 1..=65535"))?;
        if protocol == 6 && port == BGP_PORT {
            return Err(format!(
                "{text:?}: BGP (tcp:{BGP_PORT}) is never reachable from workloads"
            ));
        }
        Ok(HostPort { protocol, port })
    }
}

/// BGP's port: never a failsafe port, whatever the configuration says, so that no pod
/// can reach the node's BGP speaker.
pub const BGP_PORT: u16 = 179;

/// The host-facing policy: traffic from workload interfaces to the host itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct HostPolicy {
    pub endpoint_to_host: EndpointToHostAction,
    /// Host ports workloads may reach even when the action is `Drop` (still subject to
    /// the workload's egress policy). TCP 179 is never among them.
    pub failsafe_inbound: Vec<HostPort>,
}

impl HostPolicy {
    /// `failsafe_inbound` without BGP, deduplicated and sorted.
    pub fn effective_failsafe(&self) -> Vec<HostPort> {
        let mut v: Vec<HostPort> = self
            .failsafe_inbound
            .iter()
            .filter(|p| !(p.protocol == 6 && p.port == BGP_PORT))
            .copied()
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Everything one node enforces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ir {
    /// Named sets by name.
    pub sets: BTreeMap<String, IrSet>,
    /// Policies by key (`gnp/NAME`, `np/NS/NAME`) — only those selecting a local endpoint
    /// are rendered, but all are kept so a pod arriving needs no recompilation.
    pub policies: BTreeMap<String, IrPolicy>,
    /// Local endpoints by host-side interface name.
    pub endpoints: BTreeMap<String, IrEndpoint>,
    pub nat: IrNat,
    /// Traffic from workloads to the host itself.
    pub host: HostPolicy,
}
