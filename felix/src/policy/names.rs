//! Names of the things the policy engine owns, shared by both dataplanes: sets and
//! chains are named from hashes of what they hold (stable across restarts, short enough
//! for ipset's 31 and iptables' 28 characters), endpoint chains from the host-side
//! interface name (`tw` + 11 hex).

pub use super::hash::short_hash;
use super::ir::Direction;

/// The nftables table felix owns (family `inet`).
pub const TABLE: &str = "twill";

/// The prefix of every iptables chain and ipset felix owns.
pub const IPT_PREFIX: &str = "twill-";

/// Mark bit a `Pass` rule sets so the endpoint chain skips to the Kubernetes policies.
pub const PASS_MARK: u32 = 0x0010_0000;

/// Mark bit an `Allow` sets in the iptables dataplane (nftables accepts directly).
pub const ACCEPT_MARK: u32 = 0x0020_0000;

/// The chain holding one policy's rules for one direction (`pi-HASH`, `pe-HASH`).
pub fn policy_chain(policy_key: &str, dir: Direction) -> String {
    let d = match dir {
        Direction::Ingress => "pi",
        Direction::Egress => "pe",
    };
    format!("{d}-{}", short_hash(policy_key))
}

/// The chain of one endpoint and direction (`ing-IFACE`, `egr-IFACE`).
pub fn endpoint_chain(iface: &str, dir: Direction) -> String {
    match dir {
        Direction::Ingress => format!("ing-{iface}"),
        Direction::Egress => format!("egr-{iface}"),
    }
}

/// The chain an endpoint jumps to after a `Pass` (`ingk-IFACE`, `egrk-IFACE`).
pub fn endpoint_pass_chain(iface: &str, dir: Direction) -> String {
    match dir {
        Direction::Ingress => format!("ingk-{iface}"),
        Direction::Egress => format!("egrk-{iface}"),
    }
}

/// Whether `iface` can be matched safely (a non-empty kernel interface name).
pub fn valid_iface(iface: &str) -> bool {
    !iface.is_empty()
        && iface.len() <= 15
        && iface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_iptables_and_ipset_limits() {
        let chain = policy_chain(
            "np/some-namespace/some-very-long-policy-name",
            Direction::Egress,
        );
        assert_eq!(chain.len(), 15);
        let ep = format!(
            "{IPT_PREFIX}{}",
            endpoint_pass_chain("tw0123456789a", Direction::Egress)
        );
        assert!(ep.len() <= 28, "{ep}");
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(valid_iface("tw0123456789a"));
        assert!(!valid_iface(""));
        assert!(!valid_iface("tw\"; drop"));
        assert!(!valid_iface("abcdefghijklmnop"));
    }
}
