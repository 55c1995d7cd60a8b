//! Releases: everything a handle holds (idempotent), or one address guarded by the
//! sequence number it was handed out with (a stale release frees nothing). Each block write
//! is a compare-and-swap; a borrowed address's handle index entry is tidied afterwards.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use twill_api::datastore::DatastoreError;
use twill_api::resources::IPAMHandle;

use super::{Cached, Ipam, IpamError, State, unix_now};
use crate::block::Allocation;
use crate::model::{block_to_spec, handle_name};
use crate::net::block_containing;

impl Ipam {
    /// Releases everything `handle` holds. Idempotent: releasing an unknown or already
    /// released handle returns an empty list.
    pub async fn release_handle(&self, handle: &str) -> Result<Vec<IpAddr>, IpamError> {
        let mut st = self.state.lock().await;
        if !st.listed {
            self.relist(&mut st).await?;
        }
        let index = match self.ds.get::<IPAMHandle>(None, &handle_name(handle)).await {
            Ok(h) => Some(h),
            Err(DatastoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let holding = |st: &State| -> Vec<IpNet> {
            st.blocks
                .values()
                .filter(|c| c.block.allocations.values().any(|a| a.handle == handle))
                .map(|c| c.block.cidr)
                .collect()
        };
        let mut cidrs: HashSet<IpNet> = holding(&st).into_iter().collect();
        if let Some(h) = &index {
            cidrs.extend(h.spec.block.keys().filter_map(|c| c.parse::<IpNet>().ok()));
        }
        if cidrs.is_empty() {
            // Nothing known: the cache may be stale (another process allocated). Look again.
            self.relist(&mut st).await?;
            cidrs.extend(holding(&st));
        }
        let mut released = Vec::new();
        let mut cidrs: Vec<IpNet> = cidrs.into_iter().collect();
        cidrs.sort();
        for cidr in cidrs {
            released.extend(self.release_in_block(&mut st, cidr, handle).await?);
        }
        if let Some(h) = index {
            match self
                .ds
                .delete::<IPAMHandle>(
                    None,
                    &handle_name(handle),
                    h.metadata.resource_version.as_deref(),
                )
                .await
            {
                Ok(_) | Err(DatastoreError::NotFound { .. } | DatastoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(released)
    }

    async fn release_in_block(
        &self,
        st: &mut State,
        cidr: IpNet,
        handle: &str,
    ) -> Result<Vec<IpAddr>, IpamError> {
        if !st.blocks.contains_key(&cidr) {
            self.refetch(st, cidr).await?;
        }
        for retry in 0..self.policy.attempts {
            let Some(cached) = st.blocks.get(&cidr) else {
                return Ok(Vec::new());
            };
            let mut block = cached.block.clone();
            let freed = block.release_handle(handle, unix_now());
            if freed.is_empty() {
                return Ok(freed);
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
                    return Ok(freed);
                }
                Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {
                    // Back off before the re-read, not between the re-read and the write:
                    // a pause there only makes the next write stale too.
                    if retry > 0 {
                        tokio::time::sleep(self.policy.backoff(retry)).await;
                    }
                    self.refetch(st, cidr).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Contention {
            attempts: self.policy.attempts,
        })
    }

    /// Releases one address. With `expected_seq`, only if it still carries that sequence
    /// number (a stale release is `IpamError::Stale`). Returns what it freed (`None`: the
    /// address was already free).
    pub async fn release_addr(
        &self,
        addr: IpAddr,
        expected_seq: Option<u64>,
    ) -> Result<Option<Allocation>, IpamError> {
        let mut st = self.state.lock().await;
        self.release_addr_locked(&mut st, addr, expected_seq).await
    }

    pub(super) async fn release_addr_locked(
        &self,
        st: &mut State,
        addr: IpAddr,
        expected_seq: Option<u64>,
    ) -> Result<Option<Allocation>, IpamError> {
        let cidr = match st.blocks.keys().find(|c| c.contains(&addr)) {
            Some(c) => *c,
            None => {
                let settings = self.settings(st).await?;
                let Some(cidr) = settings
                    .pools
                    .iter()
                    .filter(|p| p.cidr.contains(&addr))
                    .find_map(|p| block_containing(addr, p.block_len))
                else {
                    return Err(IpamError::NoBlock(addr));
                };
                cidr
            }
        };
        self.refetch(st, cidr).await?;
        for retry in 0..self.policy.attempts {
            let Some(cached) = st.blocks.get(&cidr) else {
                return Err(IpamError::NoBlock(addr));
            };
            let mut block = cached.block.clone();
            let Some(freed) = block.release_addr(addr, expected_seq, unix_now())? else {
                return Ok(None);
            };
            let mut object = cached.object.clone();
            object.spec = block_to_spec(&block, object.spec.strict_affinity);
            match self.ds.update(&object).await {
                Ok(stored) => {
                    let borrowed = freed.attrs.get("node") != block.affinity.as_ref();
                    st.blocks.insert(
                        cidr,
                        Cached {
                            object: stored,
                            block,
                        },
                    );
                    if borrowed {
                        self.unindex(st, &freed.handle, None).await?;
                    }
                    return Ok(Some(freed));
                }
                Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {
                    // Back off before the re-read, not between the re-read and the write:
                    // a pause there only makes the next write stale too.
                    if retry > 0 {
                        tokio::time::sleep(self.policy.backoff(retry)).await;
                    }
                    self.refetch(st, cidr).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Contention {
            attempts: self.policy.attempts,
        })
    }
}
