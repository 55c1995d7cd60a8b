//! The etcd v3 backend. Objects are JSON under `/twill/v1/<kind>/[<namespace>/]<name>`
//! (`<kind>` lowercase, e.g. `/twill/v1/ippool/default-ipv4`). The revision of an object
//! is its key's `mod_revision`; every conditional write is one transaction comparing it,
//! so a lost race is a `Conflict`, never an overwrite. `resourceVersion` is not stored in
//! the value: it is filled in from the key's revision on every read.
//!
//! Never blocks for long: each request is bounded by a timeout and a datastore that cannot
//! be reached is `Unavailable`, naming the endpoint.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, Txn, TxnOp,
    WatchOptions,
};
use futures::StreamExt;
use serde_json::Value;

use super::backend::{Backend, RawEvent, RawList, RawWatchStream};
use super::error::{DatastoreError, Result};
use super::lifecycle::{self, Write};
use crate::resources::KindInfo;
use crate::resources::kinds::NAMESPACE;

/// Prefix of every key Twill writes.
pub const KEY_PREFIX: &str = "/twill/v1/";

/// How often an unguarded update or delete reads again after losing a race.
const UNGUARDED_ATTEMPTS: usize = 10;

/// Label every namespace carries (the API server sets it in Kubernetes mode).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// An etcd v3 datastore.
#[derive(Clone)]
pub struct EtcdBackend {
    client: Client,
    endpoint: String,
    request_timeout: Duration,
}

impl EtcdBackend {
    /// Connects and checks the cluster answers, within `connect_timeout`.
    pub async fn connect(endpoints: &[String], connect_timeout: Duration) -> Result<Self> {
        let endpoint = endpoints.join(",");
        if endpoints.is_empty() {
            return Err(DatastoreError::Unavailable {
                endpoint: "etcd".into(),
                reason: "no etcd endpoints given (--etcd-endpoints / TWILL_ETCD_ENDPOINTS)".into(),
            });
        }
        let unavailable = |reason: String| DatastoreError::Unavailable {
            endpoint: endpoint.clone(),
            reason,
        };
        let options = ConnectOptions::new()
            .with_connect_timeout(connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let mut client =
            tokio::time::timeout(connect_timeout, Client::connect(endpoints, Some(options)))
                .await
                .map_err(|_| unavailable(format!("no connection within {connect_timeout:?}")))?
                .map_err(|e| unavailable(e.to_string()))?;
        // The connection may be lazy: one cheap request proves the cluster answers.
        tokio::time::timeout(connect_timeout, client.status())
            .await
            .map_err(|_| unavailable(format!("no answer within {connect_timeout:?}")))?
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(EtcdBackend {
            client,
            endpoint,
            request_timeout: Duration::from_secs(10).max(connect_timeout),
        })
    }

    /// The etcd client, for callers that need etcd itself (leases, leader election).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn unavailable(&self, error: impl std::fmt::Display) -> DatastoreError {
        DatastoreError::Unavailable {
            endpoint: self.endpoint.clone(),
            reason: error.to_string(),
        }
    }

    fn backend_error(&self, reason: impl Into<String>) -> DatastoreError {
        DatastoreError::Backend {
            endpoint: self.endpoint.clone(),
            reason: reason.into(),
        }
    }

    /// Runs one request with the request timeout, mapping errors to `Unavailable`.
    async fn call<T, F>(&self, request: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.request_timeout, request).await {
            Err(_) => Err(self.unavailable(format!("no answer within {:?}", self.request_timeout))),
            Ok(Err(error)) => Err(self.unavailable(error)),
            Ok(Ok(value)) => Ok(value),
        }
    }

    fn decode(&self, kv: &KeyValue, revision: i64) -> Result<Value> {
        let mut object: Value = serde_json::from_slice(kv.value()).map_err(|e| {
            self.backend_error(format!(
                "value of {} is not JSON: {e}",
                String::from_utf8_lossy(kv.key())
            ))
        })?;
        set_meta(&mut object, "resourceVersion", revision.to_string().into());
        Ok(object)
    }

    /// The stored object at `key` and its revision; `NotFound` when there is none.
    async fn read(&self, kind: &KindInfo, key: &str, name: &str) -> Result<(Value, i64)> {
        let mut client = self.client.clone();
        let resp = self.call(client.get(key, None)).await?;
        match resp.kvs().first() {
            Some(kv) => Ok((self.decode(kv, kv.mod_revision())?, kv.mod_revision())),
            None => Err(DatastoreError::NotFound {
                kind: kind.kind.into(),
                name: name.into(),
            }),
        }
    }

    /// Writes what an update or delete turned into, if `key` is still at `revision`:
    /// `None` when it is not (someone wrote in between).
    async fn write(&self, key: &str, revision: i64, outcome: Write) -> Result<Option<Value>> {
        let compare = Compare::mod_revision(key, CompareOp::Equal, revision);
        let (op, mut object) = match outcome {
            Write::Put(mut object) => {
                if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("resourceVersion");
                }
                let value =
                    serde_json::to_vec(&object).map_err(|e| self.backend_error(e.to_string()))?;
                (TxnOp::put(key, value, None), object)
            }
            Write::Remove(object) => (TxnOp::delete(key, None), object),
        };
        let txn = Txn::new().when([compare]).and_then([op]);
        let mut client = self.client.clone();
        let resp = self.call(client.txn(txn)).await?;
        if !resp.succeeded() {
            return Ok(None);
        }
        // A removed object carries the revision of its deletion, as watches report it.
        set_meta(
            &mut object,
            "resourceVersion",
            header_revision(resp.header()).to_string().into(),
        );
        Ok(Some(object))
    }

    /// Where the current value of `name` is, for the error that explains a failed txn.
    async fn explain_failure(
        &self,
        kind: &KindInfo,
        key: &str,
        name: &str,
        expected: &str,
    ) -> DatastoreError {
        let mut client = self.client.clone();
        match self.call(client.get(key, None)).await {
            Ok(resp) if resp.kvs().is_empty() => DatastoreError::NotFound {
                kind: kind.kind.into(),
                name: name.into(),
            },
            Ok(_) => DatastoreError::Conflict {
                kind: kind.kind.into(),
                name: name.into(),
                expected: expected.into(),
            },
            Err(error) => error,
        }
    }
}

