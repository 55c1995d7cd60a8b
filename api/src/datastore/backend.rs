//! The object-safe raw backend interface: JSON objects keyed by kind, namespace and name,
//! with revisions in `metadata.resourceVersion`. The etcd and Kubernetes backends implement
//! it; the typed [`Datastore`](super::Datastore) wraps it and is what callers use.
//!
//! Backends store what they are given: validation is the typed layer's job, so no backend
//! may be called with an object that has not passed `KindInfo::check`.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;

use super::error::Result;
use crate::resources::KindInfo;

/// A list and the revision it was read at (resume a watch from it).
#[derive(Clone, Debug, Default)]
pub struct RawList {
    pub items: Vec<Value>,
    pub revision: String,
}

/// One change seen by a watch. Objects carry their new `metadata.resourceVersion`; a
/// deleted object carries the revision of its deletion.
#[derive(Clone, Debug, PartialEq)]
pub enum RawEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    /// Progress: nothing of interest changed up to this revision.
    Bookmark(String),
}

/// A stream of watch events; yields `Err(Expired)` when the start revision is too old.
pub type RawWatchStream = BoxStream<'static, Result<RawEvent>>;

/// Storage of JSON objects with compare-and-swap on revisions.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Where the backend talks to (for error messages).
    fn endpoint(&self) -> &str;

    async fn get(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value>;

    /// All objects of a kind (in one namespace, or all namespaces when `None`), sorted by
    /// namespace and name, with the revision of the read.
    async fn list(&self, kind: &'static KindInfo, namespace: Option<&str>) -> Result<RawList>;

    /// The names of every object of a kind (one namespace, or all when `None`, then as
    /// `<namespace>/<name>`), sorted: what exists, without reading the objects. The
    /// default reads the full list; backends that can list keys only do so.
    async fn list_names(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
    ) -> Result<Vec<String>> {
        let list = self.list(kind, namespace).await?;
        let mut names: Vec<String> = list
            .items
            .iter()
            .filter_map(|o| {
                let name = o.pointer("/metadata/name")?.as_str()?;
                match (
                    namespace,
                    o.pointer("/metadata/namespace").and_then(Value::as_str),
                ) {
                    (None, Some(ns)) if kind.namespaced => Some(format!("{ns}/{name}")),
                    _ => Some(name.to_owned()),
                }
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Stores a new object; `AlreadyExists` when one of that name exists.
    async fn create(&self, kind: &'static KindInfo, object: Value) -> Result<Value>;

    /// Replaces an existing object. When `metadata.resourceVersion` is set, only if the
    /// stored revision is still that one (`Conflict` otherwise); when unset, unconditionally.
    async fn update(&self, kind: &'static KindInfo, object: Value) -> Result<Value>;

    /// Replaces an object's `status` (CAS like `update`). Kubernetes keeps status in a
    /// subresource that plain updates ignore; etcd stores the object whole, so the default
    /// is a plain update.
    async fn update_status(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        self.update(kind, object).await
    }

    /// Deletes an object, only if its revision is `precondition` when one is given.
    /// Returns the object as it was.
    async fn delete(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        name: &str,
        precondition: Option<&str>,
    ) -> Result<Value>;

    /// The Kubernetes client behind this backend, for what only Kubernetes mode does
    /// (watches with field selectors, Leases, Secrets); `None` for etcd.
    fn kube_client(&self) -> Option<kube::Client> {
        None
    }

    /// Changes after `revision` (exclusive), in order.
    async fn watch(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        revision: &str,
    ) -> Result<RawWatchStream>;
}
