//! The routed pod network end to end, on the lab: 3 nodes running the real `twill-felix`,
//! a real ToR router (BIRD in one test, FRR in the other), 30 pods added concurrently
//! through the real `twill` CNI plugin. Every address is unique, every pod reaches the
//! pods of the other nodes as plain IP (no tunnel device anywhere), the ToR's kernel routes
//! each node's blocks to that node, traffic leaving the pools is masqueraded (natOutgoing),
//! and deleting the pods frees every address and route.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use twill_api::resources::IPAMBlock;
use twill_ipam::inventory::{Inventory, WorkloadSource};
use twill_tests::{LabGuard, TUNNEL_KINDS, eventually, link_kinds, routes};
use twillctl::lab::picture::ping;
use twillctl::lab::{PodSpec, TorKind};

const NODES: usize = 3;
const PODS: usize = 30;

async fn fabric(prefix: &str, tor: TorKind) {
    let g = LabGuard::up(prefix, NODES, tor).await;
    let lab = &g.lab;

    // 30 pods at once, spread over the nodes.
    let specs: Vec<PodSpec> = (0..PODS)
        .map(|i| PodSpec {
            name: format!("p{i}"),
            node: i % NODES + 1,
            namespace: "default".into(),
            ..Default::default()
        })
        .collect();
    let added = futures::future::join_all(specs.iter().map(|s| lab.add_pod(s))).await;
    let pods: Vec<_> = added
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("pod add: {e}")))
        .collect();
    let ips: Vec<String> = pods.iter().flat_map(|p| p.ips.clone()).collect();
    assert_eq!(ips.len(), PODS, "one IPv4 address per pod: {ips:?}");
    let unique: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(unique.len(), PODS, "duplicate addresses: {ips:?}");

    let st = g.state();
    // The ToR holds every node's blocks, each via the node that owns it.
    let ds = lab.datastore().await.unwrap();
    let blocks = ds.list::<IPAMBlock>(None).await.unwrap().items;
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for b in &blocks {
        if let Some(node) = b
            .spec
            .affinity
            .as_deref()
            .and_then(|a| a.strip_prefix("host:"))
        {
            let n = st.nodes.iter().find(|n| n.name == node).unwrap();
            owner.insert(b.spec.cidr.clone(), n.address.clone());
        }
    }
    assert!(owner.len() >= NODES, "every node owns a block: {owner:?}");
    let tor_proto = match tor {
        TorKind::Frr => "bgp",
        _ => "bird",
    };
    eventually(
        "the ToR routes every block to its node",
        Duration::from_secs(30),
        || {
            let have: BTreeMap<String, Vec<String>> =
                routes(&st.tor_netns, tor_proto).into_iter().collect();
            for (block, node) in &owner {
                match have.get(block) {
                    Some(hops) if hops == &vec![node.clone()] => {}
                    other => return Err(format!("{block}: want via {node}, have {other:?}")),
                }
            }
            Ok(())
        },
    );

    // Every pod reaches every pod on the other nodes (in parallel, one thread per pod).
    eventually(
        "pods on other nodes reachable",
        Duration::from_secs(30),
        || {
            let failures: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = pods
                    .iter()
                    .map(|from| {
                        let pods = &pods;
                        s.spawn(move || {
                            pods.iter()
                                .filter(|to| to.node != from.node)
                                .filter(|to| !ping(&from.netns, &to.ips[0]))
                                .map(|to| format!("{} -> {}", from.name, to.name))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect()
            });
            if failures.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} unreachable, e.g. {:?}",
                    failures.len(),
                    &failures[..failures.len().min(5)]
                ))
            }
        },
    );

    // natOutgoing: a pod reaching outside every pool (the ToR's address) is seen as its
    // node; pod to pod is not translated.
    let tor_ns = twill_tests::probe::netns_path(&st.tor_netns);
    twill_tests::probe::serve_peer_address(&tor_ns, 7000).unwrap();
    for p in pods.iter().take(NODES) {
        let seen = twill_tests::probe::ask(
            &twill_tests::probe::netns_path(&p.netns),
            format!("{}:7000", st.tor_address).parse().unwrap(),
            Duration::from_secs(2),
        );
        assert_eq!(
            seen.as_deref(),
            Some(st.nodes[p.node].address.as_str()),
            "{} reaches the ToR masqueraded as its node",
            p.name
        );
    }

    // Plain IP: no tunnel device on any host.
    for ns in st.nodes.iter().map(|n| &n.netns).chain([&st.tor_netns]) {
        let kinds = link_kinds(ns);
        for tunnel in TUNNEL_KINDS {
            assert!(
                !kinds.contains(tunnel),
                "{ns} has a {tunnel} device: {kinds:?}"
            );
        }
    }

    // Delete every pod: addresses free, pod routes gone, IPAM consistent.
    let deleted = futures::future::join_all(pods.iter().map(|p| lab.del_pod(&p.name))).await;
    for r in deleted {
        r.unwrap_or_else(|e| panic!("pod del: {e}"));
    }
    let inv = Inventory::load(&ds, WorkloadSource::Endpoints)
        .await
        .unwrap();
    assert_eq!(inv.used().count(), 0, "addresses still allocated");
    let findings = inv.check();
    assert!(findings.is_empty(), "ipam check: {findings:?}");
    for n in &st.nodes {
        eventually("pod routes gone", Duration::from_secs(10), || {
            let left: Vec<_> = routes(&n.netns, "81")
                .into_iter()
                .filter(|(p, _)| p.ends_with("/32") || !p.contains('/'))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{}: {left:?}", n.name))
            }
        });
        assert!(
            link_kinds(&n.netns).contains("veth"),
            "the uplink stays (a veth stand-in)"
        );
        let links = twillctl::lab::sys::ip_in(&n.netns, &["-o", "link", "show"]).unwrap();
        assert!(
            !links.lines().any(|l| l.contains(": tw")),
            "{}: pod veths left behind: {links}",
            n.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_pods_on_three_nodes_with_a_bird_tor() {
    fabric("fab-bird", TorKind::Bird).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_pods_on_three_nodes_with_an_frr_tor() {
    fabric("fab-frr", TorKind::Frr).await;
}
