//! The real `twill` binary against felix's agent server in a node namespace: ADD makes a
//! working pod, CHECK verifies it, DEL removes everything (twice), dual stack, GC, STATUS,
//! concurrent ADDs, and undo on a failed ADD. Runs as root.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{NODE_IP, Node, result_ip, with_prev};
use serde_json::json;
use twill_harness::netns::Netns;

#[tokio::test]
async fn add_makes_a_reachable_pod_and_del_removes_everything_twice() {
    let node = Node::start(&["10.244.1.0/26"]).await;
    let pod = Netns::new("twcni-pod").unwrap();
    let conf = node.conf("1.0.0");
    // Only root may ask for pod networking.
    let mode = std::fs::metadata(&node.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let add = node.cni("ADD", "c1", Some(&pod), &conf);
    add.assert_ok();
    let result = add.json();
    assert_eq!(result["cniVersion"], "1.0.0");
    let ip = result_ip(&result, false);
    assert_eq!(ip, "10.244.1.2");
    assert_eq!(result["ips"][0]["gateway"], "169.254.1.1");
    assert!(result["ips"][0].get("version").is_none());
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(
        result["interfaces"][1]["sandbox"],
        pod.path().display().to_string()
    );
    let host_if = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        host_if.starts_with("tw") && host_if.len() == 13,
        "{host_if}"
    );

    // Node side: the host veth and a protocol-81 /32 route through it.
    assert_eq!(node.tw_links(), vec![host_if.clone()]);
    let routes = node.felix_routes();
    assert!(
        routes.contains(&format!("10.244.1.2 dev {host_if}")),
        "{routes}"
    );
    // Pod side: /32, MTU from the conflist, gateway routes.
    let addr = pod.ip(&["-o", "addr", "show", "eth0"]).unwrap();
    assert!(addr.contains("inet 10.244.1.2/32"), "{addr}");
    let link = pod.ip(&["link", "show", "eth0"]).unwrap();
    assert!(
        link.contains("mtu 1400") && link.contains("state UP"),
        "{link}"
    );
    let pod_routes = pod.ip(&["route", "show"]).unwrap();
    assert!(
        pod_routes.contains("default via 169.254.1.1 dev eth0 proto 81"),
        "{pod_routes}"
    );
    assert!(
        pod_routes.contains("169.254.1.1 dev eth0 proto 81 scope link"),
        "{pod_routes}"
    );
    let proxy_arp = node
        .ns
        .exec(
            "cat",
            &[&format!("/proc/sys/net/ipv4/conf/{host_if}/proxy_arp")],
        )
        .unwrap();
    assert_eq!(proxy_arp.trim(), "1");

    // Traffic: node → pod, pod → node (via the link-local gateway).
    node.ns.exec("ping", &["-c", "1", "-W", "5", &ip]).unwrap();
    pod.exec("ping", &["-c", "1", "-W", "5", NODE_IP]).unwrap();

    // CHECK with the result as prevResult passes.
    node.cni("CHECK", "c1", Some(&pod), &with_prev(&conf, &result))
        .assert_ok();

    // DEL removes the veth (both ends), the routes, the allocation and the record.
    node.cni("DEL", "c1", Some(&pod), &with_prev(&conf, &result))
        .assert_ok();
    assert!(node.tw_links().is_empty());
    assert_eq!(node.felix_routes().trim(), "");
    assert!(pod.ip(&["link", "show", "eth0"]).is_err());
    assert!(node.ipam.used().await.is_empty());
    // Again, and without a netns: still success.
    node.cni("DEL", "c1", Some(&pod), &conf).assert_ok();
    node.cni("DEL", "c1", None, &conf).assert_ok();
    // CHECK of a deleted attachment fails (code 3: unknown container).
    assert_eq!(
        node.cni("CHECK", "c1", Some(&pod), &with_prev(&conf, &result))
            .error_code(),
        3
    );
}

