//! IR → iptables chains (`iptables-restore` syntax) and ipsets (`ipset restore` syntax).
//! Every chain and set is prefixed `twill-`; felix's only rules outside them are the
//! jumps `FORWARD → twill-fwd`, `INPUT → twill-in` and `POSTROUTING → twill-post`.
//!
//! iptables has one verdict per table and hook, so unlike nftables the two directions of
//! pod-to-pod traffic are chained inside `twill-fwd`: the source's egress chain, then the
//! destination's ingress chain. An allow sets a mark bit and returns; the caller checks
//! it (the Calico way), and a `Pass` sets another bit. Marks are cleared before and after.
//!
//! ```text
//! twill-fwd   ct established,related ACCEPT; clear; twill-egr-disp; clear; twill-ing-disp; clear
//! twill-in    ct established,related ACCEPT; ICMPv6 ND ACCEPT; clear; twill-egr-disp; clear;
//!             from tw+: failsafe ports RETURN; DROP (when the endpoint-to-host action is
//!             Drop): after the pod's egress policy, as allows only mark and return here
//! twill-egr-disp / twill-ing-disp   -i/-o IFACE -g twill-egr-/twill-ing-IFACE; -i/-o tw+
//!             DROP: a `tw*` interface felix knows no endpoint of is shut, both ways
//! twill-egr-IFACE  ct invalid DROP; per policy: -j twill-pe-H, allowed? RETURN,
//!                  passed? -g twill-egrk-IFACE; DROP when isolated
//! twill-pe-H       MATCH -g twill-allow | -g twill-pass | -j DROP | -j LOG
//! twill-post (nat) natpools src, not pools dst: MASQUERADE
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use super::super::nft::model::Elem;
use super::super::nft::render::intervals;
use crate::dataplane::names::HOST_VETH_PREFIX;
use crate::policy::ir::{
    Direction, Element, EndpointToHostAction, Family, HostPolicy, Ir, IrEndpoint, IrRule, IrSet,
    RuleAction, SetDef, Side,
};
use crate::policy::names::{
    ACCEPT_MARK, IPT_PREFIX, PASS_MARK, endpoint_chain, endpoint_pass_chain, policy_chain,
};

pub const FWD: &str = "twill-fwd";
pub const INPUT: &str = "twill-in";
pub const POST: &str = "twill-post";
pub const ING_DISPATCH: &str = "twill-ing-disp";
pub const EGR_DISPATCH: &str = "twill-egr-disp";
pub const ALLOW: &str = "twill-allow";
pub const PASS: &str = "twill-pass";

/// `(builtin chain, table, twill chain)` hooks.
pub const HOOKS: [(&str, &str, &str); 3] = [
    ("FORWARD", "filter", FWD),
    ("INPUT", "filter", INPUT),
    ("POSTROUTING", "nat", POST),
];

/// ipset types felix uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpsetType {
    HashIp,
    HashNet,
    HashIpPort,
}

/// One ipset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipset {
    pub name: String,
    pub ty: IpsetType,
    pub family: Family,
    pub entries: Vec<String>,
}

impl Ipset {
    /// `create NAME TYPE family inet`.
    pub fn create_line(&self, name: &str) -> String {
        let ty = match self.ty {
            IpsetType::HashIp => "hash:ip",
            IpsetType::HashNet => "hash:net",
            IpsetType::HashIpPort => "hash:ip,port",
        };
        let fam = match self.family {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        };
        format!("create {name} {ty} family {fam} maxelem 1048576 -exist")
    }
}

/// The chains of one family and table: name → rules (`-A NAME` omitted).
pub type Chains = BTreeMap<String, Vec<String>>;

/// Everything iptables-side for one IR.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IptRuleset {
    pub ipsets: BTreeMap<String, Ipset>,
    /// `[v4, v6]` filter chains.
    pub filter: [Chains; 2],
    /// `[v4, v6]` nat chains.
    pub nat: [Chains; 2],
}

