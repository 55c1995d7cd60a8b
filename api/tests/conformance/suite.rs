//! The backend conformance suite: one set of test functions, run against every backend
//! (real etcd, and the Kubernetes backend over recorded API exchanges).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use twill_api::datastore::{Datastore, DatastoreError, WatchEvent};
use twill_api::resources::native::Namespace;
use twill_api::resources::{
    BFDProfile, BFDProfileSpec, BGPPeer, BGPPeerSpec, IPPool, IPPoolSpec, WorkloadEndpoint,
    WorkloadEndpointSpec,
};

const WAIT: Duration = Duration::from_secs(30);

pub fn pool(name: &str, cidr: &str) -> IPPool {
    IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.into(),
            block_size: Some(26),
            ..Default::default()
        },
    )
}

fn rv<T: kube::Resource>(object: &T) -> String {
    object
        .meta()
        .resource_version
        .clone()
        .expect("stored objects carry a revision")
}

/// Create, get, list, update, delete; the typed errors for each failure.
pub async fn crud(ds: &Datastore) {
    let created = ds.create(&pool("crud-a", "10.244.0.0/20")).await.unwrap();
    assert_eq!(created.spec.cidr, "10.244.0.0/20");
    assert!(matches!(
        ds.create(&pool("crud-a", "10.245.0.0/20")).await,
        Err(DatastoreError::AlreadyExists { .. })
    ));
    let got: IPPool = ds.get(None, "crud-a").await.unwrap();
    assert_eq!(got.spec, created.spec);
    assert_eq!(rv(&got), rv(&created));

    ds.create(&pool("crud-b", "10.244.16.0/20")).await.unwrap();
    let list = ds.list::<IPPool>(None).await.unwrap();
    let names: Vec<_> = list
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names, ["crud-a", "crud-b"]);
    assert!(!list.revision.is_empty());
    assert_eq!(
        ds.list_names::<IPPool>(None).await.unwrap(),
        ["crud-a", "crud-b"]
    );

    let mut changed = got.clone();
    changed.spec.nat_outgoing = Some(true);
    let updated = ds.update(&changed).await.unwrap();
    assert_ne!(rv(&updated), rv(&got));
    assert_eq!(
        ds.get::<IPPool>(None, "crud-a")
            .await
            .unwrap()
            .spec
            .nat_outgoing,
        Some(true)
    );

    let deleted: IPPool = ds.delete(None, "crud-a", None).await.unwrap();
    assert_eq!(deleted.spec.nat_outgoing, Some(true));
    assert!(matches!(
        ds.get::<IPPool>(None, "crud-a").await,
        Err(DatastoreError::NotFound { .. })
    ));
    assert!(matches!(
        ds.delete::<IPPool>(None, "crud-a", None).await,
        Err(DatastoreError::NotFound { .. })
    ));
    assert!(matches!(
        ds.update(&changed).await,
        Err(DatastoreError::NotFound { .. }) | Err(DatastoreError::Conflict { .. })
    ));
}

/// Namespaced kinds live per namespace; listing without one sees all.
pub async fn namespaced(ds: &Datastore) {
    // As in a cluster, objects live in namespaces that exist.
    for name in ["ns-a", "ns-b"] {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        ds.create(&ns).await.unwrap();
    }
    for (ns, name) in [("ns-a", "web"), ("ns-b", "web"), ("ns-a", "db")] {
        let mut wep = WorkloadEndpoint::new(
            name,
            WorkloadEndpointSpec {
                node: "node1".into(),
                ip_networks: vec!["10.244.1.2/32".into()],
                ..Default::default()
            },
        );
        wep.metadata.namespace = Some(ns.into());
        ds.create(&wep).await.unwrap();
    }
    let in_a = ds
        .list::<WorkloadEndpoint>(Some("ns-a"))
        .await
        .unwrap()
        .items;
    assert_eq!(in_a.len(), 2);
    let all = ds.list::<WorkloadEndpoint>(None).await.unwrap().items;
    assert_eq!(all.len(), 3);
    assert_eq!(
        ds.list_names::<WorkloadEndpoint>(None).await.unwrap(),
        ["ns-a/db", "ns-a/web", "ns-b/web"]
    );
    assert_eq!(
        ds.list_names::<WorkloadEndpoint>(Some("ns-a"))
            .await
            .unwrap(),
        ["db", "web"]
    );
    let b: WorkloadEndpoint = ds.get(Some("ns-b"), "web").await.unwrap();
    assert_eq!(b.metadata.namespace.as_deref(), Some("ns-b"));
    // Namespaced kinds need a namespace.
    let bare = WorkloadEndpoint::new(
        "x",
        WorkloadEndpointSpec {
            node: "n".into(),
            ..Default::default()
        },
    );
    assert!(matches!(
        ds.create(&bare).await,
        Err(DatastoreError::Invalid { .. })
    ));
}

