//! rtnetlink messages for kernel sync: building `RTM_NEWROUTE` (replace), `RTM_DELROUTE` and
//! the `RTM_GETROUTE` dump request with `netlink-packet-route`, and reading back dumped
//! routes and `NLMSG_ERROR` replies (with the kernel's extended-ack text).
//!
//! Every message built here names our protocol, table and metric, so the kernel itself
//! keeps us away from routes of other protocols (see `mod.rs`). Nothing here does I/O.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, Parseable,
};

use super::{KernelConfig, KernelRoute, NextHop, RouteChange, is_link_local};

/// Size of `struct nlmsghdr`.
pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const RTM_NEWROUTE: u16 = 24;
/// Set on an `NLMSG_ERROR` whose echoed request was cut to its header (`NETLINK_CAP_ACK`).
const NLM_F_CAPPED: u16 = 0x100;
/// Set on an `NLMSG_ERROR` that carries extended-ack attributes after the echoed request.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the kernel's human-readable reason.
const NLMSGERR_ATTR_MSG: u16 = 1;

fn family(net: &IpNet) -> AddressFamily {
    match net {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

/// The route header and the attributes every message of ours carries: destination,
/// table, protocol and metric (the kernel's key is table, prefix, tos and metric).
fn base(cfg: &KernelConfig, prefix: &IpNet, kind: RouteType, scope: RouteScope) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header = RouteHeader {
        address_family: family(prefix),
        destination_prefix_length: prefix.prefix_len(),
        // Tables above 255 only fit in RTA_TABLE; the header then says "unspec".
        table: u8::try_from(cfg.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC),
        protocol: RouteProtocol::from(cfg.protocol),
        scope,
        kind,
        ..RouteHeader::default()
    };
    msg.attributes = vec![
        RouteAttribute::Destination(RouteAddress::from(prefix.network())),
        RouteAttribute::Table(cfg.table),
        RouteAttribute::Priority(cfg.metric),
    ];
    msg
}

/// Why a change cannot even be put on the wire (checked before sending).
pub(crate) fn validate(change: &RouteChange) -> Result<(), String> {
    let RouteChange::Replace(route) = change else {
        return Ok(());
    };
    if route.nexthops.is_empty() {
        return Err("route has no next hop".to_owned());
    }
    // RFC 8950: an IPv4 route may go via an IPv6 gateway (RTA_VIA), never the reverse.
    let v6 = matches!(route.prefix, IpNet::V6(_));
    if let Some(nh) = route.nexthops.iter().find(|nh| nh.gateway.is_ipv4() && v6) {
        return Err(format!("next hop {nh} is of the other address family"));
    }
    if let Some(nh) = route
        .nexthops
        .iter()
        .find(|nh| is_link_local(&nh.gateway) && nh.oif.is_none())
    {
        return Err(format!("link-local next hop {nh} needs an interface"));
    }
    Ok(())
}

/// The route message (without netlink header) for a change.
pub(crate) fn route_message(cfg: &KernelConfig, change: &RouteChange) -> RouteNetlinkMessage {
    match change {
        RouteChange::Replace(route) => {
            let mut msg = base(cfg, &route.prefix, RouteType::Unicast, RouteScope::Universe);
            match route.nexthops.as_slice() {
                [one] => {
                    msg.attributes.push(gateway(&route.prefix, one.gateway));
                    if let Some(oif) = one.oif {
                        msg.attributes.push(RouteAttribute::Oif(oif));
                    }
                }
                many => {
                    let hops = many
                        .iter()
                        .map(|nh| {
                            let mut hop = RouteNextHop::default();
                            hop.interface_index = nh.oif.unwrap_or(0);
                            hop.attributes = vec![gateway(&route.prefix, nh.gateway)];
                            hop
                        })
                        .collect();
                    msg.attributes.push(RouteAttribute::MultiPath(hops));
                }
            }
            RouteNetlinkMessage::NewRoute(msg)
        }
        // Scope "nowhere" matches any scope; type unicast spares blackholes (felix's) of our
        // protocol and metric: the route is picked by table, prefix, protocol, metric, type.
        RouteChange::Delete(prefix) => RouteNetlinkMessage::DelRoute(base(
            cfg,
            prefix,
            RouteType::Unicast,
            RouteScope::NoWhere,
        )),
    }
}

/// The gateway of a next hop: RTA_GATEWAY in the route's own family, RTA_VIA (`via inet6`)
/// for an IPv6 gateway of an IPv4 route (RFC 8950).
fn gateway(prefix: &IpNet, gw: IpAddr) -> RouteAttribute {
    match (prefix, gw) {
        (IpNet::V4(_), IpAddr::V6(v6)) => RouteAttribute::Via(RouteVia::Inet6(v6)),
        _ => RouteAttribute::Gateway(RouteAddress::from(gw)),
    }
}

/// Netlink flags of a change: replace-or-create for installs; `NLM_F_ACK` only where the
/// caller needs to see success (the kernel always answers a failure).
pub(crate) fn flags(change: &RouteChange, ack: bool) -> u16 {
    let mut flags = NLM_F_REQUEST;
    if matches!(change, RouteChange::Replace(_)) {
        flags |= NLM_F_CREATE | NLM_F_REPLACE;
    }
    if ack {
        flags |= NLM_F_ACK;
    }
    flags
}

/// Appends one framed netlink message to `buf`.
pub(crate) fn append(buf: &mut Vec<u8>, inner: RouteNetlinkMessage, flags: u16, seq: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    msg.finalize();
    let start = buf.len();
    buf.resize(start + msg.buffer_len(), 0);
    msg.serialize(&mut buf[start..]);
}

/// The dump request for one family, filtered (with `NETLINK_GET_STRICT_CHK`) by our table
/// and protocol; the caller filters again, since older kernels ignore the filter.
pub(crate) fn dump_request(cfg: &KernelConfig, family: AddressFamily, seq: u32) -> Vec<u8> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    msg.header.table = u8::try_from(cfg.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    msg.header.protocol = RouteProtocol::from(cfg.protocol);
    msg.attributes = vec![RouteAttribute::Table(cfg.table)];
    let mut buf = Vec::new();
    append(
        &mut buf,
        RouteNetlinkMessage::GetRoute(msg),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
    );
    buf
}

/// `RTM_GETROUTE` for one address (what `ip route get ADDR` sends): the kernel answers with
/// the route it would use, including its outgoing interface.
pub(crate) fn route_get_request(addr: IpAddr, seq: u32) -> Vec<u8> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
    msg.attributes = vec![RouteAttribute::Destination(RouteAddress::from(addr))];
    let mut buf = Vec::new();
    append(
        &mut buf,
        RouteNetlinkMessage::GetRoute(msg),
        NLM_F_REQUEST,
        seq,
    );
    buf
}

