//! The pod dataplane: veth pairs into pod network namespaces, the pod's addresses and
//! routes, and the host routes felix owns (`podIP/32 dev twXXXXXXXXXXX`, blackholes for
//! local blocks), all through rtnetlink.
//!
//! Never shells out to `ip`, never touches links, routes or sysctls it did not create
//! (its links are named `tw*`, its routes carry [`ROUTE_PROTOCOL`]).

pub mod names;
pub mod netns;
pub mod pod;
pub mod routes;
pub mod sysctl;

use std::net::{Ipv4Addr, Ipv6Addr};

pub use names::host_veth_name;
pub use pod::{PlumbedPod, PodNetwork, PodSpec};
pub use routes::{HostRoute, RouteOp, RouteTarget, diff_routes};

/// The route protocol number on every route felix installs (`ip route ... proto 81`).
/// The embedded bgpd's learned routes use [`BGPD_ROUTE_PROTOCOL`]; both are Twill's.
pub const ROUTE_PROTOCOL: u8 = 81;
/// The route protocol number bgpd's kernel sync uses (kept here so the two never collide).
pub const BGPD_ROUTE_PROTOCOL: u8 = 82;

/// The pod's IPv4 next hop: link-scoped, answered by the host veth (proxy-ARP and a
/// permanent neighbour entry in the pod).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Every host-side veth has this MAC, so the pod's gateway neighbour entry is constant.
pub const HOST_VETH_MAC: [u8; 6] = [0xee; 6];
/// The IPv6 link-local address the kernel derives (EUI-64) from [`HOST_VETH_MAC`]: the
/// pod's IPv6 default gateway.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// What can go wrong while plumbing.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("cannot open network namespace {path}: {source}")]
    Netns {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {path}: {source}")]
    Setns { path: String, source: nix::Error },
    #[error("netlink {op}: {source}")]
    Netlink {
        op: String,
        source: rtnetlink::Error,
    },
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: String,
        source: std::io::Error,
    },
    #[error("interface {0} does not exist")]
    NoSuchLink(String),
    #[error("interface {0} already exists in the pod")]
    LinkExists(String),
    #[error("check failed: {0}")]
    Mismatch(String),
    #[error("namespace helper thread: {0}")]
    Thread(String),
}

impl DataplaneError {
    pub(crate) fn netlink(
        op: impl Into<String>,
    ) -> impl FnOnce(rtnetlink::Error) -> DataplaneError {
        let op = op.into();
        move |source| DataplaneError::Netlink { op, source }
    }
}

/// The errno of a netlink error, if it is one (positive, like `libc::ENOENT`).
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

pub(crate) const ENOENT: i32 = 2;
pub(crate) const ESRCH: i32 = 3;
pub(crate) const EEXIST: i32 = 17;
pub(crate) const ENODEV: i32 = 19;
pub(crate) const EADDRNOTAVAIL: i32 = 99;

/// Errors that mean "it is already gone" on delete.
pub(crate) fn is_gone(e: &rtnetlink::Error) -> bool {
    matches!(errno(e), Some(ENOENT | ESRCH | ENODEV | EADDRNOTAVAIL))
}
