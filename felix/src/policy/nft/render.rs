//! IR → nftables ruleset. One table `inet twill`:
//!
//! ```text
//! host-in      input,   priority -1: ct established,related accept; ICMPv6 ND accept;
//!                                   from tw*: failsafe ports accept; drop (when the
//!                                   endpoint-to-host action is Drop)
//! fwd-egress   forward, priority 0: ct established,related accept; iifname "tw*" jump egr-disp
//! fwd-ingress  forward, priority 1: ct established,related accept; oifname "tw*" jump ing-disp
//! in-egress    input,   priority 0: ct established,related accept; ICMPv6 ND accept;
//!                                   iifname "tw*" jump egr-disp (pod → host is pod egress)
//! egr-disp / ing-disp               iifname/oifname vmap @eps-egress/@eps-ingress (goto
//!                                   the endpoint's chain); drop: a `tw*` interface felix
//!                                   knows no endpoint of is shut, both ways
//! nat-post     nat postrouting 100: saddr @natpoolsN daddr != @poolsN masquerade
//! egr-IFACE / ing-IFACE             one per local endpoint and direction: ct invalid drop,
//!                                   jump to each global policy (Pass → goto egrk-/ingk-),
//!                                   jump to each Kubernetes policy, drop when isolated
//! pe-HASH / pi-HASH                 one per policy and direction; accept / drop / log /
//!                                   pass (mark + return)
//! sets m4-/m6- (members), n4-/n6- (nets, interval), p4-/p6- (named ports)
//! ```
//!
//! Accepting in one base chain does not skip the other, so pod-to-pod traffic on one node
//! passes the source's egress (fwd-egress) and then the destination's ingress
//! (fwd-ingress), and pod-to-host traffic passes both host-in and the pod's egress
//! policy. Host-originated traffic (kubelet probes) goes through `output`, which the table
//! does not filter; its replies are established.

use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{
    BaseChain, CT_ESTABLISHED, CT_INVALID, CT_RELATED, Dir, Elem, Hook, IfDir, NftChain, NftRule,
    NftSet, Ruleset, SetType, Stmt, Verdict,
};
use crate::dataplane::names::HOST_VETH_PREFIX;
use crate::policy::ir::{
    Direction, Element, EndpointToHostAction, Family, HostPolicy, Ir, IrEndpoint, IrRule, IrSet,
    PortRange, RuleAction, SetDef, Side,
};
use crate::policy::names::{PASS_MARK, endpoint_chain, endpoint_pass_chain, policy_chain};

pub const CHAIN_FWD_EGRESS: &str = "fwd-egress";
pub const CHAIN_FWD_INGRESS: &str = "fwd-ingress";
pub const CHAIN_IN_EGRESS: &str = "in-egress";
pub const CHAIN_HOST_IN: &str = "host-in";
pub const CHAIN_EGRESS_DISPATCH: &str = "egr-disp";
pub const CHAIN_INGRESS_DISPATCH: &str = "ing-disp";
pub const CHAIN_NAT: &str = "nat-post";
pub const MAP_INGRESS: &str = "eps-ingress";
pub const MAP_EGRESS: &str = "eps-egress";

/// `pools4`/`pools6` hold every pool, `natpools4`/`natpools6` the natOutgoing ones.
pub fn pool_set_name(family: Family, nat: bool) -> String {
    format!("{}pools{}", if nat { "nat" } else { "" }, family.digit())
}

/// The whole table for `ir`.
pub fn render(ir: &Ir) -> Ruleset {
    let mut rs = Ruleset::default();
    for set in fixed_sets(ir) {
        rs.sets.insert(set.name.clone(), set);
    }
    for (name, set) in &ir.sets {
        rs.sets.insert(name.clone(), render_set(name, set));
    }
    for chain in base_chains(&ir.host) {
        rs.chains.insert(chain.name.clone(), chain);
    }
    for key in ir.policies.keys() {
        for dir in Direction::BOTH {
            if let Some(chain) = render_policy_chain(ir, key, dir) {
                rs.chains.insert(chain.name.clone(), chain);
            }
        }
    }
    for (iface, ep) in &ir.endpoints {
        for chain in render_endpoint_chains(ir, iface, ep) {
            rs.chains.insert(chain.name.clone(), chain);
        }
    }
    rs
}

