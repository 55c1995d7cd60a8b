//! The typed `Datastore`: what every Twill component uses. It validates every object on
//! the write path (so an invalid object is never stored, whoever writes it), enforces the
//! rules that span objects (pools may not overlap), and turns a backend's raw watch into
//! a stream that resumes and re-lists by itself.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use serde_json::Value;

use super::backend::{Backend, RawEvent, RawWatchStream};
use super::error::{DatastoreError, Result};
use crate::resources::kinds::{IPPOOL, from_value_with_path};
use crate::resources::{IPPool, KindInfo, Resource};
use crate::validate::{ValidationError, pool_unchanged_shape, pools_overlap};

/// Objects of one kind and the revision they were read at.
#[derive(Clone, Debug)]
pub struct List<T> {
    pub items: Vec<T>,
    /// Start a watch from here to see every later change.
    pub revision: String,
}

/// A change seen by [`Datastore::watch`].
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<T> {
    Added(T),
    Modified(T),
    Deleted(T),
    /// The full current state: the first event of a watch started without a revision, and
    /// again whenever the watch fell too far behind (compaction, HTTP 410). Replace, don't
    /// merge: objects not in `items` are gone.
    Relisted {
        items: Vec<T>,
        revision: String,
    },
}

/// Typed access to the datastore. Cheap to clone.
#[derive(Clone)]
pub struct Datastore {
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Datastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Datastore({})", self.backend.endpoint())
    }
}

