//! felix's Kubernetes mode: Twill's `Node` follows the Kubernetes Node (labels, the
//! InternalIP with the host's prefix length, an owner reference), through a watch of that
//! one Node, with compare-and-swap writes that survive 409s. Runs in a network namespace
//! of its own (the host's addresses are read there), against the fake API server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod kube_support;

use std::net::Ipv4Addr;
use std::time::Duration;

use kube_support::fake;
use serde_json::{Value, json};
use twill_api::resources::Node;
use twill_felix::agent::kubernetes::node_sync::{self, Fixed};
use twill_felix::agent::node;
use twill_harness::netns::Netns;

fn kube_node(labels: Value, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": labels},
        "status": {"addresses": [{"type": "Hostname", "address": "node-1"},
                                 {"type": "InternalIP", "address": ip}]},
    })
}

#[test]
fn twill_node_follows_the_kubernetes_node() {
    let ns = Netns::new("kn").unwrap();
    ns.veth(&["192.0.2.10/24"], &ns, &["192.0.2.11/25"])
        .unwrap();
    ns.block_on(|| async move {
        let (ds, server) = fake();
        let kube = server
            .put(kube_node(
                json!({"rack": "a", "kubernetes.io/hostname": "node-1"}),
                "192.0.2.10",
            ))
            .await;
        let uid = kube["metadata"]["uid"].clone();
        let (conn, handle, _) = rtnetlink::new_connection().unwrap();
        tokio::spawn(conn);

        // felix at start: registers, then brings the Node in step once.
        let uplink = node::detect(&handle, Some("192.0.2.10".parse().unwrap()), None)
            .await
            .unwrap();
        node::register(&ds, "node-1", &uplink).await.unwrap();
        let kube: k8s_openapi::api::core::v1::Node = serde_json::from_value(kube).unwrap();
        assert!(
            node_sync::apply(&ds, &handle, &kube, Fixed::default(), (None, None))
                .await
                .unwrap()
        );
        let twill: Node = ds.get(None, "node-1").await.unwrap();
        let labels = twill.metadata.labels.clone().unwrap();
        assert_eq!(labels.get("rack").map(String::as_str), Some("a"));
        let bgp = twill.spec.bgp.clone().unwrap();
        assert_eq!(bgp.ipv4_address.as_deref(), Some("192.0.2.10/24"));
        let owners = twill.metadata.owner_references.clone().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (
                owners[0].api_version.as_str(),
                owners[0].kind.as_str(),
                owners[0].name.as_str()
            ),
            ("v1", "Node", "node-1")
        );
        assert_eq!(json!(owners[0].uid), uid);
        // In step already: nothing to write.
        assert!(
            !node_sync::apply(&ds, &handle, &kube, Fixed::default(), (None, None))
                .await
                .unwrap()
        );

        // Then the watch: a relabel and a new InternalIP land despite two 409s.
        let task = tokio::spawn(node_sync::run(
            server.client(),
            ds.clone(),
            handle.clone(),
            "node-1".into(),
            Fixed::default(),
            (None, None),
        ));
        server.fail_next("PUT", "nodes", 409, 2).await;
        server
            .put(kube_node(json!({"rack": "b", "edge": ""}), "192.0.2.11"))
            .await;
        let mut last = None;
        for _ in 0..200 {
            let n: Node = ds.get(None, "node-1").await.unwrap();
            let rack = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("rack").cloned());
            let v4 = n.spec.bgp.as_ref().and_then(|b| b.ipv4_address.clone());
            if rack.as_deref() == Some("b") && v4.as_deref() == Some("192.0.2.11/25") {
                last = None;
                break;
            }
            last = Some((rack, v4));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(last, None, "the Node never followed");
        let n: Node = ds.get(None, "node-1").await.unwrap();
        assert!(n.metadata.labels.unwrap().contains_key("edge"));
        let exchanges = server.exchanges().await;
        let conflicts = exchanges
            .iter()
            .filter(|e| {
                e.resource == "nodes" && e.group == "networking.twill.dev" && e.status == 409
            })
            .count();
        assert_eq!(conflicts, 2);
        for e in exchanges
            .iter()
            .filter(|e| e.group.is_empty() && e.resource == "nodes")
        {
            assert!(
                e.verb == "get" || e.query.contains("metadata.name%3Dnode-1"),
                "only this node is read: {e:?}"
            );
            assert!(matches!(e.verb.as_str(), "get" | "list" | "watch"), "{e:?}");
        }
        task.abort();

        // With --bgp-address the address is the flag's; labels still follow.
        let given: Ipv4Addr = "192.0.2.10".parse().unwrap();
        let kube: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(server.object("v1", "Node", "", "node-1").await.unwrap())
                .unwrap();
        let uplink = node::detect(&handle, Some(given), None).await.unwrap();
        node::register(&ds, "node-1", &uplink).await.unwrap();
        node_sync::apply(
            &ds,
            &handle,
            &kube,
            Fixed {
                v4: true,
                v6: false,
            },
            (Some(given), None),
        )
        .await
        .unwrap();
        let n: Node = ds.get(None, "node-1").await.unwrap();
        assert_eq!(
            n.spec.bgp.unwrap().ipv4_address.as_deref(),
            Some("192.0.2.10/24")
        );
        assert_eq!(
            n.metadata.labels.unwrap().get("rack").map(String::as_str),
            Some("b")
        );
        assert!(server.violations().await.is_empty());
    })
    .unwrap();
}

#[test]
fn a_missing_twill_node_is_registered_then_follows() {
    let ns = Netns::new("kn").unwrap();
    ns.veth(&["192.0.2.20/24"], &ns, &["192.0.2.21/24"])
        .unwrap();
    ns.block_on(|| async move {
        let (ds, server) = fake();
        let kube = server
            .put(kube_node(json!({"rack": "c"}), "192.0.2.20"))
            .await;
        let kube: k8s_openapi::api::core::v1::Node = serde_json::from_value(kube).unwrap();
        let (conn, handle, _) = rtnetlink::new_connection().unwrap();
        tokio::spawn(conn);
        node_sync::apply(&ds, &handle, &kube, Fixed::default(), (None, None))
            .await
            .unwrap();
        let n: Node = ds.get(None, "node-1").await.unwrap();
        assert_eq!(
            n.metadata.labels.unwrap().get("rack").map(String::as_str),
            Some("c")
        );
        assert_eq!(
            n.spec.bgp.unwrap().ipv4_address.as_deref(),
            Some("192.0.2.20/24")
        );
    })
    .unwrap();
}
