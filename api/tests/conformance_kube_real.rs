//! The conformance suite against a real Kubernetes API server: kube-apiserver v1.20.2 on
//! Debian's etcd (`twill_harness::kube_real`), with Twill's CRDs installed as the chart
//! installs them and Established before the suite runs. The same scenarios as
//! `conformance_kubernetes.rs` (which runs them against the fake), so a behaviour the fake
//! gets wrong shows up as a difference between the two.
//!
//! The server runs with `--watch-cache=false`: watches then read etcd, so compacting etcd
//! makes a watch from an old resourceVersion get the real `410 Gone`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod conformance;

use std::sync::Arc;

use conformance::suite;
use serde_json::Value;
use twill_api::datastore::Datastore;
use twill_api::datastore::kubernetes::KubernetesBackend;
use twill_api::resources::kinds::ALL_KINDS;
use twill_harness::kube_real::{self, RealApiServer};

/// Every CRD of the registry, as `twillctl crds` and the chart render them.
fn crds() -> Vec<Value> {
    ALL_KINDS
        .iter()
        .filter_map(|k| k.crd)
        .map(|crd| serde_json::to_value(crd()).unwrap())
        .collect()
}

/// A fresh server with the CRDs Established, and a datastore on it as the admin.
async fn datastore() -> (Datastore, RealApiServer) {
    let server =
        tokio::task::spawn_blocking(|| RealApiServer::start_with(&["--watch-cache=false"]))
            .await
            .unwrap()
            .unwrap();
    let client = server.admin_client().await.unwrap();
    kube_real::install_crds(&client, &crds()).await.unwrap();
    let backend = KubernetesBackend::from_client(client, server.url());
    (Datastore::new(Arc::new(backend)), server)
}

#[tokio::test]
async fn real_apiserver_crud() {
    let (ds, _server) = datastore().await;
    suite::crud(&ds).await;
}

#[tokio::test]
async fn real_apiserver_namespaced_kinds() {
    let (ds, _server) = datastore().await;
    suite::namespaced(&ds).await;
}

#[tokio::test]
async fn real_apiserver_cas_conflict_is_409() {
    let (ds, _server) = datastore().await;
    suite::cas_conflict(&ds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_apiserver_sixteen_concurrent_writers_lose_no_update() {
    let (ds, _server) = datastore().await;
    suite::concurrent_increments(&ds).await;
}

#[tokio::test]
async fn real_apiserver_watch_order_and_resume() {
    let (ds, _server) = datastore().await;
    suite::watch_order_and_resume(&ds).await;
}

#[tokio::test]
async fn real_apiserver_watch_relists_on_410() {
    let (ds, server) = datastore().await;
    let endpoints = server.etcd().endpoints();
    suite::relist_when_too_old(&ds, || async move {
        let mut client = etcd_client::Client::connect(&endpoints, None)
            .await
            .unwrap();
        let revision = client.status().await.unwrap().header().unwrap().revision();
        client.compact(revision, None).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn real_apiserver_invalid_objects_are_never_sent() {
    let (ds, _server) = datastore().await;
    suite::invalid_objects_are_never_stored(&ds).await;
}

#[tokio::test]
async fn real_apiserver_namespaces_round_trip() {
    let (ds, _server) = datastore().await;
    let ns = suite::namespaces_round_trip(&ds).await;
    assert_eq!(ns.metadata.name.as_deref(), Some("team-a"));
}

#[tokio::test]
async fn real_apiserver_status_goes_through_the_status_subresource() {
    let (ds, _server) = datastore().await;
    suite::status_updates(&ds).await;
}