/// The two verdict maps and the four pool sets.
pub fn fixed_sets(ir: &Ir) -> Vec<NftSet> {
    let mut out = Vec::new();
    for (map, dir) in [
        (MAP_INGRESS, Direction::Ingress),
        (MAP_EGRESS, Direction::Egress),
    ] {
        out.push(NftSet {
            name: map.to_owned(),
            ty: SetType::IfnameVerdict,
            interval: false,
            elements: ir
                .endpoints
                .keys()
                .map(|iface| vmap_elem(iface, dir))
                .collect(),
        });
    }
    for family in Family::BOTH {
        for nat in [false, true] {
            let nets = if nat {
                &ir.nat.nat_outgoing
            } else {
                &ir.nat.pools
            };
            let nets: Vec<IpNet> = nets
                .iter()
                .filter(|n| Family::of_net(n) == family)
                .copied()
                .collect();
            out.push(NftSet {
                name: pool_set_name(family, nat),
                ty: SetType::Addr(family),
                interval: true,
                elements: intervals(family, &nets, &[]),
            });
        }
    }
    out
}

/// The verdict-map element sending an interface to its endpoint chain (a goto from the
/// dispatch chain, so that the endpoint chain's end returns to the base chain and only
/// unknown interfaces reach the dispatch chain's drop).
pub fn vmap_elem(iface: &str, dir: Direction) -> Elem {
    Elem::Iface(iface.to_owned(), Verdict::Goto(endpoint_chain(iface, dir)))
}

/// One IR set as an nftables set.
pub fn render_set(name: &str, set: &IrSet) -> NftSet {
    let family = set.def.family();
    let (ty, interval, elements) = match &set.def {
        SetDef::Members { .. } => (
            SetType::Addr(family),
            false,
            set.elements.iter().map(element).collect(),
        ),
        SetDef::NamedPort { .. } => (
            SetType::AddrProtoPort(family),
            false,
            set.elements.iter().map(element).collect(),
        ),
        SetDef::Nets { nets, except, .. } => {
            (SetType::Addr(family), true, intervals(family, nets, except))
        }
    };
    NftSet {
        name: name.to_owned(),
        ty,
        interval,
        elements,
    }
}

/// One dynamic element.
pub fn element(e: &Element) -> Elem {
    match e {
        Element::Addr(a) => Elem::Addr(*a),
        Element::AddrPort(a, p, port) => Elem::AddrProtoPort(*a, *p, *port),
    }
}

fn to_int(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_int(family: Family, n: u128) -> IpAddr {
    match family {
        // Values come from addresses of the same family, so they fit.
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::from(n)),
    }
}

/// `nets` minus `except` as sorted, disjoint, merged inclusive ranges.
pub fn intervals(family: Family, nets: &[IpNet], except: &[IpNet]) -> Vec<Elem> {
    let span = |n: &IpNet| (to_int(n.network()), to_int(n.broadcast()));
    let mut ranges: Vec<(u128, u128)> = nets
        .iter()
        .filter(|n| Family::of_net(n) == family)
        .map(span)
        .collect();
    ranges.sort();
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    for (ea, eb) in except
        .iter()
        .filter(|n| Family::of_net(n) == family)
        .map(span)
    {
        let mut next = Vec::new();
        for (a, b) in merged {
            if eb < a || ea > b {
                next.push((a, b));
                continue;
            }
            if ea > a {
                next.push((a, ea - 1));
            }
            if eb < b {
                next.push((eb + 1, b));
            }
        }
        merged = next;
    }
    merged
        .into_iter()
        .map(|(a, b)| Elem::Range(from_int(family, a), from_int(family, b)))
        .collect()
}

fn rule(stmts: Vec<Stmt>) -> NftRule {
    NftRule(stmts)
}

fn workload_iface(iface: IfDir) -> Stmt {
    Stmt::IfnamePrefix {
        iface,
        prefix: HOST_VETH_PREFIX.to_owned(),
    }
}

fn established() -> NftRule {
    rule(vec![
        Stmt::CtState(CT_ESTABLISHED | CT_RELATED),
        Stmt::Verdict(Verdict::Accept),
    ])
}

