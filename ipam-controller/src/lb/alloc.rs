//! LoadBalancer addresses in IPAM blocks of `LoadBalancer` pools: blocks without node
//! affinity, carved on demand, every write a compare-and-swap on the block's revision (a
//! create for a new block), exactly as pod addresses. Two controllers racing can therefore
//! never hand one address to two Services: the loser's write fails, it re-reads the block
//! and picks again.
//!
//! [`Blocks`] is one reconcile pass's view of the blocks; a lost race refreshes the one
//! block concerned.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::IPAMBlock;

use crate::allocator::{IpamError, unix_now};
use crate::block::{Allocation, Block};
use crate::model::{block_from_spec, block_name, block_to_spec};
use crate::net::{Family, block_containing};
use crate::plan::{Pool, Reservations, free_block};

/// Attempts per address before giving up on contention.
const ATTEMPTS: u32 = 16;

/// Why a Service's address cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The datastore failed.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// An asked-for address is in no usable `LoadBalancer` pool.
    #[error("{addr} is not in {which}")]
    NotInPool { addr: IpAddr, which: String },
    /// An asked-for address is reserved (`IPReservation`).
    #[error("{addr} is reserved by an IPReservation")]
    Reserved { addr: IpAddr },
    /// An asked-for address is held by another Service.
    #[error("{addr} is already allocated to {holder}")]
    Taken { addr: IpAddr, holder: String },
    /// No usable pool of the family, or every one is full.
    #[error("no free {} address in {which}", family_name(*family))]
    Exhausted { family: Family, which: String },
}

impl From<DatastoreError> for LbError {
    fn from(e: DatastoreError) -> Self {
        LbError::Ipam(IpamError::Datastore(e))
    }
}

/// Who holds an allocation, as people read it (`namespace/name`, else the handle).
pub fn holder_of(a: &Allocation) -> String {
    match (a.attrs.get("namespace"), a.attrs.get("service")) {
        (Some(ns), Some(name)) => format!("Service {ns}/{name}"),
        _ => format!("handle {}", a.handle),
    }
}

/// The blocks as this pass sees them.
pub struct Blocks<'a> {
    ds: &'a Datastore,
    /// Every block that parses, by network.
    pub blocks: BTreeMap<IpNet, (IPAMBlock, Block)>,
}