fn fi(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// The ipset name of an IR set.
pub fn ipset_name(ir_name: &str) -> String {
    format!("{IPT_PREFIX}{ir_name}")
}

/// The iptables name of an nft-style chain name.
pub fn chain_name(name: &str) -> String {
    format!("{IPT_PREFIX}{name}")
}

fn pool_set(family: Family, nat: bool) -> String {
    format!(
        "{IPT_PREFIX}{}pools{}",
        if nat { "nat" } else { "" },
        family.digit()
    )
}

/// Inclusive address range → the fewest CIDRs covering it (never /0: ipset refuses it).
fn range_to_cidrs(family: Family, a: IpAddr, z: IpAddr) -> Vec<String> {
    let bits: u32 = if family == Family::V4 { 32 } else { 128 };
    let to = |x: IpAddr| match x {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    let (mut lo, hi) = (to(a), to(z));
    let mut out = Vec::new();
    // Bounded by 2 * bits iterations for any range.
    for _ in 0..(2 * bits + 2) {
        if lo > hi {
            break;
        }
        let mut size = if lo == 0 {
            bits - 1
        } else {
            lo.trailing_zeros().min(bits - 1)
        };
        while size > 0 && lo + ((1u128 << size) - 1) > hi {
            size -= 1;
        }
        let addr = match family {
            Family::V4 => IpAddr::V4(std::net::Ipv4Addr::from(lo as u32)),
            Family::V6 => IpAddr::V6(std::net::Ipv6Addr::from(lo)),
        };
        out.push(format!("{addr}/{}", bits - size));
        let step = 1u128 << size;
        match lo.checked_add(step) {
            Some(n) => lo = n,
            None => break,
        }
    }
    out
}

fn net_entries(family: Family, nets: &[ipnet::IpNet], except: &[ipnet::IpNet]) -> Vec<String> {
    intervals(family, nets, except)
        .into_iter()
        .flat_map(|e| match e {
            Elem::Range(a, z) => range_to_cidrs(family, a, z),
            _ => Vec::new(),
        })
        .collect()
}

/// An ipset entry for a dynamic element.
pub fn entry(e: &Element) -> String {
    match e {
        Element::Addr(a) => a.to_string(),
        Element::AddrPort(a, proto, port) => {
            let p = match proto {
                6 => "tcp".to_owned(),
                17 => "udp".to_owned(),
                132 => "sctp".to_owned(),
                n => n.to_string(),
            };
            format!("{a},{p}:{port}")
        }
    }
}

/// One IR set as an ipset.
pub fn render_ipset(name: &str, set: &IrSet) -> Ipset {
    let family = set.def.family();
    let (ty, entries) = match &set.def {
        SetDef::Members { .. } => (IpsetType::HashIp, set.elements.iter().map(entry).collect()),
        SetDef::NamedPort { .. } => (
            IpsetType::HashIpPort,
            set.elements.iter().map(entry).collect(),
        ),
        SetDef::Nets { nets, except, .. } => {
            (IpsetType::HashNet, net_entries(family, nets, except))
        }
    };
    Ipset {
        name: ipset_name(name),
        ty,
        family,
        entries,
    }
}

/// The four pool sets.
pub fn pool_ipsets(ir: &Ir) -> Vec<Ipset> {
    let mut out = Vec::new();
    for family in Family::BOTH {
        for nat in [false, true] {
            let nets: Vec<ipnet::IpNet> = if nat {
                &ir.nat.nat_outgoing
            } else {
                &ir.nat.pools
            }
            .iter()
            .copied()
            .collect();
            out.push(Ipset {
                name: pool_set(family, nat),
                ty: IpsetType::HashNet,
                family,
                entries: net_entries(family, &nets, &[]),
            });
        }
    }
    out
}

fn clear_marks() -> String {
    format!("-j MARK --set-xmark 0x0/{:#x}", ACCEPT_MARK | PASS_MARK)
}

/// The host-facing rules at the end of `twill-in` (after the pod's egress policy).
pub fn host_rules(host: &HostPolicy, family: Family) -> Vec<String> {
    let mut rules = Vec::new();
    if host.endpoint_to_host == EndpointToHostAction::Drop {
        for p in host.effective_failsafe() {
            let proto = proto_arg(p.protocol, family);
            rules.push(format!(
                "-i {HOST_VETH_PREFIX}+ -p {proto} -m {proto} --dport {} -j RETURN",
                p.port
            ));
        }
        rules.push(format!("-i {HOST_VETH_PREFIX}+ -j DROP"));
    }
    rules
}

/// Chains that do not depend on the IR's policies: hooks' targets and verdict helpers.
pub fn fixed_chains(family: Family, host: &HostPolicy) -> (Chains, Chains) {
    let mut filter = Chains::new();
    let established = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".to_owned();
    filter.insert(
        FWD.to_owned(),
        vec![
            established.clone(),
            clear_marks(),
            format!("-j {EGR_DISPATCH}"),
            clear_marks(),
            format!("-j {ING_DISPATCH}"),
            clear_marks(),
        ],
    );
    let mut input = vec![established];
    if family == Family::V6 {
        for t in [133, 135, 136] {
            input.push(format!("-p ipv6-icmp -m icmp6 --icmpv6-type {t} -j ACCEPT"));
        }
    }
    input.extend([clear_marks(), format!("-j {EGR_DISPATCH}"), clear_marks()]);
    input.extend(host_rules(host, family));
    filter.insert(INPUT.to_owned(), input);
    filter.insert(
        ALLOW.to_owned(),
        vec![format!(
            "-j MARK --set-xmark {ACCEPT_MARK:#x}/{ACCEPT_MARK:#x}"
        )],
    );
    filter.insert(
        PASS.to_owned(),
        vec![format!("-j MARK --set-xmark {PASS_MARK:#x}/{PASS_MARK:#x}")],
    );
    let mut nat = Chains::new();
    nat.insert(
        POST.to_owned(),
        vec![format!(
            "-m set --match-set {} src -m set ! --match-set {} dst -j MASQUERADE",
            pool_set(family, true),
            pool_set(family, false)
        )],
    );
    (filter, nat)
}

/// The dispatch chains of one family.
pub fn dispatch_chains(ir: &Ir) -> Chains {
    let mut c = Chains::new();
    let mut ingress: Vec<String> = ir
        .endpoints
        .keys()
        .map(|i| {
            format!(
                "-o {i} -g {}",
                chain_name(&endpoint_chain(i, Direction::Ingress))
            )
        })
        .collect();
    ingress.push(format!("-o {HOST_VETH_PREFIX}+ -j DROP"));
    c.insert(ING_DISPATCH.to_owned(), ingress);
    let mut egress: Vec<String> = ir
        .endpoints
        .keys()
        .map(|i| {
            format!(
                "-i {i} -g {}",
                chain_name(&endpoint_chain(i, Direction::Egress))
            )
        })
        .collect();
    egress.push(format!("-i {HOST_VETH_PREFIX}+ -j DROP"));
    c.insert(EGR_DISPATCH.to_owned(), egress);
    c
}

fn proto_arg(p: u8, family: Family) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        1 => "icmp".into(),
        58 if family == Family::V6 => "ipv6-icmp".into(),
        n => n.to_string(),
    }
}