/// `/twill/v1/<kind>/[<namespace>/]<name>`.
pub fn key_for(kind: &KindInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if kind.namespaced => format!("{KEY_PREFIX}{}/{ns}/{name}", kind.key_segment()),
        _ => format!("{KEY_PREFIX}{}/{name}", kind.key_segment()),
    }
}

/// The prefix listing a kind, in one namespace or all.
fn prefix_for(kind: &KindInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced => format!("{KEY_PREFIX}{}/{ns}/", kind.key_segment()),
        _ => format!("{KEY_PREFIX}{}/", kind.key_segment()),
    }
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

fn set_meta(object: &mut Value, field: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(field.into(), value);
        }
    }
}

/// Splits an object into its key parts and the JSON to store (without resourceVersion).
fn prepare(kind: &KindInfo, mut object: Value) -> Result<(String, String, Option<String>, Value)> {
    let name = meta_str(&object, "name").unwrap_or_default().to_string();
    let namespace = meta_str(&object, "namespace").map(str::to_string);
    if name.is_empty() {
        return Err(DatastoreError::Invalid {
            kind: kind.kind.into(),
            name,
            error: crate::validate::ValidationError::new("metadata.name", "is required"),
        });
    }
    let revision = meta_str(&object, "resourceVersion").map(str::to_string);
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    if *kind == NAMESPACE {
        // What the API server does in Kubernetes mode.
        let labels = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .map(|meta| {
                meta.entry("labels")
                    .or_insert_with(|| Value::Object(Default::default()))
            });
        if let Some(Value::Object(labels)) = labels {
            labels.insert(NAMESPACE_NAME_LABEL.into(), name.clone().into());
        }
    }
    let key = key_for(kind, namespace.as_deref(), &name);
    Ok((key, name, revision, object))
}

fn parse_revision(kind: &KindInfo, name: &str, revision: &str) -> Result<i64> {
    revision
        .parse::<i64>()
        .map_err(|_| DatastoreError::Invalid {
            kind: kind.kind.into(),
            name: name.into(),
            error: crate::validate::ValidationError::new(
                "metadata.resourceVersion",
                format!("{revision:?} is not an etcd revision"),
            ),
        })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map(|h| h.revision()).unwrap_or_default()
}

#[async_trait]
impl Backend for EtcdBackend {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn get(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        let key = key_for(kind, namespace, name);
        let mut client = self.client.clone();
        let resp = self.call(client.get(key, None)).await?;
        match resp.kvs().first() {
            Some(kv) => self.decode(kv, kv.mod_revision()),
            None => Err(DatastoreError::NotFound {
                kind: kind.kind.into(),
                name: name.into(),
            }),
        }
    }

    async fn list(&self, kind: &'static KindInfo, namespace: Option<&str>) -> Result<RawList> {
        let prefix = prefix_for(kind, namespace);
        let mut client = self.client.clone();
        let resp = self
            .call(client.get(prefix, Some(GetOptions::new().with_prefix())))
            .await?;
        let items = resp
            .kvs()
            .iter()
            .map(|kv| self.decode(kv, kv.mod_revision()))
            .collect::<Result<_>>()?;
        Ok(RawList {
            items,
            revision: header_revision(resp.header()).to_string(),
        })
    }

