//! The conformance suite against the Kubernetes backend, over a tower-test mock service
//! answering as the API server would (`twill_harness::kube_fake`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod conformance;

use std::sync::Arc;

use conformance::suite;
use twill_api::datastore::Datastore;
use twill_api::datastore::kubernetes::KubernetesBackend;
use twill_harness::kube_fake::FakeApiServer;

fn datastore() -> (Datastore, FakeApiServer) {
    let (client, server) = FakeApiServer::start(conformance::twill_kinds());
    let backend = KubernetesBackend::from_client(client, "https://fake-apiserver");
    (Datastore::new(Arc::new(backend)), server)
}

async fn no_violations(server: &FakeApiServer) {
    let violations = server.violations().await;
    assert!(
        violations.is_empty(),
        "requests the API server would refuse: {violations:#?}"
    );
}

#[tokio::test]
async fn kubernetes_crud() {
    let (ds, server) = datastore();
    suite::crud(&ds).await;
    no_violations(&server).await;
}

#[tokio::test]
async fn kubernetes_namespaced_kinds() {
    let (ds, server) = datastore();
    suite::namespaced(&ds).await;
    no_violations(&server).await;
}

#[tokio::test]
async fn kubernetes_cas_conflict_is_409() {
    let (ds, server) = datastore();
    suite::cas_conflict(&ds).await;
    no_violations(&server).await;
    let conflicts = server
        .exchanges()
        .await
        .iter()
        .filter(|e| e.status == 409)
        .count();
    assert_eq!(
        conflicts, 2,
        "the stale update and the stale delete each got a 409"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubernetes_sixteen_concurrent_writers_lose_no_update() {
    let (ds, server) = datastore();
    suite::concurrent_increments(&ds).await;
    no_violations(&server).await;
}

#[tokio::test]
async fn kubernetes_watch_order_and_resume() {
    let (ds, server) = datastore();
    suite::watch_order_and_resume(&ds).await;
    no_violations(&server).await;
}

#[tokio::test]
async fn kubernetes_watch_relists_on_410() {
    let (ds, server) = datastore();
    let compactor = server.clone();
    suite::relist_when_too_old(&ds, || async move { compactor.compact().await }).await;
    no_violations(&server).await;
    let exchanges = server.exchanges().await;
    let watches: Vec<_> = exchanges
        .iter()
        .filter(|e| e.query.contains("watch=true"))
        .collect();
    assert!(
        watches.len() >= 2,
        "a watch that got 410, then one after the re-list: {exchanges:#?}"
    );
}

#[tokio::test]
async fn kubernetes_bfd_profiles_round_trip_and_are_validated() {
    let (ds, server) = datastore();
    suite::bfd_profiles_round_trip_and_are_validated(&ds).await;
    no_violations(&server).await;
}

#[tokio::test]
async fn kubernetes_invalid_objects_are_never_sent() {
    let (ds, server) = datastore();
    suite::invalid_objects_are_never_stored(&ds).await;
    no_violations(&server).await;
    let posts = server
        .exchanges()
        .await
        .into_iter()
        .filter(|e| e.method == "POST")
        .count();
    assert_eq!(posts, 1, "only the valid pool reached the API server");
}

#[tokio::test]
async fn kubernetes_requests_use_the_api_paths() {
    let (ds, server) = datastore();
    ds.create(&suite::pool("p1", "10.244.0.0/16"))
        .await
        .unwrap();
    let ns = suite::namespaces_round_trip(&ds).await;
    assert_eq!(ns.metadata.name.as_deref(), Some("team-a"));
    let exchanges = server.exchanges().await;
    let calls: Vec<(String, String)> = exchanges
        .iter()
        .map(|e| (e.method.clone(), e.path.clone()))
        .collect();
    let expected = [
        ("GET", "/apis/networking.twill.dev/v1/ippools"),
        ("POST", "/apis/networking.twill.dev/v1/ippools"),
        ("POST", "/api/v1/namespaces"),
        ("GET", "/api/v1/namespaces/team-a"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(calls, expected);
    no_violations(&server).await;
}

#[tokio::test]
async fn kubernetes_status_goes_through_the_status_subresource() {
    let (ds, server) = datastore();
    suite::status_updates(&ds).await;
    no_violations(&server).await;
    let puts: Vec<_> = server
        .exchanges()
        .await
        .into_iter()
        .filter(|e| e.method == "PUT")
        .map(|e| e.path)
        .collect();
    assert!(
        puts.iter()
            .all(|p| p == "/apis/networking.twill.dev/v1/ippools/st/status"),
        "{puts:?}"
    );
}

#[tokio::test]
async fn kubernetes_generation_counts_spec_changes() {
    let (ds, server) = datastore();
    suite::generation_counts_spec_changes(&ds).await;
    no_violations(&server).await;
}

#[tokio::test]
async fn kubernetes_finalizers_hold_deletes() {
    let (ds, server) = datastore();
    suite::finalizers_hold_deletes(&ds).await;
    no_violations(&server).await;
}
