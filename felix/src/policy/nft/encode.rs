//! Model → nf_tables netlink messages, byte for byte what `nft` sends for the same text
//! (checked by loading both ways and comparing `nft list`): expressions, sets with the
//! user data `nft` uses to print them, interval elements with their end markers.

use std::net::IpAddr;

use super::model::{Dir, Elem, Hook, IfDir, NftChain, NftRule, NftSet, SetType, Stmt, Verdict};
use super::netlink::{Batch, NLM_F_APPEND, NLM_F_CREATE, Writer, msg};
use crate::policy::ir::Family;
use crate::policy::names::TABLE;

// Attribute numbers (linux/netfilter/nf_tables.h).
const TABLE_NAME: u16 = 1;
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const CHAIN_POLICY: u16 = 5;
const CHAIN_TYPE: u16 = 7;
const HOOK_HOOKNUM: u16 = 1;
const HOOK_PRIORITY: u16 = 2;
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_EXPRESSIONS: u16 = 4;
const SET_TABLE: u16 = 1;
const SET_NAME: u16 = 2;
const SET_FLAGS: u16 = 3;
const SET_KEY_TYPE: u16 = 4;
const SET_KEY_LEN: u16 = 5;
const SET_DATA_TYPE: u16 = 6;
const SET_DATA_LEN: u16 = 7;
const SET_ID: u16 = 10;
const SET_USERDATA: u16 = 13;
const SET_ELEM_LIST_TABLE: u16 = 1;
const SET_ELEM_LIST_SET: u16 = 2;
const SET_ELEM_LIST_ELEMENTS: u16 = 3;
const SET_ELEM_KEY: u16 = 1;
const SET_ELEM_DATA: u16 = 2;
const SET_ELEM_FLAGS: u16 = 3;
const LIST_ELEM: u16 = 1;
const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;
const DATA_VALUE: u16 = 1;
const DATA_VERDICT: u16 = 2;
const VERDICT_CODE: u16 = 1;
const VERDICT_CHAIN: u16 = 2;

const SETF_INTERVAL: u32 = 0x4;
const SETF_MAP: u32 = 0x8;
const ELEM_INTERVAL_END: u32 = 0x1;
const DATA_TYPE_VERDICT: u32 = 0xffff_ff00;

// Registers.
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;

// Verdict codes.
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_JUMP: u32 = -3i32 as u32;
const NFT_GOTO: u32 = -4i32 as u32;
const NFT_RETURN: u32 = -5i32 as u32;

// Meta keys.
const META_MARK: u32 = 3;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;

// Payload bases.
const BASE_NETWORK: u32 = 1;
const BASE_TRANSPORT: u32 = 2;

// Comparison operators.
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const CMP_LTE: u32 = 3;
const CMP_GTE: u32 = 5;

/// Elements per `NEWSETELEM` message (an attribute holds at most 64 KiB).
const ELEMS_PER_MSG: usize = 512;

/// `nft` datatype numbers, for `nft list` to print keys.
const TYPE_VERDICT_IFNAME: u32 = 41;
const TYPE_IPV4: u32 = 7;
const TYPE_IPV6: u32 = 8;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;

fn hooknum(h: Hook) -> u32 {
    match h {
        Hook::Input => 1,
        Hook::Forward => 2,
        Hook::Postrouting => 4,
    }
}

/// `add table inet twill` (creates or leaves it).
pub fn new_table(b: &mut Batch) {
    b.begin(msg::NEWTABLE, NLM_F_CREATE, || {
        format!("add table inet {TABLE}")
    });
    b.w.str(TABLE_NAME, TABLE);
    b.w.u32_be(2, 0);
    b.w.end();
}

/// `delete table inet twill`.
pub fn del_table(b: &mut Batch) {
    b.begin(msg::DELTABLE, 0, || format!("delete table inet {TABLE}"));
    b.w.str(TABLE_NAME, TABLE);
    b.w.end();
}