    async fn list_names(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
    ) -> Result<Vec<String>> {
        let prefix = prefix_for(kind, namespace);
        let mut client = self.client.clone();
        let resp = self
            .call(client.get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ))
            .await?;
        let mut names: Vec<String> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = std::str::from_utf8(kv.key()).ok()?;
                Some(key.strip_prefix(prefix.as_str())?.to_owned())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    async fn create(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        let (key, name, _, object) = prepare(kind, object)?;
        let mut object = lifecycle::on_create(object);
        set_meta(&mut object, "uid", random_uid().into());
        set_meta(
            &mut object,
            "creationTimestamp",
            k8s_openapi::jiff::Timestamp::now().to_string().into(),
        );
        let value = serde_json::to_vec(&object).map_err(|e| self.backend_error(e.to_string()))?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let mut client = self.client.clone();
        let resp = self.call(client.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(DatastoreError::AlreadyExists {
                kind: kind.kind.into(),
                name,
            });
        }
        set_meta(
            &mut object,
            "resourceVersion",
            header_revision(resp.header()).to_string().into(),
        );
        Ok(object)
    }

    async fn update(&self, kind: &'static KindInfo, object: Value) -> Result<Value> {
        let (key, name, revision, object) = prepare(kind, object)?;
        let wanted = match &revision {
            Some(revision) => Some(parse_revision(kind, &name, revision)?),
            None => None,
        };
        // Read, decide (generation, finalizers), write if nothing changed in between. A
        // guarded update that loses is a Conflict; an unguarded one reads again.
        for _ in 0..UNGUARDED_ATTEMPTS {
            let (stored, stored_revision) = self.read(kind, &key, &name).await?;
            if wanted.is_some_and(|w| w != stored_revision) {
                return Err(DatastoreError::Conflict {
                    kind: kind.kind.into(),
                    name,
                    expected: revision.unwrap_or_default(),
                });
            }
            let outcome = lifecycle::on_update(&stored, object.clone());
            if let Some(result) = self.write(&key, stored_revision, outcome).await? {
                return Ok(result);
            }
            if wanted.is_some() {
                break;
            }
        }
        Err(self
            .explain_failure(kind, &key, &name, revision.as_deref().unwrap_or("any"))
            .await)
    }

    async fn delete(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        name: &str,
        precondition: Option<&str>,
    ) -> Result<Value> {
        let key = key_for(kind, namespace, name);
        let wanted = match precondition {
            Some(revision) => Some(parse_revision(kind, name, revision)?),
            None => None,
        };
        for _ in 0..UNGUARDED_ATTEMPTS {
            let (stored, stored_revision) = self.read(kind, &key, name).await?;
            if wanted.is_some_and(|w| w != stored_revision) {
                return Err(DatastoreError::Conflict {
                    kind: kind.kind.into(),
                    name: name.into(),
                    expected: precondition.unwrap_or_default().into(),
                });
            }
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let outcome = lifecycle::on_delete(&stored, &now);
            if let Some(result) = self.write(&key, stored_revision, outcome).await? {
                return Ok(result);
            }
            if wanted.is_some() {
                break;
            }
        }
        Err(self
            .explain_failure(kind, &key, name, precondition.unwrap_or("any"))
            .await)
    }

    async fn watch(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        revision: &str,
    ) -> Result<RawWatchStream> {
        let start = parse_revision(kind, "", revision)? + 1;
        let prefix = prefix_for(kind, namespace);
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start)
            .with_prev_key()
            .with_progress_notify();
        let mut client = self.client.clone();
        let watch = self.call(client.watch(prefix, Some(options))).await?;
        let this = self.clone();
        let stream = futures::stream::unfold(
            (watch, this, Vec::<Result<RawEvent>>::new(), false),
            move |(mut watch, this, mut queue, mut done)| async move {
                loop {
                    if !queue.is_empty() {
                        let item = queue.remove(0);
                        return Some((item, (watch, this, queue, done)));
                    }
                    if done {
                        return None;
                    }
                    let message = match watch.message().await {
                        Ok(Some(message)) => message,
                        Ok(None) => return None,
                        Err(error) => {
                            done = true;
                            return Some((
                                Err(this.unavailable(error)),
                                (watch, this, queue, done),
                            ));
                        }
                    };
                    if message.compact_revision() > 0 {
                        done = true;
                        queue.push(Err(DatastoreError::Expired {
                            revision: (start - 1).to_string(),
                        }));
                        continue;
                    }
                    if message.canceled() {
                        done = true;
                        queue.push(Err(this.unavailable(format!(
                            "watch canceled: {}",
                            message.cancel_reason()
                        ))));
                        continue;
                    }
                    let header = header_revision(message.header());
                    if message.events().is_empty() && !message.created() && header > 0 {
                        queue.push(Ok(RawEvent::Bookmark(header.to_string())));
                    }
                    for event in message.events() {
                        let Some(kv) = event.kv() else { continue };
                        let item = match event.event_type() {
                            EventType::Put if kv.create_revision() == kv.mod_revision() => {
                                this.decode(kv, kv.mod_revision()).map(RawEvent::Added)
                            }
                            EventType::Put => {
                                this.decode(kv, kv.mod_revision()).map(RawEvent::Modified)
                            }
                            EventType::Delete => match event.prev_kv() {
                                Some(prev) => {
                                    this.decode(prev, kv.mod_revision()).map(RawEvent::Deleted)
                                }
                                None => continue,
                            },
                        };
                        queue.push(item);
                    }
                }
            },
        );
        Ok(stream.boxed())
    }
}

fn random_uid() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