/// Neighbour discovery between a pod and its host must work whatever the policy.
fn neighbour_discovery() -> Vec<NftRule> {
    [133u8, 135, 136]
        .into_iter()
        .map(|nd| {
            rule(vec![
                Stmt::L4Proto {
                    proto: 58,
                    negate: false,
                },
                Stmt::Icmp {
                    v6: true,
                    icmp_type: nd,
                    code: None,
                },
                Stmt::Verdict(Verdict::Accept),
            ])
        })
        .collect()
}

/// The host-facing chain's rules (`host-in`).
pub fn host_rules(host: &HostPolicy) -> Vec<NftRule> {
    let mut rules = vec![established()];
    rules.extend(neighbour_discovery());
    if host.endpoint_to_host == EndpointToHostAction::Drop {
        for p in host.effective_failsafe() {
            rules.push(rule(vec![
                workload_iface(IfDir::In),
                Stmt::L4Proto {
                    proto: p.protocol,
                    negate: false,
                },
                Stmt::Port {
                    dir: Dir::Dst,
                    range: PortRange {
                        first: p.port,
                        last: p.port,
                    },
                    negate: false,
                },
                Stmt::Verdict(Verdict::Accept),
            ]));
        }
        rules.push(rule(vec![
            workload_iface(IfDir::In),
            Stmt::Verdict(Verdict::Drop),
        ]));
    }
    rules
}

fn dispatch_chain(name: &str, iface: IfDir, map: &str) -> NftChain {
    NftChain {
        name: name.to_owned(),
        base: None,
        rules: vec![
            rule(vec![Stmt::Vmap {
                iface,
                map: map.to_owned(),
            }]),
            rule(vec![Stmt::Verdict(Verdict::Drop)]),
        ],
    }
}

fn filter_chain(name: &str, hook: Hook, priority: i32, rules: Vec<NftRule>) -> NftChain {
    NftChain {
        name: name.to_owned(),
        base: Some(BaseChain {
            hook,
            priority,
            nat: false,
        }),
        rules,
    }
}

/// The base chains and the two dispatch chains.
pub fn base_chains(host: &HostPolicy) -> Vec<NftChain> {
    let to_dispatch = |iface: IfDir, chain: &str| {
        rule(vec![
            workload_iface(iface),
            Stmt::Verdict(Verdict::Jump(chain.to_owned())),
        ])
    };
    let mut input = vec![established()];
    input.extend(neighbour_discovery());
    input.push(to_dispatch(IfDir::In, CHAIN_EGRESS_DISPATCH));
    let mut nat = Vec::new();
    for family in Family::BOTH {
        nat.push(rule(vec![
            Stmt::Addr {
                family,
                dir: Dir::Src,
                set: pool_set_name(family, true),
                negate: false,
            },
            Stmt::Addr {
                family,
                dir: Dir::Dst,
                set: pool_set_name(family, false),
                negate: true,
            },
            Stmt::Masquerade,
        ]));
    }
    vec![
        filter_chain(CHAIN_HOST_IN, Hook::Input, -1, host_rules(host)),
        filter_chain(
            CHAIN_FWD_EGRESS,
            Hook::Forward,
            0,
            vec![established(), to_dispatch(IfDir::In, CHAIN_EGRESS_DISPATCH)],
        ),
        filter_chain(
            CHAIN_FWD_INGRESS,
            Hook::Forward,
            1,
            vec![
                established(),
                to_dispatch(IfDir::Out, CHAIN_INGRESS_DISPATCH),
            ],
        ),
        filter_chain(CHAIN_IN_EGRESS, Hook::Input, 0, input),
        dispatch_chain(CHAIN_EGRESS_DISPATCH, IfDir::In, MAP_EGRESS),
        dispatch_chain(CHAIN_INGRESS_DISPATCH, IfDir::Out, MAP_INGRESS),
        NftChain {
            name: CHAIN_NAT.to_owned(),
            base: Some(BaseChain {
                hook: Hook::Postrouting,
                priority: 100,
                nat: true,
            }),
            rules: nat,
        },
    ]
}

/// The chain of one policy in one direction, if the policy covers that direction.
pub fn render_policy_chain(ir: &Ir, key: &str, dir: Direction) -> Option<NftChain> {
    let policy = ir.policies.get(key)?;
    let rules = policy.rules(dir)?;
    Some(NftChain {
        name: policy_chain(key, dir),
        base: None,
        rules: rules.iter().map(render_rule).collect(),
    })
}