impl<'a> Blocks<'a> {
    /// Reads every block (one list).
    pub async fn load(ds: &'a Datastore) -> Result<Blocks<'a>, IpamError> {
        let mut blocks = BTreeMap::new();
        for object in ds.list::<IPAMBlock>(None).await?.items {
            match block_from_spec(&object.spec) {
                Ok(block) => {
                    blocks.insert(block.cidr, (object, block));
                }
                Err(e) => tracing::warn!(error = %e, "skipping corrupt IPAM block"),
            }
        }
        Ok(Blocks { ds, blocks })
    }

    /// Every address held by a handle `pred` accepts: (handle, address, sequence number).
    pub fn held(&self, pred: impl Fn(&str) -> bool) -> Vec<(String, IpAddr, u64)> {
        self.blocks
            .values()
            .flat_map(|(_, b)| b.used_addrs())
            .filter(|(_, a)| pred(&a.handle))
            .map(|(ip, a)| (a.handle.clone(), ip, a.seq))
            .collect()
    }

    async fn refetch(&mut self, cidr: IpNet) -> Result<(), IpamError> {
        match self.ds.get::<IPAMBlock>(None, &block_name(&cidr)).await {
            Ok(object) => {
                let block = block_from_spec(&object.spec)?;
                self.blocks.insert(cidr, (object, block));
            }
            Err(DatastoreError::NotFound { .. }) => {
                self.blocks.remove(&cidr);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Writes `block` over the stored `cidr` (CAS), or creates it when it is new. `Ok(false)`:
    /// lost a race (the block was re-read).
    async fn write(&mut self, block: Block) -> Result<bool, IpamError> {
        let cidr = block.cidr;
        let result = match self.blocks.get(&cidr) {
            Some((object, _)) => {
                let mut object = object.clone();
                object.spec = block_to_spec(&block, false);
                self.ds.update(&object).await
            }
            None => {
                let object = IPAMBlock::new(&block_name(&cidr), block_to_spec(&block, false));
                self.ds.create(&object).await
            }
        };
        match result {
            Ok(stored) => {
                self.blocks.insert(cidr, (stored, block));
                Ok(true)
            }
            Err(
                DatastoreError::Conflict { .. }
                | DatastoreError::NotFound { .. }
                | DatastoreError::AlreadyExists { .. },
            ) => {
                tracing::debug!(%cidr, "lost the race for a LoadBalancer block; re-reading it");
                self.refetch(cidr).await?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Hands `addr` to `handle`, if it is free and in one of `pools`.
    pub async fn claim_addr(
        &mut self,
        pools: &[&Pool],
        reservations: &Reservations,
        addr: IpAddr,
        handle: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Result<(), LbError> {
        let Some(pool) = pools.iter().find(|p| p.cidr.contains(&addr)) else {
            return Err(LbError::NotInPool {
                addr,
                which: which(pools),
            });
        };
        if reservations.contains(addr) {
            return Err(LbError::Reserved { addr });
        }
        let Some(cidr) = block_containing(addr, pool.block_len) else {
            return Err(LbError::NotInPool {
                addr,
                which: which(pools),
            });
        };
        for _ in 0..ATTEMPTS {
            let mut block = match self.blocks.get(&cidr) {
                Some((_, b)) => b.clone(),
                None => Block::new(cidr, None),
            };
            if let Some(holder) = block.holder(addr) {
                if holder.handle == handle {
                    return Ok(());
                }
                return Err(LbError::Taken {
                    addr,
                    holder: holder_of(holder),
                });
            }
            if block.allocate_addr(addr, handle, attrs).is_none() {
                return Err(LbError::NotInPool {
                    addr,
                    which: which(pools),
                });
            }
            if self.write(block).await? {
                return Ok(());
            }
        }
        Err(IpamError::Contention { attempts: ATTEMPTS }.into())
    }

    /// Hands any free address of `family` from `pools` to `handle`.
    pub async fn claim_any(
        &mut self,
        pools: &[&Pool],
        reservations: &Reservations,
        family: Family,
        handle: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Result<IpAddr, LbError> {
        let reserved = |a: IpAddr| reservations.contains(a);
        let pools: Vec<&Pool> = pools
            .iter()
            .copied()
            .filter(|p| p.family() == family)
            .collect();
        let mut skip: HashSet<IpNet> = HashSet::new();
        for _ in 0..ATTEMPTS {
            // An existing block with room, else a new block.
            let existing = self
                .blocks
                .values()
                .map(|(_, b)| b)
                .find(|b| {
                    pools.iter().any(|p| p.owns(&b.cidr))
                        && !skip.contains(&b.cidr)
                        && b.free_count(&reserved) > 0
                })
                .cloned();
            let mut block = match existing {
                Some(b) => b,
                None => {
                    let all: Vec<&Block> = self.blocks.values().map(|(_, b)| b).collect();
                    let Some(cidr) = pools
                        .iter()
                        .find_map(|p| free_block(p, &all, reservations, &skip))
                    else {
                        return Err(LbError::Exhausted {
                            family,
                            which: which(&pools),
                        });
                    };
                    Block::new(cidr, None)
                }
            };
            let cidr = block.cidr;
            let Some(assigned) = block.allocate(handle, attrs, &reserved) else {
                skip.insert(cidr);
                continue;
            };
            if self.write(block).await? {
                return Ok(assigned.addr);
            }
        }
        Err(IpamError::Contention { attempts: ATTEMPTS }.into())
    }

    /// Frees `addr` if `handle` still holds it with sequence number `seq`.
    pub async fn release(&mut self, addr: IpAddr, handle: &str, seq: u64) -> Result<(), IpamError> {
        for _ in 0..ATTEMPTS {
            let Some(mut block) = self
                .blocks
                .iter()
                .find(|(c, _)| c.contains(&addr))
                .map(|(_, (_, b))| b.clone())
            else {
                return Ok(());
            };
            match block.holder(addr) {
                Some(a) if a.handle == handle && a.seq == seq => {}
                _ => return Ok(()),
            }
            // The holder was checked just above: the guarded release cannot be stale.
            let _ = block.release_addr(addr, Some(seq), unix_now());
            if self.write(block).await? {
                return Ok(());
            }
        }
        Err(IpamError::Contention { attempts: ATTEMPTS })
    }
}

fn which(pools: &[&Pool]) -> String {
    if pools.is_empty() {
        return "any LoadBalancer pool (no enabled one exists)".into();
    }
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    format!("the LoadBalancer pools {}", names.join(", "))
}

/// `IPv4` / `IPv6`.
pub fn family_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}
