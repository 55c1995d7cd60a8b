//! Host-side interface names: `tw` + 11 hex characters of a SHA-256 of the workload id,
//! so the name is stable for a workload, unique in practice, and at most 13 bytes.

use sha2::{Digest, Sha256};

/// Every felix-owned link starts with this.
pub const HOST_VETH_PREFIX: &str = "tw";

/// The host-side veth name for `workload_id`.
pub fn host_veth_name(workload_id: &str) -> String {
    let digest = Sha256::digest(workload_id.as_bytes());
    let hex = hex::encode(digest);
    format!("{HOST_VETH_PREFIX}{}", &hex[..11])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_tw_plus_11_hex_and_fits_ifnamsiz() {
        let n = host_veth_name("abc/eth0");
        assert_eq!(n.len(), 13);
        assert!(n.starts_with("tw"));
        assert!(n[2..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn name_is_stable_and_differs_between_workloads() {
        assert_eq!(host_veth_name("a/eth0"), host_veth_name("a/eth0"));
        assert_ne!(host_veth_name("a/eth0"), host_veth_name("b/eth0"));
        // `echo -n a/eth0 | sha256sum` = 49075c1f2373fb67...
        assert_eq!(host_veth_name("a/eth0"), "tw49075c1f237");
    }
}