fn ports_text(ranges: &[crate::policy::ir::PortRange]) -> String {
    ranges
        .iter()
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}:{}", r.first, r.last)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn side_args(out: &mut String, side: &Side, dir: &str) {
    for m in &side.sets {
        let neg = if m.negate { "! " } else { "" };
        let _ = write!(out, " -m set {neg}--match-set {} {dir}", ipset_name(&m.set));
    }
    let ports_kw = if dir == "src" { "--sports" } else { "--dports" };
    if let Some(r) = side.port {
        let _ = write!(out, " -m multiport {ports_kw} {}", ports_text(&[r]));
    }
    if !side.not_ports.is_empty() {
        let _ = write!(
            out,
            " -m multiport ! {ports_kw} {}",
            ports_text(&side.not_ports)
        );
    }
    if let Some(set) = &side.named_port {
        let _ = write!(out, " -m set --match-set {} {dir},{dir}", ipset_name(set));
    }
}

/// One IR rule in `family`'s syntax, or `None` when it is for the other family.
pub fn render_rule(r: &IrRule, family: Family) -> Option<String> {
    if r.family.is_some_and(|f| f != family) {
        return None;
    }
    let mut out = String::new();
    if let Some(p) = r.protocol {
        let _ = write!(out, " -p {}", proto_arg(p, family));
    }
    if let Some(p) = r.not_protocol {
        let _ = write!(out, " ! -p {}", proto_arg(p, family));
    }
    if let Some(t) = r.icmp_type {
        let code = r.icmp_code.map(|c| format!("/{c}")).unwrap_or_default();
        match family {
            Family::V4 => {
                let _ = write!(out, " -m icmp --icmp-type {t}{code}");
            }
            Family::V6 => {
                let _ = write!(out, " -m icmp6 --icmpv6-type {t}{code}");
            }
        }
    }
    side_args(&mut out, &r.src, "src");
    side_args(&mut out, &r.dst, "dst");
    let target = match r.action {
        RuleAction::Allow => format!(" -g {ALLOW}"),
        RuleAction::Pass => format!(" -g {PASS}"),
        RuleAction::Deny => " -j DROP".to_owned(),
        RuleAction::Log => format!(
            " -j LOG --log-prefix \"{}\"",
            r.log_prefix.clone().unwrap_or_default()
        ),
    };
    out.push_str(&target);
    Some(out.trim_start().to_owned())
}