#[tokio::test]
async fn check_fails_when_the_pod_route_is_deleted_behind_felix() {
    let node = Node::start(&["10.244.1.0/26"]).await;
    let pod = Netns::new("twcni-pod").unwrap();
    let conf = node.conf("0.4.0");
    let add = node.cni("ADD", "c2", Some(&pod), &conf);
    add.assert_ok();
    let result = add.json();
    assert_eq!(
        result["ips"][0]["version"], "4",
        "0.4.0 results carry the IP version"
    );
    node.cni("CHECK", "c2", Some(&pod), &with_prev(&conf, &result))
        .assert_ok();
    node.ip(&["route", "del", "10.244.1.2/32"]);
    let check = node.cni("CHECK", "c2", Some(&pod), &with_prev(&conf, &result));
    assert_eq!(check.error_code(), 100, "{check:?}");
    assert!(check.stdout.contains("host route"), "{}", check.stdout);
    // A prevResult that does not list our address fails too.
    let mut wrong = result.clone();
    wrong["ips"][0]["address"] = json!("10.244.1.50/32");
    node.ip(&[
        "route",
        "add",
        "10.244.1.2/32",
        "dev",
        &node.tw_links()[0],
        "proto",
        "81",
    ]);
    node.cni("CHECK", "c2", Some(&pod), &with_prev(&conf, &result))
        .assert_ok();
    assert_eq!(
        node.cni("CHECK", "c2", Some(&pod), &with_prev(&conf, &wrong))
            .error_code(),
        100
    );
}

#[tokio::test]
async fn dual_stack_pod_reaches_the_node_over_ipv6() {
    let node = Node::start(&["10.244.2.0/26", "fd00:10:244:2::/122"]).await;
    node.ns.add_addr("lo", "fd00:192::1/128").unwrap();
    let pod = Netns::new("twcni-pod").unwrap();
    let add = node.cni("ADD", "c6", Some(&pod), &node.conf("1.1.0"));
    add.assert_ok();
    let result = add.json();
    let v6 = result_ip(&result, true);
    assert_eq!(v6, "fd00:10:244:2::1");
    assert_eq!(result["ips"][1]["gateway"], "fe80::ecee:eeff:feee:eeee");
    let routes = node.felix_routes();
    assert!(routes.contains("fd00:10:244:2::1 dev tw"), "{routes}");
    let pod_routes = pod.ip(&["-6", "route", "show"]).unwrap();
    assert!(
        pod_routes.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"),
        "{pod_routes}"
    );
    node.ns
        .exec("ping", &["-6", "-c", "1", "-W", "5", &v6])
        .unwrap();
    pod.exec("ping", &["-6", "-c", "1", "-W", "5", "fd00:192::1"])
        .unwrap();
    pod.exec("ping", &["-c", "1", "-W", "5", NODE_IP]).unwrap();
    node.cni("DEL", "c6", Some(&pod), &node.conf("1.1.0"))
        .assert_ok();
    assert_eq!(node.felix_routes().trim(), "");
}

#[tokio::test]
async fn concurrent_adds_get_unique_addresses_and_pods_reach_each_other() {
    let node = Node::start(&["10.244.3.0/26"]).await;
    let node = std::sync::Arc::new(node);
    let pods: Vec<Netns> = (0..8).map(|_| Netns::new("twcni-pod").unwrap()).collect();
    let paths: Vec<_> = pods.iter().map(|p| p.path()).collect();
    let mut tasks = Vec::new();
    for (i, path) in paths.into_iter().enumerate() {
        let node = node.clone();
        tasks.push(std::thread::spawn(move || {
            let netns = path.display().to_string();
            let conf = node.conf("1.0.0").to_string();
            let id = format!("cc{i}");
            common::exec_plugin(
                None,
                &common::twill_bin(),
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", &id),
                    ("CNI_NETNS", &netns),
                    ("CNI_IFNAME", "eth0"),
                ],
                &conf,
            )
        }));
    }
    let mut ips = Vec::new();
    for t in tasks {
        let run = t.join().unwrap();
        run.assert_ok();
        ips.push(result_ip(&run.json(), false));
    }
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8, "{ips:?}");
    assert_eq!(node.tw_links().len(), 8);
    // Pod 0 reaches pod 7 through the node (plain routing, no bridge).
    pods[0]
        .exec("ping", &["-c", "1", "-W", "5", &ips[7]])
        .unwrap();
}

