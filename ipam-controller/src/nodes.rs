//! Kubernetes mode: a Twill `Node` whose Kubernetes `Node` is gone is deleted. felix keeps
//! the Twill record in step with its Kubernetes Node, and goes away with it, so nobody
//! else would ever remove it; once it is gone, the node's addresses and empty blocks are
//! released like those of any node that is gone.
//!
//! Deleting a live node's record would let its pods' addresses be handed out again, so
//! this is careful: nothing is deleted when the Kubernetes list is empty (a misread, not a
//! cluster without nodes), a record must be found orphaned on two consecutive passes, and
//! the delete is guarded by the revision it was seen at.

use std::collections::{BTreeMap, BTreeSet};

use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::Node;
use twill_api::resources::native::KubeNode;

use crate::allocator::IpamError;

/// Twill nodes (name → revision) with no Kubernetes Node of the same name.
pub fn orphans(
    twill: &BTreeMap<String, Option<String>>,
    kube: &BTreeSet<String>,
) -> BTreeMap<String, Option<String>> {
    if kube.is_empty() {
        return BTreeMap::new();
    }
    twill
        .iter()
        .filter(|(name, _)| !kube.contains(*name))
        .map(|(n, rv)| (n.clone(), rv.clone()))
        .collect()
}

/// Remembers orphans between passes; deletes those seen twice in a row.
#[derive(Debug, Default)]
pub struct NodePruner {
    suspects: BTreeSet<String>,
}

impl NodePruner {
    /// One pass. Returns the names of the records deleted.
    pub async fn pass(&mut self, ds: &Datastore) -> Result<Vec<String>, IpamError> {
        let kube: BTreeSet<String> = ds
            .list::<KubeNode>(None)
            .await?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        let twill: BTreeMap<String, Option<String>> = ds
            .list::<Node>(None)
            .await?
            .items
            .into_iter()
            .filter_map(|n| Some((n.metadata.name?, n.metadata.resource_version)))
            .collect();
        let found = orphans(&twill, &kube);
        let mut deleted = Vec::new();
        for (name, rv) in &found {
            if !self.suspects.contains(name) {
                continue;
            }
            match ds.delete::<Node>(None, name, rv.as_deref()).await {
                Ok(_) => {
                    tracing::info!(node = %name, "deleted the record of a Kubernetes Node that is gone");
                    deleted.push(name.clone());
                }
                Err(DatastoreError::NotFound { .. } | DatastoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.suspects = found.into_keys().collect();
        for name in &deleted {
            self.suspects.remove(name);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twill(names: &[&str]) -> BTreeMap<String, Option<String>> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), Some("1".to_owned())))
            .collect()
    }

    #[test]
    fn only_records_without_a_kubernetes_node_are_orphans() {
        let kube: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
        let found = orphans(&twill(&["a", "b", "c"]), &kube);
        assert_eq!(found.keys().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn an_empty_kubernetes_list_orphans_nothing() {
        assert!(orphans(&twill(&["a", "b"]), &BTreeSet::new()).is_empty());
    }
}
