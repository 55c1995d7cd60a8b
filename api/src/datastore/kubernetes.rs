//! The Kubernetes backend: Twill's kinds as CRDs of `networking.twill.dev/v1`, and the
//! native `Pod`, `Namespace`, `Node`, `Service` and `NetworkPolicy`, through kube-rs dynamic objects.
//! The revision is the API server's `resourceVersion`: updates send it back so the server
//! does the compare-and-swap (409 → `Conflict`); a watch from a revision the server has
//! forgotten answers 410 (`Expired`), and the typed layer re-lists.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams, Preconditions,
    WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use super::backend::{Backend, RawEvent, RawList, RawWatchStream};
use super::error::{DatastoreError, Result};
use crate::resources::KindInfo;
use crate::validate::ValidationError;

/// Seconds a single watch request stays open before the server ends it (then resumed).
const WATCH_TIMEOUT_SECS: u32 = 290;

/// A Kubernetes API server as datastore.
#[derive(Clone)]
pub struct KubernetesBackend {
    client: Client,
    endpoint: String,
}

impl KubernetesBackend {
    /// Connects with a kubeconfig (or the inferred config) and checks the API server
    /// answers within `timeout`.
    pub async fn connect(kubeconfig: Option<&Path>, timeout: Duration) -> Result<Self> {
        let unavailable = |endpoint: &str, reason: String| DatastoreError::Unavailable {
            endpoint: endpoint.to_string(),
            reason,
        };
        let mut config = match kubeconfig {
            Some(path) => {
                let where_ = path.display().to_string();
                let file = read_kubeconfig(path).map_err(|e| unavailable(&where_, e))?;
                Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| unavailable(&where_, e.to_string()))?
            }
            None => Config::infer()
                .await
                .map_err(|e| unavailable("kubernetes (no kubeconfig)", e.to_string()))?,
        };
        config.connect_timeout = Some(timeout);
        let endpoint = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| unavailable(&endpoint, e.to_string()))?;
        tokio::time::timeout(timeout, client.apiserver_version())
            .await
            .map_err(|_| unavailable(&endpoint, format!("no answer within {timeout:?}")))?
            .map_err(|e| unavailable(&endpoint, e.to_string()))?;
        Ok(KubernetesBackend { client, endpoint })
    }

    /// Wraps an existing client (tests hand in one over a mock service).
    pub fn from_client(client: Client, endpoint: impl Into<String>) -> Self {
        KubernetesBackend {
            client,
            endpoint: endpoint.into(),
        }
    }

    /// The Kubernetes client, for callers that need the API server itself (leader
    /// election on a `Lease`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn api(&self, kind: &KindInfo, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = ApiResource {
            group: kind.group.into(),
            version: kind.version.into(),
            api_version: kind.api_version.into(),
            kind: kind.kind.into(),
            plural: kind.plural.into(),
        };
        match namespace {
            Some(ns) if kind.namespaced => Api::namespaced_with(self.client.clone(), ns, &resource),
            _ => Api::all_with(self.client.clone(), &resource),
        }
    }

    fn map_error(
        &self,
        kind: &KindInfo,
        name: &str,
        expected: Option<&str>,
        error: kube::Error,
    ) -> DatastoreError {
        match error {
            kube::Error::Api(status) => match status.code {
                404 => DatastoreError::NotFound {
                    kind: kind.kind.into(),
                    name: name.into(),
                },
                409 if status.reason == "AlreadyExists" => DatastoreError::AlreadyExists {
                    kind: kind.kind.into(),
                    name: name.into(),
                },
                409 => DatastoreError::Conflict {
                    kind: kind.kind.into(),
                    name: name.into(),
                    expected: expected.unwrap_or("any").into(),
                },
                410 => DatastoreError::Expired {
                    revision: expected.unwrap_or_default().into(),
                },
                422 => DatastoreError::Invalid {
                    kind: kind.kind.into(),
                    name: name.into(),
                    error: ValidationError::new("", status.message),
                },
                code if code >= 500 || code == 429 => DatastoreError::Unavailable {
                    endpoint: self.endpoint.clone(),
                    reason: format!("{code} {}: {}", status.reason, status.message),
                },
                code => DatastoreError::Backend {
                    endpoint: self.endpoint.clone(),
                    reason: format!("{code} {}: {}", status.reason, status.message),
                },
            },
            kube::Error::SerdeError(e) => DatastoreError::Backend {
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
            },
            other => DatastoreError::Unavailable {
                endpoint: self.endpoint.clone(),
                reason: other.to_string(),
            },
        }
    }

    fn encode_dynamic(&self, kind: &KindInfo, object: Value) -> Result<DynamicObject> {
        serde_json::from_value(object).map_err(|e| DatastoreError::Invalid {
            kind: kind.kind.into(),
            name: String::new(),
            error: ValidationError::new("", e.to_string()),
        })
    }

    fn decode_dynamic(&self, kind: &KindInfo, object: DynamicObject) -> Result<Value> {
        let mut value = serde_json::to_value(object).map_err(|e| DatastoreError::Backend {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })?;
        // List items come without apiVersion/kind; put them back.
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), kind.api_version.into());
            map.insert("kind".into(), kind.kind.into());
        }
        Ok(value)
    }
}

