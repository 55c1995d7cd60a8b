//! A `Backend` wrapper that counts the requests each operation makes, so the benchmark can
//! say how many datastore round trips one allocation costs, by kind of request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde_json::Value;
use twill_api::datastore::{Backend, RawList, RawWatchStream, Result};
use twill_api::resources::KindInfo;

/// Requests made so far, by kind.
#[derive(Debug, Default)]
pub struct Counts {
    pub get: AtomicU64,
    pub list: AtomicU64,
    pub list_names: AtomicU64,
    pub create: AtomicU64,
    pub update: AtomicU64,
    pub delete: AtomicU64,
}

/// A snapshot of [`Counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub get: u64,
    pub list: u64,
    pub list_names: u64,
    pub create: u64,
    pub update: u64,
    pub delete: u64,
}

impl Snapshot {
    pub fn total(&self) -> u64 {
        self.get + self.list + self.list_names + self.create + self.update + self.delete
    }

    pub fn plus(&self, other: &Snapshot) -> Snapshot {
        Snapshot {
            get: self.get + other.get,
            list: self.list + other.list,
            list_names: self.list_names + other.list_names,
            create: self.create + other.create,
            update: self.update + other.update,
            delete: self.delete + other.delete,
        }
    }

    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            get: self.get - earlier.get,
            list: self.list - earlier.list,
            list_names: self.list_names - earlier.list_names,
            create: self.create - earlier.create,
            update: self.update - earlier.update,
            delete: self.delete - earlier.delete,
        }
    }
}

impl Counts {
    pub fn snapshot(&self) -> Snapshot {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            get: n(&self.get),
            list: n(&self.list),
            list_names: n(&self.list_names),
            create: n(&self.create),
            update: n(&self.update),
            delete: n(&self.delete),
        }
    }
}

/// Counts every request, then passes it on.
pub struct Counting {
    pub inner: Arc<dyn Backend>,
    pub counts: Arc<Counts>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[async_trait]
impl Backend for Counting {
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }

    async fn get(&self, kind: &'static KindInfo, ns: Option<&str>, name: &str) -> Result<Value> {
        bump(&self.counts.get);
        self.inner.get(kind, ns, name).await
    }

    async fn list(&self, kind: &'static KindInfo, ns: Option<&str>) -> Result<RawList> {
        bump(&self.counts.list);
        self.inner.list(kind, ns).await
    }

    async fn list_names(&self, kind: &'static KindInfo, ns: Option<&str>) -> Result<Vec<String>> {
        bump(&self.counts.list_names);
        self.inner.list_names(kind, ns).await
    }

    async fn create(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        bump(&self.counts.create);
        self.inner.create(kind, object).await
    }

    async fn update(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        bump(&self.counts.update);
        self.inner.update(kind, object).await
    }

    async fn update_status(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        bump(&self.counts.update);
        self.inner.update_status(kind, object).await
    }

    async fn delete(
        &self,
        kind: &'static KindInfo,
        ns: Option<&str>,
        name: &str,
        precondition: Option<&str>,
    ) -> Result<Value> {
        bump(&self.counts.delete);
        self.inner.delete(kind, ns, name, precondition).await
    }

    async fn watch(
        &self,
        kind: &'static KindInfo,
        ns: Option<&str>,
        revision: &str,
    ) -> Result<RawWatchStream> {
        self.inner.watch(kind, ns, revision).await
    }
}
