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
//! policy selects; each case is reported as a warning naming the field.

use std::collections::BTreeMap;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use twill_api::resources::GlobalNetworkPolicy;
use twill_api::resources::common::IntOrString;
use twill_api::resources::native::NetworkPolicy;
use twill_api::resources::policy::{Action, EntityRule, PolicyType, Rule};
use twill_api::selector::Selector;

use super::ir::{
    Direction, Family, IrPolicy, IrRule, NsMatch, PortRange, RuleAction, SetDef, SetMatch, Side,
    Tier,
};
use super::labels::{Labels, from_label_selector};

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

// ---------------------------------------------------------------------------------------
// Kubernetes NetworkPolicy
// ---------------------------------------------------------------------------------------

/// A Kubernetes peer alternative.
enum Peer {
    Any,
    Members(EndpointMatch),
    Block(IpNet, Vec<IpNet>),
}

/// Compiles a Kubernetes `NetworkPolicy`.
pub fn compile_network_policy(np: &NetworkPolicy) -> CompiledPolicy {
    let ns = np.metadata.namespace.clone().unwrap_or_default();
    let name = np.metadata.name.clone().unwrap_or_default();
    let key = format!("np/{ns}/{name}");
    let mut b = Builder::default();
    let spec = np.spec.clone().unwrap_or_default();

    let applies = match spec.pod_selector.as_ref() {
        None => Some(Selector::All),
        Some(sel) => match from_label_selector(sel, "spec.podSelector") {
            Ok(s) => Some(s),
            Err(e) => {
                b.warnings.push(format!("{key}: {e}"));
                None
            }
        },
    }
    .map(|pods| EndpointMatch {
        namespaces: NsConstraint::Name(ns.clone()),
        pods,
    });

    let ingress_rules = spec.ingress.clone().unwrap_or_default();
    let egress_rules = spec.egress.clone().unwrap_or_default();
    let (mut ingress, mut egress) = (false, false);
    match spec.policy_types.as_ref().filter(|t| !t.is_empty()) {
        Some(types) => {
            for t in types {
                match t.as_str() {
                    "Ingress" => ingress = true,
                    "Egress" => egress = true,
                    other => b
                        .warnings
                        .push(format!("{key}: spec.policyTypes: unknown type {other:?}")),
                }
            }
        }
        None => {
            ingress = true;
            egress = !egress_rules.is_empty();
        }
    }

    let mut ir = IrPolicy {
        tier: Tier::Kubernetes,
        id: key.clone(),
        ingress: None,
        egress: None,
    };
    if ingress {
        let mut rules = Vec::new();
        for (i, rule) in ingress_rules.iter().enumerate() {
            let field = format!("{key}: spec.ingress[{i}]");
            rules.extend(k8s_rule(
                &mut b,
                &ns,
                Direction::Ingress,
                rule.from.as_deref(),
                rule.ports.as_deref(),
                &field,
            ));
        }
        ir.ingress = Some(rules);
    }
    if egress {
        let mut rules = Vec::new();
        for (i, rule) in egress_rules.iter().enumerate() {
            let field = format!("{key}: spec.egress[{i}]");
            rules.extend(k8s_rule(
                &mut b,
                &ns,
                Direction::Egress,
                rule.to.as_deref(),
                rule.ports.as_deref(),
                &field,
            ));
        }
        ir.egress = Some(rules);
    }
    CompiledPolicy {
        key,
        order: None,
        applies,
        ir,
        sets: b.sets,
        warnings: b.warnings,
    }
}

