//! Property tests of the allocator core: several nodes plan on stale snapshots of the blocks
//! and commit with compare-and-swap on a block's revision, in any interleaving, with releases
//! (by handle and stale releases by address) mixed in. No address is ever held twice, and
//! every block keeps free + used = size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use twill_api::selector::Selector;
use twill_ipam::block::{Assigned, Block};
use twill_ipam::net::Family;
use twill_ipam::plan::{Choice, Config, Context, Pool, Reservations, choose};

/// An in-memory CAS store of blocks: cidr -> (revision, block).
#[derive(Default)]
struct Store {
    rev: u64,
    blocks: BTreeMap<IpNet, (u64, Block)>,
}

impl Store {
    fn snapshot(&self) -> BTreeMap<IpNet, (u64, Block)> {
        self.blocks.clone()
    }
    /// Writes `block` if the stored revision is still `expected` (`None`: must not exist).
    fn cas(&mut self, expected: Option<u64>, block: Block) -> bool {
        let current = self.blocks.get(&block.cidr).map(|(r, _)| *r);
        if current != expected {
            return false;
        }
        self.rev += 1;
        self.blocks.insert(block.cidr, (self.rev, block));
        true
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Node takes a snapshot (its view may then go stale).
    Refresh(usize),
    /// Node allocates one address of a family from its snapshot and commits.
    Allocate(usize, bool),
    /// Release the k-th live handle by handle.
    ReleaseHandle(usize),
    /// Release the k-th address ever handed out, by address, with its original sequence
    /// number (stale once reassigned).
    ReleaseStale(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..3usize).prop_map(Op::Refresh),
        4 => (0..3usize, any::<bool>()).prop_map(|(n, v6)| Op::Allocate(n, v6)),
        2 => (0..64usize).prop_map(Op::ReleaseHandle),
        1 => (0..64usize).prop_map(Op::ReleaseStale),
    ]
}

fn pools() -> Vec<Pool> {
    vec![
        Pool {
            name: "v4".into(),
            cidr: "10.244.0.0/28".parse().unwrap(),
            block_len: 30,
            node_selector: Selector::All,
            disabled: false,
            load_balancer: false,
        },
        Pool {
            name: "v6".into(),
            cidr: "fd00:10::/124".parse().unwrap(),
            block_len: 126,
            node_selector: Selector::All,
            disabled: false,
            load_balancer: false,
        },
    ]
}

struct World {
    store: Store,
    views: Vec<BTreeMap<IpNet, (u64, Block)>>,
    live: Vec<String>,
    handed_out: Vec<(IpAddr, u64)>,
    next_handle: u64,
    config: Config,
}

impl World {
    fn allocate(&mut self, node: usize, family: Family) {
        let pools = pools();
        let labels = BTreeMap::new();
        let res = Reservations::new(vec!["10.244.0.5/32".parse().unwrap()]);
        let name = format!("n{node}");
        let ctx = Context {
            node: &name,
            labels: &labels,
            pools: &pools,
            config: self.config,
            reservations: &res,
        };
        let handle = format!("net.c{}", self.next_handle);
        self.next_handle += 1;
        let view = &self.views[node];
        let choice = choose(&ctx, family, view.values().map(|(_, b)| b), &HashSet::new());
        let (expected, mut block) = match choice {
            Choice::Existing { cidr, .. } => {
                let (rev, b) = &view[&cidr];
                (Some(*rev), b.clone())
            }
            Choice::Claim { cidr, .. } => (None, Block::new(cidr, Some(name.clone()))),
            Choice::Exhausted(_) => return,
        };
        let Some(Assigned { addr, seq }) = block.allocate(
            &handle,
            &BTreeMap::from([("node".to_owned(), name.clone())]),
            &|a| res.contains(a),
        ) else {
            return;
        };
        assert!(!res.contains(addr), "reserved address {addr} handed out");
        if self.store.cas(expected, block) {
            self.live.push(handle);
            self.handed_out.push((addr, seq));
        }
        // Whether it won or lost, the node sees the new state next time (like a retry).
        self.views[node] = self.store.snapshot();
    }

