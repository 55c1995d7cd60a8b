//! A small in-memory Kubernetes API server, for testing Kubernetes mode without one (none
//! can be installed on these machines). It answers as the API server does, either behind a
//! `tower-test` mock service ([`FakeApiServer::client`]: a `kube::Client` in the test's own
//! process) or over plain HTTP on a TCP port ([`FakeApiServer::serve`]: for the real
//! binaries, with a kubeconfig from [`kubeconfig_yaml`]).
//!
//! What it does, per the API conventions:
//! - paths `/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>[/status]]` and
//!   `/api/v1/...`, for the kinds it is given plus the built-in ones ([`FakeKind::builtin`]:
//!   Pod, Node, Namespace, Secret, Service, Event, EndpointSlice, Lease, NetworkPolicy), and `GET /version`;
//! - GET (object; list with its resourceVersion; `?watch=true&resourceVersion=N` streaming
//!   newline-delimited events), POST (201; 409 AlreadyExists), PUT (409 Conflict when the
//!   body's resourceVersion is stale; a status subresource that changes only status),
//!   DELETE (409 on a failed precondition); `metadata.generation` counting changes outside
//!   metadata and status, and finalizers (a delete only sets `deletionTimestamp` until an
//!   update removes the last finalizer);
//! - `fieldSelector` and `labelSelector` on lists and watches (a watched object that stops
//!   matching arrives as DELETED, one that starts matching as ADDED);
//! - a watch from a revision older than the last [`compact`](FakeApiServer::compact) gets
//!   the ERROR event with code 410; [`close_watches`](FakeApiServer::close_watches) ends
//!   every open watch as the server's timeout does; [`fail_next`](FakeApiServer::fail_next)
//!   makes the next requests of a kind fail with a given status (409s, 500s).
//!
//! Every request is recorded as an [`Exchange`] with its RBAC attributes (verb, group,
//! resource, the bearer token as the user), and requests that break the API's rules (a
//! wrong path, a body disagreeing with the path) as violations, for tests to assert on.

mod handler;
mod http;
pub mod select;
mod watch;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::Value;
use tokio::sync::{Mutex, broadcast};

pub use http::{HttpServer, kubeconfig_yaml};

/// Response bodies (streamed, for watches).
pub type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// A resource type the fake serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeKind {
    /// API group (`""` for core).
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// Whether `.../<name>/status` exists (then a main PUT leaves status alone).
    pub status_subresource: bool,
    /// Whether a PUT may leave out `metadata.resourceVersion` (an unconditional update):
    /// true for the built-in kinds, false for custom resources, whose updates the real API
    /// server refuses without one (422 Invalid).
    pub unconditional_update: bool,
}

impl FakeKind {
    /// A kind of `api_version` (`v1`, `networking.twill.dev/v1`).
    pub fn new(api_version: &str, kind: &str, plural: &str, namespaced: bool) -> FakeKind {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        FakeKind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            status_subresource: false,
            // Kubernetes' own groups have no dot, or end in `.k8s.io`; CRDs' groups have one.
            unconditional_update: group.is_empty()
                || !group.contains('.')
                || group.ends_with(".k8s.io"),
        }
    }

    /// The kind has a status subresource.
    pub fn with_status(mut self) -> FakeKind {
        self.status_subresource = true;
        self
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The Kubernetes kinds every fake serves.
    pub fn builtin() -> Vec<FakeKind> {
        vec![
            FakeKind::new("v1", "Pod", "pods", true).with_status(),
            FakeKind::new("v1", "Node", "nodes", false).with_status(),
            FakeKind::new("v1", "Namespace", "namespaces", false).with_status(),
            FakeKind::new("v1", "Secret", "secrets", true),
            FakeKind::new("v1", "Service", "services", true).with_status(),
            FakeKind::new("v1", "Event", "events", true),
            FakeKind::new(
                "discovery.k8s.io/v1",
                "EndpointSlice",
                "endpointslices",
                true,
            ),
            FakeKind::new("coordination.k8s.io/v1", "Lease", "leases", true),
            FakeKind::new(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "networkpolicies",
                true,
            ),
        ]
    }
}