fn k8s_peers(
    b: &mut Builder,
    ns: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    field: &str,
) -> Vec<Peer> {
    let Some(peers) = peers.filter(|p| !p.is_empty()) else {
        return vec![Peer::Any];
    };
    let mut out = Vec::new();
    for (j, peer) in peers.iter().enumerate() {
        let pf = format!("{field}[{j}]");
        if let Some(block) = &peer.ip_block {
            let cidr = match parse_net(&block.cidr, &format!("{pf}.ipBlock.cidr")) {
                Ok(c) => c,
                Err(e) => {
                    b.warnings.push(e);
                    continue;
                }
            };
            let mut except = Vec::new();
            let mut bad = false;
            for (k, e) in block.except.iter().flatten().enumerate() {
                match parse_net(e, &format!("{pf}.ipBlock.except[{k}]")) {
                    Ok(n) => except.push(n),
                    Err(e) => {
                        b.warnings.push(e);
                        bad = true;
                    }
                }
            }
            if !bad {
                out.push(Peer::Block(cidr, except));
            }
            continue;
        }
        let namespaces = match &peer.namespace_selector {
            None => NsConstraint::Name(ns.to_owned()),
            Some(sel) => match from_label_selector(sel, &format!("{pf}.namespaceSelector")) {
                Ok(s) => NsConstraint::Selector(s),
                Err(e) => {
                    b.warnings.push(e);
                    continue;
                }
            },
        };
        let pods = match &peer.pod_selector {
            None => Selector::All,
            Some(sel) => match from_label_selector(sel, &format!("{pf}.podSelector")) {
                Ok(s) => s,
                Err(e) => {
                    b.warnings.push(e);
                    continue;
                }
            },
        };
        if peer.namespace_selector.is_none() && peer.pod_selector.is_none() {
            b.warnings.push(format!(
                "{pf}: a peer needs podSelector, namespaceSelector or ipBlock"
            ));
            continue;
        }
        out.push(Peer::Members(EndpointMatch { namespaces, pods }));
    }
    out
}

fn k8s_ports(
    b: &mut Builder,
    ports: Option<&[NetworkPolicyPort]>,
    field: &str,
) -> Vec<(Option<u8>, PortAlt)> {
    let Some(ports) = ports.filter(|p| !p.is_empty()) else {
        return vec![(None, PortAlt::Any)];
    };
    let mut out = Vec::new();
    for (j, port) in ports.iter().enumerate() {
        let pf = format!("{field}.ports[{j}]");
        let proto = match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => 6,
            "UDP" => 17,
            "SCTP" => 132,
            other => {
                b.warnings
                    .push(format!("{pf}.protocol: {other:?} is not TCP, UDP or SCTP"));
                continue;
            }
        };
        let alt = match &port.port {
            None => PortAlt::Any,
            Some(IntOrString::String(name)) => PortAlt::Named(name.clone()),
            Some(IntOrString::Int(n)) => {
                let Ok(first) = u16::try_from(*n) else {
                    b.warnings.push(format!("{pf}.port: {n} is not 1-65535"));
                    continue;
                };
                let last = match port.end_port {
                    None => first,
                    Some(e) => match u16::try_from(e) {
                        Ok(e) if e >= first => e,
                        _ => {
                            b.warnings
                                .push(format!("{pf}.endPort: {e} is not {first}-65535"));
                            continue;
                        }
                    },
                };
                PortAlt::Range(PortRange { first, last })
            }
        };
        out.push((Some(proto), alt));
    }
    out
}

