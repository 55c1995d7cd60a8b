//! The socket options std and tokio do not expose: TCP-MD5 signatures (RFC 2385,
//! `TCP_MD5SIG`) and GTSM (RFC 5082, `IP_MINTTL` / `IPV6_MINHOPCOUNT`).
//!
//! The only `unsafe` in the speaker lives here: two `setsockopt(2)` calls on a file
//! descriptor the caller owns, with buffers whose layout matches the kernel's.
#![allow(unsafe_code)]

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// The kernel's `TCP_MD5SIG_MAXKEYLEN`.
const MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from `<linux/tcp.h>`.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MAX_KEY_LEN],
}

fn storage_for(addr: IpAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        IpAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                std::ptr::write(std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in>(), sin);
            }
        }
        IpAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                std::ptr::write(
                    std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in6>(),
                    sin6,
                );
            }
        }
    }
    ss
}

fn setsockopt<T>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialised T for the duration of the call and the
    // length passed is exactly its size; the fd is borrowed from an owner that keeps it open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets (or with `None`, removes) the TCP-MD5 key used with `peer` on `fd` (a listening
/// socket or one about to connect). An IPv4 peer on an IPv6 socket is keyed by its
/// IPv4-mapped address, as the kernel sees it.
pub fn set_md5_key(
    fd: &impl AsRawFd,
    socket_is_v6: bool,
    peer: IpAddr,
    key: Option<&[u8]>,
) -> io::Result<()> {
    let key = key.unwrap_or_default();
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP-MD5 key longer than 80 bytes",
        ));
    }
    let addr = match (peer, socket_is_v6) {
        (IpAddr::V4(v4), true) => IpAddr::V6(v4.to_ipv6_mapped()),
        (a, _) => a,
    };
    let mut sig = TcpMd5Sig {
        addr: storage_for(addr),
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// Sends with TTL (hop limit) 255, as GTSM peers expect, without filtering what arrives.
/// For a listening socket: the SYN-ACKs it sends, and the sockets it accepts, inherit it
/// (an IPv6 socket also gets the IPv4 TTL, for IPv4-mapped peers).
pub fn set_max_ttl(fd: &impl AsRawFd, is_v6: bool) -> io::Result<()> {
    let ttl: libc::c_int = 255;
    if is_v6 {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)?;
    }
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)
}

/// GTSM (RFC 5082): send with TTL 255 and drop segments that arrive with a TTL below
/// `256 - hops`, so only a neighbour `hops` away can reach the session.
pub fn set_ttl_security(fd: &impl AsRawFd, is_v6: bool, hops: u8) -> io::Result<()> {
    let ttl: libc::c_int = 255;
    let min: libc::c_int = 256 - libc::c_int::from(hops.max(1));
    if is_v6 {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &min)
    } else {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min)
    }
}