/// The outgoing interface of a `RTM_NEWROUTE` answer to [`route_get_request`].
pub(crate) fn parse_oif(payload: &[u8]) -> Option<u32> {
    let msg = RouteMessage::parse(payload).ok()?;
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// One message of a received datagram.
#[derive(Debug)]
pub(crate) struct RawMessage<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Splits a datagram into netlink messages (stops at the first malformed length).
pub(crate) fn messages(mut buf: &[u8]) -> impl Iterator<Item = RawMessage<'_>> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let msg = RawMessage {
            kind: u16::from_ne_bytes(buf[4..6].try_into().ok()?),
            flags: u16::from_ne_bytes(buf[6..8].try_into().ok()?),
            seq: u32::from_ne_bytes(buf[8..12].try_into().ok()?),
            payload: &buf[NLMSG_HDRLEN..len],
        };
        let next = (len + 3) & !3;
        buf = &buf[next.min(buf.len())..];
        Some(msg)
    })
}

/// An `NLMSG_ERROR` payload: the errno (0 = ACK) and the extended-ack message if any.
pub(crate) fn parse_error(msg: &RawMessage<'_>) -> (i32, Option<String>) {
    let p = msg.payload;
    let Some(code) = p
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
    else {
        return (0, None);
    };
    if msg.flags & NLM_F_ACK_TLVS == 0 {
        return (-code, None);
    }
    // After the code: the echoed request, cut to its header when capped.
    let echoed = if msg.flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        p.get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(|b| (u32::from_ne_bytes(b) as usize + 3) & !3)
            .unwrap_or(NLMSG_HDRLEN)
    };
    let mut tlvs = p.get(4 + echoed..).unwrap_or_default();
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            break;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &tlvs[4..len];
            let text = text.split(|&b| b == 0).next().unwrap_or_default();
            return (-code, Some(String::from_utf8_lossy(text).into_owned()));
        }
        tlvs = &tlvs[((len + 3) & !3).min(tlvs.len())..];
    }
    (-code, None)
}