fn k8s_rule(
    b: &mut Builder,
    ns: &str,
    dir: Direction,
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
    field: &str,
) -> Vec<IrRule> {
    let peer_field = match dir {
        Direction::Ingress => format!("{field}.from"),
        Direction::Egress => format!("{field}.to"),
    };
    let peers = k8s_peers(b, ns, peers, &peer_field);
    let ports = k8s_ports(b, ports, field);
    let mut rules = Vec::new();
    for peer in &peers {
        for (proto, port) in &ports {
            let families: Vec<Option<Family>> = match (peer, port) {
                (Peer::Block(cidr, _), _) => vec![Some(Family::of_net(cidr))],
                (Peer::Members(_), _) | (_, PortAlt::Named(_)) => {
                    Family::BOTH.iter().copied().map(Some).collect()
                }
                (Peer::Any, _) => vec![None],
            };
            for family in families {
                let mut rule = IrRule::new(RuleAction::Allow);
                rule.family = family;
                rule.protocol = *proto;
                let mut peer_side = Side::default();
                if let Some(f) = family {
                    match peer {
                        Peer::Any => {}
                        Peer::Members(m) => peer_side.sets.push(b.members(f, m, false)),
                        Peer::Block(cidr, except) => {
                            peer_side.sets.push(b.nets(f, &[*cidr], except, false))
                        }
                    }
                }
                let mut dst = Side::default();
                match port {
                    PortAlt::Any => {}
                    PortAlt::Range(r) => dst.port = Some(*r),
                    PortAlt::Named(name) => {
                        if let Some(f) = family {
                            dst.named_port = Some(b.named_port(f, name));
                        }
                    }
                }
                match dir {
                    Direction::Ingress => {
                        rule.src = peer_side;
                        rule.dst = dst;
                    }
                    Direction::Egress => {
                        peer_side.port = dst.port;
                        peer_side.named_port = dst.named_port;
                        rule.dst = peer_side;
                    }
                }
                rules.push(rule);
            }
        }
    }
    rules
}

// ---------------------------------------------------------------------------------------
// GlobalNetworkPolicy
// ---------------------------------------------------------------------------------------

/// Compiles a Twill `GlobalNetworkPolicy`.
pub fn compile_global_policy(gnp: &GlobalNetworkPolicy) -> CompiledPolicy {
    let name = gnp.metadata.name.clone().unwrap_or_default();
    let key = format!("gnp/{name}");
    let spec = &gnp.spec;
    let mut b = Builder::default();

    let pods = Selector::parse(spec.selector.as_deref().unwrap_or(""));
    let namespaces = match spec.namespace_selector.as_deref() {
        None => Ok(NsConstraint::Any),
        Some(text) => Selector::parse(text).map(NsConstraint::Selector),
    };
    let applies = match (pods, namespaces) {
        (Ok(pods), Ok(namespaces)) => Some(EndpointMatch { namespaces, pods }),
        (Err(e), _) => {
            b.warnings.push(format!("{key}: spec.selector: {e}"));
            None
        }
        (_, Err(e)) => {
            b.warnings
                .push(format!("{key}: spec.namespaceSelector: {e}"));
            None
        }
    };

    let (ingress, egress) = if spec.types.is_empty() {
        let e = !spec.egress.is_empty();
        (!spec.ingress.is_empty() || !e, e)
    } else {
        (
            spec.types.contains(&PolicyType::Ingress),
            spec.types.contains(&PolicyType::Egress),
        )
    };
    let log_prefix = log_prefix(&name);
    let mut ir = IrPolicy {
        tier: Tier::Global,
        id: key.clone(),
        ingress: None,
        egress: None,
    };
    for (dir, on, rules) in [
        (Direction::Ingress, ingress, &spec.ingress),
        (Direction::Egress, egress, &spec.egress),
    ] {
        if !on {
            continue;
        }
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let d = if dir == Direction::Ingress {
                "ingress"
            } else {
                "egress"
            };
            let field = format!("{key}: spec.{d}[{i}]");
            match gnp_rule(&mut b, rule, &log_prefix) {
                Ok(rules) => out.extend(rules),
                Err(e) => {
                    b.warnings.push(format!("{field}{e}"));
                    if rule.action == Action::Deny {
                        out.push(IrRule::new(RuleAction::Deny));
                    }
                }
            }
        }
        match dir {
            Direction::Ingress => ir.ingress = Some(out),
            Direction::Egress => ir.egress = Some(out),
        }
    }
    CompiledPolicy {
        key,
        order: spec.order,
        applies,
        ir,
        sets: b.sets,
        warnings: b.warnings,
    }
}

/// `twill NAME ` cut to fit iptables' 29-byte log prefix.
fn log_prefix(name: &str) -> String {
    let mut p = format!("twill {name}");
    while p.len() > 27 {
        p.pop();
    }
    p.push(' ');
    p
}