/// The chain of one policy and direction, per family.
pub fn render_policy_chain(
    ir: &Ir,
    key: &str,
    dir: Direction,
    family: Family,
) -> Option<(String, Vec<String>)> {
    let rules = ir.policies.get(key)?.rules(dir)?;
    Some((
        chain_name(&policy_chain(key, dir)),
        rules
            .iter()
            .filter_map(|r| render_rule(r, family))
            .collect(),
    ))
}

/// The chains of one endpoint (per direction, plus the chains a `Pass` goes to).
pub fn render_endpoint_chains(ir: &Ir, iface: &str, ep: &IrEndpoint) -> Vec<(String, Vec<String>)> {
    let allowed = format!("-m mark --mark {ACCEPT_MARK:#x}/{ACCEPT_MARK:#x} -j RETURN");
    let mut out = Vec::new();
    for dir in Direction::BOTH {
        let d = ep.direction(dir);
        let pass_chain = chain_name(&endpoint_pass_chain(iface, dir));
        let any_pass = d
            .global
            .iter()
            .any(|k| ir.policies.get(k).is_some_and(|p| p.passes(dir)));
        let k8s = || {
            let mut v = Vec::new();
            for k in &d.kubernetes {
                v.push(format!("-j {}", chain_name(&policy_chain(k, dir))));
                v.push(allowed.clone());
            }
            v
        };
        let mut rules = vec!["-m conntrack --ctstate INVALID -j DROP".to_owned()];
        for k in &d.global {
            rules.push(format!("-j {}", chain_name(&policy_chain(k, dir))));
            rules.push(allowed.clone());
            if ir.policies.get(k).is_some_and(|p| p.passes(dir)) {
                rules.push(format!(
                    "-m mark --mark {PASS_MARK:#x}/{PASS_MARK:#x} -g {pass_chain}"
                ));
            }
        }
        rules.extend(k8s());
        if d.isolated() {
            rules.push("-j DROP".to_owned());
        }
        out.push((chain_name(&endpoint_chain(iface, dir)), rules));
        if any_pass {
            let mut rules = vec![format!("-j MARK --set-xmark 0x0/{PASS_MARK:#x}")];
            rules.extend(k8s());
            if !d.kubernetes.is_empty() {
                rules.push("-j DROP".to_owned());
            }
            out.push((pass_chain, rules));
        }
    }
    out
}

/// Everything for `ir`.
pub fn render(ir: &Ir) -> IptRuleset {
    let mut rs = IptRuleset::default();
    for set in pool_ipsets(ir) {
        rs.ipsets.insert(set.name.clone(), set);
    }
    for (name, set) in &ir.sets {
        let s = render_ipset(name, set);
        rs.ipsets.insert(s.name.clone(), s);
    }
    for family in Family::BOTH {
        let (mut filter, nat) = fixed_chains(family, &ir.host);
        filter.extend(dispatch_chains(ir));
        for key in ir.policies.keys() {
            for dir in Direction::BOTH {
                if let Some((name, rules)) = render_policy_chain(ir, key, dir, family) {
                    filter.insert(name, rules);
                }
            }
        }
        for (iface, ep) in &ir.endpoints {
            for (name, rules) in render_endpoint_chains(ir, iface, ep) {
                filter.insert(name, rules);
            }
        }
        rs.filter[fi(family)] = filter;
        rs.nat[fi(family)] = nat;
    }
    rs
}

impl IptRuleset {
    /// `ipset restore` input creating every set (for goldens).
    pub fn ipset_text(&self) -> String {
        let mut out = String::new();
        for set in self.ipsets.values() {
            let _ = writeln!(out, "{}", set.create_line(&set.name));
            for e in &set.entries {
                let _ = writeln!(out, "add {} {e} -exist", set.name);
            }
        }
        out
    }

    /// `iptables-restore` (v4) or `ip6tables-restore` (v6) input for the whole ruleset
    /// (for goldens; the applier adds hooks and deletions).
    pub fn restore_text(&self, family: Family) -> String {
        let mut out = String::new();
        for (table, chains) in [
            ("filter", &self.filter[fi(family)]),
            ("nat", &self.nat[fi(family)]),
        ] {
            let _ = writeln!(out, "*{table}");
            for name in chains.keys() {
                let _ = writeln!(out, ":{name} - [0:0]");
            }
            for (name, rules) in chains {
                for r in rules {
                    let _ = writeln!(out, "-A {name} {r}");
                }
            }
            let _ = writeln!(out, "COMMIT");
        }
        out
    }

    pub fn chains(&self, family: Family) -> [&Chains; 2] {
        [&self.filter[fi(family)], &self.nat[fi(family)]]
    }
}
