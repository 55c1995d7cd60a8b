//! The fake's request handling: routing a path to a kind, the CRUD verbs with the API
//! server's answers (status codes, `Status` bodies, resourceVersions), canned faults, and
//! the record of every exchange.

use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::{Value, json};

use super::select::{Selectors, parse_query};
use super::{Body, Exchange, FakeApiServer, FakeKind, Key};

pub(super) fn body(bytes: impl Into<Bytes>) -> Body {
    let frame: Result<Frame<Bytes>, Infallible> = Ok(Frame::data(bytes.into()));
    StreamBody::new(futures::stream::once(async move { frame }).boxed())
}

pub(super) fn respond(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(body(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) fn status(code: u16, reason: &str, message: &str) -> Value {
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
pub(super) struct Target {
    pub kind: FakeKind,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// `status` for `.../<name>/status`.
    pub subresource: Option<String>,
}

impl FakeApiServer {
    fn find_kind(&self, group: &str, version: &str, plural: &str) -> Option<&FakeKind> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
    }

    pub(super) fn parse_path(&self, path: &str) -> Option<Target> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let namespaced = match rest {
            ["namespaces", ns, plural, tail @ ..] => self
                .find_kind(group, version, plural)
                .filter(|k| k.namespaced)
                .map(|k| (k.clone(), Some(ns.to_string()), tail)),
            _ => None,
        };
        let (kind, namespace, tail) = match namespaced {
            Some(found) => found,
            None => match rest {
                [plural, tail @ ..] => {
                    (self.find_kind(group, version, plural)?.clone(), None, tail)
                }
                _ => return None,
            },
        };
        let (name, subresource) = match tail {
            [] => (None, None),
            [name] => (Some(name.to_string()), None),
            [name, "status"] if kind.status_subresource => {
                (Some(name.to_string()), Some("status".to_string()))
            }
            _ => return None,
        };
        Some(Target {
            kind,
            namespace,
            name,
            subresource,
        })
    }

    /// Answers one request and records it.
    pub(super) async fn handle(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        user: Option<String>,
        body: &[u8],
    ) -> Response<Body> {
        let params = parse_query(query);
        let target = self.parse_path(path);
        let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
        let verb = match (method, target.as_ref().and_then(|t| t.name.as_ref())) {
            _ if target.is_none() => "",
            (&Method::GET, Some(_)) => "get",
            (&Method::GET, None) if watching => "watch",
            (&Method::GET, None) => "list",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, Some(_)) => "delete",
            (&Method::DELETE, None) => "deletecollection",
            _ => "",
        };
        let response = match &target {
            None if method == Method::GET && path == "/version" => respond(
                StatusCode::OK,
                &json!({"major": "1", "minor": "31", "gitVersion": "v1.31.0-twill-fake",
                        "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z",
                        "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64"}),
            ),
            None => {
                self.violation(format!("{method} {path}: no such resource path"))
                    .await
            }
            Some(target) => match self.fault(method, &target.kind.plural).await {
                Some(response) => response,
                None => self.route(method, path, &params, body, target).await,
            },
        };
        let exchange = Exchange {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            status: response.status().as_u16(),
            user,
            verb: verb.to_string(),
            group: target
                .as_ref()
                .map(|t| t.kind.group.clone())
                .unwrap_or_default(),
            resource: target
                .as_ref()
                .map(|t| match &t.subresource {
                    Some(sub) => format!("{}/{sub}", t.kind.plural),
                    None => t.kind.plural.clone(),
                })
                .unwrap_or_default(),
            namespace: target.as_ref().and_then(|t| t.namespace.clone()),
            name: target.as_ref().and_then(|t| t.name.clone()),
        };
        self.exchanges.lock().await.push(exchange);
        response
    }

    async fn fault(&self, method: &Method, plural: &str) -> Option<Response<Body>> {
        let mut state = self.state.lock().await;
        let fault = state
            .faults
            .iter_mut()
            .find(|f| f.method == method.as_str() && f.plural == plural && f.remaining > 0)?;
        fault.remaining -= 1;
        let code = fault.status;
        state.faults.retain(|f| f.remaining > 0);
        let reason = match code {
            409 => "Conflict",
            410 => "Expired",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            _ => "Unknown",
        };
        Some(fail(
            code,
            reason,
            &format!("injected {code} for {method} {plural}"),
        ))
    }

    pub(super) async fn violation(&self, what: String) -> Response<Body> {
        self.violations.lock().await.push(what.clone());
        fail(400, "BadRequest", &what)
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        params: &BTreeMap<String, String>,
        body: &[u8],
        target: &Target,
    ) -> Response<Body> {
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
        let selectors = match Selectors::from_params(params) {
            Ok(s) => s,
            Err(e) => return self.violation(format!("{method} {path}: {e}")).await,
        };
        match (method, &target.name) {
            (&Method::GET, None)
                if params.get("watch").is_some_and(|w| w == "true" || w == "1") =>
            {
                let from = params
                    .get("resourceVersion")
                    .map_or("0", String::as_str)
                    .parse()
                    .unwrap_or(0);
                self.watch(target, from, selectors).await
            }
            (&Method::GET, None) => self.list(target, &selectors).await,
            (&Method::GET, Some(name)) => self.get(target, name).await,
            (&Method::POST, None) => match body {
                Some(object) => self.create(target, object, path).await,
                None => self.violation(format!("POST {path} without a body")).await,
            },
            (&Method::PUT, Some(name)) => match body {
                Some(object) => self.replace(target, name, object, path).await,
                None => self.violation(format!("PUT {path} without a body")).await,
            },
            (&Method::DELETE, Some(name)) => self.delete(target, name, body).await,
            _ => {
                self.violation(format!("{method} {path}: method not allowed here"))
                    .await
            }
        }
    }

    fn key(target: &Target, name: &str) -> Key {
        (
            target.kind.group.clone(),
            target.kind.plural.clone(),
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
        if kind != Some(target.kind.kind.as_str())
            || api_version != Some(target.kind.api_version().as_str())
        {
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

    async fn list(&self, target: &Target, selectors: &Selectors) -> Response<Body> {
        let state = self.state.lock().await;
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|((group, plural, ns, _), object)| {
                *group == target.kind.group
                    && *plural == target.kind.plural
                    && target.namespace.as_ref().is_none_or(|want| want == ns)
                    && selectors.matches(object)
            })
            .map(|(_, object)| object.clone())
            .collect();
        respond(
            StatusCode::OK,
            &json!({"apiVersion": target.kind.api_version(), "kind": format!("{}List", target.kind.kind),
                    "metadata": {"resourceVersion": state.revision.to_string()}, "items": items}),
        )
    }

    async fn create(&self, target: &Target, mut object: Value, path: &str) -> Response<Body> {
        if target.name.is_some() {
            return self
                .violation(format!("POST {path}: create names an object"))
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
        // The NamespaceLifecycle admission of a real API server: nothing is created in a
        // namespace that does not exist.
        if let Some(ns) = &target.namespace {
            let namespace_key = (
                String::new(),
                "namespaces".to_string(),
                String::new(),
                ns.clone(),
            );
            if !state.objects.contains_key(&namespace_key) {
                return fail(404, "NotFound", &format!("namespaces {ns:?} not found"));
            }
        }
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
        meta["generation"] = 1.into();
        if let Some(ns) = &target.namespace {
            meta["namespace"] = ns.clone().into();
        }
        state.objects.insert(key, object.clone());
        let namespace = target.namespace.clone().unwrap_or_default();
        self.record(
            &mut state,
            &target.kind,
            &namespace,
            "ADDED",
            object.clone(),
            None,
        );
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
        let given_rv = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty());
        if given_rv.is_none() && !target.kind.unconditional_update {
            return fail(
                422,
                "Invalid",
                &format!(
                    "{} {name:?} is invalid: metadata.resourceVersion: Invalid value: 0x0: \
                     must be specified for an update",
                    target.kind.plural
                ),
            );
        }
        if let Some(rv) = object.pointer("/metadata/resourceVersion")
            && Some(rv) != current_rv.as_ref()
        {
            return fail(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
                     please apply your changes to the latest version and try again",
                    target.kind.plural
                ),
            );
        }
        let current = current.clone();
        if target.subresource.is_some() {
            // The status subresource changes only status.
            let status = object.get("status").cloned().unwrap_or(Value::Null);
            object = current.clone();
            object["status"] = status;
        } else if target.kind.status_subresource {
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
        for field in ["uid", "creationTimestamp", "deletionTimestamp"] {
            match current.pointer(&format!("/metadata/{field}")) {
                Some(value) => object["metadata"][field] = value.clone(),
                None => {
                    if let Some(meta) = object["metadata"].as_object_mut() {
                        meta.remove(field);
                    }
                }
            }
        }
        object["metadata"]["generation"] = next_generation(&current, &object).into();
        if let Some(ns) = &target.namespace {
            object["metadata"]["namespace"] = ns.clone().into();
        }
        let namespace = target.namespace.clone().unwrap_or_default();
        if is_deleting(&object) && !has_finalizers(&object) {
            // The last finalizer is gone: the object goes.
            state.objects.remove(&key);
            self.record(
                &mut state,
                &target.kind,
                &namespace,
                "DELETED",
                object.clone(),
                None,
            );
            return respond(StatusCode::OK, &object);
        }
        state.objects.insert(key, object.clone());
        self.record(
            &mut state,
            &target.kind,
            &namespace,
            "MODIFIED",
            object.clone(),
            Some(current),
        );
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
        let namespace = target.namespace.clone().unwrap_or_default();
        if has_finalizers(current) {
            // Finalizers hold the object: mark it (once) and keep it.
            let mut object = current.clone();
            if is_deleting(&object) {
                return respond(StatusCode::OK, &object);
            }
            let before = object.clone();
            state.revision += 1;
            object["metadata"]["resourceVersion"] = state.revision.to_string().into();
            object["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
            object["metadata"]["generation"] = (generation(&object) + 1).into();
            state.objects.insert(key, object.clone());
            self.record(
                &mut state,
                &target.kind,
                &namespace,
                "MODIFIED",
                object.clone(),
                Some(before),
            );
            return respond(StatusCode::ACCEPTED, &object);
        }
        let Some(mut object) = state.objects.remove(&key) else {
            return fail(404, "NotFound", "gone");
        };
        state.revision += 1;
        object["metadata"]["resourceVersion"] = state.revision.to_string().into();
        self.record(
            &mut state,
            &target.kind,
            &namespace,
            "DELETED",
            object.clone(),
            None,
        );
        respond(StatusCode::OK, &object)
    }
}

fn generation(object: &Value) -> i64 {
    object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// The API server's rule for custom resources: the generation counts changes outside
/// `metadata` and `status`.
fn next_generation(current: &Value, new: &Value) -> i64 {
    let spec = |object: &Value| {
        let mut map = object.as_object().cloned().unwrap_or_default();
        for field in ["metadata", "status", "apiVersion", "kind"] {
            map.remove(field);
        }
        map
    };
    generation(current) + i64::from(spec(current) != spec(new))
}

fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

fn is_deleting(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}