/// One side of a global rule, parsed.
struct GnpSide {
    nets: Vec<IpNet>,
    not_nets: Vec<IpNet>,
    members: Option<EndpointMatch>,
    not_members: Option<EndpointMatch>,
    ports: Vec<PortAlt>,
    not_ports: Vec<PortRange>,
}

fn parse_port(p: &IntOrString) -> Result<PortAlt, String> {
    let range = |a: u64, b: u64| -> Result<PortAlt, String> {
        match (u16::try_from(a), u16::try_from(b)) {
            (Ok(first), Ok(last)) if first <= last => Ok(PortAlt::Range(PortRange { first, last })),
            _ => Err(format!("{a}:{b} is not a port range within 0-65535")),
        }
    };
    match p {
        IntOrString::Int(n) => {
            let n = u64::try_from(*n).map_err(|_| format!("{n} is not a port"))?;
            range(n, n)
        }
        IntOrString::String(s) => {
            if let Some((a, b)) = s.split_once(':') {
                match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
                    (Ok(a), Ok(b)) => range(a, b),
                    _ => Err(format!("{s:?} is not a port range")),
                }
            } else if let Ok(n) = s.trim().parse::<u64>() {
                range(n, n)
            } else if s.is_empty() {
                Err("an empty port name".to_owned())
            } else {
                Ok(PortAlt::Named(s.clone()))
            }
        }
    }
}

fn gnp_side(e: Option<&EntityRule>, field: &str) -> Result<GnpSide, String> {
    let mut side = GnpSide {
        nets: Vec::new(),
        not_nets: Vec::new(),
        members: None,
        not_members: None,
        ports: vec![PortAlt::Any],
        not_ports: Vec::new(),
    };
    let Some(e) = e else { return Ok(side) };
    for (i, n) in e.nets.iter().enumerate() {
        side.nets.push(parse_net(n, &format!("{field}.nets[{i}]"))?);
    }
    for (i, n) in e.not_nets.iter().enumerate() {
        side.not_nets
            .push(parse_net(n, &format!("{field}.notNets[{i}]"))?);
    }
    let namespaces = match e.namespace_selector.as_deref() {
        None => NsConstraint::Any,
        Some(t) => NsConstraint::Selector(
            Selector::parse(t).map_err(|err| format!("{field}.namespaceSelector: {err}"))?,
        ),
    };
    if let Some(t) = e.selector.as_deref() {
        let pods = Selector::parse(t).map_err(|err| format!("{field}.selector: {err}"))?;
        side.members = Some(EndpointMatch {
            namespaces: namespaces.clone(),
            pods,
        });
    } else if e.namespace_selector.is_some() {
        side.members = Some(EndpointMatch {
            namespaces: namespaces.clone(),
            pods: Selector::All,
        });
    }
    if let Some(t) = e.not_selector.as_deref() {
        let pods = Selector::parse(t).map_err(|err| format!("{field}.notSelector: {err}"))?;
        side.not_members = Some(EndpointMatch { namespaces, pods });
    }
    if !e.ports.is_empty() {
        side.ports = e
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| parse_port(p).map_err(|err| format!("{field}.ports[{i}]: {err}")))
            .collect::<Result<_, _>>()?;
    }
    for (i, p) in e.not_ports.iter().enumerate() {
        match parse_port(p).map_err(|err| format!("{field}.notPorts[{i}]: {err}"))? {
            PortAlt::Range(r) => side.not_ports.push(r),
            _ => {
                return Err(format!(
                    "{field}.notPorts[{i}]: named ports are not supported here"
                ));
            }
        }
    }
    Ok(side)
}

