//! The handle index: `IPAMHandle` objects naming the borrowed blocks a handle holds an
//! address in, so a release by handle finds them without reading every block. Written
//! before the borrowing block write, tidied after a release or a failed allocation.

use std::collections::BTreeMap;

use ipnet::IpNet;
use twill_api::datastore::DatastoreError;
use twill_api::resources::{IPAMHandle, IPAMHandleSpec};

use super::{Ipam, IpamError, State};
use crate::model::handle_name;

impl Ipam {
    /// Adds `cidr` to the handle index of `handle` (created when absent). Returns whether
    /// it wrote anything (false: the entry already named the block).
    pub(super) async fn index_borrowed(
        &self,
        handle: &str,
        cidr: IpNet,
    ) -> Result<bool, IpamError> {
        let name = handle_name(handle);
        for retry in 0..self.policy.attempts {
            if retry > 0 {
                tokio::time::sleep(self.policy.backoff(retry)).await;
            }
            let result = match self.ds.get::<IPAMHandle>(None, &name).await {
                Ok(h) if h.spec.block.contains_key(&cidr.to_string()) => return Ok(false),
                Ok(mut h) => {
                    h.spec.block.insert(cidr.to_string(), 1);
                    self.ds.update(&h).await.map(drop)
                }
                Err(DatastoreError::NotFound { .. }) => {
                    let spec = IPAMHandleSpec {
                        handle_id: handle.to_owned(),
                        block: BTreeMap::from([(cidr.to_string(), 1)]),
                        deleted: false,
                    };
                    self.ds
                        .create(&IPAMHandle::new(&name, spec))
                        .await
                        .map(drop)
                }
                Err(e) => return Err(e.into()),
            };
            match result {
                Ok(()) => return Ok(true),
                Err(DatastoreError::Conflict { .. } | DatastoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Contention {
            attempts: self.policy.attempts,
        })
    }

    /// Takes blocks out of the handle index of `handle` (`None`: every block it names),
    /// each only if the block, read fresh, does not hold the handle; deletes the entry when
    /// no block is left. Compare-and-swap like every write.
    pub(super) async fn unindex(
        &self,
        st: &mut State,
        handle: &str,
        only: Option<&[IpNet]>,
    ) -> Result<(), IpamError> {
        let name = handle_name(handle);
        for retry in 0..self.policy.attempts {
            if retry > 0 {
                tokio::time::sleep(self.policy.backoff(retry)).await;
            }
            let mut index = match self.ds.get::<IPAMHandle>(None, &name).await {
                Ok(h) if h.spec.handle_id == handle => h,
                // Another handle's entry under the same object name: not ours to touch.
                Ok(_) | Err(DatastoreError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let named: Vec<IpNet> = index
                .spec
                .block
                .keys()
                .filter_map(|c| c.parse::<IpNet>().ok())
                .filter(|c| only.is_none_or(|only| only.contains(c)))
                .collect();
            let mut changed = false;
            for cidr in named {
                self.refetch(st, cidr).await?;
                let holds = st
                    .blocks
                    .get(&cidr)
                    .is_some_and(|c| !c.block.addrs_of(handle).is_empty());
                if !holds {
                    changed |= index.spec.block.remove(&cidr.to_string()).is_some();
                }
            }
            if !changed {
                return Ok(());
            }
            let result = if index.spec.block.is_empty() {
                let rv = index.metadata.resource_version.clone();
                self.ds
                    .delete::<IPAMHandle>(None, &name, rv.as_deref())
                    .await
                    .map(drop)
            } else {
                self.ds.update(&index).await.map(drop)
            };
            match result {
                Ok(()) | Err(DatastoreError::NotFound { .. }) => return Ok(()),
                Err(DatastoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Contention {
            attempts: self.policy.attempts,
        })
    }
}
