//! The allocation decision as a pure function: given a node, the pools, the IPAM config and
//! a (possibly stale) view of the blocks, which block should the next address come from?
//!
//! Order: a block affine to the node; else claim an unclaimed block of a pool that selects
//! the node (unless `maxBlocksPerHost` is reached); else, only without `strictAffinity`,
//! borrow from another node's block in such a pool. The caller turns the choice into a
//! compare-and-swap write; a stale view only costs a retry, never a duplicate, because the
//! write is conditional on the block's revision. This module never does I/O.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::block::Block;
use crate::net::{Family, nth_block};
use twill_api::selector::Selector;
use twill_api::validate::overlaps;

/// A pool as the allocator sees it.
#[derive(Clone, Debug)]
pub struct Pool {
    /// The IPPool's name.
    pub name: String,
    /// The pool's network.
    pub cidr: IpNet,
    /// Prefix length of its blocks.
    pub block_len: u8,
    /// Which nodes may take blocks of this pool.
    pub node_selector: Selector,
    /// No new allocations from a disabled pool (existing ones stay).
    pub disabled: bool,
    /// A `LoadBalancer` pool: its addresses go to Services, never to pods.
    pub load_balancer: bool,
}

impl Pool {
    /// The pool's family.
    pub fn family(&self) -> Family {
        Family::of(&self.cidr)
    }

    /// True when new pod addresses of `family` may come from this pool for a node with
    /// `labels` (never from a `LoadBalancer` pool).
    pub fn usable_by(&self, family: Family, labels: &BTreeMap<String, String>) -> bool {
        !self.disabled
            && !self.load_balancer
            && self.family() == family
            && self.node_selector.matches(labels)
    }

    /// True when `block` was carved from this pool.
    pub fn owns(&self, block: &IpNet) -> bool {
        self.cidr.contains(block) && block.prefix_len() == self.block_len
    }
}

/// `IPAMConfig` as the allocator sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Never borrow from another node's block.
    pub strict_affinity: bool,
    /// At most this many affine blocks per node and family (0: no limit).
    pub max_blocks_per_host: u32,
}

/// Addresses never handed out (`IPReservation`).
#[derive(Clone, Debug, Default)]
pub struct Reservations {
    nets: Vec<IpNet>,
}

impl Reservations {
    /// Reservations covering `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Reservations { nets }
    }
    /// The reserved networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
    /// True when `addr` is reserved.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&addr))
    }
}

/// Everything the decision depends on except the blocks.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// The node asking.
    pub node: &'a str,
    /// Its labels (for pool `nodeSelector`s).
    pub labels: &'a BTreeMap<String, String>,
    /// All pools.
    pub pools: &'a [Pool],
    /// IPAM configuration.
    pub config: Config,
    /// Reserved addresses.
    pub reservations: &'a Reservations,
}

/// Where the next address should come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// From an existing block (update it with compare-and-swap).
    Existing {
        /// The block.
        cidr: IpNet,
        /// True when the block is not affine to the node.
        borrowed: bool,
    },
    /// Claim a new block affine to the node (create it; it must not exist yet).
    Claim {
        /// The pool it is carved from.
        pool: String,
        /// The block.
        cidr: IpNet,
    },
    /// Nothing available.
    Exhausted(Exhausted),
}

/// Why no address is available.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    /// No enabled pool of this family selects the node.
    #[error("no enabled {0:?} pool selects this node")]
    NoPool(Family),
    /// Every block is full or claimed, and borrowing is not allowed or found nothing.
    #[error("every {0:?} pool selecting this node is full")]
    Full(Family),
}

