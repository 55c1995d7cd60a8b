//! Leader election on a real Kubernetes `Lease`: the scenarios of `lease_kubernetes.rs`
//! against kube-apiserver v1.20.2 (`twill_harness::kube_real`) instead of a fake, so the
//! Lease's real validation, resourceVersion compare-and-swap and 409s are what the
//! candidates meet. Two candidates in one process stand for two replicas. (The API server
//! becoming unreachable stays with the fake, which can answer 503 on demand.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use tokio::time::Instant;
use twill_harness::kube_real::{self, RealApiServer};
use twill_ipam::leader::Leadership;

const NAMESPACE: &str = "twill";
const NAME: &str = "twill-ipam-controller";
const DURATION: Duration = Duration::from_secs(2);

/// A fresh server with the Lease's namespace, and an admin client.
async fn server() -> (RealApiServer, kube::Client) {
    let server = tokio::task::spawn_blocking(RealApiServer::start)
        .await
        .unwrap()
        .unwrap();
    let client = server.admin_client().await.unwrap();
    kube_real::apply(
        &client,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await
    .unwrap();
    (server, client)
}

async fn holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), NAMESPACE)
        .get_opt(NAME)
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn candidate(client: &kube::Client, id: &str) -> Leadership {
    Leadership::acquire_kube(client.clone(), NAMESPACE, NAME, id, DURATION).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_lease_one_replica_leads_and_resigning_hands_over_at_once() {
    let (server, client) = server().await;
    let a = candidate(&client, "a").await;
    assert!(a.guard().is_leader());
    assert_eq!(holder(&client).await.as_deref(), Some("a"));
    let b = tokio::spawn({
        let client = client.clone();
        async move { candidate(&client, "b").await }
    });
    tokio::time::sleep(DURATION * 2).await;
    assert!(!b.is_finished(), "b took a lease that a kept renewing");
    assert!(a.guard().is_leader());
    assert_eq!(holder(&client).await.as_deref(), Some("a"));
    let resigned = Instant::now();
    a.resign().await;
    let b = tokio::time::timeout(DURATION, b).await.unwrap().unwrap();
    assert!(resigned.elapsed() < DURATION);
    assert!(b.guard().is_leader());
    assert_eq!(holder(&client).await.as_deref(), Some("b"));
    assert!(server.forbidden().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_lease_a_leader_that_stops_renewing_has_stopped_acting_before_another_takes_over() {
    let (_server, client) = server().await;
    let a = candidate(&client, "a").await;
    let guard = a.guard();
    drop(a);
    let b = candidate(&client, "b").await;
    assert!(
        !guard.is_leader(),
        "a's deadline must pass before b can take the Lease"
    );
    assert!(b.guard().is_leader());
    assert_eq!(holder(&client).await.as_deref(), Some("b"));
}