/// `add chain` (a base chain gets its hook, priority, type and accept policy).
pub fn new_chain(b: &mut Batch, chain: &NftChain) {
    b.begin(msg::NEWCHAIN, NLM_F_CREATE, || {
        format!("add chain {}", chain.name)
    });
    b.w.str(CHAIN_TABLE, TABLE);
    b.w.str(CHAIN_NAME, &chain.name);
    if let Some(base) = &chain.base {
        b.w.nest(CHAIN_HOOK);
        b.w.u32_be(HOOK_HOOKNUM, hooknum(base.hook));
        b.w.u32_be(HOOK_PRIORITY, base.priority as u32);
        b.w.end();
        b.w.u32_be(CHAIN_POLICY, NF_ACCEPT);
        b.w.str(CHAIN_TYPE, if base.nat { "nat" } else { "filter" });
    }
    b.w.end();
}

/// `delete chain` (its rules go with it; nothing may still jump to it).
pub fn del_chain(b: &mut Batch, name: &str) {
    b.begin(msg::DELCHAIN, 0, || format!("delete chain {name}"));
    b.w.str(CHAIN_TABLE, TABLE);
    b.w.str(CHAIN_NAME, name);
    b.w.end();
}

/// `flush chain`.
pub fn flush_chain(b: &mut Batch, name: &str) {
    b.begin(msg::DELRULE, 0, || format!("flush chain {name}"));
    b.w.str(RULE_TABLE, TABLE);
    b.w.str(RULE_CHAIN, name);
    b.w.end();
}

/// Appends every rule of `chain`.
pub fn add_rules(b: &mut Batch, chain: &NftChain) {
    for rule in &chain.rules {
        b.begin(msg::NEWRULE, NLM_F_CREATE | NLM_F_APPEND, || {
            format!("add rule {} {rule}", chain.name)
        });
        b.w.str(RULE_TABLE, TABLE);
        b.w.str(RULE_CHAIN, &chain.name);
        b.w.nest(RULE_EXPRESSIONS);
        encode_rule(&mut b.w, rule);
        b.w.end();
        b.w.end();
    }
}

fn set_key(ty: SetType) -> (u32, u32, Vec<u8>) {
    // (key type, key length, user data as nft writes it)
    match ty {
        SetType::Addr(Family::V4) => (TYPE_IPV4, 4, vec![0, 4, 2, 0, 0, 0]),
        SetType::Addr(Family::V6) => (TYPE_IPV6, 16, vec![0, 4, 2, 0, 0, 0]),
        SetType::AddrProtoPort(f) => {
            let (t, len) = match f {
                Family::V4 => (TYPE_IPV4, 12),
                Family::V6 => (TYPE_IPV6, 24),
            };
            let ty = (((t << 6) | TYPE_INET_PROTO) << 6) | TYPE_INET_SERVICE;
            (
                ty,
                len,
                vec![0, 4, 0, 0, 0, 0, 3, 8, 0, 4, 13, 0, 0, 0, 1, 0],
            )
        }
        SetType::IfnameVerdict => (
            TYPE_VERDICT_IFNAME,
            16,
            vec![0, 4, 1, 0, 0, 0, 1, 4, 0, 0, 0, 0, 6, 4, 0, 0, 0, 0],
        ),
    }
}

/// `add set` / `add map` with its elements.
pub fn new_set(b: &mut Batch, set: &NftSet, id: u32) {
    let (key_type, key_len, udata) = set_key(set.ty);
    let mut flags = 0;
    if set.interval {
        flags |= SETF_INTERVAL;
    }
    if set.ty == SetType::IfnameVerdict {
        flags |= SETF_MAP;
    }
    b.begin(msg::NEWSET, NLM_F_CREATE, || {
        format!("add set {}", set.name)
    });
    b.w.str(SET_TABLE, TABLE);
    b.w.str(SET_NAME, &set.name);
    b.w.u32_be(SET_FLAGS, flags);
    b.w.u32_be(SET_KEY_TYPE, key_type);
    b.w.u32_be(SET_KEY_LEN, key_len);
    if set.ty == SetType::IfnameVerdict {
        b.w.u32_be(SET_DATA_TYPE, DATA_TYPE_VERDICT);
        b.w.u32_be(SET_DATA_LEN, 0);
    }
    b.w.u32_be(SET_ID, id);
    b.w.attr(SET_USERDATA, &udata);
    b.w.end();
    set_elements(b, &set.name, set.interval, &set.elements, true);
}