#[tokio::test]
async fn gc_removes_attachments_not_in_the_valid_list_and_status_is_ready() {
    let node = Node::start(&["10.244.4.0/26"]).await;
    let conf = node.conf("1.1.0");
    let keep = Netns::new("twcni-pod").unwrap();
    let stale = Netns::new("twcni-pod").unwrap();
    node.cni("ADD", "keep", Some(&keep), &conf).assert_ok();
    node.cni("ADD", "stale", Some(&stale), &conf).assert_ok();
    assert_eq!(node.tw_links().len(), 2);
    node.cni("STATUS", "", None, &conf).assert_ok();

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": "keep", "ifname": "eth0" }]);
    let run = common::exec_plugin(
        None,
        &common::twill_bin(),
        &[("CNI_COMMAND", "GC")],
        &gc.to_string(),
    );
    run.assert_ok();
    assert_eq!(node.tw_links().len(), 1);
    assert_eq!(node.ipam.used().await.len(), 1);
    assert!(stale.ip(&["link", "show", "eth0"]).is_err());
    keep.exec("ping", &["-c", "1", "-W", "5", NODE_IP]).unwrap();
}

#[tokio::test]
async fn gc_without_valid_attachments_is_invalid_config_and_removes_nothing() {
    let node = Node::start(&["10.244.4.64/26"]).await;
    let conf = node.conf("1.1.0");
    let a = Netns::new("twcni-pod").unwrap();
    let b = Netns::new("twcni-pod").unwrap();
    node.cni("ADD", "a", Some(&a), &conf).assert_ok();
    node.cni("ADD", "b", Some(&b), &conf).assert_ok();
    // The runtime did not say which attachments are valid: that is not "none are".
    let run = common::exec_plugin(
        None,
        &common::twill_bin(),
        &[("CNI_COMMAND", "GC")],
        &conf.to_string(),
    );
    assert_eq!(run.error_code(), 7, "{run:?}");
    assert!(run.stdout.contains("cni.dev/valid-attachments"), "{run:?}");
    assert_eq!(node.tw_links().len(), 2);
    assert_eq!(node.ipam.used().await.len(), 2);
    a.exec("ping", &["-c", "1", "-W", "5", NODE_IP]).unwrap();
    b.exec("ping", &["-c", "1", "-W", "5", NODE_IP]).unwrap();
    // A list that is not a list of attachments is refused the same way.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!({ "containerID": "a" });
    let run = common::exec_plugin(
        None,
        &common::twill_bin(),
        &[("CNI_COMMAND", "GC")],
        &gc.to_string(),
    );
    assert_eq!(run.error_code(), 7, "{run:?}");
    assert_eq!(node.tw_links().len(), 2);
}

#[tokio::test]
async fn failed_add_undoes_allocation_and_links() {
    let node = Node::start(&["10.244.5.0/26"]).await;
    let conf = node.conf("1.0.0");
    // The pod already has an eth0: creating ours fails after the allocation.
    let pod = Netns::new("twcni-pod").unwrap();
    pod.veth_named("eth0", &[], &pod, "other0", &[]).unwrap();
    let run = node.cni("ADD", "busy", Some(&pod), &conf);
    assert_eq!(run.error_code(), 7, "{run:?}");
    assert!(node.tw_links().is_empty());
    assert!(node.ipam.used().await.is_empty());
    assert_eq!(node.felix_routes().trim(), "");

    // A netns path that does not exist: code 3, nothing left behind.
    let gone = node.dir.path().join("no-such-netns");
    let run = common::exec_plugin(
        None,
        &common::twill_bin(),
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "gone"),
            ("CNI_NETNS", &gone.display().to_string()),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf.to_string(),
    );
    assert_eq!(run.error_code(), 3, "{run:?}");
    assert!(node.tw_links().is_empty());
    assert!(node.ipam.used().await.is_empty());
}

#[tokio::test]
async fn failure_after_the_veth_exists_removes_it_and_releases_the_address() {
    let node = Node::start(&["10.244.10.0/26", "fd00:10:244:10::/122"]).await;
    let pod = Netns::new("twcni-pod").unwrap();
    // New links in this pod get no IPv6: adding the pod's /128 fails after the veth pair
    // and the host side are already set up.
    pod.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        .unwrap();
    let run = node.cni("ADD", "half", Some(&pod), &node.conf("1.0.0"));
    assert_eq!(run.error_code(), 100, "{run:?}");
    assert!(
        run.stdout.contains("add address fd00:10:244:10::1"),
        "{}",
        run.stdout
    );
    assert!(node.tw_links().is_empty());
    assert!(pod.ip(&["link", "show", "eth0"]).is_err());
    assert!(node.ipam.used().await.is_empty());
    assert_eq!(node.felix_routes().trim(), "");
}
