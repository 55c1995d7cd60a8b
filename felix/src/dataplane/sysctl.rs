//! Per-interface sysctls on felix's own host veths (proxy-ARP, proxy-NDP, forwarding).
//!
//! Writes under `/proc/sys/net` apply to the namespace of the calling thread; felix calls
//! these from its own (host) namespace only. Never changes a global or another link's knob.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::DataplaneError;

/// Where `/proc/sys/net` is. A container's own `/proc/sys` is read-only unless it is
/// privileged, so the chart mounts the host's elsewhere (`--proc-sys-net`); the knobs
/// still apply to the writing thread's namespace. Set once at start.
static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Uses `path` instead of `/proc/sys/net` (the first call wins).
pub fn set_root(path: PathBuf) {
    let _ = ROOT.set(path);
}

fn root() -> &'static Path {
    ROOT.get()
        .map_or(Path::new("/proc/sys/net"), PathBuf::as_path)
}

fn write(path: String, value: &str) -> Result<(), DataplaneError> {
    std::fs::write(&path, value).map_err(|source| DataplaneError::Sysctl { path, source })
}

/// IPv4: answer ARP for the pod's gateway (`169.254.1.1`) on the host veth.
pub fn enable_ipv4(ifname: &str) -> Result<(), DataplaneError> {
    write(
        format!("{}/ipv4/conf/{ifname}/proxy_arp", root().display()),
        "1",
    )
}

/// IPv6: forwarding and proxy-NDP on the host veth, and no DAD for its link-local address
/// (it is the pod's gateway and must answer at once). Call before the link goes up.
pub fn enable_ipv6(ifname: &str) -> Result<(), DataplaneError> {
    let base = format!("{}/ipv6/conf/{ifname}", root().display());
    write(format!("{base}/accept_dad"), "0")?;
    write(format!("{base}/forwarding"), "1")?;
    write(format!("{base}/proxy_ndp"), "1")
}
