//! Per-interface sysctls on felix's own host veths (proxy-ARP, proxy-NDP, forwarding).
//!
//! Writes under `/proc/sys/net` apply to the namespace of the calling thread; felix calls
//! these from its own (host) namespace only. Never changes a global or another link's knob.

use super::DataplaneError;

fn write(path: String, value: &str) -> Result<(), DataplaneError> {
    std::fs::write(&path, value).map_err(|source| DataplaneError::Sysctl { path, source })
}

/// IPv4: answer ARP for the pod's gateway (`169.254.1.1`) on the host veth.
pub fn enable_ipv4(ifname: &str) -> Result<(), DataplaneError> {
    write(format!("/proc/sys/net/ipv4/conf/{ifname}/proxy_arp"), "1")
}

/// IPv6: forwarding and proxy-NDP on the host veth, and no DAD for its link-local address
/// (it is the pod's gateway and must answer at once). Call before the link goes up.
pub fn enable_ipv6(ifname: &str) -> Result<(), DataplaneError> {
    let base = format!("/proc/sys/net/ipv6/conf/{ifname}");
    write(format!("{base}/accept_dad"), "0")?;
    write(format!("{base}/forwarding"), "1")?;
    write(format!("{base}/proxy_ndp"), "1")
}
