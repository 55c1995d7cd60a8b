//! The allocator over the `Datastore`: what felix calls for CNI ADD and DEL.
//!
//! Truth lives in the blocks. Each used address in an `IPAMBlock` records its handle,
//! attributes and sequence number, and every block write is a compare-and-swap on the
//! block's revision, so one block write is atomic: an address is never used without its
//! handle, and two writers can never both take it.
//!
//! Cost: the allocator keeps a cache of the blocks it has seen (with their revisions). An
//! address from an already-owned block costs ONE datastore round trip: the CAS update of
//! that block (the `Datastore` has no multi-key transaction, and none is needed because
//! the block itself records the handle). Claiming a block costs a keys-only list of the
//! block names (which blocks exist; blocks new to the cache are read), then one create
//! that carries the first allocation too (plus a `BlockAffinity` record written after it):
//! never a read of every block, which would grow with the cluster. Only borrowing, or
//! finding every pool full, re-reads all blocks. A stale cache only costs a retry: a CAS
//! on an old revision fails, the block is re-read.
//!
//! `IPAMHandle` objects are an index of the *borrowed* allocations only (addresses in
//! blocks not affine to the requesting node), so that release by handle finds them
//! without scanning every block. The index is written before the borrowing block write and
//! tidied after the release, or at once when the allocation fails or moves to another
//! block. Only a crash in between leaves an index entry pointing at an address that is
//! free, which is harmless (release verifies the block) and which `check` reports and the
//! controller's GC removes. Never the other way round (a borrowed address nobody indexed).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::Mutex;
use tokio::time::Instant;
use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::{
    AffinityState, BlockAffinity, BlockAffinitySpec, IPAMBlock, IPAMConfig, IPPool, IPReservation,
    Node,
};

use crate::block::Block;
use crate::model::{
    ModelError, affinity_name, block_from_spec, block_name, block_to_spec, config_from_api,
    pool_from_api, reservations_from_api,
};
use crate::net::Family;
use crate::plan::{Choice, Config, Context, Exhausted, Pool, Reservations, choose};
use crate::retry::RetryPolicy;

mod index;
mod release;

/// What went wrong in an IPAM operation.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The datastore failed (transient when `Unavailable`).
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    /// No address is available now.
    #[error(transparent)]
    Exhausted(#[from] Exhausted),
    /// A stored object is unusable.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Lost too many compare-and-swap races in a row.
    #[error("gave up after {attempts} attempts: too much contention on the IPAM blocks")]
    Contention { attempts: u32 },
    /// A release by address named an address no pool or block contains.
    #[error("{0} is not in any IPAM block")]
    NoBlock(IpAddr),
    /// A release by address was stale: the address was handed out again since.
    #[error(transparent)]
    Stale(#[from] crate::block::ReleaseError),
}

impl IpamError {
    /// Whether the caller should try again later (CNI error code 11).
    pub fn is_transient(&self) -> bool {
        match self {
            IpamError::Datastore(e) => e.is_transient(),
            IpamError::Exhausted(_) | IpamError::Contention { .. } => true,
            _ => false,
        }
    }

    /// A bounded label for metrics.
    pub fn kind_label(&self) -> &'static str {
        match self {
            IpamError::Datastore(e) => e.kind_label(),
            IpamError::Exhausted(_) => "exhausted",
            IpamError::Model(_) => "corrupt",
            IpamError::Contention { .. } => "contention",
            IpamError::NoBlock(_) => "no_block",
            IpamError::Stale(_) => "stale",
        }
    }
}

/// One allocation request: a handle, the node asking, attributes, and the families wanted.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `<network>.<containerID>`.
    pub handle: String,
    /// The node the workload runs on.
    pub node: String,
    /// `namespace`, `pod` (the allocator adds `node`).
    pub attrs: BTreeMap<String, String>,
    /// Wants an IPv4 address.
    pub v4: bool,
    /// Wants an IPv6 address.
    pub v6: bool,
}

/// One address handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The address.
    pub addr: IpAddr,
    /// The block it came from.
    pub block: IpNet,
    /// Its sequence number (for a guarded release by address).
    pub seq: u64,
    /// True when the block is another node's (announce the /32 or /128).
    pub borrowed: bool,
}

/// Pools, config and reservations as last read.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// All pools that parse.
    pub pools: Vec<Pool>,
    /// IPAM config.
    pub config: Config,
    /// Reserved addresses.
    pub reservations: Reservations,
}

