//! FelixConfiguration applied live on the lab (issue 11, item 12): the host-facing policy
//! (`defaultEndpointToHostAction`, `failsafeInboundHostPorts`), `default` then
//! `node.<name>` on top, the log level and the resync period change a running felix
//! without a restart; fields felix does not support are refused when written, naming the
//! field, and so is a `serviceClusterIPs` range that is not a network.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use twill_api::Datastore;
use twill_api::resources::{BGPConfiguration, FelixConfiguration};
use twill_tests::probe::{Proto, netns_path, probe, serve};
use twill_tests::{LabGuard, unique_name};
use twillctl::lab::{LabSpec, PodSpec, TorKind};

const OPEN: u16 = 2222;
const CLOSED: u16 = 2223;

fn felix_config(name: &str, spec: serde_json::Value) -> FelixConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "networking.twill.dev/v1", "kind": "FelixConfiguration",
        "metadata": { "name": name }, "spec": spec
    }))
    .unwrap()
}

/// Writes `name` with `spec` (create or replace).
async fn put(ds: &Datastore, name: &str, spec: serde_json::Value) {
    let mut fc = felix_config(name, spec);
    match ds.get::<FelixConfiguration>(None, name).await {
        Ok(old) => {
            fc.metadata = old.metadata;
            ds.update(&fc).await.unwrap();
        }
        Err(_) => {
            ds.create(&fc).await.unwrap();
        }
    }
}

/// Waits until the pod's view of `node_ip:port` is `want`.
fn expect(step: &str, pod: &Path, node_ip: IpAddr, port: u16, want: bool) {
    let start = Instant::now();
    while probe(pod, node_ip, port, Proto::Tcp, Duration::from_millis(500)) != want {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{step}: pod -> node:{port} should be {}",
            if want { "open" } else { "blocked" }
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_log(log: &Path, what: &str, check: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if check(&text) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "felix never logged {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn felix_configuration_applies_live_and_unsupported_fields_are_refused() {
    let mut spec = LabSpec::new(&unique_name("fcfg"), 1).unwrap();
    spec.tor = TorKind::None;
    let g = LabGuard::up_with(spec).await;
    let st = g.state();
    let ds = g.lab.datastore().await.unwrap();
    let node = &st.nodes[0];
    let node_ip: IpAddr = node.address.parse().unwrap();
    serve(
        &netns_path(&node.netns),
        &[(Proto::Tcp, OPEN), (Proto::Tcp, CLOSED)],
    )
    .unwrap();
    let pod = g
        .lab
        .add_pod(&PodSpec {
            name: "client".into(),
            node: 1,
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let pod = netns_path(&pod.netns);
    let log = node.felix.as_ref().expect("felix").log.clone();

    // No FelixConfiguration: the host is closed to pods.
    expect("default", &pod, node_ip, OPEN, false);

    // default: Accept opens it.
    put(
        &ds,
        "default",
        json!({ "defaultEndpointToHostAction": "Accept" }),
    )
    .await;
    expect("accept", &pod, node_ip, OPEN, true);
    expect("accept", &pod, node_ip, CLOSED, true);

    // default: Drop with a failsafe port.
    put(
        &ds,
        "default",
        json!({
            "defaultEndpointToHostAction": "Drop",
            "failsafeInboundHostPorts": [{ "protocol": "TCP", "port": OPEN }],
            "logSeverityScreen": "Debug",
            "routeRefreshInterval": "7s"
        }),
    )
    .await;
    expect("failsafe", &pod, node_ip, OPEN, true);
    expect("failsafe", &pod, node_ip, CLOSED, false);
    wait_log(&log, "the new resync interval", |t| {
        t.contains("resync interval changed") && t.contains("seconds=7")
    });
    wait_log(&log, "a DEBUG line", |t| {
        t.lines()
            .skip_while(|l| !l.contains("log filter changed"))
            .any(|l| l.contains("DEBUG"))
    });

    // node.<name> on top of default: no failsafe port on this node.
    put(
        &ds,
        &format!("node.{}", node.name),
        json!({ "failsafeInboundHostPorts": [] }),
    )
    .await;
    expect("node override", &pod, node_ip, OPEN, false);
    ds.delete::<FelixConfiguration>(None, &format!("node.{}", node.name), None)
        .await
        .unwrap();
    expect("node override gone", &pod, node_ip, OPEN, true);

    // Refused when written, naming the field; nothing stored.
    for (spec, field) in [
        (json!({ "dataplane": "iptables" }), "spec.dataplane"),
        (json!({ "healthPort": 9100 }), "spec.healthPort"),
        (
            json!({ "failsafeInboundHostPorts": [{ "protocol": "TCP", "port": 179 }] }),
            "spec.failsafeInboundHostPorts[0]",
        ),
    ] {
        let e = ds
            .create(&felix_config("node.other", spec))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
    assert!(
        ds.get::<FelixConfiguration>(None, "node.other")
            .await
            .is_err(),
        "a refused object was stored"
    );
    let mut bgp: BGPConfiguration = ds.get(None, "default").await.unwrap();
    bgp.spec.service_cluster_ips = vec![twill_api::resources::bgp::ServiceCidr {
        cidr: "10.96.0.1/12".into(),
    }];
    let e = ds.update(&bgp).await.unwrap_err().to_string();
    assert!(e.contains("serviceClusterIPs[0].cidr"), "{e}");
}