fn side_stmts(out: &mut Vec<Stmt>, family: Option<Family>, side: &Side, dir: Dir) {
    if let Some(family) = family {
        for m in &side.sets {
            out.push(Stmt::Addr {
                family,
                dir,
                set: m.set.clone(),
                negate: m.negate,
            });
        }
    }
    if let Some(range) = side.port {
        out.push(Stmt::Port {
            dir,
            range,
            negate: false,
        });
    }
    for range in &side.not_ports {
        out.push(Stmt::Port {
            dir,
            range: *range,
            negate: true,
        });
    }
    if let (Some(family), Some(set)) = (family, &side.named_port) {
        out.push(Stmt::AddrPort {
            family,
            dir,
            set: set.clone(),
        });
    }
}

/// One IR rule.
pub fn render_rule(r: &IrRule) -> NftRule {
    let mut out = Vec::new();
    let has_addr = [&r.src, &r.dst]
        .iter()
        .any(|s| !s.sets.is_empty() || s.named_port.is_some());
    if let Some(family) = r.family
        && !has_addr
    {
        out.push(Stmt::NfProto(family));
    }
    if let Some(proto) = r.protocol {
        out.push(Stmt::L4Proto {
            proto,
            negate: false,
        });
    }
    if let Some(proto) = r.not_protocol {
        out.push(Stmt::L4Proto {
            proto,
            negate: true,
        });
    }
    if let Some(t) = r.icmp_type {
        out.push(Stmt::Icmp {
            v6: r.protocol == Some(58),
            icmp_type: t,
            code: r.icmp_code,
        });
    }
    side_stmts(&mut out, r.family, &r.src, Dir::Src);
    side_stmts(&mut out, r.family, &r.dst, Dir::Dst);
    match r.action {
        RuleAction::Allow => out.push(Stmt::Verdict(Verdict::Accept)),
        RuleAction::Deny => out.push(Stmt::Verdict(Verdict::Drop)),
        RuleAction::Pass => {
            out.push(Stmt::SetMark {
                bit: PASS_MARK,
                on: true,
            });
            out.push(Stmt::Verdict(Verdict::Return));
        }
        RuleAction::Log => out.push(Stmt::Log(r.log_prefix.clone().unwrap_or_default())),
    }
    NftRule(out)
}

/// The chains of one local endpoint (per direction, plus the chain a `Pass` goes to).
pub fn render_endpoint_chains(ir: &Ir, iface: &str, ep: &IrEndpoint) -> Vec<NftChain> {
    let mut out = Vec::new();
    for dir in Direction::BOTH {
        let d = ep.direction(dir);
        let pass_chain = endpoint_pass_chain(iface, dir);
        let any_pass = d
            .global
            .iter()
            .any(|k| ir.policies.get(k).is_some_and(|p| p.passes(dir)));
        let k8s_jumps = || {
            d.kubernetes
                .iter()
                .map(|k| rule(vec![Stmt::Verdict(Verdict::Jump(policy_chain(k, dir)))]))
                .collect::<Vec<_>>()
        };
        let mut rules = vec![rule(vec![
            Stmt::CtState(CT_INVALID),
            Stmt::Verdict(Verdict::Drop),
        ])];
        for key in &d.global {
            rules.push(rule(vec![Stmt::Verdict(Verdict::Jump(policy_chain(
                key, dir,
            )))]));
            if ir.policies.get(key).is_some_and(|p| p.passes(dir)) {
                rules.push(rule(vec![
                    Stmt::MarkSet(PASS_MARK),
                    Stmt::SetMark {
                        bit: PASS_MARK,
                        on: false,
                    },
                    Stmt::Verdict(Verdict::Goto(pass_chain.clone())),
                ]));
            }
        }
        rules.extend(k8s_jumps());
        if d.isolated() {
            rules.push(rule(vec![Stmt::Verdict(Verdict::Drop)]));
        }
        out.push(NftChain {
            name: endpoint_chain(iface, dir),
            base: None,
            rules,
        });
        if any_pass {
            let mut rules = k8s_jumps();
            if !d.kubernetes.is_empty() {
                rules.push(rule(vec![Stmt::Verdict(Verdict::Drop)]));
            }
            out.push(NftChain {
                name: pass_chain,
                base: None,
                rules,
            });
        }
    }
    out
}