fn gnp_rule(b: &mut Builder, rule: &Rule, log_prefix: &str) -> Result<Vec<IrRule>, String> {
    let action = match rule.action {
        Action::Allow => RuleAction::Allow,
        Action::Deny => RuleAction::Deny,
        Action::Pass => RuleAction::Pass,
        Action::Log => RuleAction::Log,
    };
    let protocol = rule
        .protocol
        .as_ref()
        .map(parse_protocol)
        .transpose()
        .map_err(|e| format!(".protocol: {e}"))?;
    let not_protocol = rule
        .not_protocol
        .as_ref()
        .map(parse_protocol)
        .transpose()
        .map_err(|e| format!(".notProtocol: {e}"))?;
    let src = gnp_side(rule.source.as_ref(), ".source")?;
    let dst = gnp_side(rule.destination.as_ref(), ".destination")?;
    let wants_ports = [&src, &dst]
        .iter()
        .any(|s| s.ports != [PortAlt::Any] || !s.not_ports.is_empty());
    if wants_ports && !has_ports(protocol) {
        return Err(".protocol: ports need protocol TCP, UDP, SCTP or UDPLite".to_owned());
    }
    let (icmp_type, icmp_code) = match &rule.icmp {
        None => (None, None),
        Some(icmp) => {
            if !matches!(protocol, Some(1 | 58)) {
                return Err(".icmp: needs protocol ICMP or ICMPv6".to_owned());
            }
            if icmp.code.is_some() && icmp.icmp_type.is_none() {
                return Err(".icmp.code: needs icmp.type".to_owned());
            }
            (icmp.icmp_type, icmp.code)
        }
    };

    // Which families the rule can match.
    let mut families: Vec<Family> = Family::BOTH.to_vec();
    if let Some(v) = rule.ip_version {
        families.retain(|f| (*f == Family::V4 && v == 4) || (*f == Family::V6 && v == 6));
    }
    match protocol {
        Some(1) => families.retain(|f| *f == Family::V4),
        Some(58) => families.retain(|f| *f == Family::V6),
        _ => {}
    }
    for side in [&src, &dst] {
        if !side.nets.is_empty() {
            families.retain(|f| side.nets.iter().any(|n| Family::of_net(n) == *f));
        }
    }
    let per_family = [&src, &dst].iter().any(|s| {
        !s.nets.is_empty()
            || !s.not_nets.is_empty()
            || s.members.is_some()
            || s.not_members.is_some()
            || s.ports.iter().any(|p| matches!(p, PortAlt::Named(_)))
    }) || rule.ip_version.is_some()
        || matches!(protocol, Some(1 | 58));
    let family_choices: Vec<Option<Family>> = if per_family {
        families.into_iter().map(Some).collect()
    } else {
        vec![None]
    };

    let mut out = Vec::new();
    for family in family_choices {
        for sp in &src.ports {
            for dp in &dst.ports {
                let mut r = IrRule::new(action);
                r.family = family;
                r.protocol = protocol;
                r.not_protocol = not_protocol;
                r.icmp_type = icmp_type;
                r.icmp_code = icmp_code;
                if action == RuleAction::Log {
                    r.log_prefix = Some(log_prefix.to_owned());
                }
                r.src = build_side(b, family, &src, sp);
                r.dst = build_side(b, family, &dst, dp);
                out.push(r);
            }
        }
    }
    Ok(out)
}

fn build_side(b: &mut Builder, family: Option<Family>, s: &GnpSide, port: &PortAlt) -> Side {
    let mut side = Side {
        not_ports: s.not_ports.clone(),
        ..Side::default()
    };
    match port {
        PortAlt::Any => {}
        PortAlt::Range(r) => side.port = Some(*r),
        PortAlt::Named(name) => {
            if let Some(f) = family {
                side.named_port = Some(b.named_port(f, name));
            }
        }
    }
    let Some(f) = family else { return side };
    if !s.nets.is_empty() {
        side.sets.push(b.nets(f, &s.nets, &[], false));
    }
    if s.not_nets.iter().any(|n| Family::of_net(n) == f) {
        side.sets.push(b.nets(f, &s.not_nets, &[], true));
    }
    if let Some(m) = &s.members {
        side.sets.push(b.members(f, m, false));
    }
    if let Some(m) = &s.not_members {
        side.sets.push(b.members(f, m, true));
    }
    side
}