    fn release_handle(&mut self, k: usize) {
        if self.live.is_empty() {
            return;
        }
        let handle = self.live.remove(k % self.live.len());
        // Release with CAS, retrying on conflict, as the datastore layer does.
        for (rev, block) in self.store.snapshot().into_values() {
            let mut b = block;
            if !b.release_handle(&handle, 1).is_empty() {
                assert!(self.store.cas(Some(rev), b));
            }
        }
    }

    fn release_stale(&mut self, k: usize) {
        if self.handed_out.is_empty() {
            return;
        }
        let (addr, seq) = self.handed_out[k % self.handed_out.len()];
        for (rev, block) in self.store.snapshot().into_values() {
            if !block.cidr.contains(&addr) {
                continue;
            }
            let mut b = block;
            if let Ok(Some(freed)) = b.release_addr(addr, Some(seq), 2) {
                self.live.retain(|h| *h != freed.handle);
                assert!(self.store.cas(Some(rev), b));
            }
        }
    }

    fn check(&self) {
        let mut holders: HashMap<IpAddr, &str> = HashMap::new();
        for (_, b) in self.store.blocks.values() {
            assert!(b.violations().is_empty(), "{:?}", b.violations());
            assert_eq!(b.free.len() + b.used(), b.size() as usize);
            for (ip, a) in b.used_addrs() {
                if let Some(prev) = holders.insert(ip, &a.handle) {
                    panic!("{ip} held by {prev} and {}", a.handle);
                }
            }
        }
        let blocks: Vec<IpNet> = self.store.blocks.keys().copied().collect();
        for (i, a) in blocks.iter().enumerate() {
            for b in &blocks[i + 1..] {
                assert!(
                    !a.contains(b) && !b.contains(a),
                    "blocks {a} and {b} overlap"
                );
            }
        }
        // Every live handle holds exactly the addresses it was given.
        let held: HashSet<&str> = holders.values().copied().collect();
        for h in &self.live {
            assert!(held.contains(h.as_str()), "live handle {h} holds nothing");
        }
        assert_eq!(held.len(), self.live.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_interleaving_yields_an_address_twice(
        ops in proptest::collection::vec(op(), 1..200),
        strict in any::<bool>(),
        max_blocks in 0u32..3,
    ) {
        let mut w = World {
            store: Store::default(),
            views: vec![BTreeMap::new(); 3],
            live: Vec::new(),
            handed_out: Vec::new(),
            next_handle: 0,
            config: Config { strict_affinity: strict, max_blocks_per_host: max_blocks },
        };
        for op in ops {
            match op {
                Op::Refresh(n) => w.views[n] = w.store.snapshot(),
                Op::Allocate(n, v6) => w.allocate(n, if v6 { Family::V6 } else { Family::V4 }),
                Op::ReleaseHandle(k) => w.release_handle(k),
                Op::ReleaseStale(k) => w.release_stale(k),
            }
            w.check();
        }
    }

    #[test]
    fn strict_affinity_never_hands_out_another_nodes_address(
        ops in proptest::collection::vec((0..3usize, any::<bool>()), 1..100),
    ) {
        let mut w = World {
            store: Store::default(),
            views: vec![BTreeMap::new(); 3],
            live: Vec::new(),
            handed_out: Vec::new(),
            next_handle: 0,
            config: Config { strict_affinity: true, max_blocks_per_host: 0 },
        };
        for (n, v6) in ops {
            w.views[n] = w.store.snapshot();
            w.allocate(n, if v6 { Family::V6 } else { Family::V4 });
        }
        for (_, b) in w.store.blocks.values() {
            prop_assert!(b.violations().is_empty());
            for (ip, a) in b.used_addrs() {
                prop_assert_eq!(a.attrs.get("node"), b.affinity.as_ref(), "{} borrowed", ip);
            }
        }
    }
}
