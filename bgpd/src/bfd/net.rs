//! BFD's sockets: receive sockets on UDP 3784 (single-hop, RFC 5881) and 4784 (multi-hop,
//! RFC 5883) that report each packet's TTL / hop limit, and per-session send sockets from
//! a source port in 49152-65535 with TTL 255. Nothing here knows about sessions.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrIn6,
    SockaddrStorage, bind, recvmsg, setsockopt, socket, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Single-hop control packets (RFC 5881 §4).
pub const SINGLE_HOP_PORT: u16 = 3784;
/// Multi-hop control packets (RFC 5883 §5).
pub const MULTI_HOP_PORT: u16 = 4784;

/// The source ports RFC 5881 §4 allows.
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// One received datagram.
#[derive(Debug)]
pub struct Datagram {
    pub len: usize,
    pub src: SocketAddr,
    /// TTL (IPv4) or hop limit (IPv6) it arrived with; `None` if the kernel did not say.
    pub ttl: Option<u8>,
}

/// Binds a receive socket on `port` of every address of one family, asking the kernel
/// for each packet's TTL.
pub fn bind_receiver(v6: bool, port: u16) -> io::Result<UdpSocket> {
    let fd: OwnedFd = socket(
        if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        },
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // No SO_REUSEADDR: on UDP it would let a second daemon bind the port too and take
    // some of our packets; a clash must fail loudly instead.
    if v6 {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
        setsockopt(&fd, sockopt::Ipv6RecvHopLimit, &true)?;
        let addr = SockaddrIn6::from(std::net::SocketAddrV6::new(
            Ipv6Addr::UNSPECIFIED,
            port,
            0,
            0,
        ));
        bind(fd.as_raw_fd(), &addr)?;
    } else {
        setsockopt(&fd, sockopt::Ipv4RecvTtl, &true)?;
        let addr = SockaddrIn::from(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
        bind(fd.as_raw_fd(), &addr)?;
    }
    UdpSocket::from_std(StdUdpSocket::from(fd))
}

/// Waits for one datagram and returns it with its TTL.
pub async fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    loop {
        sock.readable().await?;
        match sock.try_io(Interest::READABLE, || recv_now(sock, buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

fn recv_now(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(libc::c_int);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let mut ttl = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                ttl = u8::try_from(t).ok();
            }
            _ => {}
        }
    }
    let src = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|s| SocketAddr::from(std::net::SocketAddrV4::from(*s)))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|s| SocketAddr::from(std::net::SocketAddrV6::from(*s)))
                })
        })
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    let len = if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        usize::MAX
    } else {
        msg.bytes
    };
    Ok(Datagram { len, src, ttl })
}

/// A send socket for one session: bound to `local` (or any address of the peer's family)
/// and a free port in 49152-65535, sending with TTL / hop limit 255.
pub fn bind_sender(peer: IpAddr, local: Option<IpAddr>) -> io::Result<UdpSocket> {
    let ip = local.unwrap_or(match peer {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let first: u32 = rand::random::<u32>() % span;
    let mut last = None;
    for i in 0..64 {
        let port = SOURCE_PORTS.start() + u16::try_from((first + i * 7919) % span).unwrap_or(0);
        match StdUdpSocket::bind(SocketAddr::new(ip, port)) {
            Ok(s) => {
                if peer.is_ipv6() {
                    setsockopt(&s, sockopt::Ipv6Ttl, &255)?;
                } else {
                    s.set_ttl(255)?;
                }
                s.set_nonblocking(true)?;
                return UdpSocket::from_std(s);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free BFD source port")))
}