/// One request as the fake saw it, with the attributes an authorizer would check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    /// The raw (encoded) query string.
    pub query: String,
    pub status: u16,
    /// The bearer token, if any (tests give each component its own).
    pub user: Option<String>,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`; empty for `/version`.
    pub verb: String,
    pub group: String,
    /// The plural, with `/status` for the subresource; empty for `/version`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

#[derive(Clone, Debug)]
struct Event {
    revision: u64,
    group: String,
    plural: String,
    namespace: String,
    /// `ADDED`, `MODIFIED`, `DELETED`.
    kind: &'static str,
    object: Value,
    /// The object before a modification (selectors are matched on both).
    old: Option<Value>,
}

/// A canned failure: the next `remaining` requests with this method on this resource.
#[derive(Clone, Debug)]
struct Fault {
    method: String,
    plural: String,
    status: u16,
    remaining: usize,
}

/// (group, plural, namespace, name).
type Key = (String, String, String, String);

#[derive(Default)]
struct State {
    revision: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Event>,
    compacted: u64,
    faults: Vec<Fault>,
}

/// The fake API server. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct FakeApiServer {
    kinds: Arc<Vec<FakeKind>>,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Event>,
    /// Bumped by `close_watches`: every open watch ends.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    /// While true, new watch requests wait before they are answered.
    hold: Arc<tokio::sync::watch::Sender<bool>>,
    /// Watches answered with 410 Gone.
    expired: Arc<std::sync::atomic::AtomicUsize>,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FakeApiServer({} kinds)", self.kinds.len())
    }
}

impl FakeApiServer {
    /// A fake serving the built-in kinds and `kinds`.
    pub fn new(kinds: impl IntoIterator<Item = FakeKind>) -> FakeApiServer {
        let mut all = FakeKind::builtin();
        for kind in kinds {
            if !all
                .iter()
                .any(|k| k.group == kind.group && k.plural == kind.plural)
            {
                all.push(kind);
            }
        }
        let (events, _) = broadcast::channel(16384);
        FakeApiServer {
            kinds: Arc::new(all),
            state: Arc::default(),
            events,
            generation: Arc::new(tokio::sync::watch::channel(0).0),
            hold: Arc::new(tokio::sync::watch::channel(false).0),
            expired: Arc::default(),
            exchanges: Arc::default(),
            violations: Arc::default(),
        }
    }

    /// A fake and a kube client whose requests it answers in-process (tower-test).
    pub fn start(kinds: impl IntoIterator<Item = FakeKind>) -> (kube::Client, FakeApiServer) {
        let server = FakeApiServer::new(kinds);
        (server.client(), server)
    }

    /// Another in-process client of this fake (must be called inside a tokio runtime).
    /// Its requests carry `user` as their bearer token when given.
    pub fn client_as(&self, user: Option<&str>) -> kube::Client {
        let (mock, mut handle) =
            tower_test::mock::pair::<::http::Request<kube::client::Body>, ::http::Response<Body>>();
        let this = self.clone();
        let user = user.map(str::to_string);
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                let this = this.clone();
                let user = user.clone();
                // One task per request: a watch holds its response open while others go on.
                tokio::spawn(async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect_bytes().await.unwrap_or_default();
                    let query = parts.uri.query().unwrap_or_default().to_string();
                    let response = this
                        .handle(&parts.method, parts.uri.path(), &query, user, &body)
                        .await;
                    reply.send_response(response)
                });
            }
        });
        kube::Client::new(mock, "default")
    }

    /// An in-process client without a user.
    pub fn client(&self) -> kube::Client {
        self.client_as(None)
    }

    /// Every request so far.
    pub async fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().await.clone()
    }

    /// Forgets what was recorded so far.
    pub async fn clear_exchanges(&self) {
        self.exchanges.lock().await.clear();
    }

    /// Requests that broke the API's rules (wrong path, body disagreeing with the path).
    pub async fn violations(&self) -> Vec<String> {
        self.violations.lock().await.clone()
    }

    /// Forgets history: a watch from any earlier revision now gets 410 Gone.
    pub async fn compact(&self) {
        let mut state = self.state.lock().await;
        state.compacted = state.revision;
        state.history.clear();
    }

    /// Ends every open watch, as the API server does when a watch times out.
    pub fn close_watches(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// While `held`, new watch requests are not answered (they wait): with
    /// [`close_watches`](Self::close_watches) and [`compact`](Self::compact), this makes a
    /// client miss changes and resume from a revision that is gone, deterministically.
    pub fn hold_watches(&self, held: bool) {
        self.hold.send_replace(held);
    }

    /// How many watch requests were answered with 410 Gone.
    pub fn expired_watches(&self) -> usize {
        self.expired.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The next `count` requests with `method` (`PUT`, `POST`, ...) on `plural` fail with
    /// `status` (409 answers as a Conflict, 410 as Expired, others as that code).
    pub async fn fail_next(&self, method: &str, plural: &str, status: u16, count: usize) {
        self.state.lock().await.faults.push(Fault {
            method: method.to_ascii_uppercase(),
            plural: plural.into(),
            status,
            remaining: count,
        });
    }

    /// Drops every canned failure still pending.
    pub async fn clear_faults(&self) {
        self.state.lock().await.faults.clear();
    }

    /// The current revision.
    pub async fn revision(&self) -> u64 {
        self.state.lock().await.revision
    }

    fn kind_of(&self, api_version: &str, kind: &str) -> Option<FakeKind> {
        self.kinds
            .iter()
            .find(|k| k.api_version() == api_version && k.kind == kind)
            .cloned()
    }

    /// Stores `object` as if another client wrote it (created, or replaced whatever is
    /// there, without any check): for setting up a test's world. Returns it as stored.
    pub async fn put(&self, object: Value) -> Value {
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind_name = object["kind"].as_str().unwrap_or_default().to_string();
        let Some(kind) = self.kind_of(&api_version, &kind_name) else {
            panic!("the fake does not serve {api_version}/{kind_name}");
        };
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let key = (
            kind.group.clone(),
            kind.plural.clone(),
            namespace.clone(),
            name,
        );
        let mut state = self.state.lock().await;
        self.put_locked(&mut state, kind, key, object)
    }

    /// Namespaces `names` exist from the start (a real server refuses creates in a namespace
    /// that does not exist). For a fake not yet shared.
    pub fn with_namespaces(self, names: &[&str]) -> FakeApiServer {
        for name in names {
            let object = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": name}});
            let kind = FakeKind::new("v1", "Namespace", "namespaces", false).with_status();
            let key = (
                String::new(),
                "namespaces".into(),
                String::new(),
                name.to_string(),
            );
            match self.state.try_lock() {
                Ok(mut state) => {
                    self.put_locked(&mut state, kind, key, object);
                }
                Err(_) => panic!("with_namespaces on a fake already in use"),
            }
        }
        self
    }

    fn put_locked(&self, state: &mut State, kind: FakeKind, key: Key, mut object: Value) -> Value {
        let namespace = key.2.clone();
        state.revision += 1;
        let revision = state.revision;
        let old = state.objects.get(&key).cloned();
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = revision.to_string().into();
        let uid = old
            .as_ref()
            .and_then(|o| o.pointer("/metadata/uid").cloned())
            .unwrap_or_else(|| format!("uid-{revision}").into());
        meta["uid"] = uid;
        state.objects.insert(key, object.clone());
        let event_kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.record(state, &kind, &namespace, event_kind, object.clone(), old);
        object
    }

    /// Deletes an object as if another client did; returns whether it existed.
    pub async fn remove(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let Some(kind) = self.kind_of(api_version, kind) else {
            return false;
        };
        let key = (
            kind.group.clone(),
            kind.plural.clone(),
            namespace.to_string(),
            name.to_string(),
        );
        let mut state = self.state.lock().await;
        let Some(mut object) = state.objects.remove(&key) else {
            return false;
        };
        state.revision += 1;
        object["metadata"]["resourceVersion"] = state.revision.to_string().into();
        self.record(&mut state, &kind, namespace, "DELETED", object, None);
        true
    }

    /// The stored object, if any.
    pub async fn object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let kind = self.kind_of(api_version, kind)?;
        let key = (
            kind.group.clone(),
            kind.plural.clone(),
            namespace.to_string(),
            name.to_string(),
        );
        self.state.lock().await.objects.get(&key).cloned()
    }

    /// Every stored object of a kind (all namespaces), sorted by namespace and name.
    pub async fn objects(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let Some(kind) = self.kind_of(api_version, kind) else {
            return Vec::new();
        };
        self.state
            .lock()
            .await
            .objects
            .iter()
            .filter(|((g, p, _, _), _)| *g == kind.group && *p == kind.plural)
            .map(|(_, o)| o.clone())
            .collect()
    }

    fn record(
        &self,
        state: &mut State,
        kind: &FakeKind,
        namespace: &str,
        event_kind: &'static str,
        object: Value,
        old: Option<Value>,
    ) {
        let event = Event {
            revision: state.revision,
            group: kind.group.clone(),
            plural: kind.plural.clone(),
            namespace: namespace.to_string(),
            kind: event_kind,
            object,
            old,
        };
        state.history.push(event.clone());
        let _ = self.events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::{Api, DynamicObject, PostParams};
    use kube::discovery::ApiResource;

    fn pools() -> ApiResource {
        ApiResource {
            group: "networking.twill.dev".into(),
            version: "v1".into(),
            api_version: "networking.twill.dev/v1".into(),
            kind: "IPPool".into(),
            plural: "ippools".into(),
        }
    }

    fn weps() -> ApiResource {
        ApiResource {
            kind: "WorkloadEndpoint".into(),
            plural: "workloadendpoints".into(),
            ..pools()
        }
    }

    fn kinds() -> Vec<FakeKind> {
        vec![
            FakeKind::new("networking.twill.dev/v1", "IPPool", "ippools", false),
            FakeKind::new(
                "networking.twill.dev/v1",
                "WorkloadEndpoint",
                "workloadendpoints",
                true,
            ),
        ]
    }

    fn code(result: Result<DynamicObject, kube::Error>) -> u16 {
        match result {
            Err(kube::Error::Api(status)) => status.code,
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_custom_resource_update_must_name_its_resource_version() {
        let (client, _server) = FakeApiServer::start(kinds());
        let api: Api<DynamicObject> = Api::all_with(client, &pools());
        let pool: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.twill.dev/v1", "kind": "IPPool",
            "metadata": {"name": "p"}, "spec": {"cidr": "10.244.0.0/16"}}))
        .unwrap();
        let mut stored = api.create(&PostParams::default(), &pool).await.unwrap();
        let mut blind = stored.clone();
        blind.metadata.resource_version = None;
        assert_eq!(
            code(api.replace("p", &PostParams::default(), &blind).await),
            422
        );
        stored.data["spec"]["cidr"] = "10.244.0.0/24".into();
        api.replace("p", &PostParams::default(), &stored)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn nothing_is_created_in_a_namespace_that_does_not_exist() {
        let (client, server) = FakeApiServer::start(kinds());
        let wep: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.twill.dev/v1", "kind": "WorkloadEndpoint",
            "metadata": {"name": "w", "namespace": "shop"}, "spec": {}}))
        .unwrap();
        let api: Api<DynamicObject> = Api::namespaced_with(client, "shop", &weps());
        assert_eq!(code(api.create(&PostParams::default(), &wep).await), 404);
        server
            .put(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": "shop"}}))
            .await;
        api.create(&PostParams::default(), &wep).await.unwrap();
    }
}
