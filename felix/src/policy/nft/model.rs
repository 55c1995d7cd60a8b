//! The nftables ruleset as data: sets, chains and rules made of a small closed list of
//! statements, each of which has one nft text form (for goldens and `nft -f`) and one
//! netlink encoding (`encode.rs`), kept identical to what `nft` itself generates so that
//! `nft list` shows the same ruleset whichever way it was loaded.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::policy::ir::{Family, PortRange, proto_name};
use crate::policy::names::TABLE;

/// `ct state` bits (`NF_CT_STATE_*`).
pub const CT_INVALID: u32 = 1;
pub const CT_ESTABLISHED: u32 = 2;
pub const CT_RELATED: u32 = 4;

/// Key (and data) type of a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetType {
    Addr(Family),
    /// `ipv4_addr . inet_proto . inet_service` (or IPv6).
    AddrProtoPort(Family),
    /// `ifname : verdict`.
    IfnameVerdict,
}

/// One set element.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Elem {
    Addr(IpAddr),
    /// An inclusive address range (interval sets).
    Range(IpAddr, IpAddr),
    AddrProtoPort(IpAddr, u8, u16),
    /// Interface name mapped to a verdict.
    Iface(String, Verdict),
}

/// A named set or map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftSet {
    pub name: String,
    pub ty: SetType,
    pub interval: bool,
    pub elements: Vec<Elem>,
}

/// Where a packet goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

/// Source or destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
}

/// Input or output interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfDir {
    In,
    Out,
}

/// One statement of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    /// `meta nfproto ipv4`
    NfProto(Family),
    /// `meta l4proto tcp` / `meta l4proto != tcp`
    L4Proto {
        proto: u8,
        negate: bool,
    },
    /// `ip saddr @set` / `ip6 daddr != @set`
    Addr {
        family: Family,
        dir: Dir,
        set: String,
        negate: bool,
    },
    /// `ip daddr . meta l4proto . th dport @set`
    AddrPort {
        family: Family,
        dir: Dir,
        set: String,
    },
    /// `th dport 80`, `th dport 1000-2000`, `th sport != 53`
    Port {
        dir: Dir,
        range: PortRange,
        negate: bool,
    },
    /// `icmp type 8 [icmp code 0]` (after `meta l4proto icmp`)
    Icmp {
        v6: bool,
        icmp_type: u8,
        code: Option<u8>,
    },
    /// `ct state established,related` / `ct state invalid`
    CtState(u32),
    /// `meta mark & BIT != 0`
    MarkSet(u32),
    /// `meta mark set meta mark | BIT` (or `& ~BIT` when `on` is false)
    SetMark {
        bit: u32,
        on: bool,
    },
    /// `iifname "tw*"`: the interface name starts with `prefix`.
    IfnamePrefix {
        iface: IfDir,
        prefix: String,
    },
    /// `iifname vmap @map`
    Vmap {
        iface: IfDir,
        map: String,
    },
    /// `log prefix "..."`
    Log(String),
    Masquerade,
    Verdict(Verdict),
}

/// A rule: statements in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftRule(pub Vec<Stmt>);

/// Netfilter hook of a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Input,
    Forward,
    Postrouting,
}

/// Base chain parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub hook: Hook,
    pub priority: i32,
    /// `nat` when true, `filter` otherwise.
    pub nat: bool,
}

/// A chain and its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftChain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<NftRule>,
}

/// The whole table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, NftSet>,
    pub chains: BTreeMap<String, NftChain>,
}

