//! Leader election on a Kubernetes `Lease`, against a fake API server (a `tower-test` mock
//! that answers as the API server does for one Lease: GET, POST with 409 AlreadyExists,
//! PUT with a compare-and-swap on `resourceVersion` and 409 Conflict). No API server can
//! be installed here; two candidates in one process stand for two replicas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;
use twill_ipam::leader::Leadership;

type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/twill/leases";
const NAME: &str = "twill-ipam-controller";

#[derive(Default)]
struct State {
    lease: Option<Value>,
    revision: u64,
    /// Answer 503 to everything (the API server is unreachable).
    down: bool,
    violations: Vec<String>,
}

#[derive(Clone, Default)]
struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

fn respond(status: u16, value: &Value) -> Response<Body> {
    let bytes = Bytes::from(value.to_string());
    let frame: Result<Frame<Bytes>, Infallible> = Ok(Frame::data(bytes));
    let mut response = Response::new(StreamBody::new(
        futures::stream::once(async move { frame }).boxed(),
    ));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: u16, reason: &str) -> Response<Body> {
    respond(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": reason, "reason": reason, "code": code}),
    )
}

impl FakeApiServer {
    fn start() -> (kube::Client, FakeApiServer) {
        let (mock, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
        let server = FakeApiServer::default();
        let this = server.clone();
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                let this = this.clone();
                tokio::spawn(async move { reply.send_response(this.handle(request).await) });
            }
        });
        (kube::Client::new(mock, "default"), server)
    }

    async fn handle(&self, request: Request<kube::client::Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let body = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        let mut st = self.state.lock().await;
        if st.down {
            return status(503, "ServiceUnavailable");
        }
        let named = format!("{PATH}/{NAME}");
        match (&method, path.as_str()) {
            (&Method::GET, p) if p == named => match &st.lease {
                Some(lease) => respond(200, lease),
                None => status(404, "NotFound"),
            },
            (&Method::POST, p) if p == PATH => {
                if st.lease.is_some() {
                    return status(409, "AlreadyExists");
                }
                let mut lease: Value = serde_json::from_slice(&body).unwrap();
                st.revision += 1;
                lease["metadata"]["resourceVersion"] = st.revision.to_string().into();
                lease["metadata"]["namespace"] = "twill".into();
                st.lease = Some(lease.clone());
                respond(201, &lease)
            }
            (&Method::PUT, p) if p == named => {
                let mut lease: Value = serde_json::from_slice(&body).unwrap();
                let stored = st
                    .lease
                    .as_ref()
                    .map(|l| l["metadata"]["resourceVersion"].clone());
                match stored {
                    None => return status(404, "NotFound"),
                    Some(rv) if rv != lease["metadata"]["resourceVersion"] => {
                        return status(409, "Conflict");
                    }
                    Some(_) => {}
                }
                st.revision += 1;
                lease["metadata"]["resourceVersion"] = st.revision.to_string().into();
                st.lease = Some(lease.clone());
                respond(200, &lease)
            }
            _ => {
                st.violations.push(format!("{method} {path}"));
                status(400, "BadRequest")
            }
        }
    }

    async fn holder(&self) -> Option<String> {
        let st = self.state.lock().await;
        st.lease
            .as_ref()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }

    async fn set_down(&self, down: bool) {
        self.state.lock().await.down = down;
    }

    async fn violations(&self) -> Vec<String> {
        self.state.lock().await.violations.clone()
    }
}

const DURATION: Duration = Duration::from_secs(2);

async fn candidate(client: &kube::Client, id: &str) -> Leadership {
    Leadership::acquire_kube(client.clone(), "twill", NAME, id, DURATION).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_resigning_hands_over_at_once() {
    let (client, server) = FakeApiServer::start();
    let a = candidate(&client, "a").await;
    assert!(a.guard().is_leader());
    assert_eq!(server.holder().await.as_deref(), Some("a"));
    // b waits while a renews: well past one lease duration, b still does not lead.
    let b = tokio::spawn({
        let client = client.clone();
        async move { candidate(&client, "b").await }
    });
    tokio::time::sleep(DURATION * 2).await;
    assert!(!b.is_finished(), "b took a lease that a kept renewing");
    assert!(a.guard().is_leader());
    assert_eq!(server.holder().await.as_deref(), Some("a"));
    // a resigns: b leads well before a lease duration has passed.
    let resigned = Instant::now();
    a.resign().await;
    let b = tokio::time::timeout(DURATION, b).await.unwrap().unwrap();
    assert!(resigned.elapsed() < DURATION);
    assert!(b.guard().is_leader());
    assert_eq!(server.holder().await.as_deref(), Some("b"));
    assert!(
        server.violations().await.is_empty(),
        "{:?}",
        server.violations().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_renewing_has_stopped_acting_before_another_takes_over() {
    let (client, server) = FakeApiServer::start();
    let a = candidate(&client, "a").await;
    let guard = a.guard();
    // a dies without resigning: its renewals stop.
    drop(a);
    let b = candidate(&client, "b").await;
    assert!(
        !guard.is_leader(),
        "a's deadline must pass before b can take the Lease"
    );
    assert!(b.guard().is_leader());
    assert_eq!(server.holder().await.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_loses_leadership_by_its_deadline() {
    let (client, server) = FakeApiServer::start();
    let a = candidate(&client, "a").await;
    let mut guard = a.guard();
    server.set_down(true).await;
    let cut = Instant::now();
    tokio::time::timeout(DURATION * 2, guard.lost())
        .await
        .expect("leadership lapses when renewals fail");
    assert!(cut.elapsed() < DURATION, "{:?}", cut.elapsed());
    assert!(!guard.is_leader());
    drop(a);
}