/// Decides where the next `family` address for `ctx.node` comes from. `skip` lists blocks
/// the caller has just found full or lost a race for, so a retry moves on.
pub fn choose<'b>(
    ctx: &Context<'_>,
    family: Family,
    blocks: impl IntoIterator<Item = &'b Block>,
    skip: &HashSet<IpNet>,
) -> Choice {
    let pools: Vec<&Pool> = ctx
        .pools
        .iter()
        .filter(|p| p.usable_by(family, ctx.labels))
        .collect();
    if pools.is_empty() {
        return Choice::Exhausted(Exhausted::NoPool(family));
    }
    let reserved = |a: IpAddr| ctx.reservations.contains(a);
    let in_pools = |b: &Block| pools.iter().any(|p| p.owns(&b.cidr));

    let mut blocks: Vec<&Block> = blocks.into_iter().collect();
    blocks.sort_by_key(|b| b.cidr);

    // 1. The node's own blocks.
    let mut own_count: u32 = 0;
    for b in blocks.iter().filter(|b| b.is_affine_to(ctx.node)) {
        if Family::of(&b.cidr) == family {
            own_count += 1;
        }
        if in_pools(b) && !skip.contains(&b.cidr) && b.free_count(&reserved) > 0 {
            return Choice::Existing {
                cidr: b.cidr,
                borrowed: false,
            };
        }
    }

    // 2. Claim a new block.
    let may_claim =
        ctx.config.max_blocks_per_host == 0 || own_count < ctx.config.max_blocks_per_host;
    if may_claim {
        for pool in &pools {
            if let Some(cidr) = free_block(pool, &blocks, ctx.reservations, skip) {
                return Choice::Claim {
                    pool: pool.name.clone(),
                    cidr,
                };
            }
        }
    }

    // 3. Borrow.
    if !ctx.config.strict_affinity {
        for b in &blocks {
            if !b.is_affine_to(ctx.node)
                && in_pools(b)
                && !skip.contains(&b.cidr)
                && b.free_count(&reserved) > 0
            {
                return Choice::Existing {
                    cidr: b.cidr,
                    borrowed: true,
                };
            }
        }
    }
    Choice::Exhausted(Exhausted::Full(family))
}

