//! A conflist run by hand the way a runtime runs it: `twill` then the reference `portmap`
//! plugin (from `/usr/lib/cni`) with `prevResult`, giving a working host port into the pod.
//! DEL runs the chain in reverse and removes both plugins' state.

mod common;

use std::time::Duration;

use common::{NODE_IP, Node, exec_plugin, with_prev};
use serde_json::{Value, json};
use twill_harness::netns::Netns;
use twill_harness::process::ChildGuard;
use twill_harness::wait::wait_until;

const PORTMAP: &str = "/usr/lib/cni/portmap";

fn portmap_conf(prev: &Value) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "twill",
        "type": "portmap",
        "capabilities": { "portMappings": true },
        "snat": true,
        "runtimeConfig": {
            "portMappings": [ { "hostPort": 8080, "containerPort": 80, "protocol": "tcp" } ]
        },
        "prevResult": prev,
    })
}

fn portmap(node: &Node, command: &str, pod: &Netns, conf: &Value) -> common::PluginRun {
    let netns = pod.path().display().to_string();
    exec_plugin(
        Some(&node.ns),
        std::path::Path::new(PORTMAP),
        &[
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "chained"),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf.to_string(),
    )
}

#[tokio::test]
async fn twill_then_portmap_gives_a_working_host_port() {
    assert!(
        std::path::Path::new(PORTMAP).exists(),
        "{PORTMAP} is not installed"
    );
    let node = Node::start(&["10.244.7.0/26"]).await;
    let pod = Netns::new("twcni-pod").unwrap();
    let conf = node.conf("1.0.0");

    let add = node.cni("ADD", "chained", Some(&pod), &conf);
    add.assert_ok();
    let twill_result = add.json();
    let pm = portmap(&node, "ADD", &pod, &portmap_conf(&twill_result));
    pm.assert_ok();
    // portmap passes the result through: the runtime's final result still has our address.
    let final_result = pm.json();
    assert_eq!(final_result["ips"], twill_result["ips"], "{final_result}");
    let nat = node.ns.exec("iptables-save", &["-t", "nat"]).unwrap();
    assert!(nat.contains("8080"), "portmap made no DNAT rule: {nat}");

    // A one-shot server in the pod; the client reaches it through the node's host port.
    let _server = ChildGuard::spawn_in(
        &pod,
        "pod-nc",
        "sh",
        &["-c", "echo hello-from-pod | nc -N -l 80"],
    )
    .unwrap();
    let got = wait_until(
        "the host port to reach the pod",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            node.client
                .exec("nc", &["-w", "3", "-N", NODE_IP, "8080"])
                .map_err(|e| e.to_string())
                .and_then(|out| {
                    if out.contains("hello-from-pod") {
                        Ok(out)
                    } else {
                        Err(format!("got {out:?}"))
                    }
                })
        },
    )
    .unwrap();
    assert!(got.contains("hello-from-pod"));

    // CHECK down the chain with the final result, then DEL in reverse order.
    node.cni(
        "CHECK",
        "chained",
        Some(&pod),
        &with_prev(&conf, &final_result),
    )
    .assert_ok();
    portmap(&node, "DEL", &pod, &portmap_conf(&final_result)).assert_ok();
    node.cni(
        "DEL",
        "chained",
        Some(&pod),
        &with_prev(&conf, &final_result),
    )
    .assert_ok();
    let nat = node.ns.exec("iptables-save", &["-t", "nat"]).unwrap();
    assert!(!nat.contains("8080"), "{nat}");
    assert!(node.tw_links().is_empty());
}
