//! A small in-memory Kubernetes API server behind a `tower-test` mock service, for the
//! Kubernetes backend's conformance run (no real API server can be installed here).
//!
//! It answers as the API server does for the calls the backend makes: paths
//! `/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>]` (and `/api/v1/...`),
//! GET (object, list with its resourceVersion, `?watch=true&resourceVersion=N` streaming
//! newline-delimited events), POST (201; 409 AlreadyExists), PUT (409 Conflict when the
//! body's resourceVersion is stale), DELETE (409 on a failed precondition). A watch from a
//! revision older than the last `compact()` gets the API server's ERROR event with 410.
//! It checks every request's method, path and body (kind, name and namespace agree with
//! the path) and records violations and the exchanges for the tests to assert on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::{Value, json};
use tokio::sync::{Mutex, broadcast};
use twill_api::resources::KindInfo;
use twill_api::resources::kinds::ALL_KINDS;

pub type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

#[derive(Clone, Debug)]
struct Event {
    revision: u64,
    plural: &'static str,
    group: &'static str,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    revision: u64,
    /// (group, plural, namespace, name) → object.
    objects: BTreeMap<(String, String, String, String), Value>,
    history: Vec<Event>,
    compacted: u64,
}

/// The fake API server. Cheap to clone.
#[derive(Clone)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Event>,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

fn body(bytes: impl Into<Bytes>) -> Body {
    let frame: Result<Frame<Bytes>, Infallible> = Ok(Frame::data(bytes.into()));
    StreamBody::new(futures::stream::once(async move { frame }).boxed())
}