/// A dumped `RTM_NEWROUTE` payload as one of our routes, if it is ours: our table,
/// protocol and metric, type unicast (blackholes and the like are never ours).
pub(crate) fn parse_route(cfg: &KernelConfig, payload: &[u8]) -> Option<KernelRoute> {
    let msg = RouteMessage::parse(payload).ok()?;
    let h = &msg.header;
    if u8::from(h.protocol) != cfg.protocol || h.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut metric = 0;
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut nexthops = Vec::new();
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Destination(a) => dst = address(a),
            RouteAttribute::Gateway(a) => gateway = address(a),
            RouteAttribute::Via(v) => gateway = via(v),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    for a in &hop.attributes {
                        let gw = match a {
                            RouteAttribute::Gateway(gw) => address(gw),
                            RouteAttribute::Via(v) => via(v),
                            _ => None,
                        };
                        nexthops.extend(gw.map(|g| NextHop::new(g, Some(hop.interface_index))));
                    }
                }
            }
            _ => {}
        }
    }
    nexthops.extend(gateway.map(|g| NextHop::new(g, oif)));
    if table != cfg.table || metric != cfg.metric {
        return None;
    }
    let dst = match (dst, h.address_family) {
        (Some(d), _) => d,
        (None, AddressFamily::Inet) => IpAddr::from([0u8; 4]),
        (None, AddressFamily::Inet6) => IpAddr::from([0u8; 16]),
        (None, _) => return None,
    };
    let prefix = IpNet::new(dst, h.destination_prefix_length).ok()?;
    Some(KernelRoute::new(prefix, nexthops))
}

