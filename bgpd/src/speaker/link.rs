//! The facts about a peer's link that RFC 2545 needs: when a peer shares a link with us,
//! IPv6 routes sent to it carry our link-local address on that link beside the global next
//! hop. Read from the interface addresses once per session.

use std::net::{IpAddr, Ipv6Addr};

/// One address of an interface, as `getifaddrs` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IfAddr {
    pub interface: String,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// The interface addresses of this network namespace (empty if they cannot be read).
pub(crate) fn interface_addrs() -> Vec<IfAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let addr = a.address.as_ref()?;
            let mask = a.netmask.as_ref();
            let (addr, prefix_len) = if let Some(v6) = addr.as_sockaddr_in6() {
                let bits = mask
                    .and_then(|m| m.as_sockaddr_in6())
                    .map_or(128, |m| u128::from(m.ip()).count_ones());
                (IpAddr::V6(v6.ip()), bits as u8)
            } else if let Some(v4) = addr.as_sockaddr_in() {
                let bits = mask
                    .and_then(|m| m.as_sockaddr_in())
                    .map_or(32, |m| u32::from(m.ip()).count_ones());
                (IpAddr::V4(v4.ip()), bits as u8)
            } else {
                return None;
            };
            Some(IfAddr {
                interface: a.interface_name,
                addr,
                prefix_len,
            })
        })
        .collect()
}

/// Our link-local address on the link shared with `peer`, when the session's local address
/// `local` is on an interface whose subnets hold `peer` (or either end is link-local
/// itself). `None` when the peer is not on a shared link, or the interface has no
/// link-local address.
pub(crate) fn shared_link_local(addrs: &[IfAddr], local: IpAddr, peer: IpAddr) -> Option<Ipv6Addr> {
    let iface = shared_interface(addrs, local, peer)?;
    ipv6_on(addrs, iface, true)
}

/// Our global IPv6 address on the link shared with `peer`: the next hop of IPv6 routes
/// sent over an IPv4 session (MP-BGP), where the session's own address will not do.
pub(crate) fn shared_link_global_v6(
    addrs: &[IfAddr],
    local: IpAddr,
    peer: IpAddr,
) -> Option<Ipv6Addr> {
    let iface = shared_interface(addrs, local, peer)?;
    ipv6_on(addrs, iface, false)
}

/// The interface holding `local`, when `peer` is on its link.
fn shared_interface(addrs: &[IfAddr], local: IpAddr, peer: IpAddr) -> Option<&str> {
    let iface = &addrs.iter().find(|a| a.addr == local)?.interface;
    let on_link = crate::kernel::is_link_local(&peer)
        || addrs.iter().any(|a| {
            a.interface == *iface
                && ipnet::IpNet::new(a.addr, a.prefix_len).is_ok_and(|n| n.contains(&peer))
        });
    on_link.then_some(iface.as_str())
}

/// The first IPv6 address of `iface` that is link-local (or, with `link_local` false,
/// global: neither link-local nor loopback).
fn ipv6_on(addrs: &[IfAddr], iface: &str, link_local: bool) -> Option<Ipv6Addr> {
    addrs.iter().find_map(|a| match a.addr {
        IpAddr::V6(v6)
            if a.interface == iface
                && crate::kernel::is_link_local(&a.addr) == link_local
                && !v6.is_loopback() =>
        {
            Some(v6)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(interface: &str, addr: &str, prefix_len: u8) -> IfAddr {
        IfAddr {
            interface: interface.into(),
            addr: addr.parse().unwrap(),
            prefix_len,
        }
    }

    #[test]
    fn the_link_local_of_the_interface_shared_with_the_peer() {
        let addrs = [
            a("lo", "::1", 128),
            a("eth1", "2001:db8:9::1", 64),
            a("eth1", "fe80::9", 64),
            a("eth0", "2001:db8:1::1", 64),
            a("eth0", "fe80::1", 64),
        ];
        let local = "2001:db8:1::1".parse().unwrap();
        assert_eq!(
            shared_link_local(&addrs, local, "2001:db8:1::2".parse().unwrap()),
            Some("fe80::1".parse().unwrap())
        );
        // A multihop peer (not on eth0's subnet) gets no link-local next hop.
        assert_eq!(
            shared_link_local(&addrs, local, "2001:db8:7::2".parse().unwrap()),
            None
        );
        // A peer reached over a link-local address is on the link by definition.
        assert_eq!(
            shared_link_local(
                &addrs,
                "fe80::9".parse().unwrap(),
                "fe80::2".parse().unwrap()
            ),
            Some("fe80::9".parse().unwrap())
        );
        // Over an IPv4 session: the link's global IPv6 address and link-local address.
        let mixed = [
            a("eth0", "192.0.2.1", 24),
            a("eth0", "2001:db8:1::1", 64),
            a("eth0", "fe80::1", 64),
        ];
        let (v4, peer4) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert_eq!(
            shared_link_global_v6(&mixed, v4, peer4),
            Some("2001:db8:1::1".parse().unwrap())
        );
        assert_eq!(
            shared_link_local(&mixed, v4, peer4),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(
            shared_link_global_v6(&mixed, v4, "198.51.100.2".parse().unwrap()),
            None
        );
        // No link-local address on the interface: nothing to send.
        let bare = [a("eth0", "2001:db8:1::1", 64)];
        assert_eq!(
            shared_link_local(&bare, local, "2001:db8:1::2".parse().unwrap()),
            None
        );
    }
}
