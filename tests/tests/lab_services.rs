//! Service addresses over BGP, on the lab: 3 nodes running the real `twill-felix`, the real
//! `twill-ipam-controller` (etcd mode) and a real BIRD ToR (`merge paths on`: ECMP).
//!
//! A LoadBalancer pool and `BGPConfiguration` service ranges are configured; two Services
//! of type LoadBalancer get their addresses from the controller. Every node advertises the
//! ranges; the `externalTrafficPolicy: Local` Service's address is advertised as a /32 by
//! exactly the nodes running a pod of it (the ToR's kernel has it via both, ECMP), and a
//! node withdraws it when its last such pod goes. The `Cluster` Service gets no /32.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use twill_api::resources::bgp::ServiceCidr;
use twill_api::resources::native::Service;
use twill_api::resources::{BGPConfiguration, IPPool, IPPoolSpec, IPPoolUse};
use twill_tests::{LabGuard, eventually, routes};
use twillctl::lab::{PodSpec, TorKind};

const CLUSTER_RANGE: &str = "198.51.100.0/24";
const LB_RANGE: &str = "203.0.113.0/28";

fn service(name: &str, policy: &str, cluster_ip: &str) -> Service {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": name},
        "spec": {"type": "LoadBalancer", "selector": {"app": name},
                 "clusterIP": cluster_ip,
                 "externalTrafficPolicy": policy,
                 "ports": [{"port": 80, "protocol": "TCP"}]}
    }))
    .unwrap()
}

/// The ToR's next hops for `prefix` (sorted), empty when it has no route. `ip route`
/// prints a host route without its `/32`.
fn hops(tor_ns: &str, prefix: &str) -> BTreeSet<String> {
    let host = prefix.strip_suffix("/32").unwrap_or(prefix);
    routes(tor_ns, "bird")
        .into_iter()
        .find(|(p, _)| p == prefix || p == host)
        .map(|(_, h)| h.into_iter().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_addresses_are_advertised_by_the_right_nodes_and_withdrawn() {
    let g = LabGuard::up("svcbgp", 3, TorKind::Bird).await;
    let lab = &g.lab;
    let st = g.state();
    let ds = lab.datastore().await.unwrap();
    ds.create(&IPPool::new(
        "lb",
        IPPoolSpec {
            cidr: LB_RANGE.into(),
            block_size: Some(28),
            allowed_uses: Some(vec![IPPoolUse::LoadBalancer]),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let mut bgp: BGPConfiguration = ds.get(None, "default").await.unwrap();
    bgp.spec.service_cluster_ips = vec![ServiceCidr {
        cidr: CLUSTER_RANGE.into(),
    }];
    bgp.spec.service_load_balancer_ips = vec![ServiceCidr {
        cidr: LB_RANGE.into(),
    }];
    ds.update(&bgp).await.unwrap();

    // Pods of `local` on nodes 1 and 2, of `cluster` on node 3.
    let pod = |name: &str, node: usize, app: &str| PodSpec {
        name: name.into(),
        node,
        namespace: "default".into(),
        labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        ..Default::default()
    };
    for spec in [
        pod("l1", 1, "local"),
        pod("l2", 2, "local"),
        pod("c3", 3, "cluster"),
    ] {
        lab.add_pod(&spec).await.unwrap();
    }
    ds.create(&service("local", "Local", "198.51.100.10"))
        .await
        .unwrap();
    ds.create(&service("cluster", "Cluster", "198.51.100.11"))
        .await
        .unwrap();

    // The controller gives both an address of the LoadBalancer pool.
    let mut lb_ips = BTreeMap::new();
    for name in ["local", "cluster"] {
        let start = Instant::now();
        loop {
            let s: Service = ds.get(Some("default"), name).await.unwrap();
            let ip = s
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|lb| lb.ingress)
                .and_then(|i| i.first().and_then(|i| i.ip.clone()));
            if let Some(ip) = ip {
                lb_ips.insert(name, ip);
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no LoadBalancer address for {name}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let node = |i: usize| st.nodes[i].address.clone();
    let all: BTreeSet<String> = (0..3).map(node).collect();
    let local_ip = format!("{}/32", lb_ips["local"]);
    let cluster_ip = format!("{}/32", lb_ips["cluster"]);

    // Every node advertises the ranges (ECMP over all three); the Local Service's addresses
    // (LoadBalancer and cluster IP) via exactly nodes 1 and 2; the Cluster Service's not
    // at all (the ranges cover them).
    eventually(
        "the ToR's routes to the service ranges and the Local address",
        Duration::from_secs(30),
        || {
            let want = [
                (CLUSTER_RANGE.to_string(), all.clone()),
                (LB_RANGE.to_string(), all.clone()),
                (local_ip.clone(), BTreeSet::from([node(0), node(1)])),
                (
                    "198.51.100.10/32".to_string(),
                    BTreeSet::from([node(0), node(1)]),
                ),
            ];
            for (prefix, nodes) in &want {
                let have = hops(&st.tor_netns, prefix);
                if &have != nodes {
                    return Err(format!("{prefix}: want via {nodes:?}, have {have:?}"));
                }
            }
            Ok(())
        },
    );
    assert!(hops(&st.tor_netns, &cluster_ip).is_empty());
    assert!(hops(&st.tor_netns, "198.51.100.11/32").is_empty());

    // Node 1's last pod of `local` goes: node 1 withdraws, node 2 still advertises.
    let start = Instant::now();
    lab.del_pod("l1").await.unwrap();
    eventually(
        "node 1 to withdraw the Local address",
        Duration::from_secs(3),
        || {
            let have = hops(&st.tor_netns, &local_ip);
            if have == BTreeSet::from([node(1)]) {
                Ok(())
            } else {
                Err(format!("{local_ip} via {have:?}"))
            }
        },
    );
    eprintln!(
        "withdrawn at the ToR {:?} after the pod's delete",
        start.elapsed()
    );
    // The ranges stay everywhere.
    assert_eq!(hops(&st.tor_netns, LB_RANGE), all);
    assert_eq!(hops(&st.tor_netns, CLUSTER_RANGE), all);
}
