//! felix's Kubernetes mode against a real API server (kube-apiserver v1.20.2 from
//! `twill_harness::kube_real`, Twill's CRDs installed): an endpoint written at ADD takes
//! its labels, named ports and service account from the Pod, not CNI_ARGS; a relabel of
//! the Pod reaches the endpoint through the watch of this node's Pods (an update the real
//! server accepts only with the resourceVersion it replaces), and so does a repeated ADD;
//! another node's Pod is never seen.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod kube_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube_support::{endpoint, pod};
use serde_json::{Value, json};
use twill_api::datastore::Datastore;
use twill_api::datastore::kubernetes::KubernetesBackend;
use twill_api::resources::WorkloadEndpoint;
use twill_api::resources::kinds::ALL_KINDS;
use twill_felix::agent::endpoints::{EndpointStore, endpoint_name};
use twill_felix::agent::kubernetes::pods::PodSync;
use twill_felix::cni::Endpoints;
use twill_harness::kube_real::{self, RealApiServer};

const NODE: &str = "node-1";

async fn server() -> (RealApiServer, kube::Client, Datastore) {
    let server = tokio::task::spawn_blocking(RealApiServer::start)
        .await
        .unwrap()
        .unwrap();
    let client = server.admin_client().await.unwrap();
    let crds: Vec<Value> = ALL_KINDS
        .iter()
        .filter_map(|k| k.crd)
        .map(|crd| serde_json::to_value(crd()).unwrap())
        .collect();
    kube_real::install_crds(&client, &crds).await.unwrap();
    kube_real::apply(
        &client,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    )
    .await
    .unwrap();
    let backend = KubernetesBackend::from_client(client.clone(), server.url());
    (server, client, Datastore::new(Arc::new(backend)))
}

async fn stored(ds: &Datastore, name: &str) -> Option<WorkloadEndpoint> {
    ds.get(Some("shop"), name).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_apiserver_endpoint_follows_its_pod_through_relabels() {
    let (server, client, ds) = server().await;
    for (name, node, app) in [("web-1", NODE, "web"), ("db-1", "node-2", "db")] {
        let ports = json!([{"name": "http", "containerPort": 8080}]);
        kube_real::apply(
            &client,
            &pod("shop", name, node, json!({"app": app}), ports),
        )
        .await
        .unwrap();
    }
    let sync = PodSync::new(client.clone(), ds.clone(), NODE.into());
    let store = Arc::new(
        EndpointStore::load(ds.clone(), NODE.into())
            .await
            .unwrap()
            .with_decorator(Some(Arc::new(sync.clone()))),
    );
    let ep = endpoint("shop", "web-1", "c1");
    store.put(&ep).await.unwrap();
    let name = endpoint_name(NODE, "web-1", &ep.key);
    let wep = stored(&ds, &name).await.expect("endpoint written");
    assert_eq!(
        wep.metadata.labels.clone().unwrap_or_default(),
        BTreeMap::from([("app".to_string(), "web".to_string())]),
        "labels from the Pod, not CNI_ARGS"
    );
    let spec = serde_json::to_value(&wep.spec).unwrap();
    assert_eq!(
        spec["ports"],
        json!([{"name": "http", "protocol": "TCP", "port": 8080}])
    );

    let task = tokio::spawn(sync.run(store.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    for (round, value) in ["a", "b"].into_iter().enumerate() {
        pods.patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"canary": value}}})),
        )
        .await
        .unwrap();
        let mut followed = false;
        for _ in 0..150 {
            let labels = stored(&ds, &name)
                .await
                .and_then(|w| w.metadata.labels)
                .unwrap_or_default();
            if labels.get("canary").map(String::as_str) == Some(value) {
                followed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            followed,
            "relabel {round} ({value}) never reached the endpoint"
        );
    }
    // The runtime repeats the ADD (same container): the stored endpoint is replaced.
    let mut again = ep.clone();
    again.ips = vec!["10.244.1.6".parse().unwrap()];
    store.put(&again).await.unwrap();
    let replaced = stored(&ds, &name).await.unwrap();
    assert_eq!(replaced.spec.ip_networks, ["10.244.1.6/32"]);
    task.abort();
    // Only web-1's endpoint exists: node-2's Pod was never this node's business.
    let all = ds.list::<WorkloadEndpoint>(None).await.unwrap().items;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(server.forbidden().is_empty());
}