impl Settings {
    /// Reads pools, the `default` IPAMConfig and reservations (3 reads).
    pub async fn load(ds: &Datastore) -> Result<Settings, IpamError> {
        let pools = ds.list::<IPPool>(None).await?.items;
        let pools = pools.iter().filter_map(|p| pool_from_api(p).ok()).collect();
        let config = match ds.get::<IPAMConfig>(None, "default").await {
            Ok(c) => Some(c),
            Err(DatastoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let reservations = ds.list::<IPReservation>(None).await?.items;
        Ok(Settings {
            pools,
            config: config_from_api(config.as_ref()),
            reservations: reservations_from_api(&reservations),
        })
    }
}

struct Cached {
    object: IPAMBlock,
    block: Block,
}

#[derive(Default)]
struct State {
    blocks: BTreeMap<IpNet, Cached>,
    listed: bool,
    settings: Option<(Instant, Settings)>,
    labels: BTreeMap<String, (Instant, BTreeMap<String, String>)>,
}

/// Past this many blocks new to the cache, one full list is cheaper than reading each.
const SYNC_READS: usize = 32;

/// The IPAM client. One per process (felix: one per node); cheap to share behind an `Arc`.
/// Operations of one `Ipam` are serialised: they would contend on the same blocks anyway.
pub struct Ipam {
    ds: Datastore,
    policy: RetryPolicy,
    settings_ttl: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for Ipam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ipam({:?})", self.ds)
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn cache(st: &mut State, object: IPAMBlock) -> Result<(), IpamError> {
    let block = block_from_spec(&object.spec)?;
    st.blocks.insert(block.cidr, Cached { object, block });
    Ok(())
}

impl Ipam {
    /// An allocator over `ds` with default retries; pools, config and node labels are
    /// re-read at most every 5 seconds.
    pub fn new(ds: Datastore) -> Self {
        Ipam {
            ds,
            policy: RetryPolicy::default(),
            settings_ttl: Duration::from_secs(5),
            state: Mutex::new(State::default()),
        }
    }

    /// Overrides the retry policy.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Overrides how long pools, config and node labels are cached.
    pub fn with_settings_ttl(mut self, ttl: Duration) -> Self {
        self.settings_ttl = ttl;
        self
    }

    /// The datastore.
    pub fn datastore(&self) -> &Datastore {
        &self.ds
    }

    async fn settings(&self, st: &mut State) -> Result<Settings, IpamError> {
        if let Some((at, s)) = &st.settings
            && at.elapsed() < self.settings_ttl
        {
            return Ok(s.clone());
        }
        let s = Settings::load(&self.ds).await?;
        st.settings = Some((Instant::now(), s.clone()));
        Ok(s)
    }

    async fn labels(
        &self,
        st: &mut State,
        node: &str,
    ) -> Result<BTreeMap<String, String>, IpamError> {
        if let Some((at, l)) = st.labels.get(node)
            && at.elapsed() < self.settings_ttl
        {
            return Ok(l.clone());
        }
        let labels = match self.ds.get::<Node>(None, node).await {
            Ok(n) => n.metadata.labels.unwrap_or_default(),
            Err(DatastoreError::NotFound { .. }) => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        st.labels
            .insert(node.to_owned(), (Instant::now(), labels.clone()));
        Ok(labels)
    }

    async fn relist(&self, st: &mut State) -> Result<(), IpamError> {
        let list = self.ds.list::<IPAMBlock>(None).await?;
        st.blocks.clear();
        for object in list.items {
            match block_from_spec(&object.spec) {
                Ok(block) => {
                    st.blocks.insert(block.cidr, Cached { object, block });
                }
                // A corrupt block is never allocated from (nor "repaired" here).
                Err(e) => tracing::warn!(error = %e, "skipping corrupt IPAM block"),
            }
        }
        st.listed = true;
        Ok(())
    }

    /// Brings the cache's idea of which blocks exist up to date at the cost of one
    /// keys-only list: blocks gone are dropped, blocks new to it are read (many new ones:
    /// one full list instead). Blocks it knows keep their cached state.
    async fn sync(&self, st: &mut State) -> Result<(), IpamError> {
        let names: HashSet<String> = self
            .ds
            .list_names::<IPAMBlock>(None)
            .await?
            .into_iter()
            .collect();
        st.blocks
            .retain(|_, c| names.contains(c.object.metadata.name.as_deref().unwrap_or("")));
        let known: HashSet<&str> = st
            .blocks
            .values()
            .filter_map(|c| c.object.metadata.name.as_deref())
            .collect();
        let new: Vec<String> = names
            .iter()
            .filter(|n| !known.contains(n.as_str()))
            .cloned()
            .collect();
        if new.len() > SYNC_READS {
            return self.relist(st).await;
        }
        for name in new {
            match self.ds.get::<IPAMBlock>(None, &name).await {
                Ok(object) => match block_from_spec(&object.spec) {
                    Ok(block) => {
                        st.blocks.insert(block.cidr, Cached { object, block });
                    }
                    Err(e) => tracing::warn!(error = %e, "skipping corrupt IPAM block"),
                },
                Err(DatastoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn refetch(&self, st: &mut State, cidr: IpNet) -> Result<(), IpamError> {
        match self.ds.get::<IPAMBlock>(None, &block_name(&cidr)).await {
            Ok(object) => cache(st, object),
            Err(DatastoreError::NotFound { .. }) => {
                st.blocks.remove(&cidr);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Allocates the requested families for `req.handle`. All or nothing: when the second
    /// family fails, the first is released again.
    pub async fn allocate(&self, req: &Request) -> Result<Vec<Assignment>, IpamError> {
        let mut st = self.state.lock().await;
        let settings = self.settings(&mut st).await?;
        let labels = self.labels(&mut st, &req.node).await?;
        let mut attrs = req.attrs.clone();
        attrs.insert("node".into(), req.node.clone());
        let families = [(req.v4, Family::V4), (req.v6, Family::V6)];
        let mut out = Vec::new();
        for family in families.iter().filter(|(want, _)| *want).map(|(_, f)| *f) {
            let ctx = Context {
                node: &req.node,
                labels: &labels,
                pools: &settings.pools,
                config: settings.config,
                reservations: &settings.reservations,
            };
            match self
                .allocate_one(&mut st, &ctx, &req.handle, &attrs, family)
                .await
            {
                Ok(a) => out.push(a),
                Err(e) => {
                    for a in &out {
                        if let Err(re) =
                            self.release_addr_locked(&mut st, a.addr, Some(a.seq)).await
                        {
                            tracing::warn!(addr = %a.addr, error = %re, "rollback of a partial allocation failed; GC will reclaim it");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// One address of `family`. Index entries this call added for borrowed blocks it did
    /// not end up holding an address in (a lost race, an error) are taken out again, so a
    /// failure leaves no index entry pointing at a free address.
    async fn allocate_one(
        &self,
        st: &mut State,
        ctx: &Context<'_>,
        handle: &str,
        attrs: &BTreeMap<String, String>,
        family: Family,
    ) -> Result<Assignment, IpamError> {
        let mut indexed = Vec::new();
        let result = self
            .try_allocate_one(st, ctx, handle, attrs, family, &mut indexed)
            .await;
        let kept = match &result {
            Ok(a) if a.borrowed => Some(a.block),
            _ => None,
        };
        let stale: Vec<IpNet> = indexed.into_iter().filter(|c| Some(*c) != kept).collect();
        if !stale.is_empty()
            && let Err(e) = self.unindex(st, handle, Some(&stale)).await
        {
            tracing::warn!(%handle, error = %e, "could not tidy the handle index; GC will");
        }
        result
    }

    async fn try_allocate_one(
        &self,
        st: &mut State,
        ctx: &Context<'_>,
        handle: &str,
        attrs: &BTreeMap<String, String>,
        family: Family,
        indexed: &mut Vec<IpNet>,
    ) -> Result<Assignment, IpamError> {
        let reserved = |a: IpAddr| ctx.reservations.contains(a);
        if !st.listed {
            self.relist(st).await?;
        }
        // Before anything but an address from an own block, the cache must know which
        // blocks exist (`synced`: names listed this call, new blocks read); before borrowing
        // or giving up, also how full the others' blocks are (`fresh`: all re-read).
        let mut synced = false;
        let mut fresh = false;
        let mut skip = HashSet::new();
        let mut conflicts = 0u32;
        for _attempt in 0..self.policy.attempts {
            let choice = choose(ctx, family, st.blocks.values().map(|c| &c.block), &skip);
            let own = matches!(
                choice,
                Choice::Existing {
                    borrowed: false,
                    ..
                }
            );
            if !own && !synced && !fresh {
                self.sync(st).await?;
                synced = true;
                continue;
            }
            let claim = matches!(choice, Choice::Claim { .. });
            if !own && !claim && !fresh {
                self.relist(st).await?;
                fresh = true;
                continue;
            }
            match choice {
                Choice::Exhausted(e) => return Err(e.into()),
                Choice::Existing { cidr, borrowed } => {
                    let Some(cached) = st.blocks.get(&cidr) else {
                        skip.insert(cidr);
                        continue;
                    };
                    let mut block = cached.block.clone();
                    let Some(assigned) = block.allocate(handle, attrs, &reserved) else {
                        skip.insert(cidr);
                        continue;
                    };
                    if borrowed && self.index_borrowed(handle, cidr).await? {
                        indexed.push(cidr);
                    }
                    let mut object = cached.object.clone();
                    object.spec = block_to_spec(&block, object.spec.strict_affinity);
                    match self.ds.update(&object).await {
                        Ok(stored) => {
                            st.blocks.insert(
                                cidr,
                                Cached {
                                    object: stored,
                                    block,
                                },
                            );
                            return Ok(Assignment {
                                addr: assigned.addr,
                                block: cidr,
                                seq: assigned.seq,
                                borrowed,
                            });
                        }
                        Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {
                            conflicts += 1;
                            tracing::debug!(%cidr, borrowed, conflicts, "lost the race for an address");
                            if conflicts > 2 {
                                tokio::time::sleep(self.policy.backoff(conflicts)).await;
                            }
                            self.refetch(st, cidr).await?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Choice::Claim { cidr, .. } => {
                    let mut block = Block::new(cidr, Some(ctx.node.to_owned()));
                    let Some(assigned) = block.allocate(handle, attrs, &reserved) else {
                        skip.insert(cidr);
                        continue;
                    };
                    let object = IPAMBlock::new(
                        &block_name(&cidr),
                        block_to_spec(&block, ctx.config.strict_affinity),
                    );
                    match self.ds.create(&object).await {
                        Ok(stored) => {
                            st.blocks.insert(
                                cidr,
                                Cached {
                                    object: stored,
                                    block,
                                },
                            );
                            self.record_affinity(ctx.node, cidr).await;
                            return Ok(Assignment {
                                addr: assigned.addr,
                                block: cidr,
                                seq: assigned.seq,
                                borrowed: false,
                            });
                        }
                        Err(DatastoreError::AlreadyExists { .. }) => {
                            // Someone else won the block. Every node claims the lowest free
                            // block, so the winners may have taken several since our last
                            // look: learn them all (learning one per attempt falls behind
                            // the others' claims for good), then choose again.
                            conflicts += 1;
                            tracing::debug!(%cidr, conflicts, "lost the race for a block");
                            if conflicts > 2 {
                                tokio::time::sleep(self.policy.backoff(conflicts)).await;
                            }
                            self.sync(st).await?;
                            if !st.blocks.contains_key(&cidr) {
                                skip.insert(cidr);
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(IpamError::Contention {
            attempts: self.policy.attempts,
        })
    }

    /// Writes the `BlockAffinity` record of a claim. The block's own `affinity` is the
    /// truth; a missing record is repaired by the controller, so a failure only warns.
    async fn record_affinity(&self, node: &str, cidr: IpNet) {
        let record = BlockAffinity::new(
            &affinity_name(node, &cidr),
            BlockAffinitySpec {
                state: AffinityState::Confirmed,
                node: node.to_owned(),
                cidr: cidr.to_string(),
                deleted: false,
            },
        );
        match self.ds.create(&record).await {
            Ok(_) | Err(DatastoreError::AlreadyExists { .. }) => {}
            Err(e) => tracing::warn!(%cidr, error = %e, "could not record block affinity"),
        }
    }

    /// Addresses `handle` holds, read fresh from the datastore.
    pub async fn addrs_of(&self, handle: &str) -> Result<Vec<IpAddr>, IpamError> {
        let mut st = self.state.lock().await;
        self.relist(&mut st).await?;
        Ok(st
            .blocks
            .values()
            .flat_map(|c| c.block.addrs_of(handle))
            .collect())
    }

    /// The blocks affine to `node`, read fresh (felix holds them with blackhole routes and
    /// announces them).
    pub async fn node_blocks(&self, node: &str) -> Result<Vec<IpNet>, IpamError> {
        let mut st = self.state.lock().await;
        self.relist(&mut st).await?;
        Ok(st
            .blocks
            .values()
            .filter(|c| c.block.is_affine_to(node))
            .map(|c| c.block.cidr)
            .collect())
    }

    /// Forgets cached pools, config and labels (the next call re-reads them).
    pub async fn invalidate_settings(&self) {
        let mut st = self.state.lock().await;
        st.settings = None;
        st.labels.clear();
    }
}