/// Reads a kubeconfig path as kubectl does: `KUBECONFIG` may list several files (`:`), merged
/// in order (the first to set a value wins); files that do not exist are skipped.
fn read_kubeconfig(path: &Path) -> std::result::Result<Kubeconfig, String> {
    let mut merged: Option<Kubeconfig> = None;
    let mut missing = Vec::new();
    for file in std::env::split_paths(path.as_os_str()) {
        if file.as_os_str().is_empty() {
            continue;
        }
        if !file.exists() {
            missing.push(file.display().to_string());
            continue;
        }
        let next = Kubeconfig::read_from(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        merged = Some(match merged {
            None => next,
            Some(first) => first
                .merge(next)
                .map_err(|e| format!("{}: {e}", file.display()))?,
        });
    }
    merged.ok_or_else(|| {
        format!(
            "no kubeconfig file exists (looked at {})",
            missing.join(", ")
        )
    })
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn kube_client(&self) -> Option<Client> {
        Some(self.client.clone())
    }

    async fn get(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        let object = self
            .api(kind, namespace)
            .get(name)
            .await
            .map_err(|e| self.map_error(kind, name, None, e))?;
        self.decode_dynamic(kind, object)
    }

    async fn list(&self, kind: &'static KindInfo, namespace: Option<&str>) -> Result<RawList> {
        let list = self
            .api(kind, namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| self.map_error(kind, "", None, e))?;
        let revision = list.metadata.resource_version.clone().unwrap_or_default();
        let mut items = list
            .items
            .into_iter()
            .map(|o| self.decode_dynamic(kind, o))
            .collect::<Result<Vec<_>>>()?;
        items.sort_by(|a, b| {
            let key = |o: &Value| {
                (
                    meta_str(o, "namespace").unwrap_or_default().to_string(),
                    meta_str(o, "name").unwrap_or_default().to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        Ok(RawList { items, revision })
    }

    async fn create(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        let namespace = meta_str(&object, "namespace").map(str::to_string);
        let mut object = self.encode_dynamic(kind, object)?;
        object.metadata.resource_version = None;
        let created = self
            .api(kind, namespace.as_deref())
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| self.map_error(kind, &name, None, e))?;
        self.decode_dynamic(kind, created)
    }

    async fn update(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        let namespace = meta_str(&object, "namespace").map(str::to_string);
        let expected = meta_str(&object, "resourceVersion").map(str::to_string);
        let object = self.encode_dynamic(kind, object)?;
        let updated = self
            .api(kind, namespace.as_deref())
            .replace(&name, &PostParams::default(), &object)
            .await
            .map_err(|e| self.map_error(kind, &name, expected.as_deref(), e))?;
        self.decode_dynamic(kind, updated)
    }

    async fn update_status(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        let namespace = meta_str(&object, "namespace").map(str::to_string);
        let expected = meta_str(&object, "resourceVersion").map(str::to_string);
        let object = self.encode_dynamic(kind, object)?;
        let updated = self
            .api(kind, namespace.as_deref())
            .replace_status(&name, &PostParams::default(), &object)
            .await
            .map_err(|e| self.map_error(kind, &name, expected.as_deref(), e))?;
        self.decode_dynamic(kind, updated)
    }

    async fn delete(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        name: &str,
        precondition: Option<&str>,
    ) -> Result<Value> {
        let api = self.api(kind, namespace);
        // The API server may answer a delete with a Status instead of the object: read it
        // first so the caller always gets the last state.
        let before = api
            .get(name)
            .await
            .map_err(|e| self.map_error(kind, name, None, e))?;
        let params = DeleteParams {
            preconditions: precondition.map(|rv| Preconditions {
                resource_version: Some(rv.to_string()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        let deleted = api
            .delete(name, &params)
            .await
            .map_err(|e| self.map_error(kind, name, precondition, e))?;
        self.decode_dynamic(kind, deleted.left().unwrap_or(before))
    }

    async fn watch(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        revision: &str,
    ) -> Result<RawWatchStream> {
        let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
        let stream = self
            .api(kind, namespace)
            .watch(&params, revision)
            .await
            .map_err(|e| self.map_error(kind, "", Some(revision), e))?;
        let this = self.clone();
        let revision = revision.to_string();
        let stream = stream
            .map_err({
                let this = this.clone();
                let revision = revision.clone();
                move |e| this.map_error(kind, "", Some(&revision), e)
            })
            .map(move |event| match event? {
                WatchEvent::Added(o) => this.decode_dynamic(kind, o).map(RawEvent::Added),
                WatchEvent::Modified(o) => this.decode_dynamic(kind, o).map(RawEvent::Modified),
                WatchEvent::Deleted(o) => this.decode_dynamic(kind, o).map(RawEvent::Deleted),
                WatchEvent::Bookmark(b) => Ok(RawEvent::Bookmark(b.metadata.resource_version)),
                WatchEvent::Error(status) if status.code == 410 => Err(DatastoreError::Expired {
                    revision: revision.clone(),
                }),
                WatchEvent::Error(status) => Err(DatastoreError::Unavailable {
                    endpoint: this.endpoint.clone(),
                    reason: format!(
                        "watch error {} {}: {}",
                        status.code, status.reason, status.message
                    ),
                }),
            });
        Ok(stream.boxed())
    }
}