/// A stale revision loses: `Conflict`, and the stored object is the winner's.
pub async fn cas_conflict(ds: &Datastore) {
    let first = ds.create(&pool("cas", "10.250.0.0/24")).await.unwrap();
    let mut a = first.clone();
    a.spec.disabled = Some(true);
    let mut b = first.clone();
    b.spec.nat_outgoing = Some(true);
    ds.update(&a).await.unwrap();
    let err = ds.update(&b).await.unwrap_err();
    assert!(matches!(err, DatastoreError::Conflict { .. }), "{err}");
    let now: IPPool = ds.get(None, "cas").await.unwrap();
    assert_eq!(now.spec.disabled, Some(true));
    assert_eq!(now.spec.nat_outgoing, None);
    // A guarded delete with the stale revision is refused too, then succeeds with the current.
    assert!(matches!(
        ds.delete::<IPPool>(None, "cas", Some(&rv(&first))).await,
        Err(DatastoreError::Conflict { .. })
    ));
    ds.delete::<IPPool>(None, "cas", Some(&rv(&now)))
        .await
        .unwrap();
}

/// 16 concurrent read-modify-write writers, each incrementing a counter 1 time with CAS
/// retries: the counter ends at exactly 16.
pub async fn concurrent_increments(ds: &Datastore) {
    // The counter is a BGPPeer's asNumber: any integer field serves.
    let peer = BGPPeer::new(
        "counter",
        BGPPeerSpec {
            peer_ip: Some("192.0.2.1".into()),
            as_number: Some(twill_api::resources::AsNumber(1000)),
            ..Default::default()
        },
    );
    ds.create(&peer).await.unwrap();
    let writers = (0..16).map(|_| {
        let ds = ds.clone();
        tokio::spawn(async move {
            let mut conflicts = 0u32;
            loop {
                let mut current: BGPPeer = ds.get(None, "counter").await.unwrap();
                let asn = current.spec.as_number.unwrap().0;
                current.spec.as_number = Some(twill_api::resources::AsNumber(asn + 1));
                match ds.update(&current).await {
                    Ok(_) => return conflicts,
                    Err(DatastoreError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected error: {other}"),
                }
                assert!(conflicts < 1000, "writer starved");
            }
        })
    });
    let conflicts: u32 = futures::future::join_all(writers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    let end: BGPPeer = ds.get(None, "counter").await.unwrap();
    assert_eq!(
        end.spec.as_number.unwrap().0,
        1016,
        "lost updates ({conflicts} conflicts)"
    );
}

async fn next_event<S>(stream: &mut S) -> WatchEvent<IPPool>
where
    S: futures::Stream<Item = Result<WatchEvent<IPPool>, DatastoreError>> + Unpin,
{
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("watch event in time")
        .expect("watch stream open")
        .expect("watch event, not error")
}

fn name(event: &WatchEvent<IPPool>) -> (&'static str, String) {
    match event {
        WatchEvent::Added(p) => ("added", p.metadata.name.clone().unwrap()),
        WatchEvent::Modified(p) => ("modified", p.metadata.name.clone().unwrap()),
        WatchEvent::Deleted(p) => ("deleted", p.metadata.name.clone().unwrap()),
        WatchEvent::Relisted { .. } => ("relisted", String::new()),
    }
}

/// A watch without a revision starts with a snapshot, then sees changes in order; a watch
/// resumed from a revision sees exactly the changes after it.
pub async fn watch_order_and_resume(ds: &Datastore) {
    ds.create(&pool("w-0", "10.251.0.0/24")).await.unwrap();
    let mut watch = ds.watch::<IPPool>(None, None);
    match next_event(&mut watch).await {
        WatchEvent::Relisted { items, .. } => assert_eq!(items.len(), 1),
        other => panic!("expected a snapshot first, got {other:?}"),
    }
    let a = ds.create(&pool("w-a", "10.251.1.0/24")).await.unwrap();
    let mut a2 = a.clone();
    a2.spec.disabled = Some(true);
    let a2 = ds.update(&a2).await.unwrap();
    ds.create(&pool("w-b", "10.251.2.0/24")).await.unwrap();
    let _: IPPool = ds.delete(None, "w-a", None).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(name(&next_event(&mut watch).await));
    }
    let expected = [
        ("added", "w-a".to_string()),
        ("modified", "w-a".into()),
        ("added", "w-b".into()),
        ("deleted", "w-a".into()),
    ];
    assert_eq!(seen, expected);
    drop(watch);

    // Resume from the revision of the update: only what came after.
    let mut resumed = ds.watch::<IPPool>(None, Some(rv(&a2)));
    assert_eq!(
        name(&next_event(&mut resumed).await),
        ("added", "w-b".into())
    );
    match next_event(&mut resumed).await {
        WatchEvent::Deleted(p) => {
            assert_eq!(p.metadata.name.as_deref(), Some("w-a"));
            assert_eq!(
                p.spec.disabled,
                Some(true),
                "a deletion carries the last state"
            );
        }
        other => panic!("expected the deletion, got {other:?}"),
    }
    ds.create(&pool("w-c", "10.251.3.0/24")).await.unwrap();
    assert_eq!(
        name(&next_event(&mut resumed).await),
        ("added", "w-c".into())
    );
}

/// A watch from a revision the datastore no longer has re-lists cleanly (a `Relisted` with
/// the current state), then continues with later changes. `compact` makes the revision
/// too old (etcd compaction / the API server's 410).
pub async fn relist_when_too_old<F, Fut>(ds: &Datastore, compact: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let old = ds.create(&pool("r-a", "10.252.0.0/24")).await.unwrap();
    ds.create(&pool("r-b", "10.252.1.0/24")).await.unwrap();
    let _: IPPool = ds.delete(None, "r-a", None).await.unwrap();
    compact().await;
    let mut watch = ds.watch::<IPPool>(None, Some(rv(&old)));
    match next_event(&mut watch).await {
        WatchEvent::Relisted { items, .. } => {
            let names: BTreeSet<_> = items
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            assert!(names.contains("r-b") && !names.contains("r-a"), "{names:?}");
        }
        other => panic!("expected a re-list, got {other:?}"),
    }
    ds.create(&pool("r-c", "10.252.2.0/24")).await.unwrap();
    assert_eq!(name(&next_event(&mut watch).await), ("added", "r-c".into()));
}

/// The write path validates: a blockSize of 40 is refused naming `blockSize`, an
/// overlapping pool is refused, and neither is stored.
pub async fn invalid_objects_are_never_stored(ds: &Datastore) {
    let mut bad = pool("bad", "10.253.0.0/16");
    bad.spec.block_size = Some(40);
    match ds.create(&bad).await {
        Err(DatastoreError::Invalid { error, .. }) => assert_eq!(error.field, "spec.blockSize"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(matches!(
        ds.get::<IPPool>(None, "bad").await,
        Err(DatastoreError::NotFound { .. })
    ));
    ds.create(&pool("big", "10.254.0.0/16")).await.unwrap();
    match ds.create(&pool("inside", "10.254.3.0/24")).await {
        Err(DatastoreError::Invalid { error, .. }) => {
            assert_eq!(error.field, "spec.cidr");
            assert!(error.message.contains("big"), "{error}");
        }
        other => panic!("expected overlap refusal, got {other:?}"),
    }
    assert!(matches!(
        ds.get::<IPPool>(None, "inside").await,
        Err(DatastoreError::NotFound { .. })
    ));
    // A stored pool's blockSize and cidr cannot change: blocks of the old size would overlap.
    let stored: IPPool = ds.get(None, "big").await.unwrap();
    let mut resized = stored.clone();
    resized.spec.block_size = Some(28);
    match ds.update(&resized).await {
        Err(DatastoreError::Invalid { error, .. }) => {
            assert_eq!(error.field, "spec.blockSize");
            assert!(error.message.contains("cannot be changed"), "{error}");
        }
        other => panic!("expected the resize to be refused, got {other:?}"),
    }
    let mut moved = stored.clone();
    moved.spec.cidr = "10.254.0.0/17".into();
    match ds.update(&moved).await {
        Err(DatastoreError::Invalid { error, .. }) => assert_eq!(error.field, "spec.cidr"),
        other => panic!("expected the move to be refused, got {other:?}"),
    }
    let now: IPPool = ds.get(None, "big").await.unwrap();
    assert_eq!(now.spec, stored.spec);
}

/// Namespace objects round-trip (etcd mode stores them; it adds the name label).
pub async fn namespaces_round_trip(ds: &Datastore) -> Namespace {
    let mut ns = Namespace::default();
    ns.metadata.name = Some("team-a".into());
    ns.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
    ds.create(&ns).await.unwrap();
    ds.get(None, "team-a").await.unwrap()
}

/// A controller reports back through the status: compare-and-swap like any update.
pub async fn status_updates(ds: &Datastore) {
    use twill_api::resources::{Condition, ResourceStatus};
    let created = ds.create(&pool("st", "10.249.0.0/24")).await.unwrap();
    let mut reported = created.clone();
    reported.status = Some(ResourceStatus {
        conditions: vec![Condition {
            type_: "Allocatable".into(),
            status: "False".into(),
            reason: "Disabled".into(),
            message: "the pool is disabled".into(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: None,
        }],
    });
    let stored = ds.update_status(&reported).await.unwrap();
    assert_ne!(rv(&stored), rv(&created));
    let got: IPPool = ds.get(None, "st").await.unwrap();
    let conditions = got.status.unwrap().conditions;
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0].reason, "Disabled");
    assert_eq!(got.spec, created.spec);
    // The stale revision loses.
    assert!(matches!(
        ds.update_status(&reported).await,
        Err(DatastoreError::Conflict { .. })
    ));
}

fn generation<T: kube::Resource>(object: &T) -> i64 {
    object
        .meta()
        .generation
        .expect("stored objects carry a generation")
}

/// `metadata.generation` counts spec changes: 1 on create, +1 on every spec change, not on
/// a status or metadata-only change.
pub async fn generation_counts_spec_changes(ds: &Datastore) {
    use twill_api::resources::ResourceStatus;
    let created = ds.create(&pool("gen", "10.248.0.0/24")).await.unwrap();
    assert_eq!(generation(&created), 1);
    let mut changed = created.clone();
    changed.spec.nat_outgoing = Some(true);
    let updated = ds.update(&changed).await.unwrap();
    assert_eq!(generation(&updated), 2, "a spec change");
    let mut changed = updated.clone();
    changed.spec.disabled = Some(true);
    let updated = ds.update(&changed).await.unwrap();
    assert_eq!(generation(&updated), 3, "another spec change");
    let mut labelled = updated.clone();
    labelled.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
    let labelled = ds.update(&labelled).await.unwrap();
    assert_eq!(generation(&labelled), 3, "a label is not the spec");
    let mut reported = labelled.clone();
    reported.status = Some(ResourceStatus::default());
    let reported = ds.update_status(&reported).await.unwrap();
    assert_eq!(generation(&reported), 3, "status is not the spec");
    // Writing the same spec again changes nothing either, and a writer cannot set it.
    let mut forged = reported.clone();
    forged.metadata.generation = Some(100);
    let same = ds.update(&forged).await.unwrap();
    assert_eq!(generation(&same), 3);
    let got: IPPool = ds.get(None, "gen").await.unwrap();
    assert_eq!(generation(&got), 3);
}

/// A delete of an object with finalizers only marks it (`deletionTimestamp`); it goes when
/// the last finalizer is removed. Without finalizers a delete removes at once.
pub async fn finalizers_hold_deletes(ds: &Datastore) {
    let mut held = pool("fin", "10.247.0.0/24");
    held.metadata.finalizers = Some(vec!["networking.twill.dev/ipam".into()]);
    let created = ds.create(&held).await.unwrap();
    assert!(created.metadata.deletion_timestamp.is_none());
    let mut watch = ds.watch::<IPPool>(None, Some(rv(&created)));

    ds.delete::<IPPool>(None, "fin", None).await.unwrap();
    let marked: IPPool = ds.get(None, "fin").await.unwrap();
    assert!(
        marked.metadata.deletion_timestamp.is_some(),
        "still there, marked for deletion"
    );
    assert_eq!(
        marked.metadata.finalizers.as_deref(),
        Some(&["networking.twill.dev/ipam".to_string()][..])
    );
    match next_event(&mut watch).await {
        WatchEvent::Modified(p) => assert!(p.metadata.deletion_timestamp.is_some()),
        other => panic!("expected the marking as a modification, got {other:?}"),
    }
    // Deleting again changes nothing; a label update keeps it marked.
    ds.delete::<IPPool>(None, "fin", None).await.unwrap();
    let mut labelled = ds.get::<IPPool>(None, "fin").await.unwrap();
    labelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    let labelled = ds.update(&labelled).await.unwrap();
    assert!(labelled.metadata.deletion_timestamp.is_some());

    // Removing the finalizer removes the object.
    let mut released = labelled.clone();
    released.metadata.finalizers = Some(vec![]);
    ds.update(&released).await.unwrap();
    assert!(matches!(
        ds.get::<IPPool>(None, "fin").await,
        Err(DatastoreError::NotFound { .. })
    ));
    loop {
        match next_event(&mut watch).await {
            WatchEvent::Deleted(p) => {
                assert_eq!(p.metadata.name.as_deref(), Some("fin"));
                break;
            }
            WatchEvent::Modified(_) => continue,
            other => panic!("expected the deletion, got {other:?}"),
        }
    }

    // No finalizers: gone at once.
    ds.create(&pool("nofin", "10.247.1.0/24")).await.unwrap();
    ds.delete::<IPPool>(None, "nofin", None).await.unwrap();
    assert!(matches!(
        ds.get::<IPPool>(None, "nofin").await,
        Err(DatastoreError::NotFound { .. })
    ));
}

/// `BFDProfile`s are stored, listed, updated and deleted like every kind; one out of
/// range is refused naming the field, and never stored.
pub async fn bfd_profiles_round_trip_and_are_validated(ds: &Datastore) {
    let fast = BFDProfile::new(
        "fast",
        BFDProfileSpec {
            receive_interval: Some(100),
            transmit_interval: Some(100),
            detect_multiplier: Some(3),
            passive_mode: Some(false),
            minimum_ttl: Some(254),
        },
    );
    let stored = ds.create(&fast).await.unwrap();
    assert_eq!(stored.spec, fast.spec);
    let mut slower = stored.clone();
    slower.spec.transmit_interval = Some(300);
    ds.update(&slower).await.unwrap();
    let got: BFDProfile = ds.get(None, "fast").await.unwrap();
    assert_eq!(got.spec.transmit_interval, Some(300));
    assert_eq!(ds.list::<BFDProfile>(None).await.unwrap().items.len(), 1);

    let mut bad = BFDProfile::new("bad", BFDProfileSpec::default());
    bad.spec.detect_multiplier = Some(0);
    match ds.create(&bad).await {
        Err(DatastoreError::Invalid { error, .. }) => {
            assert_eq!(error.field, "spec.detectMultiplier")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(matches!(
        ds.get::<BFDProfile>(None, "bad").await,
        Err(DatastoreError::NotFound { .. })
    ));
    ds.delete::<BFDProfile>(None, "fast", None).await.unwrap();
    assert!(matches!(
        ds.get::<BFDProfile>(None, "fast").await,
        Err(DatastoreError::NotFound { .. })
    ));
}
