//! Address arithmetic for blocks and pools, IPv4 and IPv6 written once over `u128`.
//!
//! Pure functions; they never panic on any input (out-of-range results are `None`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// IP family of a request or a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of a network.
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// The family of an address.
    pub fn of_addr(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(family: Family, v: u128) -> Option<IpAddr> {
    match family {
        Family::V4 => u32::try_from(v).ok().map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        Family::V6 => Some(IpAddr::V6(Ipv6Addr::from(v))),
    }
}

/// The address at offset `ordinal` from the network address of `net`, saturating at the
/// network's last address (callers only pass ordinals below the block size).
pub fn nth_addr(net: &IpNet, ordinal: u32) -> IpAddr {
    let base = to_u128(net.network());
    let last = to_u128(net.broadcast());
    let v = base.saturating_add(u128::from(ordinal)).min(last);
    from_u128(Family::of(net), v).unwrap_or(net.network())
}

/// Offset of `addr` from the network address of `net`, if `addr` is inside `net` and the
/// offset fits in a `u32`.
pub fn ordinal_of(net: &IpNet, addr: IpAddr) -> Option<u32> {
    if !net.contains(&addr) {
        return None;
    }
    u32::try_from(to_u128(addr) - to_u128(net.network())).ok()
}

/// The `index`-th block of prefix length `block_len` inside `pool` (`None` past the end).
pub fn nth_block(pool: &IpNet, block_len: u8, index: u128) -> Option<IpNet> {
    if block_len < pool.prefix_len() || block_len > pool.max_prefix_len() {
        return None;
    }
    let count_bits = u32::from(block_len - pool.prefix_len());
    if count_bits < 128 && index >= (1u128 << count_bits) {
        return None;
    }
    let host_bits = u32::from(pool.max_prefix_len() - block_len);
    let offset = index.checked_shl(host_bits)?;
    let start = to_u128(pool.network()).checked_add(offset)?;
    match from_u128(Family::of(pool), start)? {
        IpAddr::V4(a) => Ipv4Net::new(a, block_len).ok().map(IpNet::V4),
        IpAddr::V6(a) => Ipv6Net::new(a, block_len).ok().map(IpNet::V6),
    }
}

/// The block of prefix length `block_len` that contains `addr`.
pub fn block_containing(addr: IpAddr, block_len: u8) -> Option<IpNet> {
    IpNet::new(addr, block_len).ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_carved_into_consecutive_blocks() {
        let pool: IpNet = "10.244.0.0/24".parse().unwrap();
        assert_eq!(
            nth_block(&pool, 26, 0).unwrap().to_string(),
            "10.244.0.0/26"
        );
        assert_eq!(
            nth_block(&pool, 26, 3).unwrap().to_string(),
            "10.244.0.192/26"
        );
        assert!(nth_block(&pool, 26, 4).is_none());
        assert!(nth_block(&pool, 23, 0).is_none());
    }

    #[test]
    fn huge_ipv6_pools_carve_without_overflow() {
        let pool: IpNet = "fd00::/8".parse().unwrap();
        let last = (1u128 << (122 - 8)) - 1;
        assert_eq!(
            nth_block(&pool, 122, last).unwrap().to_string(),
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffc0/122"
        );
        assert!(nth_block(&pool, 122, last + 1).is_none());
    }

    #[test]
    fn ordinals_round_trip() {
        let net: IpNet = "fd00:10::40/122".parse().unwrap();
        let a = nth_addr(&net, 5);
        assert_eq!(a.to_string(), "fd00:10::45");
        assert_eq!(ordinal_of(&net, a), Some(5));
        assert_eq!(ordinal_of(&net, "fd00:10::80".parse().unwrap()), None);
        assert_eq!(
            block_containing("10.244.1.77".parse().unwrap(), 26)
                .unwrap()
                .to_string(),
            "10.244.1.64/26"
        );
    }
}
