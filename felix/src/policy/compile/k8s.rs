//! Kubernetes `NetworkPolicy` → IR, as the Kubernetes documentation defines it.

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use twill_api::resources::common::IntOrString;
use twill_api::resources::native::NetworkPolicy;
use twill_api::selector::Selector;

use super::{Builder, CompiledPolicy, EndpointMatch, NsConstraint, PortAlt, parse_net};
use crate::policy::ir::{Direction, Family, IrPolicy, IrRule, PortRange, RuleAction, Side, Tier};
use crate::policy::labels::from_label_selector;

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

    // A podSelector that does not parse (an operator the API does not have, stored before
    // anything checked it) selects an unknown set of pods: fail closed by isolating every
    // pod of the namespace in the policy's directions, with none of its rules.
    let (pods, selector_valid) = match spec.pod_selector.as_ref() {
        None => (Selector::All, true),
        Some(sel) => match from_label_selector(sel, "spec.podSelector") {
            Ok(s) => (s, true),
            Err(e) => {
                b.warnings.push(format!(
                    "{key}: {e}: the policy denies every pod of namespace {ns:?} until fixed"
                ));
                (Selector::All, false)
            }
        },
    };
    let applies = Some(EndpointMatch {
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
    if !selector_valid {
        ir.ingress = ingress.then(Vec::new);
        ir.egress = egress.then(Vec::new);
        return CompiledPolicy {
            key,
            order: None,
            applies,
            ir,
            sets: b.sets,
            warnings: b.warnings,
        };
    }
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
