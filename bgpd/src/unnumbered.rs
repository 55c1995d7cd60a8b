//! Unnumbered peering: a peer named by `interface` instead of an address is reached over
//! that interface's IPv6 link-local address, the neighbour's own discovered on the link.
//!
//! Per interface, a thread with a raw ICMPv6 socket bound to it says who we are and asks
//! who is there, every [`INTERVAL`]:
//! - a Router Advertisement to all nodes (router lifetime 0: nobody takes us for a default
//!   router), which is what FRR's `neighbor IF interface` learns its neighbour from;
//! - an Echo Request to all nodes, which any Linux neighbour answers;
//!
//! and reports the link-local source of every RA or Echo Reply it hears from someone else.
//! [`resolve`] turns the configured peers plus what was found into the peers the speaker
//! runs: an unnumbered peer gets the neighbour's address and extended next hop (RFC 8950),
//! and is left out until its neighbour is known.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn6, recvfrom, sendto,
    setsockopt, socket, sockopt,
};

use crate::config::PeerConfig;
use crate::kernel::is_link_local;

/// How often we advertise ourselves and ask who is on the link.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// ICMPv6 types (RFC 4443, RFC 4861).
const ECHO_REQUEST: u8 = 128;
const ECHO_REPLY: u8 = 129;
const ROUTER_ADVERTISEMENT: u8 = 134;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A neighbour found on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub interface: String,
    pub address: Ipv6Addr,
}

/// The discovery thread of one interface; told to stop on drop. It is not joined (that
/// would block the owner task): it ends, closing its socket, within one receive timeout.
pub struct Discovery {
    stop: Arc<AtomicBool>,
    _thread: JoinHandle<()>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The interface index of `name`.
pub fn interface_index(name: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(io::Error::from)
}

/// Starts discovery on `interface`, reporting each neighbour (again when it changes).
/// `report` returns false once nobody listens any more (the thread then ends).
pub fn spawn(
    interface: &str,
    report: impl Fn(Found) -> bool + Send + 'static,
) -> io::Result<Discovery> {
    let ifindex = interface_index(interface)
        .map_err(|e| io::Error::new(e.kind(), format!("interface {interface}: {e}")))?;
    let fd = open(interface)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (name, flag) = (interface.to_owned(), stop.clone());
    let thread = std::thread::Builder::new()
        .name(format!("nd-{interface}"))
        .spawn(move || run(&fd, &name, ifindex, &flag, &report))?;
    Ok(Discovery {
        stop,
        _thread: thread,
    })
}

fn open(interface: &str) -> io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::IcmpV6,
    )?;
    setsockopt(
        &fd,
        sockopt::BindToDevice,
        &std::ffi::OsString::from(interface),
    )?;
    // RFC 4861 §6.1.2: a receiver drops an RA whose hop limit is not 255.
    setsockopt(&fd, sockopt::Ipv6MulticastHops, &255)?;
    setsockopt(&fd, sockopt::Ipv6Ttl, &255)?;
    let tick = nix::sys::time::TimeVal::new(0, 250_000);
    setsockopt(&fd, sockopt::ReceiveTimeout, &tick)?;
    Ok(fd)
}

fn run(
    fd: &OwnedFd,
    interface: &str,
    ifindex: u32,
    stop: &AtomicBool,
    report: &dyn Fn(Found) -> bool,
) {
    let all_nodes = SockaddrIn6::from(SocketAddrV6::new(ALL_NODES, 0, 0, ifindex));
    let mut last: Option<Ipv6Addr> = None;
    let mut next_send = Instant::now();
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_send {
            let (ra, echo) = (router_advertisement(), echo_request(ifindex));
            for packet in [&ra[..], &echo[..]] {
                if let Err(e) = sendto(fd.as_raw_fd(), packet, &all_nodes, MsgFlags::empty()) {
                    tracing::debug!(interface, error = %e, "neighbour discovery send");
                }
            }
            next_send = Instant::now() + INTERVAL;
        }
        let Ok((len, Some(src))) = recvfrom::<SockaddrIn6>(fd.as_raw_fd(), &mut buf) else {
            continue;
        };
        let src = src.ip();
        let kind = buf.get(..len).and_then(|b| b.first().copied());
        if !matches!(kind, Some(ROUTER_ADVERTISEMENT | ECHO_REPLY))
            || !is_link_local(&IpAddr::V6(src))
            || last == Some(src)
            || is_ours(interface, src)
        {
            continue;
        }
        tracing::info!(interface, neighbour = %src, "unnumbered neighbour found");
        last = Some(src);
        let open = report(Found {
            interface: interface.to_owned(),
            address: src,
        });
        if !open {
            return;
        }
    }
}

/// Our own packets come back to us (multicast loopback): skip our own addresses.
fn is_ours(interface: &str, a: Ipv6Addr) -> bool {
    crate::speaker::link::interface_addrs()
        .iter()
        .any(|x| x.interface == interface && x.addr == IpAddr::V6(a))
}

/// An RA that only announces us: no default router, no prefixes, no other parameters.
fn router_advertisement() -> [u8; 16] {
    // type, code, checksum (the kernel fills it for ICMPv6 raw sockets), cur hop limit,
    // flags, router lifetime (0), reachable time, retrans timer.
    let mut p = [0u8; 16];
    p[0] = ROUTER_ADVERTISEMENT;
    p
}

fn echo_request(id: u32) -> [u8; 8] {
    let id = (id as u16).to_be_bytes();
    [ECHO_REQUEST, 0, 0, 0, id[0], id[1], 0, 1]
}

/// The peers the speaker runs: configured peers with an address as they are; an unnumbered
/// peer with its neighbour's link-local address and extended next hop, or not at all while
/// its neighbour is unknown.
pub fn resolve(peers: &[PeerConfig], found: &HashMap<String, Ipv6Addr>) -> Vec<PeerConfig> {
    peers
        .iter()
        .filter_map(|p| {
            let Some(name) = &p.interface else {
                return Some(p.clone());
            };
            let address = match p.address {
                IpAddr::V6(a) if is_link_local(&p.address) => a,
                _ => *found.get(name)?,
            };
            Some(PeerConfig {
                address: IpAddr::V6(address),
                extended_next_hop: true,
                ..p.clone()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnumbered_peers_wait_for_their_neighbour_then_use_extended_next_hop() {
        let mut unnumbered = PeerConfig::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 65002);
        unnumbered.interface = Some("eth0".into());
        let numbered = PeerConfig::new("192.0.2.2".parse().unwrap(), 65003);
        let peers = [unnumbered.clone(), numbered.clone()];
        assert_eq!(resolve(&peers, &HashMap::new()), vec![numbered.clone()]);
        let found = HashMap::from([("eth0".to_owned(), "fe80::2".parse().unwrap())]);
        let r = resolve(&peers, &found);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].address, "fe80::2".parse::<IpAddr>().unwrap());
        assert!(r[0].extended_next_hop);
        assert_eq!(r[0].interface.as_deref(), Some("eth0"));
        // A link-local address given in the configuration needs no discovery.
        unnumbered.address = "fe80::9".parse().unwrap();
        let r = resolve(&[unnumbered], &HashMap::new());
        assert_eq!(r[0].address, "fe80::9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_router_advertisement_makes_nobody_use_us_as_default_router() {
        let ra = router_advertisement();
        assert_eq!(ra[0], ROUTER_ADVERTISEMENT);
        assert_eq!(u16::from_be_bytes([ra[6], ra[7]]), 0, "router lifetime");
    }
}