fn via(v: &RouteVia) -> Option<IpAddr> {
    match v {
        RouteVia::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteVia::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> KernelConfig {
        KernelConfig::default()
    }

    fn route(prefix: &str, nhs: &[&str]) -> KernelRoute {
        KernelRoute::new(
            prefix.parse().unwrap(),
            nhs.iter().map(|n| n.parse::<IpAddr>().unwrap()).collect(),
        )
    }

    fn via_dev(gw: &str, oif: u32) -> NextHop {
        NextHop::new(gw.parse().unwrap(), Some(oif))
    }

    fn framed(change: &RouteChange, seq: u32) -> Vec<u8> {
        let mut buf = Vec::new();
        append(
            &mut buf,
            route_message(&cfg(), change),
            flags(change, true),
            seq,
        );
        buf
    }

    #[test]
    fn replace_encodes_the_route_as_ip_route_replace_does() {
        // `ip route replace 10.244.1.0/24 via 192.0.2.2 proto 82 metric 20` sends the same
        // header and attributes (iproute2 orders RTA_TABLE first; the kernel does not care).
        let buf = framed(
            &RouteChange::Replace(route("10.244.1.0/24", &["192.0.2.2"])),
            7,
        );
        let msgs: Vec<_> = messages(&buf).collect();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].kind, RTM_NEWROUTE);
        assert_eq!(
            msgs[0].flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        assert_eq!(msgs[0].seq, 7);
        // rtmsg: family 2, dst_len 24, src_len 0, tos 0, table 254, proto 82,
        // scope universe (0), type unicast (1), flags 0.
        assert_eq!(
            &msgs[0].payload[..12],
            &[2, 24, 0, 0, 254, 82, 0, 1, 0, 0, 0, 0]
        );
        let back = parse_route(&cfg(), msgs[0].payload).unwrap();
        assert_eq!(back, route("10.244.1.0/24", &["192.0.2.2"]));
    }

    #[test]
    fn ecmp_routes_are_one_multipath_message() {
        let r = route("fd00:10:244::/64", &["fd00:1::2", "fd00:2::2"]);
        let buf = framed(&RouteChange::Replace(r.clone()), 1);
        let msg = messages(&buf).next().unwrap();
        let parsed = RouteMessage::parse(msg.payload).unwrap();
        assert!(
            parsed
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::MultiPath(h) if h.len() == 2))
        );
        assert!(
            !parsed
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_)))
        );
        assert_eq!(parse_route(&cfg(), msg.payload), Some(r));
    }

    #[test]
    fn ipv4_routes_via_ipv6_gateways_use_rta_via_both_ways() {
        // `ip route replace 10.244.2.0/26 via inet6 2001:db8:1::2`: RTA_VIA, no RTA_GATEWAY.
        let one = route("10.244.2.0/26", &["2001:db8:1::2"]);
        let buf = framed(&RouteChange::Replace(one.clone()), 1);
        let msg = messages(&buf).next().unwrap();
        let parsed = RouteMessage::parse(msg.payload).unwrap();
        assert!(
            parsed
                .attributes
                .contains(&RouteAttribute::Via(RouteVia::Inet6(
                    "2001:db8:1::2".parse().unwrap()
                )))
        );
        assert!(
            !parsed
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_)))
        );
        assert_eq!(parse_route(&cfg(), msg.payload), Some(one));
        // Link-local gateways keep their interface; multipath hops use RTA_VIA too.
        let two = KernelRoute::new(
            "10.244.2.0/26".parse().unwrap(),
            vec![via_dev("fe80::2", 7), via_dev("fe80::3", 9)],
        );
        let buf = framed(&RouteChange::Replace(two.clone()), 1);
        let msg = messages(&buf).next().unwrap();
        assert_eq!(parse_route(&cfg(), msg.payload), Some(two));
    }

    #[test]
    fn link_local_next_hops_carry_their_interface_both_ways() {
        // `ip -6 route replace fd00:244::/64 via fe80::2 dev #7`: RTA_GATEWAY + RTA_OIF.
        let one = KernelRoute::new(
            "fd00:244::/64".parse().unwrap(),
            vec![via_dev("fe80::2", 7)],
        );
        let buf = framed(&RouteChange::Replace(one.clone()), 1);
        let msg = messages(&buf).next().unwrap();
        let parsed = RouteMessage::parse(msg.payload).unwrap();
        assert!(parsed.attributes.contains(&RouteAttribute::Oif(7)));
        assert_eq!(parse_route(&cfg(), msg.payload), Some(one));
        // Multipath: each hop's rtnexthop names its own interface.
        let two = KernelRoute::new(
            "fd00:244::/64".parse().unwrap(),
            vec![via_dev("fe80::2", 7), via_dev("fe80::2", 9)],
        );
        assert_eq!(
            two.nexthops.len(),
            2,
            "same gateway on two links is two hops"
        );
        let buf = framed(&RouteChange::Replace(two.clone()), 2);
        let msg = messages(&buf).next().unwrap();
        assert_eq!(parse_route(&cfg(), msg.payload), Some(two));
    }

    #[test]
    fn global_next_hops_drop_the_interface_the_kernel_reports() {
        let r = KernelRoute::new(
            "fd00:244::/64".parse().unwrap(),
            vec![via_dev("fd00:1::2", 7)],
        );
        assert_eq!(r, route("fd00:244::/64", &["fd00:1::2"]));
    }

    #[test]
    fn delete_names_protocol_table_and_metric_but_no_next_hop() {
        let buf = framed(&RouteChange::Delete("10.244.2.0/26".parse().unwrap()), 3);
        let msg = messages(&buf).next().unwrap();
        assert_eq!(msg.flags, NLM_F_REQUEST | NLM_F_ACK);
        let parsed = RouteMessage::parse(msg.payload).unwrap();
        assert_eq!(u8::from(parsed.header.protocol), 82);
        assert_eq!(parsed.header.scope, RouteScope::NoWhere);
        assert!(parsed.attributes.contains(&RouteAttribute::Priority(20)));
        assert!(parsed.attributes.contains(&RouteAttribute::Table(254)));
        assert!(
            !parsed
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_) | RouteAttribute::MultiPath(_)))
        );
    }

    #[test]
    fn routes_of_other_protocols_tables_or_metrics_are_not_ours() {
        let r = RouteChange::Replace(route("10.244.3.0/24", &["192.0.2.2"]));
        let ours = framed(&r, 1);
        let payload = messages(&ours).next().unwrap().payload.to_vec();
        for other in [
            KernelConfig {
                protocol: 4,
                ..cfg()
            },
            KernelConfig {
                table: 100,
                ..cfg()
            },
            KernelConfig { metric: 0, ..cfg() },
        ] {
            assert_eq!(parse_route(&other, &payload), None, "{other:?}");
        }
    }

    #[test]
    fn large_table_ids_go_in_rta_table_only() {
        let c = KernelConfig {
            table: 1000,
            ..cfg()
        };
        let r = RouteChange::Replace(route("10.244.4.0/24", &["192.0.2.2"]));
        let mut buf = Vec::new();
        append(&mut buf, route_message(&c, &r), flags(&r, false), 1);
        let msg = messages(&buf).next().unwrap();
        assert_eq!(msg.payload[4], 0);
        assert!(parse_route(&c, msg.payload).is_some());
    }

    #[test]
    fn validate_rejects_routes_without_or_with_mismatched_next_hops() {
        assert!(validate(&RouteChange::Replace(route("10.244.0.0/26", &[]))).is_err());
        assert!(validate(&RouteChange::Replace(route("fd00::/64", &["192.0.2.1"]))).is_err());
        // RFC 8950: an IPv4 route via an IPv6 gateway is fine.
        assert!(
            validate(&RouteChange::Replace(route(
                "10.244.0.0/26",
                &["2001:db8::1"]
            )))
            .is_ok()
        );
        assert!(
            validate(&RouteChange::Replace(route(
                "10.244.0.0/26",
                &["192.0.2.1"]
            )))
            .is_ok()
        );
        assert!(validate(&RouteChange::Delete("10.244.0.0/26".parse().unwrap())).is_ok());
        let ll = validate(&RouteChange::Replace(route("fd00::/64", &["fe80::1"])));
        assert!(ll.unwrap_err().contains("needs an interface"));
    }

    #[test]
    fn error_replies_yield_errno_and_extended_ack_text() {
        // NLMSG_ERROR, capped, with ACK TLVs: code -ENETUNREACH (-101), the echoed
        // header, then NLMSGERR_ATTR_MSG "Nexthop has invalid gateway".
        let text = b"Nexthop has invalid gateway\0";
        let mut payload = Vec::new();
        payload.extend_from_slice(&(-101i32).to_ne_bytes());
        payload.extend_from_slice(&[0u8; 16]);
        let tlv_len = 4 + text.len();
        payload.extend_from_slice(&(tlv_len as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        let msg = RawMessage {
            kind: NLMSG_ERROR,
            flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
            seq: 9,
            payload: &payload,
        };
        assert_eq!(
            parse_error(&msg),
            (101, Some("Nexthop has invalid gateway".to_owned()))
        );
        let ack = 0i32.to_ne_bytes();
        let ack = RawMessage {
            kind: NLMSG_ERROR,
            flags: NLM_F_CAPPED,
            seq: 9,
            payload: &ack,
        };
        assert_eq!(parse_error(&ack), (0, None));
    }

    #[test]
    fn messages_splits_a_datagram_and_stops_at_garbage() {
        let mut buf = framed(&RouteChange::Delete("10.244.0.0/24".parse().unwrap()), 1);
        buf.extend(framed(
            &RouteChange::Delete("10.244.1.0/24".parse().unwrap()),
            2,
        ));
        buf.extend_from_slice(&[0xff; 7]);
        let seqs: Vec<u32> = messages(&buf).map(|m| m.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
    }
}