fn respond(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(body(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn fail(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &status(code, reason, message),
    )
}

/// Where a request points.
struct Target {
    kind: &'static KindInfo,
    namespace: Option<String>,
    name: Option<String>,
    /// `status` for `.../<name>/status`.
    subresource: Option<String>,
}

/// Whether the kind's CRD has the status subresource (then a main PUT keeps the status).
fn has_status_subresource(kind: &KindInfo) -> bool {
    kind.crd
        .map(|crd| crd())
        .and_then(|crd| crd.spec.versions.first().cloned())
        .and_then(|v| v.subresources)
        .is_some_and(|s| s.status.is_some())
}

impl FakeApiServer {
    /// A fake server and a kube client whose requests it answers.
    pub fn start() -> (kube::Client, FakeApiServer) {
        let (mock, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
        let (events, _) = broadcast::channel(4096);
        let server = FakeApiServer {
            state: Arc::default(),
            events,
            exchanges: Arc::default(),
            violations: Arc::default(),
        };
        let this = server.clone();
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                let this = this.clone();
                // One task per request: a watch holds its response open while others go on.
                tokio::spawn(async move { reply.send_response(this.handle(request).await) });
            }
        });
        (kube::Client::new(mock, "default"), server)
    }

    /// Every request so far.
    pub async fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().await.clone()
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

    async fn violation(&self, what: String) -> Response<Body> {
        self.violations.lock().await.push(what.clone());
        fail(400, "BadRequest", &what)
    }

    fn parse_path(path: &str) -> Option<Target> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let (namespace, plural, tail) = match rest {
            ["namespaces", ns, plural, tail @ ..] => (Some(ns.to_string()), *plural, tail),
            [plural, tail @ ..] => (None, *plural, tail),
            _ => return None,
        };
        let (name, subresource) = match tail {
            [] => (None, None),
            [name] => (Some(name.to_string()), None),
            [name, "status"] => (Some(name.to_string()), Some("status".to_string())),
            _ => return None,
        };
        let kind = ALL_KINDS
            .iter()
            .copied()
            .find(|k| k.group == group && k.version == version && k.plural == plural)?;
        if namespace.is_some() && !kind.namespaced {
            return None;
        }
        Some(Target {
            kind,
            namespace,
            name,
            subresource,
        })
    }

    async fn handle(&self, request: Request<kube::client::Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let body = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        let response = self.route(&method, &path, &query, &body).await;
        self.exchanges.lock().await.push(Exchange {
            method: method.to_string(),
            path,
            query,
            status: response.status().as_u16(),
        });
        response
    }

    async fn route(&self, method: &Method, path: &str, query: &str, body: &[u8]) -> Response<Body> {
        let Some(target) = Self::parse_path(path) else {
            return self
                .violation(format!("{method} {path}: no such resource path"))
                .await;
        };
        let params: BTreeMap<&str, &str> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let body: Option<Value> = if body.is_empty() {
            None
        } else {
            match serde_json::from_slice(body) {
                Ok(value) => Some(value),
                Err(e) => {
                    return self
                        .violation(format!("{method} {path}: body is not JSON: {e}"))
                        .await;
                }
            }
        };
        match (method, &target.name) {
            (&Method::GET, None)
                if params
                    .get("watch")
                    .is_some_and(|w| *w == "true" || *w == "1") =>
            {
                self.watch(
                    &target,
                    params.get("resourceVersion").copied().unwrap_or("0"),
                )
                .await
            }
            (&Method::GET, None) => self.list(&target).await,
            (&Method::GET, Some(name)) => self.get(&target, name).await,
            (&Method::POST, None) => match body {
                Some(object) => self.create(&target, object, method, path).await,
                None => self.violation(format!("POST {path} without a body")).await,
            },
            (&Method::PUT, Some(name)) => match body {
                Some(object) => self.replace(&target, name, object, path).await,
                None => self.violation(format!("PUT {path} without a body")).await,
            },
            (&Method::DELETE, Some(name)) => self.delete(&target, name, body).await,
            _ => {
                self.violation(format!("{method} {path}: method not allowed here"))
                    .await
            }
        }
    }

    fn key(target: &Target, name: &str) -> (String, String, String, String) {
        (
            target.kind.group.into(),
            target.kind.plural.into(),
            target.namespace.clone().unwrap_or_default(),
            name.into(),
        )
    }

    /// The body must be of the path's kind, and agree on name and namespace.
    async fn check_body(
        &self,
        target: &Target,
        object: &Value,
        name: Option<&str>,
        path: &str,
    ) -> Option<Response<Body>> {
        let kind = object.get("kind").and_then(Value::as_str);
        let api_version = object.get("apiVersion").and_then(Value::as_str);
        if kind != Some(target.kind.kind) || api_version != Some(target.kind.api_version) {
            return Some(
                self.violation(format!("{path}: body is {api_version:?}/{kind:?}"))
                    .await,
            );
        }
        let body_name = object.pointer("/metadata/name").and_then(Value::as_str);
        if body_name.is_none() || (name.is_some() && body_name != name) {
            return Some(
                self.violation(format!("{path}: body names {body_name:?}"))
                    .await,
            );
        }
        let body_ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        if body_ns.is_some() && body_ns != target.namespace.as_deref() {
            return Some(
                self.violation(format!("{path}: body namespace {body_ns:?}"))
                    .await,
            );
        }
        if target.kind.namespaced != target.namespace.is_some() {
            return Some(
                self.violation(format!(
                    "{path}: namespace scope wrong for {}",
                    target.kind.kind
                ))
                .await,
            );
        }
        None
    }

    async fn get(&self, target: &Target, name: &str) -> Response<Body> {
        let state = self.state.lock().await;
        match state.objects.get(&Self::key(target, name)) {
            Some(object) => respond(StatusCode::OK, object),
            None => fail(
                404,
                "NotFound",
                &format!("{} {name:?} not found", target.kind.plural),
            ),
        }
    }

    async fn list(&self, target: &Target) -> Response<Body> {
        let state = self.state.lock().await;
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|((group, plural, ns, _), _)| {
                group == target.kind.group
                    && plural == target.kind.plural
                    && target.namespace.as_ref().is_none_or(|want| want == ns)
            })
            .map(|(_, object)| object.clone())
            .collect();
        respond(
            StatusCode::OK,
            &json!({"apiVersion": target.kind.api_version, "kind": format!("{}List", target.kind.kind),
                    "metadata": {"resourceVersion": state.revision.to_string()}, "items": items}),
        )
    }

    fn record(
        state: &mut State,
        events: &broadcast::Sender<Event>,
        target: &Target,
        kind: &'static str,
        object: Value,
    ) {
        let event = Event {
            revision: state.revision,
            plural: target.kind.plural,
            group: target.kind.group,
            namespace: target.namespace.clone().unwrap_or_default(),
            kind,
            object,
        };
        state.history.push(event.clone());
        let _ = events.send(event);
    }

    async fn create(
        &self,
        target: &Target,
        mut object: Value,
        method: &Method,
        path: &str,
    ) -> Response<Body> {
        if target.name.is_some() {
            return self
                .violation(format!("{method} {path}: create names an object"))
                .await;
        }
        if let Some(bad) = self.check_body(target, &object, None, path).await {
            return bad;
        }
        if object.pointer("/metadata/resourceVersion").is_some() {
            return self
                .violation(format!("{path}: create with a resourceVersion"))
                .await;
        }
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut state = self.state.lock().await;
        let key = Self::key(target, &name);
        if state.objects.contains_key(&key) {
            return fail(
                409,
                "AlreadyExists",
                &format!("{} {name:?} already exists", target.kind.plural),
            );
        }
        state.revision += 1;
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = state.revision.to_string().into();
        meta["uid"] = format!("uid-{}", state.revision).into();
        if let Some(ns) = &target.namespace {
            meta["namespace"] = ns.clone().into();
        }
        state.objects.insert(key, object.clone());
        Self::record(&mut state, &self.events, target, "ADDED", object.clone());
        respond(StatusCode::CREATED, &object)
    }

    async fn replace(
        &self,
        target: &Target,
        name: &str,
        mut object: Value,
        path: &str,
    ) -> Response<Body> {
        if let Some(bad) = self.check_body(target, &object, Some(name), path).await {
            return bad;
        }
        let mut state = self.state.lock().await;
        let key = Self::key(target, name);
        let Some(current) = state.objects.get(&key) else {
            return fail(
                404,
                "NotFound",
                &format!("{} {name:?} not found", target.kind.plural),
            );
        };
        let current_rv = current.pointer("/metadata/resourceVersion").cloned();
        if let Some(rv) = object.pointer("/metadata/resourceVersion")
            && Some(rv) != current_rv.as_ref()
        {
            return fail(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} {name:?}: the object has been modified",
                    target.kind.plural
                ),
            );
        }
        let current = current.clone();
        if target.subresource.is_some() {
            // The status subresource changes only status.
            let status = object.get("status").cloned().unwrap_or(Value::Null);
            object = current;
            object["status"] = status;
        } else if has_status_subresource(target.kind) {
            // A main-resource PUT leaves status alone.
            match current.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        state.revision += 1;
        object["metadata"]["resourceVersion"] = state.revision.to_string().into();
        if let Some(ns) = &target.namespace {
            object["metadata"]["namespace"] = ns.clone().into();
        }
        state.objects.insert(key, object.clone());
        Self::record(&mut state, &self.events, target, "MODIFIED", object.clone());
        respond(StatusCode::OK, &object)
    }

    async fn delete(&self, target: &Target, name: &str, options: Option<Value>) -> Response<Body> {
        let mut state = self.state.lock().await;
        let key = Self::key(target, name);
        let Some(current) = state.objects.get(&key) else {
            return fail(
                404,
                "NotFound",
                &format!("{} {name:?} not found", target.kind.plural),
            );
        };
        let wanted = options
            .as_ref()
            .and_then(|o| o.pointer("/preconditions/resourceVersion"))
            .cloned();
        if let Some(rv) = wanted
            && current.pointer("/metadata/resourceVersion") != Some(&rv)
        {
            return fail(
                409,
                "Conflict",
                &format!("Precondition failed: ResourceVersion in precondition: {rv}"),
            );
        }
        let Some(mut object) = state.objects.remove(&key) else {
            return fail(404, "NotFound", "gone");
        };
        state.revision += 1;
        object["metadata"]["resourceVersion"] = state.revision.to_string().into();
        Self::record(&mut state, &self.events, target, "DELETED", object.clone());
        respond(StatusCode::OK, &object)
    }

    async fn watch(&self, target: &Target, from: &str) -> Response<Body> {
        let from: u64 = from.parse().unwrap_or(0);
        let state = self.state.lock().await;
        if from < state.compacted {
            let line = json!({"type": "ERROR", "object": status(410, "Expired", &format!("too old resource version: {from} ({})", state.compacted))});
            return respond(StatusCode::OK, &line);
        }
        let matches = {
            let group = target.kind.group;
            let plural = target.kind.plural;
            let namespace = target.namespace.clone();
            move |event: &Event| {
                event.group == group
                    && event.plural == plural
                    && namespace.as_ref().is_none_or(|ns| *ns == event.namespace)
            }
        };
        let backlog: Vec<Event> = state
            .history
            .iter()
            .filter(|e| e.revision > from && matches(e))
            .cloned()
            .collect();
        // Subscribe while holding the lock: nothing can slip between backlog and live.
        let live = self.events.subscribe();
        let last = state.revision;
        drop(state);
        let line = |event: &Event| -> Result<Frame<Bytes>, Infallible> {
            let text = json!({"type": event.kind, "object": event.object}).to_string() + "\n";
            Ok(Frame::data(Bytes::from(text)))
        };
        let backlog = futures::stream::iter(backlog.iter().map(line).collect::<Vec<_>>());
        let live = futures::stream::unfold(live, move |mut live| {
            let matches = matches.clone();
            async move {
                loop {
                    match live.recv().await {
                        Ok(event) if event.revision > last && matches(&event) => {
                            let text = json!({"type": event.kind, "object": event.object})
                                .to_string()
                                + "\n";
                            return Some((Ok(Frame::data(Bytes::from(text))), live));
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        let mut response = Response::new(StreamBody::new(backlog.chain(live).boxed()));
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}