fn family_kw(f: Family) -> &'static str {
    match f {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

fn dir_kw(d: Dir) -> (&'static str, &'static str) {
    match d {
        Dir::Src => ("saddr", "sport"),
        Dir::Dst => ("daddr", "dport"),
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => write!(f, "accept"),
            Verdict::Drop => write!(f, "drop"),
            Verdict::Return => write!(f, "return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

fn range_text(r: &PortRange) -> String {
    if r.first == r.last {
        r.first.to_string()
    } else {
        format!("{}-{}", r.first, r.last)
    }
}

fn ct_text(bits: u32) -> String {
    let mut names = Vec::new();
    for (bit, name) in [
        (CT_INVALID, "invalid"),
        (CT_ESTABLISHED, "established"),
        (CT_RELATED, "related"),
    ] {
        if bits & bit != 0 {
            names.push(name);
        }
    }
    names.join(",")
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::NfProto(fam) => match fam {
                Family::V4 => write!(f, "meta nfproto ipv4"),
                Family::V6 => write!(f, "meta nfproto ipv6"),
            },
            Stmt::L4Proto { proto, negate } => {
                let op = if *negate { "!= " } else { "" };
                let name = match proto {
                    1 => "icmp".to_owned(),
                    58 => "ipv6-icmp".to_owned(),
                    p => proto_name(*p),
                };
                write!(f, "meta l4proto {op}{name}")
            }
            Stmt::Addr {
                family,
                dir,
                set,
                negate,
            } => {
                let op = if *negate { "!= " } else { "" };
                write!(f, "{} {} {op}@{set}", family_kw(*family), dir_kw(*dir).0)
            }
            Stmt::AddrPort { family, dir, set } => {
                let (a, p) = dir_kw(*dir);
                write!(
                    f,
                    "{} {a} . meta l4proto . th {p} @{set}",
                    family_kw(*family)
                )
            }
            Stmt::Port { dir, range, negate } => {
                let op = if *negate { "!= " } else { "" };
                write!(f, "th {} {op}{}", dir_kw(*dir).1, range_text(range))
            }
            Stmt::Icmp {
                v6,
                icmp_type,
                code,
            } => {
                let kw = if *v6 { "icmpv6" } else { "icmp" };
                write!(f, "{kw} type {icmp_type}")?;
                if let Some(c) = code {
                    write!(f, " {kw} code {c}")?;
                }
                Ok(())
            }
            Stmt::CtState(bits) => write!(f, "ct state {}", ct_text(*bits)),
            Stmt::MarkSet(bit) => write!(f, "meta mark & {bit:#010x} != 0"),
            Stmt::SetMark { bit, on: true } => {
                write!(f, "meta mark set meta mark | {bit:#010x}")
            }
            Stmt::SetMark { bit, on: false } => {
                write!(f, "meta mark set meta mark & {:#010x}", !bit)
            }
            Stmt::IfnamePrefix { iface, prefix } => {
                let kw = match iface {
                    IfDir::In => "iifname",
                    IfDir::Out => "oifname",
                };
                write!(f, "{kw} \"{prefix}*\"")
            }
            Stmt::Vmap { iface, map } => {
                let kw = match iface {
                    IfDir::In => "iifname",
                    IfDir::Out => "oifname",
                };
                write!(f, "{kw} vmap @{map}")
            }
            Stmt::Log(prefix) => write!(f, "log prefix \"{prefix}\""),
            Stmt::Masquerade => write!(f, "masquerade"),
            Stmt::Verdict(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Display for NftRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(" "))
    }
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elem::Addr(a) => write!(f, "{a}"),
            Elem::Range(a, b) if a == b => write!(f, "{a}"),
            Elem::Range(a, b) => write!(f, "{a}-{b}"),
            Elem::AddrProtoPort(a, p, port) => write!(f, "{a} . {} . {port}", proto_name(*p)),
            Elem::Iface(name, v) => write!(f, "\"{name}\" : {v}"),
        }
    }
}

impl NftSet {
    /// The set's declaration in `nft -f` syntax (one tab indented).
    pub fn text(&self) -> String {
        let mut out = String::new();
        let kw = if self.ty == SetType::IfnameVerdict {
            "map"
        } else {
            "set"
        };
        let _ = writeln!(out, "\t{kw} {} {{", self.name);
        let ty = match self.ty {
            SetType::Addr(Family::V4) => "ipv4_addr",
            SetType::Addr(Family::V6) => "ipv6_addr",
            SetType::AddrProtoPort(Family::V4) => "ipv4_addr . inet_proto . inet_service",
            SetType::AddrProtoPort(Family::V6) => "ipv6_addr . inet_proto . inet_service",
            SetType::IfnameVerdict => "ifname : verdict",
        };
        let _ = writeln!(out, "\t\ttype {ty}");
        if self.interval {
            let _ = writeln!(out, "\t\tflags interval");
        }
        if !self.elements.is_empty() {
            let elems: Vec<String> = self.elements.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(",\n\t\t\t     "));
        }
        let _ = writeln!(out, "\t}}");
        out
    }
}

impl NftChain {
    /// The chain in `nft -f` syntax (one tab indented).
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\tchain {} {{", self.name);
        if let Some(b) = &self.base {
            let hook = match b.hook {
                Hook::Input => "input",
                Hook::Forward => "forward",
                Hook::Postrouting => "postrouting",
            };
            let ty = if b.nat { "nat" } else { "filter" };
            let _ = writeln!(
                out,
                "\t\ttype {ty} hook {hook} priority {}; policy accept;",
                b.priority
            );
        }
        for rule in &self.rules {
            let _ = writeln!(out, "\t\t{rule}");
        }
        let _ = writeln!(out, "\t}}");
        out
    }
}

impl Ruleset {
    /// The whole table in `nft -f` syntax.
    pub fn text(&self) -> String {
        let mut out = format!("table inet {TABLE} {{\n");
        let mut first = true;
        for set in self.sets.values() {
            if !first {
                out.push('\n');
            }
            first = false;
            out.push_str(&set.text());
        }
        for chain in self.chains.values() {
            if !first {
                out.push('\n');
            }
            first = false;
            out.push_str(&chain.text());
        }
        out.push_str("}\n");
        out
    }
}
