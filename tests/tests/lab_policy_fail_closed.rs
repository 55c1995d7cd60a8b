//! Policy fails closed on the lab (issue 11, item 3): deleting a pod's `WorkloadEndpoint`
//! does not free the pod from policy. Its interface, now one felix knows no endpoint of,
//! is shut both ways (a GlobalNetworkPolicy Deny that isolated it keeps it isolated, and
//! more), felix reports it, and the endpoint's return restores its policy exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use twill_api::Datastore;
use twill_api::resources::{GlobalNetworkPolicy, WorkloadEndpoint};
use twill_tests::probe::{Proto, netns_path, probe, serve};
use twill_tests::{LabGuard, unique_name};
use twillctl::lab::{LabSpec, PodSpec, TorKind};

const PORT: u16 = 80;

/// Waits until a TCP probe from `from` to `ip` gives `want` (bounded), else panics.
fn expect(step: &str, from: &Path, ip: IpAddr, want: bool) {
    let start = Instant::now();
    loop {
        let got = probe(from, ip, PORT, Proto::Tcp, Duration::from_millis(500));
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{step}: {} -> {ip}: want {}",
            from.display(),
            if want { "open" } else { "blocked" }
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks that a probe keeps giving `false` for a while (the state is not a transient).
fn stays_blocked(step: &str, from: &Path, ip: IpAddr) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert!(
            !probe(from, ip, PORT, Proto::Tcp, Duration::from_millis(500)),
            "{step}: {} -> {ip} opened",
            from.display()
        );
    }
}

async fn endpoint_of(ds: &Datastore, ns: &str, pod: &str) -> WorkloadEndpoint {
    ds.list::<WorkloadEndpoint>(Some(ns))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|w| w.spec.pod.as_deref() == Some(pod))
        .expect("the pod's endpoint")
}

async fn deleted_endpoint_keeps_the_pod_isolated(prefix: &str, dataplane: &str) {
    let mut spec = LabSpec::new(&unique_name(prefix), 2).unwrap();
    spec.tor = TorKind::None;
    spec.dataplane = dataplane.into();
    let g = LabGuard::up_with(spec).await;
    let ds = g.lab.datastore().await.unwrap();
    let mut pods = Vec::new();
    for (name, node, app) in [("guarded", 1, "db"), ("peer", 2, "web"), ("near", 1, "web")] {
        let p = g
            .lab
            .add_pod(&PodSpec {
                name: name.into(),
                node,
                namespace: "fc".into(),
                labels: [("app".to_string(), app.to_string())].into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let netns = netns_path(&p.netns);
        serve(&netns, &[(Proto::Tcp, PORT)]).unwrap();
        pods.push((netns, p.ips[0].parse::<IpAddr>().unwrap()));
    }
    let (guarded, guarded_ip) = pods[0].clone();
    let (peer, peer_ip) = pods[1].clone();
    let (near, _) = pods[2].clone();

    // A global Deny isolates "guarded" from every web pod, on either node.
    let gnp: GlobalNetworkPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.twill.dev/v1",
        "kind": "GlobalNetworkPolicy",
        "metadata": { "name": "no-web-to-db" },
        "spec": {
            "selector": "app == 'db'",
            "ingress": [{ "action": "Deny", "source": { "selector": "app == 'web'" } }],
            "egress": [{ "action": "Allow" }]
        }
    }))
    .unwrap();
    ds.create(&gnp).await.unwrap();
    expect("deny", &peer, guarded_ip, false);
    expect("deny", &near, guarded_ip, false);
    expect("deny", &guarded, peer_ip, true);

    // Delete its endpoint: still no way in, and now no way out either.
    let wep = endpoint_of(&ds, "fc", "guarded").await;
    let iface = wep.spec.interface_name.clone().expect("interface name");
    ds.delete::<WorkloadEndpoint>(Some("fc"), wep.metadata.name.as_deref().unwrap(), None)
        .await
        .unwrap();
    expect("endpoint deleted", &guarded, peer_ip, false);
    stays_blocked("endpoint deleted", &peer, guarded_ip);
    stays_blocked("endpoint deleted", &near, guarded_ip);

    // felix reports the interface it no longer knows.
    let st = g.state();
    let log = st.nodes[0].felix.as_ref().expect("felix").log.clone();
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("workload interface with no endpoint") && text.contains(&iface) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "felix never reported {iface}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The endpoint back: the policy applies exactly as before.
    let mut again = wep.clone();
    again.metadata.resource_version = None;
    again.metadata.uid = None;
    again.metadata.creation_timestamp = None;
    ds.create(&again).await.unwrap();
    expect("endpoint back", &guarded, peer_ip, true);
    expect("endpoint back", &peer, guarded_ip, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_endpoint_keeps_the_pod_isolated_nftables() {
    deleted_endpoint_keeps_the_pod_isolated("fcn", "nftables").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_endpoint_keeps_the_pod_isolated_iptables() {
    deleted_endpoint_keeps_the_pod_isolated("fci", "iptables").await;
}
