//! felix's Kubernetes mode against the fake API server (`twill_harness::kube_fake`, a
//! tower-test service answering as the API server does): the endpoints felix writes take
//! their labels, named ports and service account from the Pod (not from CNI_ARGS), follow
//! the Pod's changes through a watch of this node's Pods (field selector), also across a
//! watch restart that must re-list (410), and never disappear or lose their addresses
//! because the Pod is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod kube_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube_support::{endpoint, fake, pod, wait_for_wep};
use serde_json::json;
use twill_felix::agent::endpoints::{EndpointStore, endpoint_name};
use twill_felix::agent::kubernetes::pods::PodSync;
use twill_felix::cni::Endpoints;
use twill_harness::kube_fake::select::parse_query;

const NODE: &str = "node-1";

fn labels(pairs: &[(&str, &str)]) -> serde_json::Value {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test]
async fn endpoint_takes_labels_ports_and_account_from_the_pod_not_cni_args() {
    let (ds, server) = fake();
    server
        .put(pod(
            "shop",
            "web-1",
            NODE,
            labels(&[("app", "web"), ("tier", "front")]),
            json!([{"name": "http", "containerPort": 8080},
                   {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                   {"containerPort": 9090}]),
        ))
        .await;
    let sync = PodSync::new(server.client(), ds.clone(), NODE.into());
    let store = EndpointStore::load(ds.clone(), NODE.into())
        .await
        .unwrap()
        .with_decorator(Some(Arc::new(sync)));
    let ep = endpoint("shop", "web-1", "c1");
    assert_eq!(ep.labels.get("from").map(String::as_str), Some("cni-args"));
    store.put(&ep).await.unwrap();

    let name = endpoint_name(NODE, "web-1", &ep.key);
    let wep = server
        .object("networking.twill.dev/v1", "WorkloadEndpoint", "shop", &name)
        .await
        .expect("endpoint written");
    assert_eq!(
        wep["metadata"]["labels"],
        labels(&[("app", "web"), ("tier", "front")])
    );
    assert_eq!(
        wep["spec"]["ports"],
        json!([{"name": "http", "protocol": "TCP", "port": 8080},
               {"name": "dns", "protocol": "UDP", "port": 53}])
    );
    assert_eq!(wep["spec"]["serviceAccountName"], "web-sa");
    // The local record says the same as the stored one.
    let local = store.get(&ep.key).await.unwrap().unwrap();
    assert_eq!(local.labels.get("app").map(String::as_str), Some("web"));
    assert!(!local.labels.contains_key("from"));
    // Without a watch the Pod was read directly.
    let gets: Vec<_> = server
        .exchanges()
        .await
        .into_iter()
        .filter(|e| e.resource == "pods")
        .map(|e| (e.verb, e.path))
        .collect();
    assert_eq!(
        gets,
        [(
            "get".to_string(),
            "/api/v1/namespaces/shop/pods/web-1".to_string()
        )]
    );
    assert!(server.violations().await.is_empty());
}

#[tokio::test]
async fn an_add_fails_when_the_pod_cannot_be_read() {
    let (ds, server) = fake();
    let sync = PodSync::new(server.client(), ds.clone(), NODE.into());
    let store = EndpointStore::load(ds.clone(), NODE.into())
        .await
        .unwrap()
        .with_decorator(Some(Arc::new(sync)));
    let ep = endpoint("shop", "ghost", "c1");
    let error = store.put(&ep).await.unwrap_err();
    assert!(error.to_string().contains("shop/ghost"), "{error}");
    assert!(
        server
            .objects("networking.twill.dev/v1", "WorkloadEndpoint")
            .await
            .is_empty(),
        "nothing half-written"
    );
}

#[tokio::test]
async fn label_changes_follow_through_a_watch_of_this_nodes_pods_only() {
    let (ds, server) = fake();
    server
        .put(pod(
            "shop",
            "web-1",
            NODE,
            labels(&[("app", "web")]),
            json!([]),
        ))
        .await;
    server
        .put(pod(
            "shop",
            "db-1",
            "node-2",
            labels(&[("app", "db")]),
            json!([]),
        ))
        .await;
    let sync = PodSync::new(server.client(), ds.clone(), NODE.into());
    let store = Arc::new(
        EndpointStore::load(ds.clone(), NODE.into())
            .await
            .unwrap()
            .with_decorator(Some(Arc::new(sync.clone()))),
    );
    let ep = endpoint("shop", "web-1", "c1");
    store.put(&ep).await.unwrap();
    let task = tokio::spawn(sync.run(store.clone()));

    server
        .put(pod(
            "shop",
            "web-1",
            NODE,
            labels(&[("app", "web"), ("canary", "true")]),
            json!([{"name": "metrics", "containerPort": 9100}]),
        ))
        .await;
    let wep = wait_for_wep(&server, NODE, &ep, |w| {
        w["metadata"]["labels"]["canary"] == "true"
    })
    .await;
    assert_eq!(
        wep["spec"]["ports"],
        json!([{"name": "metrics", "protocol": "TCP", "port": 9100}])
    );

    let exchanges = server.exchanges().await;
    let pod_reads: Vec<_> = exchanges
        .iter()
        .filter(|e| e.resource == "pods" && (e.verb == "list" || e.verb == "watch"))
        .collect();
    assert!(!pod_reads.is_empty());
    for e in &pod_reads {
        let query = parse_query(&e.query);
        assert_eq!(
            query.get("fieldSelector").map(String::as_str),
            Some("spec.nodeName=node-1"),
            "{e:?}"
        );
        assert_eq!(e.path, "/api/v1/pods");
    }
    // Exactly one write after the ADD's create: the relabel (node-2's pod is not seen).
    let writes: Vec<_> = exchanges
        .iter()
        .filter(|e| e.resource == "workloadendpoints" && e.verb == "update")
        .collect();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    task.abort();
    assert!(server.violations().await.is_empty());
}

#[tokio::test]
async fn a_watch_that_must_relist_after_410_still_catches_up() {
    let (ds, server) = fake();
    server
        .put(pod(
            "shop",
            "web-1",
            NODE,
            labels(&[("app", "web")]),
            json!([]),
        ))
        .await;
    let sync = PodSync::new(server.client(), ds.clone(), NODE.into());
    let store = Arc::new(
        EndpointStore::load(ds.clone(), NODE.into())
            .await
            .unwrap()
            .with_decorator(Some(Arc::new(sync.clone()))),
    );
    let ep = endpoint("shop", "web-1", "c1");
    store.put(&ep).await.unwrap();
    let task = tokio::spawn(sync.run(store.clone()));
    // The watch is up once the first relabel arrives.
    server
        .put(pod(
            "shop",
            "web-1",
            NODE,
            labels(&[("app", "web"), ("v", "1")]),
            json!([]),
        ))
        .await;
    wait_for_wep(&server, NODE, &ep, |w| w["metadata"]["labels"]["v"] == "1").await;
    let lists_before = count(&server, "pods", "list").await;

    // The watch ends (server timeout); while felix is away the Pod changes and the
    // server forgets the history: resuming from the old revision gets 410.
    server.hold_watches(true);
    server.close_watches();
    server
        .put(pod(
            "shop",
            "web-1",
            NODE,
            labels(&[("app", "web"), ("v", "2")]),
            json!([]),
        ))
        .await;
    server.compact().await;
    server.hold_watches(false);

    wait_for_wep(&server, NODE, &ep, |w| w["metadata"]["labels"]["v"] == "2").await;
    assert!(server.expired_watches() >= 1, "the resumed watch got 410");
    assert!(
        count(&server, "pods", "list").await > lists_before,
        "and felix re-listed"
    );
    task.abort();
    assert!(server.violations().await.is_empty());
}

#[tokio::test]
async fn a_failed_write_is_retried() {
    let (ds, server) = fake();
    server
        .put(pod(
            "shop",
            "web-1",
            NODE,
            labels(&[("app", "web")]),
            json!([]),
        ))
        .await;
    let sync = PodSync::new(server.client(), ds.clone(), NODE.into())
        .with_retry(Duration::from_millis(200));
    let store = Arc::new(
        EndpointStore::load(ds.clone(), NODE.into())
            .await
            .unwrap()
            .with_decorator(Some(Arc::new(sync.clone()))),
    );
    let ep = endpoint("shop", "web-1", "c1");
    store.put(&ep).await.unwrap();
    let task = tokio::spawn(sync.run(store.clone()));
    server.fail_next("PUT", "workloadendpoints", 500, 2).await;
    server
        .put(pod(
            "shop",
            "web-1",
            NODE,
            labels(&[("app", "api")]),
            json!([]),
        ))
        .await;
    wait_for_wep(&server, NODE, &ep, |w| {
        w["metadata"]["labels"]["app"] == "api"
    })
    .await;
    let failed = server
        .exchanges()
        .await
        .iter()
        .filter(|e| e.resource == "workloadendpoints" && e.status == 500)
        .count();
    assert_eq!(failed, 2);
    task.abort();
}

#[tokio::test]
async fn a_pod_that_is_gone_leaves_its_endpoint_and_addresses_alone() {
    let (ds, server) = fake();
    for name in ["web-1", "web-2"] {
        server
            .put(pod(
                "shop",
                name,
                NODE,
                labels(&[("app", "web")]),
                json!([]),
            ))
            .await;
    }
    let sync = PodSync::new(server.client(), ds.clone(), NODE.into());
    let store = Arc::new(
        EndpointStore::load(ds.clone(), NODE.into())
            .await
            .unwrap()
            .with_decorator(Some(Arc::new(sync.clone()))),
    );
    let gone = endpoint("shop", "web-1", "c1");
    let marker = endpoint("shop", "web-2", "c2");
    store.put(&gone).await.unwrap();
    store.put(&marker).await.unwrap();
    let task = tokio::spawn(sync.run(store.clone()));
    server
        .put(pod(
            "shop",
            "web-2",
            NODE,
            labels(&[("app", "web"), ("up", "1")]),
            json!([]),
        ))
        .await;
    wait_for_wep(&server, NODE, &marker, |w| {
        w["metadata"]["labels"]["up"] == "1"
    })
    .await;
    server.clear_exchanges().await;

    assert!(server.remove("v1", "Pod", "shop", "web-1").await);
    // One watch delivers in order: once the later change is seen, so was the delete.
    server
        .put(pod(
            "shop",
            "web-2",
            NODE,
            labels(&[("app", "web"), ("up", "2")]),
            json!([]),
        ))
        .await;
    wait_for_wep(&server, NODE, &marker, |w| {
        w["metadata"]["labels"]["up"] == "2"
    })
    .await;

    let wep = server
        .object(
            "networking.twill.dev/v1",
            "WorkloadEndpoint",
            "shop",
            &endpoint_name(NODE, "web-1", &gone.key),
        )
        .await
        .expect("the gone pod's endpoint stays for CNI DEL");
    assert_eq!(wep["spec"]["ipNetworks"], json!(["10.244.1.5/32"]));
    assert!(store.get(&gone.key).await.unwrap().is_some());
    let writes: BTreeMap<String, usize> = server
        .exchanges()
        .await
        .iter()
        .filter(|e| !matches!(e.verb.as_str(), "get" | "list" | "watch"))
        .fold(BTreeMap::new(), |mut m, e| {
            *m.entry(format!("{} {}", e.verb, e.resource)).or_default() += 1;
            m
        });
    assert_eq!(
        writes,
        BTreeMap::from([("update workloadendpoints".to_string(), 1)]),
        "only the marker's relabel: no delete, no IPAM write"
    );
    task.abort();
}

async fn count(
    server: &twill_harness::kube_fake::FakeApiServer,
    resource: &str,
    verb: &str,
) -> usize {
    server
        .exchanges()
        .await
        .iter()
        .filter(|e| e.resource == resource && e.verb == verb)
        .count()
}

#[tokio::test]
async fn a_repeated_add_replaces_the_stored_endpoint() {
    let (ds, server) = fake();
    server
        .put(pod(
            "shop",
            "web-1",
            NODE,
            labels(&[("app", "web")]),
            json!([]),
        ))
        .await;
    let sync = PodSync::new(server.client(), ds.clone(), NODE.into());
    let store = EndpointStore::load(ds.clone(), NODE.into())
        .await
        .unwrap()
        .with_decorator(Some(Arc::new(sync)));
    let mut ep = endpoint("shop", "web-1", "c1");
    store.put(&ep).await.unwrap();
    // The runtime repeats the ADD (same container), with a new address.
    ep.ips = vec!["10.244.1.6".parse().unwrap()];
    store.put(&ep).await.unwrap();
    let wep = wait_for_wep(&server, NODE, &ep, |w| {
        w["spec"]["ipNetworks"] == json!(["10.244.1.6/32"])
    })
    .await;
    assert_eq!(wep["metadata"]["labels"], json!({"app": "web"}));
    assert!(server.violations().await.is_empty());
}
