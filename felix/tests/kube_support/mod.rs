//! Shared by felix's Kubernetes-mode tests: a datastore over the fake API server serving
//! Twill's kinds, Pods and endpoints to put in it, and waiting for an endpoint's state.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use twill_api::Datastore;
use twill_api::datastore::kubernetes::KubernetesBackend;
use twill_api::resources::kinds::ALL_KINDS;
use twill_felix::agent::endpoints::endpoint_name;
use twill_felix::cni::{Endpoint, EndpointKey};
use twill_harness::kube_fake::{FakeApiServer, FakeKind};

/// Twill's kinds (and the native ones of the registry) as the fake serves them.
pub fn twill_kinds() -> Vec<FakeKind> {
    ALL_KINDS
        .iter()
        .map(|k| {
            let kind = FakeKind::new(k.api_version, k.kind, k.plural, k.namespaced);
            let status = k
                .crd
                .map(|crd| crd())
                .and_then(|crd| crd.spec.versions.first().cloned())
                .and_then(|v| v.subresources)
                .is_some_and(|s| s.status.is_some());
            if status { kind.with_status() } else { kind }
        })
        .collect()
}

/// A datastore over a fresh fake API server.
pub fn fake() -> (Datastore, FakeApiServer) {
    let server = FakeApiServer::new(twill_kinds()).with_namespaces(&["shop"]);
    let backend = KubernetesBackend::from_client(server.client(), "https://fake-apiserver");
    (Datastore::new(Arc::new(backend)), server)
}

/// A Pod on `node` with `labels` and containers' `ports` (JSON `ContainerPort`s).
pub fn pod(namespace: &str, name: &str, node: &str, labels: Value, ports: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"nodeName": node, "serviceAccountName": "web-sa",
                 "containers": [{"name": "main", "image": "registry.example/web", "ports": ports}]},
    })
}

/// The endpoint felix records after ADD of `pod`'s container `container`, with labels
/// from CNI_ARGS that Kubernetes mode must ignore.
pub fn endpoint(namespace: &str, pod: &str, container: &str) -> Endpoint {
    Endpoint {
        key: EndpointKey {
            network: "twill".into(),
            container_id: container.into(),
            ifname: "eth0".into(),
        },
        netns: format!("/var/run/netns/{container}"),
        pod_namespace: namespace.into(),
        pod_name: pod.into(),
        labels: BTreeMap::from([("from".into(), "cni-args".into())]),
        host_ifname: "tw0123456789a".into(),
        pod_mac: "aa:bb:cc:dd:ee:ff".into(),
        ips: vec!["10.244.1.5".parse().unwrap()],
        mtu: 1500,
    }
}

/// Waits (up to 10 s) until the stored endpoint of `ep` satisfies `ok`; returns it.
pub async fn wait_for_wep(
    server: &FakeApiServer,
    node: &str,
    ep: &Endpoint,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let name = endpoint_name(node, &ep.pod_name, &ep.key);
    let mut last = None;
    for _ in 0..200 {
        let wep = server
            .object(
                "networking.twill.dev/v1",
                "WorkloadEndpoint",
                &ep.pod_namespace,
                &name,
            )
            .await;
        if let Some(w) = &wep
            && ok(w)
        {
            return w.clone();
        }
        last = wep;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("endpoint {name} never got there; last: {last:#?}");
}