/// The first block of `pool` that may be claimed: no existing block overlaps it, `skip`
/// does not list it, and reservations leave at least one of its addresses free.
///
/// Overlap, not equality: a block of another size (carved before a pool was deleted and
/// re-created with another `blockSize`) still holds its addresses, and a new block over
/// it would hand them out a second time. Bounded scan.
pub fn free_block(
    pool: &Pool,
    blocks: &[&Block],
    reservations: &Reservations,
    skip: &HashSet<IpNet>,
) -> Option<IpNet> {
    let reserved = |a: IpAddr| reservations.contains(a);
    let same_size: HashSet<IpNet> = blocks
        .iter()
        .filter(|b| b.cidr.prefix_len() == pool.block_len)
        .map(|b| b.cidr)
        .collect();
    let other_size: Vec<IpNet> = blocks
        .iter()
        .filter(|b| b.cidr.prefix_len() != pool.block_len && overlaps(&b.cidr, &pool.cidr))
        .map(|b| b.cidr)
        .collect();
    // Past this many candidates every unclaimed one would be reserved or overlapped.
    let budget = (blocks.len() + skip.len() + 1024) as u128;
    let mut index: u128 = 0;
    while let Some(cidr) = nth_block(&pool.cidr, pool.block_len, index) {
        index += 1;
        if index > budget {
            break;
        }
        if same_size.contains(&cidr)
            || skip.contains(&cidr)
            || other_size.iter().any(|o| overlaps(o, &cidr))
        {
            continue;
        }
        // A block entirely reserved is useless; skip it rather than claim it.
        if Block::new(cidr, None).free_count(&reserved) == 0 {
            continue;
        }
        return Some(cidr);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str, len: u8) -> Pool {
        Pool {
            name: format!("p-{cidr}"),
            cidr: cidr.parse().unwrap(),
            block_len: len,
            node_selector: Selector::All,
            disabled: false,
            load_balancer: false,
        }
    }

    fn ctx<'a>(
        node: &'a str,
        labels: &'a BTreeMap<String, String>,
        pools: &'a [Pool],
        config: Config,
        res: &'a Reservations,
    ) -> Context<'a> {
        Context {
            node,
            labels,
            pools,
            config,
            reservations: res,
        }
    }

    fn full(cidr: &str, node: &str) -> Block {
        let mut b = Block::new(cidr.parse().unwrap(), Some(node.into()));
        while b.allocate("h", &BTreeMap::new(), &|_| false).is_some() {}
        b
    }

    #[test]
    fn own_block_with_room_comes_first() {
        let pools = [pool("10.244.0.0/24", 26)];
        let labels = BTreeMap::new();
        let res = Reservations::default();
        let c = ctx("n1", &labels, &pools, Config::default(), &res);
        let blocks = [
            Block::new("10.244.0.0/26".parse().unwrap(), Some("n2".into())),
            Block::new("10.244.0.64/26".parse().unwrap(), Some("n1".into())),
        ];
        assert_eq!(
            choose(&c, Family::V4, &blocks, &HashSet::new()),
            Choice::Existing {
                cidr: "10.244.0.64/26".parse().unwrap(),
                borrowed: false
            }
        );
    }

    #[test]
    fn full_own_blocks_lead_to_a_claim_then_to_borrowing() {
        let pools = [pool("10.244.0.0/25", 26)];
        let labels = BTreeMap::new();
        let res = Reservations::default();
        let c = ctx("n1", &labels, &pools, Config::default(), &res);
        let mut blocks = vec![full("10.244.0.0/26", "n1")];
        assert_eq!(
            choose(&c, Family::V4, &blocks, &HashSet::new()),
            Choice::Claim {
                pool: "p-10.244.0.0/25".into(),
                cidr: "10.244.0.64/26".parse().unwrap()
            }
        );
        blocks.push(Block::new(
            "10.244.0.64/26".parse().unwrap(),
            Some("n2".into()),
        ));
        assert_eq!(
            choose(&c, Family::V4, &blocks, &HashSet::new()),
            Choice::Existing {
                cidr: "10.244.0.64/26".parse().unwrap(),
                borrowed: true
            }
        );
        let strict = Config {
            strict_affinity: true,
            ..Config::default()
        };
        let c = ctx("n1", &labels, &pools, strict, &res);
        assert_eq!(
            choose(&c, Family::V4, &blocks, &HashSet::new()),
            Choice::Exhausted(Exhausted::Full(Family::V4))
        );
    }

    #[test]
    fn max_blocks_per_host_stops_claims() {
        let pools = [pool("10.244.0.0/24", 26)];
        let labels = BTreeMap::new();
        let res = Reservations::default();
        let cfg = Config {
            strict_affinity: true,
            max_blocks_per_host: 1,
        };
        let c = ctx("n1", &labels, &pools, cfg, &res);
        let blocks = [full("10.244.0.0/26", "n1")];
        assert_eq!(
            choose(&c, Family::V4, &blocks, &HashSet::new()),
            Choice::Exhausted(Exhausted::Full(Family::V4))
        );
    }

    #[test]
    fn pools_that_do_not_select_the_node_or_are_disabled_are_ignored() {
        let mut p1 = pool("10.244.0.0/24", 26);
        p1.node_selector = Selector::parse("zone == 'a'").unwrap();
        let mut p2 = pool("10.244.1.0/24", 26);
        p2.disabled = true;
        let p3 = pool("fd00:10::/120", 122);
        let pools = [p1, p2, p3];
        let labels = BTreeMap::from([("zone".to_owned(), "b".to_owned())]);
        let res = Reservations::default();
        let c = ctx("n1", &labels, &pools, Config::default(), &res);
        assert_eq!(
            choose(&c, Family::V4, [], &HashSet::new()),
            Choice::Exhausted(Exhausted::NoPool(Family::V4))
        );
        assert_eq!(
            choose(&c, Family::V6, [], &HashSet::new()),
            Choice::Claim {
                pool: "p-fd00:10::/120".into(),
                cidr: "fd00:10::/122".parse().unwrap()
            }
        );
    }

    #[test]
    fn a_block_overlapping_one_of_another_size_is_never_claimed() {
        // 10.244.0.0/26 was carved when the pool had blockSize 26 (the pool was since
        // re-created with 28): none of the /28s inside it may be claimed.
        let pools = [pool("10.244.0.0/25", 28)];
        let labels = BTreeMap::new();
        let res = Reservations::default();
        let c = ctx("n1", &labels, &pools, Config::default(), &res);
        let mut old = Block::new("10.244.0.0/26".parse().unwrap(), Some("n2".into()));
        old.allocate("h", &BTreeMap::new(), &|_| false).unwrap();
        assert_eq!(
            choose(&c, Family::V4, [&old], &HashSet::new()),
            Choice::Claim {
                pool: "p-10.244.0.0/25".into(),
                cidr: "10.244.0.64/28".parse().unwrap()
            }
        );
    }

    #[test]
    fn fully_reserved_blocks_are_not_claimed() {
        let pools = [pool("10.244.0.0/25", 26)];
        let labels = BTreeMap::new();
        let res = Reservations::new(vec!["10.244.0.0/26".parse().unwrap()]);
        let c = ctx("n1", &labels, &pools, Config::default(), &res);
        assert_eq!(
            choose(&c, Family::V4, [], &HashSet::new()),
            Choice::Claim {
                pool: "p-10.244.0.0/25".into(),
                cidr: "10.244.0.64/26".parse().unwrap()
            }
        );
    }
}
