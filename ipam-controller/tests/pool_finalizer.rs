//! The pool-in-use guard for every client, in both datastore modes: a plain delete of an
//! IPPool (what `kubectl delete ippool` or an etcd client does, with no twillctl check in
//! the way) only marks a pool that still has addresses; the controller's finalizer lets it
//! go once the last one is released.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use twill_api::datastore::Datastore;
use twill_api::datastore::kubernetes::KubernetesBackend;
use twill_api::resources::IPPool;
use twill_api::resources::kinds::ALL_KINDS;
use twill_harness::kube_fake::{FakeApiServer, FakeKind};
use twill_ipam::allocator::{Ipam, Request};
use twill_ipam::controller::{Controller, ControllerConfig};
use twill_ipam::finalizer::POOL_FINALIZER;
use twill_ipam::inventory::WorkloadSource;
use twill_ipam::metrics::Metrics;

/// The pool-in-use guard holds for every client: a plain datastore delete (what
/// `kubectl delete ippool` is) only marks a pool in use; it hands out nothing new, and it
/// goes once its last address is released.
async fn a_pool_in_use_survives_a_delete_until_its_last_address_is_released(ds: Datastore) {
    common::pool(&ds, "v4", "10.244.0.0/24", 26).await;
    common::node(&ds, "n1").await;
    let config = ControllerConfig {
        gc_grace: Duration::from_secs(900),
        resync: Duration::from_secs(60),
        source: WorkloadSource::Endpoints,
        prune_nodes: false,
    };
    let mut controller = Controller::new(ds.clone(), config, Arc::new(Metrics::default()));
    let first = controller.pass().await.unwrap();
    assert_eq!(first.finalizers.held, 1);
    let pool: IPPool = ds.get(None, "v4").await.unwrap();
    assert_eq!(
        pool.metadata.finalizers.as_deref(),
        Some(&[POOL_FINALIZER.to_string()][..])
    );

    let ipam = Ipam::new(ds.clone()).with_settings_ttl(Duration::ZERO);
    let request = |handle: &str| Request {
        handle: handle.into(),
        node: "n1".into(),
        attrs: BTreeMap::new(),
        v4: true,
        v6: false,
    };
    let got = ipam.allocate(&request("net.pod1")).await.unwrap();
    let v4: ipnet::IpNet = "10.244.0.0/24".parse().unwrap();
    let in_v4 = |ip: std::net::IpAddr| v4.contains(&ip);
    assert!(in_v4(got[0].addr), "{got:?}");
    // Another pool for what comes next.
    common::pool(&ds, "spare", "10.245.0.0/24", 26).await;
    // Delete the v4 pool the way any client would: no twillctl check in the way.
    ds.delete::<IPPool>(None, "v4", None).await.unwrap();
    let marked: IPPool = ds.get(None, "v4").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    let second = controller.pass().await.unwrap();
    assert_eq!(second.finalizers.waiting, 1, "{second:?}");
    let still: IPPool = ds.get(None, "v4").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some(), "still held");
    // A pool being deleted hands out nothing new.
    let next = ipam.allocate(&request("net.pod2")).await.unwrap();
    assert!(!in_v4(next[0].addr), "{next:?}");

    ipam.release_handle("net.pod1").await.unwrap();
    let third = controller.pass().await.unwrap();
    assert_eq!(third.finalizers.released, 1, "{third:?}");
    assert!(matches!(
        ds.get::<IPPool>(None, "v4").await,
        Err(twill_api::datastore::DatastoreError::NotFound { .. })
    ));
    assert!(ds.get::<IPPool>(None, "spare").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_pool_in_use_survives_a_delete_until_its_last_address_is_released() {
    let (_etcd, ds) = common::etcd().await;
    a_pool_in_use_survives_a_delete_until_its_last_address_is_released(ds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_a_pool_in_use_survives_a_delete_until_its_last_address_is_released() {
    let kinds = ALL_KINDS.iter().filter(|k| k.crd.is_some()).map(|k| {
        let kind = FakeKind::new(k.api_version, k.kind, k.plural, k.namespaced);
        let status = k
            .crd
            .map(|crd| crd())
            .and_then(|crd| crd.spec.versions.first().cloned())
            .and_then(|v| v.subresources)
            .is_some_and(|s| s.status.is_some());
        if status { kind.with_status() } else { kind }
    });
    let (client, server) = FakeApiServer::start(kinds);
    let backend = KubernetesBackend::from_client(client, "https://fake-apiserver");
    a_pool_in_use_survives_a_delete_until_its_last_address_is_released(Datastore::new(Arc::new(
        backend,
    )))
    .await;
    let violations = server.violations().await;
    assert!(
        violations.is_empty(),
        "requests the API server would refuse: {violations:#?}"
    );
}
