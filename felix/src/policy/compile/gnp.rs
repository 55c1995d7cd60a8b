//! Twill `GlobalNetworkPolicy` → IR (Calico v3 semantics).

use ipnet::IpNet;
use twill_api::resources::GlobalNetworkPolicy;
use twill_api::resources::common::IntOrString;
use twill_api::resources::policy::{Action, EntityRule, PolicyType, Rule};
use twill_api::selector::Selector;

use super::{
    Builder, CompiledPolicy, EndpointMatch, NsConstraint, PortAlt, has_ports, parse_net,
    parse_protocol,
};
use crate::policy::ir::{Direction, Family, IrPolicy, IrRule, PortRange, RuleAction, Side, Tier};

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
    // A selector that does not parse selects an unknown set of endpoints: fail closed by
    // denying, in the policy's directions, every endpoint it could select (all of them in
    // the namespaces it names, or everywhere when those do not parse either).
    let (applies, selector_valid) = match (pods, namespaces) {
        (Ok(pods), Ok(namespaces)) => (EndpointMatch { namespaces, pods }, true),
        (pods, namespaces) => {
            for (field, error) in [
                ("spec.selector", pods.as_ref().err()),
                ("spec.namespaceSelector", namespaces.as_ref().err()),
            ] {
                if let Some(e) = error {
                    b.warnings.push(format!(
                        "{key}: {field}: {e}: the policy denies every endpoint it could select \
                         until fixed"
                    ));
                }
            }
            let namespaces = namespaces.unwrap_or(NsConstraint::Any);
            (
                EndpointMatch {
                    namespaces,
                    pods: Selector::All,
                },
                false,
            )
        }
    };
    let applies = Some(applies);

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
        if !selector_valid {
            out.push(IrRule::new(RuleAction::Deny));
            match dir {
                Direction::Ingress => ir.ingress = Some(out),
                Direction::Egress => ir.egress = Some(out),
            }
            continue;
        }
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