/// `delete set`.
pub fn del_set(b: &mut Batch, name: &str) {
    b.begin(msg::DELSET, 0, || format!("delete set {name}"));
    b.w.str(SET_TABLE, TABLE);
    b.w.str(SET_NAME, name);
    b.w.end();
}

/// `flush set`.
pub fn flush_set(b: &mut Batch, name: &str) {
    b.begin(msg::DELSETELEM, 0, || format!("flush set {name}"));
    b.w.str(SET_ELEM_LIST_TABLE, TABLE);
    b.w.str(SET_ELEM_LIST_SET, name);
    b.w.end();
}

/// One key/flags/data triple of the kernel's element list.
struct RawElem {
    key: Vec<u8>,
    end: bool,
    verdict: Option<Verdict>,
}

fn addr_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn next_addr(a: &IpAddr) -> Option<IpAddr> {
    match a {
        IpAddr::V4(v) => u32::from(*v).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(v) => u128::from(*v).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}

fn raw_elements(interval: bool, elems: &[Elem]) -> Vec<RawElem> {
    let mut out = Vec::new();
    for (i, e) in elems.iter().enumerate() {
        match e {
            Elem::Addr(a) => out.push(RawElem {
                key: addr_bytes(a),
                end: false,
                verdict: None,
            }),
            Elem::Range(a, z) => {
                if !interval {
                    continue;
                }
                // nft opens the interval list with an end marker at the zero address.
                let zero = addr_bytes(a).iter().all(|b| *b == 0);
                if i == 0 && !zero {
                    out.push(RawElem {
                        key: vec![0; addr_bytes(a).len()],
                        end: true,
                        verdict: None,
                    });
                }
                out.push(RawElem {
                    key: addr_bytes(a),
                    end: false,
                    verdict: None,
                });
                if let Some(after) = next_addr(z) {
                    out.push(RawElem {
                        key: addr_bytes(&after),
                        end: true,
                        verdict: None,
                    });
                }
            }
            Elem::AddrProtoPort(a, proto, port) => {
                let mut key = addr_bytes(a);
                key.extend_from_slice(&[*proto, 0, 0, 0]);
                key.extend_from_slice(&port.to_be_bytes());
                key.extend_from_slice(&[0, 0]);
                out.push(RawElem {
                    key,
                    end: false,
                    verdict: None,
                });
            }
            Elem::Iface(name, verdict) => {
                let mut key = name.as_bytes().to_vec();
                key.resize(16, 0);
                out.push(RawElem {
                    key,
                    end: false,
                    verdict: Some(verdict.clone()),
                });
            }
        }
    }
    out
}

/// `add element` (`add` true) or `delete element`, split over as many messages as needed.
pub fn set_elements(b: &mut Batch, set: &str, interval: bool, elems: &[Elem], add: bool) {
    let raw = raw_elements(interval, elems);
    for chunk in raw.chunks(ELEMS_PER_MSG) {
        let (ty, flags) = if add {
            (msg::NEWSETELEM, NLM_F_CREATE)
        } else {
            (msg::DELSETELEM, 0)
        };
        b.begin(ty, flags, || {
            let verb = if add { "add" } else { "delete" };
            format!("{verb} {} element(s) of set {set}", chunk.len())
        });
        b.w.str(SET_ELEM_LIST_TABLE, TABLE);
        b.w.str(SET_ELEM_LIST_SET, set);
        b.w.nest(SET_ELEM_LIST_ELEMENTS);
        for e in chunk {
            b.w.nest(LIST_ELEM);
            if e.end {
                b.w.u32_be(SET_ELEM_FLAGS, ELEM_INTERVAL_END);
            }
            b.w.nest(SET_ELEM_KEY);
            b.w.attr(DATA_VALUE, &e.key);
            b.w.end();
            if let Some(v) = &e.verdict {
                b.w.nest(SET_ELEM_DATA);
                verdict_data(&mut b.w, v);
                b.w.end();
            }
            b.w.end();
        }
        b.w.end();
        b.w.end();
    }
}

fn verdict_data(w: &mut Writer, v: &Verdict) {
    w.nest(DATA_VERDICT);
    let (code, chain) = match v {
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Drop => (NF_DROP, None),
        Verdict::Return => (NFT_RETURN, None),
        Verdict::Jump(c) => (NFT_JUMP, Some(c)),
        Verdict::Goto(c) => (NFT_GOTO, Some(c)),
    };
    w.u32_be(VERDICT_CODE, code);
    if let Some(c) = chain {
        w.str(VERDICT_CHAIN, c);
    }
    w.end();
}

/// Writes one expression: its name, then its attributes.
fn expr(w: &mut Writer, name: &str, body: impl FnOnce(&mut Writer)) {
    w.nest(LIST_ELEM);
    w.str(EXPR_NAME, name);
    w.nest(EXPR_DATA);
    body(w);
    w.end();
    w.end();
}

fn meta_load(w: &mut Writer, key: u32, dreg: u32) {
    expr(w, "meta", |w| {
        w.u32_be(2, key);
        w.u32_be(1, dreg);
    });
}

fn cmp(w: &mut Writer, op: u32, data: &[u8]) {
    expr(w, "cmp", |w| {
        w.u32_be(1, REG_1);
        w.u32_be(2, op);
        w.nest(3);
        w.attr(DATA_VALUE, data);
        w.end();
    });
}

fn payload(w: &mut Writer, dreg: u32, base: u32, offset: u32, len: u32) {
    expr(w, "payload", |w| {
        w.u32_be(1, dreg);
        w.u32_be(2, base);
        w.u32_be(3, offset);
        w.u32_be(4, len);
    });
}

fn lookup(w: &mut Writer, set: &str, negate: bool, dreg: Option<u32>) {
    expr(w, "lookup", |w| {
        w.u32_be(2, REG_1);
        if let Some(d) = dreg {
            w.u32_be(3, d);
        }
        w.str(1, set);
        if negate {
            w.u32_be(5, 1);
        }
    });
}

fn bitwise(w: &mut Writer, mask: u32, xor: u32) {
    expr(w, "bitwise", |w| {
        w.u32_be(1, REG_1);
        w.u32_be(2, REG_1);
        w.u32_be(6, 0);
        w.u32_be(3, 4);
        w.nest(4);
        w.attr(DATA_VALUE, &mask.to_ne_bytes());
        w.end();
        w.nest(5);
        w.attr(DATA_VALUE, &xor.to_ne_bytes());
        w.end();
    });
}

fn nfproto(w: &mut Writer, f: Family) {
    meta_load(w, META_NFPROTO, REG_1);
    cmp(w, CMP_EQ, &[if f == Family::V4 { 2 } else { 10 }]);
}

fn addr_offset(f: Family, d: Dir) -> (u32, u32) {
    match (f, d) {
        (Family::V4, Dir::Src) => (12, 4),
        (Family::V4, Dir::Dst) => (16, 4),
        (Family::V6, Dir::Src) => (8, 16),
        (Family::V6, Dir::Dst) => (24, 16),
    }
}

fn port_offset(d: Dir) -> u32 {
    match d {
        Dir::Src => 0,
        Dir::Dst => 2,
    }
}

/// Encodes a rule's statements as nft would.
pub fn encode_rule(w: &mut Writer, rule: &NftRule) {
    let mut known_family: Option<Family> = None;
    let mut need_family = |w: &mut Writer, f: Family| {
        if known_family != Some(f) {
            nfproto(w, f);
            known_family = Some(f);
        }
    };
    for stmt in &rule.0 {
        match stmt {
            Stmt::NfProto(f) => need_family(w, *f),
            Stmt::L4Proto { proto, negate } => {
                meta_load(w, META_L4PROTO, REG_1);
                cmp(w, if *negate { CMP_NEQ } else { CMP_EQ }, &[*proto]);
            }
            Stmt::Addr {
                family,
                dir,
                set,
                negate,
            } => {
                need_family(w, *family);
                let (off, len) = addr_offset(*family, *dir);
                payload(w, REG_1, BASE_NETWORK, off, len);
                lookup(w, set, *negate, None);
            }
            Stmt::AddrPort { family, dir, set } => {
                need_family(w, *family);
                let (off, len) = addr_offset(*family, *dir);
                payload(w, REG_1, BASE_NETWORK, off, len);
                let (proto_reg, port_reg) = match family {
                    Family::V4 => (9, 10),
                    Family::V6 => (2, 13),
                };
                meta_load(w, META_L4PROTO, proto_reg);
                payload(w, port_reg, BASE_TRANSPORT, port_offset(*dir), 2);
                lookup(w, set, false, None);
            }
            Stmt::Port { dir, range, negate } => {
                payload(w, REG_1, BASE_TRANSPORT, port_offset(*dir), 2);
                let first = range.first.to_be_bytes();
                let last = range.last.to_be_bytes();
                match (range.first == range.last, negate) {
                    (true, false) => cmp(w, CMP_EQ, &first),
                    (true, true) => cmp(w, CMP_NEQ, &first),
                    (false, false) => {
                        cmp(w, CMP_GTE, &first);
                        cmp(w, CMP_LTE, &last);
                    }
                    (false, true) => expr(w, "range", |w| {
                        w.u32_be(1, REG_1);
                        w.u32_be(2, 1);
                        w.nest(3);
                        w.attr(DATA_VALUE, &first);
                        w.end();
                        w.nest(4);
                        w.attr(DATA_VALUE, &last);
                        w.end();
                    }),
                }
            }
            Stmt::Icmp {
                icmp_type, code, ..
            } => match code {
                None => {
                    payload(w, REG_1, BASE_TRANSPORT, 0, 1);
                    cmp(w, CMP_EQ, &[*icmp_type]);
                }
                Some(c) => {
                    payload(w, REG_1, BASE_TRANSPORT, 0, 2);
                    cmp(w, CMP_EQ, &[*icmp_type, *c]);
                }
            },
            Stmt::CtState(bits) => {
                expr(w, "ct", |w| {
                    w.u32_be(2, 0);
                    w.u32_be(1, REG_1);
                });
                expr(w, "bitwise", |w| {
                    w.u32_be(1, REG_1);
                    w.u32_be(2, REG_1);
                    w.u32_be(3, 4);
                    w.nest(4);
                    w.attr(DATA_VALUE, &bits.to_ne_bytes());
                    w.end();
                    w.nest(5);
                    w.attr(DATA_VALUE, &0u32.to_ne_bytes());
                    w.end();
                });
                cmp(w, CMP_NEQ, &0u32.to_ne_bytes());
            }
            Stmt::MarkSet(bit) => {
                meta_load(w, META_MARK, REG_1);
                bitwise(w, *bit, 0);
                cmp(w, CMP_NEQ, &0u32.to_ne_bytes());
            }
            Stmt::SetMark { bit, on } => {
                meta_load(w, META_MARK, REG_1);
                if *on {
                    bitwise(w, !bit, *bit);
                } else {
                    bitwise(w, !bit, 0);
                }
                expr(w, "meta", |w| {
                    w.u32_be(2, META_MARK);
                    w.u32_be(3, REG_1);
                });
            }
            Stmt::IfnamePrefix { iface, prefix } => {
                let key = match iface {
                    IfDir::In => META_IIFNAME,
                    IfDir::Out => META_OIFNAME,
                };
                // As nft encodes a wildcard: compare only the prefix's bytes.
                meta_load(w, key, REG_1);
                cmp(w, CMP_EQ, prefix.as_bytes());
            }
            Stmt::Vmap { iface, map } => {
                let key = match iface {
                    IfDir::In => META_IIFNAME,
                    IfDir::Out => META_OIFNAME,
                };
                meta_load(w, key, REG_1);
                lookup(w, map, false, Some(REG_VERDICT));
            }
            Stmt::Log(prefix) => expr(w, "log", |w| w.str(2, prefix)),
            Stmt::Masquerade => expr(w, "masq", |_| {}),
            Stmt::Verdict(v) => expr(w, "immediate", |w| {
                w.u32_be(1, REG_VERDICT);
                w.nest(2);
                verdict_data(w, v);
                w.end();
            }),
        }
    }
}