fn name_of(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn decode<T: Resource>(value: Value) -> Result<T> {
    from_value_with_path::<T>(value).map_err(|error| DatastoreError::Backend {
        endpoint: String::new(),
        reason: format!("stored {} does not decode: {error}", T::kind_info().kind),
    })
}

fn encode<T: Resource>(object: &T) -> Result<Value> {
    serde_json::to_value(object).map_err(|e| DatastoreError::Invalid {
        kind: T::kind_info().kind.into(),
        name: object.meta().name.clone().unwrap_or_default(),
        error: ValidationError::new("", e.to_string()),
    })
}

impl Datastore {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Datastore { backend }
    }

    /// The endpoint errors name.
    pub fn endpoint(&self) -> &str {
        self.backend.endpoint()
    }

    /// The raw backend, for callers that need JSON access (twillctl).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The Kubernetes client in Kubernetes mode (`None` with etcd).
    pub fn kube_client(&self) -> Option<kube::Client> {
        self.backend.kube_client()
    }

    pub async fn get<T: Resource>(&self, namespace: Option<&str>, name: &str) -> Result<T> {
        decode(self.backend.get(T::kind_info(), namespace, name).await?)
    }

    /// Every object of the kind (one namespace, or all when `None`), with the revision.
    pub async fn list<T: Resource>(&self, namespace: Option<&str>) -> Result<List<T>> {
        let raw = self.backend.list(T::kind_info(), namespace).await?;
        let items = raw.items.into_iter().map(decode).collect::<Result<_>>()?;
        Ok(List {
            items,
            revision: raw.revision,
        })
    }

    /// The names of every object of the kind (sorted; `<namespace>/<name>` when listing a
    /// namespaced kind across namespaces), without reading the objects themselves.
    pub async fn list_names<T: Resource>(&self, namespace: Option<&str>) -> Result<Vec<String>> {
        self.backend.list_names(T::kind_info(), namespace).await
    }

    /// Creates an object after validating it; returns it as stored (with its revision).
    pub async fn create<T: Resource>(&self, object: &T) -> Result<T> {
        decode(self.create_dynamic(T::kind_info(), encode(object)?).await?)
    }

    /// Compare-and-swap update: refused with `Conflict` when `metadata.resourceVersion` is
    /// set and no longer current. Without a resourceVersion the write is unconditional.
    pub async fn update<T: Resource>(&self, object: &T) -> Result<T> {
        decode(self.update_dynamic(T::kind_info(), encode(object)?).await?)
    }

    /// Compare-and-swap update of the object's `status` (controllers reporting back, e.g.
    /// a pool's conditions). In Kubernetes mode only this call changes status.
    pub async fn update_status<T: Resource>(&self, object: &T) -> Result<T> {
        let kind = T::kind_info();
        let object = self.check(kind, encode(object)?)?;
        decode(self.backend.update_status(kind, object).await?)
    }

    /// Deletes, guarded by `precondition` (a revision) when given; returns the last state.
    pub async fn delete<T: Resource>(
        &self,
        namespace: Option<&str>,
        name: &str,
        precondition: Option<&str>,
    ) -> Result<T> {
        decode(
            self.backend
                .delete(T::kind_info(), namespace, name, precondition)
                .await?,
        )
    }

    /// Validates and normalises a JSON object of `kind`, as the write path does.
    pub fn check(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        let name = name_of(&object);
        let mut object = (kind.check)(object).map_err(|error| DatastoreError::Invalid {
            kind: kind.kind.into(),
            name: name.clone(),
            error,
        })?;
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), kind.api_version.into());
            map.insert("kind".into(), kind.kind.into());
        }
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        if kind.namespaced && namespace.is_none_or(str::is_empty) {
            return Err(DatastoreError::Invalid {
                kind: kind.kind.into(),
                name,
                error: ValidationError::new("metadata.namespace", "is required for this kind"),
            });
        }
        if !kind.namespaced
            && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("namespace");
        }
        Ok(object)
    }

    /// Rules that need other objects: a pool may not overlap another pool, and an update
    /// may not change a pool's `cidr` or `blockSize` (blocks already carved at the old size
    /// would overlap new ones and hand their addresses out twice).
    async fn check_against_others(
        &self,
        kind: &'static KindInfo,
        object: &Value,
        updating: bool,
    ) -> Result<()> {
        if *kind == IPPOOL {
            let pool: IPPool = decode(object.clone())?;
            let others = self.list::<IPPool>(None).await?.items;
            let invalid = |error| DatastoreError::Invalid {
                kind: kind.kind.into(),
                name: name_of(object),
                error,
            };
            pools_overlap(&pool, &others).map_err(invalid)?;
            if updating
                && let Some(stored) = others
                    .iter()
                    .find(|p| p.metadata.name == pool.metadata.name)
            {
                pool_unchanged_shape(stored, &pool).map_err(invalid)?;
            }
        }
        Ok(())
    }

    /// Runs every check a create (`updating` false) or an update of `object` would, against
    /// the datastore as it is now, and writes nothing: what a manifest's documents are
    /// checked with before the first of them is written. Returns the normalised object.
    pub async fn dry_run(
        &self,
        kind: &'static KindInfo,
        object: Value,
        updating: bool,
    ) -> Result<Value> {
        let object = self.check(kind, object)?;
        self.check_against_others(kind, &object, updating).await?;
        Ok(object)
    }

    /// Creates a JSON object of `kind` after validation.
    pub async fn create_dynamic(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        let object = self.check(kind, object)?;
        self.check_against_others(kind, &object, false).await?;
        self.backend.create(kind, object).await
    }

    /// Updates a JSON object of `kind` after validation (CAS when it has a resourceVersion).
    pub async fn update_dynamic(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        let object = self.check(kind, object)?;
        self.check_against_others(kind, &object, true).await?;
        self.backend.update(kind, object).await
    }

    /// Watches a kind. With `revision`, the stream starts with the changes after it; without,
    /// it starts with a `Relisted` snapshot. When the backend says the revision is too old,
    /// the stream re-lists (a `Relisted` event) and carries on from the new revision.
    /// Other errors are yielded; the stream then retries from the last revision it saw.
    pub fn watch<T: Resource>(
        &self,
        namespace: Option<&str>,
        revision: Option<String>,
    ) -> BoxStream<'static, Result<WatchEvent<T>>> {
        struct State {
            backend: Arc<dyn Backend>,
            kind: &'static KindInfo,
            namespace: Option<String>,
            revision: Option<String>,
            inner: Option<RawWatchStream>,
            pending_error: bool,
        }
        let state = State {
            backend: self.backend.clone(),
            kind: T::kind_info(),
            namespace: namespace.map(str::to_string),
            revision,
            inner: None,
            pending_error: false,
        };
        stream::unfold(state, |mut state| async move {
            loop {
                if state.pending_error {
                    // Back off a little after an error so a dead datastore is not hammered.
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    state.pending_error = false;
                }
                let Some(revision) = state.revision.clone() else {
                    match state
                        .backend
                        .list(state.kind, state.namespace.as_deref())
                        .await
                    {
                        Ok(list) => {
                            let items = list
                                .items
                                .into_iter()
                                .map(decode)
                                .collect::<Result<Vec<T>>>();
                            state.revision = Some(list.revision.clone());
                            state.inner = None;
                            let event = items.map(|items| WatchEvent::Relisted {
                                items,
                                revision: list.revision,
                            });
                            return Some((event, state));
                        }
                        Err(error) => {
                            state.pending_error = true;
                            return Some((Err(error), state));
                        }
                    }
                };
                let inner = match state.inner.as_mut() {
                    Some(inner) => inner,
                    None => {
                        match state
                            .backend
                            .watch(state.kind, state.namespace.as_deref(), &revision)
                            .await
                        {
                            Ok(inner) => state.inner.insert(inner),
                            Err(DatastoreError::Expired { .. }) => {
                                state.revision = None;
                                continue;
                            }
                            Err(error) => {
                                state.pending_error = true;
                                return Some((Err(error), state));
                            }
                        }
                    }
                };
                match inner.next().await {
                    None => {
                        // The server closed the watch (timeout): resume from where we are.
                        state.inner = None;
                    }
                    Some(Err(DatastoreError::Expired { .. })) => {
                        state.revision = None;
                        state.inner = None;
                    }
                    Some(Err(error)) => {
                        state.inner = None;
                        state.pending_error = true;
                        return Some((Err(error), state));
                    }
                    Some(Ok(RawEvent::Bookmark(revision))) => state.revision = Some(revision),
                    Some(Ok(event)) => {
                        let (object, wrap): (Value, fn(T) -> WatchEvent<T>) = match event {
                            RawEvent::Added(o) => (o, WatchEvent::Added),
                            RawEvent::Modified(o) => (o, WatchEvent::Modified),
                            RawEvent::Deleted(o) => (o, WatchEvent::Deleted),
                            RawEvent::Bookmark(_) => continue,
                        };
                        if let Some(rv) = object
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                        {
                            state.revision = Some(rv.to_string());
                        }
                        return Some((decode(object).map(wrap), state));
                    }
                }
            }
        })
        .boxed()
    }
}
