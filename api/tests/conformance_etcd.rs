//! The conformance suite against a real etcd started by the harness.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod conformance;

use conformance::suite;
use twill_api::datastore::{Datastore, DatastoreArgs};
use twill_harness::etcd::EtcdServer;

async fn datastore(etcd: &EtcdServer) -> Datastore {
    DatastoreArgs::etcd(etcd.endpoints())
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn etcd_crud() {
    let etcd = EtcdServer::start().unwrap();
    suite::crud(&datastore(&etcd).await).await;
}

#[tokio::test]
async fn etcd_namespaced_kinds() {
    let etcd = EtcdServer::start().unwrap();
    suite::namespaced(&datastore(&etcd).await).await;
}

#[tokio::test]
async fn etcd_cas_conflict() {
    let etcd = EtcdServer::start().unwrap();
    suite::cas_conflict(&datastore(&etcd).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_sixteen_concurrent_writers_lose_no_update() {
    let etcd = EtcdServer::start().unwrap();
    suite::concurrent_increments(&datastore(&etcd).await).await;
}

#[tokio::test]
async fn etcd_watch_order_and_resume() {
    let etcd = EtcdServer::start().unwrap();
    suite::watch_order_and_resume(&datastore(&etcd).await).await;
}

#[tokio::test]
async fn etcd_watch_relists_when_revision_compacted() {
    let etcd = EtcdServer::start().unwrap();
    let ds = datastore(&etcd).await;
    let endpoints = etcd.endpoints();
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
async fn etcd_invalid_objects_are_never_stored() {
    let etcd = EtcdServer::start().unwrap();
    suite::invalid_objects_are_never_stored(&datastore(&etcd).await).await;
}

#[tokio::test]
async fn etcd_bfd_profiles_round_trip_and_are_validated() {
    let etcd = EtcdServer::start().unwrap();
    suite::bfd_profiles_round_trip_and_are_validated(&datastore(&etcd).await).await;
}

#[tokio::test]
async fn etcd_namespaces_get_the_name_label_and_live_under_their_key() {
    let etcd = EtcdServer::start().unwrap();
    let ns = suite::namespaces_round_trip(&datastore(&etcd).await).await;
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/metadata.name"], "team-a");
    assert_eq!(labels["team"], "a");
    let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let resp = client
        .get("/twill/v1/namespace/team-a", None)
        .await
        .unwrap();
    assert_eq!(resp.kvs().len(), 1, "stored under /twill/v1/<kind>/<name>");
}

#[tokio::test]
async fn unreachable_etcd_fails_fast_naming_the_endpoint() {
    // A port nobody listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let err = DatastoreArgs::etcd(vec![endpoint.clone()])
        .connect()
        .await
        .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains(&endpoint), "{err}");
}

#[tokio::test]
async fn etcd_status_updates() {
    let etcd = EtcdServer::start().unwrap();
    suite::status_updates(&datastore(&etcd).await).await;
}

#[tokio::test]
async fn etcd_generation_counts_spec_changes() {
    let etcd = EtcdServer::start().unwrap();
    suite::generation_counts_spec_changes(&datastore(&etcd).await).await;
}

#[tokio::test]
async fn etcd_finalizers_hold_deletes() {
    let etcd = EtcdServer::start().unwrap();
    suite::finalizers_hold_deletes(&datastore(&etcd).await).await;
}

#[tokio::test]
async fn etcd_stored_unknown_fields_are_ignored_and_counted() {
    use twill_api::resources::BGPFilter;
    use twill_api::resources::kinds::BGPFILTER;
    let etcd = EtcdServer::start().unwrap();
    let ds = datastore(&etcd).await;
    // Written by something that did not check (an older twillctl, etcdctl by hand).
    let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    client
        .put(
            "/twill/v1/bgpfilter/typo",
            r#"{"apiVersion":"networking.twill.dev/v1","kind":"BGPFilter","metadata":{"name":"typo"},"spec":{"exportV4":[],"actoin":"Reject"}}"#,
            None,
        )
        .await
        .unwrap();
    let before = BGPFILTER.unknown_fields_seen.get();
    let filter: BGPFilter = ds.get(None, "typo").await.unwrap();
    assert_eq!(filter.metadata.name.as_deref(), Some("typo"));
    assert!(BGPFILTER.unknown_fields_seen.get() > before);
}
