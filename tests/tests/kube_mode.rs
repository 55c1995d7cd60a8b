//! Twill in Kubernetes mode, end to end, with the real binaries: the fake API server
//! (`twill_harness::kube_fake`) serves HTTP inside a network namespace that stands for a
//! node; the real `twill-felix` and two real `twill-ipam-controller` replicas talk to it
//! through kubeconfigs, each with its own token, and pods are added through the real
//! `twill` CNI plugin as a runtime does.
//!
//! Checked: the Twill Node follows the Kubernetes Node; the endpoint of a pod takes its
//! labels and named ports from the Pod (not CNI_ARGS) and follows relabels; one controller
//! replica leads (Lease), the other takes over when it stops; the leader's GC releases the
//! address of a Pod that is gone, never one of a live Pod; the leader gives a LoadBalancer
//! Service the address it asks for and reports another asking for the same one with a
//! Warning Event; CNI DEL cleans up. Then every
//! API call each component made is held against the chart's RBAC for its ServiceAccount:
//! every call is granted, and every grant was used (or is listed here with the reason).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

#[allow(dead_code)]
#[path = "chart/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use serde_json::{Value, json};
use twill_api::resources::IPAMBlock;
use twill_api::resources::kinds::ALL_KINDS;
use twill_harness::kube_fake::{Exchange, FakeApiServer, FakeKind, kubeconfig_yaml};
use twill_harness::netns::{Netns, NsRuntime};
use twill_harness::process::ChildGuard;
use twill_ipam::model::block_from_spec;
use twillctl::lab::cni::{self, Attachment};

const NS: &str = "twill-system";
const TW: &str = "networking.twill.dev/v1";
const TW_GROUP: &str = "networking.twill.dev";

fn twill_kinds() -> Vec<FakeKind> {
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

fn kube_node(rack: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1", "rack": rack}},
           "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]}})
}

fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"namespace": "shop", "name": name, "labels": labels},
           "spec": {"nodeName": "node-1", "serviceAccountName": "default",
                    "containers": [{"name": "web", "image": "registry.example/web",
                                    "ports": [{"name": "http", "containerPort": 8080}]}]}})
}

/// Polls `probe` every 100 ms for up to `secs` seconds.
async fn eventually<T>(what: &str, secs: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..secs * 10 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

async fn endpoint_of(server: &FakeApiServer, pod: &str) -> Option<Value> {
    server
        .objects(TW, "WorkloadEndpoint")
        .await
        .into_iter()
        .find(|w| w["spec"]["pod"] == pod)
}

/// Every allocated address, with the pod its allocation names.
async fn allocated(server: &FakeApiServer) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    for b in server.objects(TW, "IPAMBlock").await {
        let block: IPAMBlock = serde_json::from_value(b).unwrap();
        let parsed = block_from_spec(&block.spec).unwrap();
        for (ip, alloc) in parsed.used_addrs() {
            out.insert(ip, alloc.attrs.get("pod").cloned().unwrap_or_default());
        }
    }
    out
}

fn leading(a: &ChildGuard) -> bool {
    a.log().lines().any(|l| l.contains(" leading"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twill_in_kubernetes_mode_end_to_end() {
    let bin = twillctl::lab::default_bin_dir().unwrap();
    let node = Netns::new("kube").unwrap();
    node.veth(&["192.0.2.1/24"], &node, &["192.0.2.2/24"])
        .unwrap();
    let rt = NsRuntime::start(&node).unwrap();
    let server = FakeApiServer::new(twill_kinds()).with_namespaces(&[NS]);
    let http = {
        let s = server.clone();
        rt.run(async move { s.serve("127.0.0.1:0".parse().unwrap()).await.unwrap() })
            .await
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = |user: &str| {
        let path = dir.path().join(format!("{user}.kubeconfig"));
        std::fs::write(&path, kubeconfig_yaml(&http.url(), user, NS)).unwrap();
        path.display().to_string()
    };
    let (felix_cfg, ipam_cfg) = (kubeconfig("felix"), kubeconfig("ipam-controller"));

    server
        .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
        .await;
    server.put(kube_node("a")).await;
    server.put(pod("web-1", json!({"app": "web"}))).await;
    server.put(pod("web-2", json!({"app": "web"}))).await;
    server
        .put(
            json!({"apiVersion": TW, "kind": "IPPool", "metadata": {"name": "pods"},
                    "spec": {"cidr": "10.244.0.0/24", "blockSize": 26, "nodeSelector": "all()"}}),
        )
        .await;
    // LoadBalancer IPAM: a pool for Services, one Service given a specific address and one
    // asking for the same address (reported on it with an Event).
    server
        .put(
            json!({"apiVersion": TW, "kind": "IPPool", "metadata": {"name": "lb"},
                    "spec": {"cidr": "203.0.113.0/28", "blockSize": 28,
                             "allowedUses": ["LoadBalancer"]}}),
        )
        .await;
    for (name, ip) in [("front", "203.0.113.10"), ("late", "203.0.113.10")] {
        server
            .put(json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"namespace": "shop", "name": name,
                                     "annotations": {"twill.dev/loadBalancerIPs": ip}},
                        "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv4"],
                                 "ports": [{"port": 80, "protocol": "TCP"}]}}))
            .await;
    }

    let controller = |id: &str| {
        ChildGuard::spawn_in(
            &node,
            &format!("ipam-{id}"),
            bin.join("twill-ipam-controller").to_str().unwrap(),
            &[
                "--datastore",
                "kubernetes",
                "--kubeconfig",
                &ipam_cfg,
                "--metrics-listen",
                "127.0.0.1:0",
                "--leader-lease",
                "3s",
                "--leader-id",
                id,
                "--gc-grace",
                "1s",
                "--resync-interval",
                "1s",
            ],
        )
        .unwrap()
    };
    let mut replicas = vec![controller("ipam-a"), controller("ipam-b")];
    let sock = dir.path().join("agent.sock");
    let felix = ChildGuard::spawn_in(
        &node,
        "felix",
        bin.join("twill-felix").to_str().unwrap(),
        &[
            "--datastore",
            "kubernetes",
            "--kubeconfig",
            &felix_cfg,
            "--node-name",
            "node-1",
            "--agent-socket",
            sock.to_str().unwrap(),
            "--health-listen",
            "127.0.0.1:9099",
            "--resync-seconds",
            "5",
        ],
    )
    .unwrap();

    // The Twill Node follows the Kubernetes Node: labels, InternalIP, owner.
    let twill_node = eventually("the Twill Node", 60, async || {
        let n = server.object(TW, "Node", "", "node-1").await?;
        (n["metadata"]["labels"]["rack"] == "a").then_some(n)
    })
    .await;
    assert_eq!(twill_node["spec"]["bgp"]["ipv4Address"], "192.0.2.1/24");
    assert_eq!(twill_node["metadata"]["ownerReferences"][0]["kind"], "Node");

    // One replica leads.
    eventually("a leader", 60, async || {
        replicas.iter().any(leading).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leaders: Vec<usize> = (0..2).filter(|&i| leading(&replicas[i])).collect();
    assert_eq!(leaders.len(), 1, "exactly one leader");
    let lease = server
        .object(
            "coordination.k8s.io/v1",
            "Lease",
            NS,
            "twill-ipam-controller",
        )
        .await
        .unwrap();
    let leader = leaders[0];

    // The leader gave `front` its address; `late`, asking for the same one, has an Event.
    eventually(
        "the LoadBalancer address in front's status",
        30,
        async || {
            let f = server.object("v1", "Service", "shop", "front").await?;
            (f["status"]["loadBalancer"]["ingress"][0]["ip"] == "203.0.113.10").then_some(())
        },
    )
    .await;
    let event = eventually("a Warning Event on late", 30, async || {
        server
            .objects("v1", "Event")
            .await
            .into_iter()
            .find(|e| e["involvedObject"]["name"] == "late")
    })
    .await;
    assert_eq!(event["reason"], "AddressTaken", "{event:#}");
    assert!(
        event["message"].as_str().unwrap().contains("shop/front"),
        "{event:#}"
    );
    assert_eq!(
        lease["spec"]["holderIdentity"],
        ["ipam-a", "ipam-b"][leader]
    );

    // A pod through the real CNI plugin: its endpoint says what the Pod says.
    let list = json!({"cniVersion": "1.0.0", "name": "twill",
                      "plugins": [{"type": "twill", "agent_socket": sock, "mtu": 1500}]});
    let args_labels = BTreeMap::from([("from".to_string(), "cni-args".to_string())]);
    let mut pods = Vec::new();
    let mut ips = Vec::new();
    for name in ["web-1", "web-2"] {
        let pod_ns = Netns::new("kpod").unwrap();
        let path = pod_ns.path().display().to_string();
        let att = Attachment {
            container_id: &format!("c-{name}"),
            netns_path: &path,
            ifname: "eth0",
            namespace: "shop",
            pod: name,
            labels: &args_labels,
            ports: &[],
        };
        let result = eventually("CNI ADD", 60, async || {
            cni::add(node.name(), &bin, &list, &att).await.ok()
        })
        .await;
        ips.push(cni::result_ips(&result)[0].parse::<IpAddr>().unwrap());
        pods.push(pod_ns);
    }
    let wep = endpoint_of(&server, "web-1").await.unwrap();
    assert_eq!(wep["metadata"]["labels"], json!({"app": "web"}), "{wep:#}");
    assert_eq!(
        wep["spec"]["ports"],
        json!([{"name": "http", "protocol": "TCP", "port": 8080}])
    );

    // Relabels follow: the Pod's into its endpoint, the Node's into the Twill Node.
    server
        .put(pod("web-1", json!({"app": "web", "ver": "2"})))
        .await;
    server.put(kube_node("b")).await;
    eventually("the endpoint to follow its Pod", 30, async || {
        let w = endpoint_of(&server, "web-1").await?;
        (w["metadata"]["labels"]["ver"] == "2").then_some(())
    })
    .await;
    eventually("the Twill Node to follow", 30, async || {
        let n = server.object(TW, "Node", "", "node-1").await?;
        (n["metadata"]["labels"]["rack"] == "b").then_some(())
    })
    .await;

    // web-2's Pod is deleted and its CNI DEL never comes: the leader's GC frees its
    // address (after the 1 s grace); web-1's stays, its Pod lives.
    assert!(server.remove("v1", "Pod", "shop", "web-2").await);
    eventually("GC to free the gone Pod's address", 60, async || {
        let a = allocated(&server).await;
        (!a.contains_key(&ips[1])).then_some(())
    })
    .await;
    assert_eq!(
        allocated(&server).await.get(&ips[0]).map(String::as_str),
        Some("web-1")
    );

    // The leader stops (SIGTERM): it releases the Lease and the other takes over at once.
    replicas[leader]
        .signal(nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status =
        tokio::task::block_in_place(|| replicas[leader].wait_timeout(Duration::from_secs(20)));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let other = 1 - leader;
    eventually("the standby to lead", 10, async || {
        leading(&replicas[other]).then_some(())
    })
    .await;

    // CNI DEL of web-1: endpoint gone, address free.
    let path = pods[0].path().display().to_string();
    let att = Attachment {
        container_id: "c-web-1",
        netns_path: &path,
        ifname: "eth0",
        namespace: "shop",
        pod: "web-1",
        labels: &args_labels,
        ports: &[],
    };
    cni::del(node.name(), &bin, &list, &att, None)
        .await
        .unwrap();
    assert!(endpoint_of(&server, "web-1").await.is_none());
    assert!(!allocated(&server).await.contains_key(&ips[0]));

    // The node goes away (felix stops; Kubernetes' garbage collector deletes the Twill
    // Node with the Kubernetes Node it is owned by): the leader releases its blocks.
    drop(felix);
    assert!(server.remove("v1", "Node", "", "node-1").await);
    assert!(server.remove(TW, "Node", "", "node-1").await);
    eventually("the gone node's blocks to be released", 60, async || {
        // The LoadBalancer pool's block belongs to no node: it stays.
        let blocks = server.objects(TW, "IPAMBlock").await;
        let affinities = server.objects(TW, "BlockAffinity").await;
        let node_blocks = blocks.iter().filter(|b| !b["spec"]["affinity"].is_null());
        (node_blocks.count() == 0 && affinities.is_empty()).then_some(())
    })
    .await;
    assert!(
        server.violations().await.is_empty(),
        "{:#?}",
        server.violations().await
    );

    let exchanges = server.exchanges().await;
    replicas.clear();
    check_rbac(
        &exchanges,
        "felix",
        "twill-node",
        &[
            // A pod's ADD before the watch has seen it reads the Pod.
            ("", "pods", "get"),
            // A node whose blocks are full claims one itself (here the controller had).
            (TW_GROUP, "ipamblocks", "create"),
            (TW_GROUP, "blockaffinities", "create"),
            // Borrowed addresses are indexed under handles (no borrowing here).
            (TW_GROUP, "ipamhandles", "create"),
            (TW_GROUP, "ipamhandles", "update"),
            (TW_GROUP, "ipamhandles", "delete"),
            // A BGPPeer's ReferencesResolved condition (no BGPPeer here).
            (TW_GROUP, "bgppeers/status", "update"),
        ],
    );
    check_rbac(
        &exchanges,
        "ipam-controller",
        "twill-ipam-controller",
        &[
            // Stale entries of the borrowed-address index (no borrowing here).
            (TW_GROUP, "ipamhandles", "get"),
            (TW_GROUP, "ipamhandles", "delete"),
            // The re-check of a gone node before its pods' addresses are released (here
            // the node's pods were gone before it).
            (TW_GROUP, "nodes", "get"),
            // A Twill Node whose Kubernetes Node is gone is deleted (here the test deletes
            // it itself, as Kubernetes' garbage collector would through the owner reference).
            (TW_GROUP, "nodes", "delete"),
        ],
    );
}

/// (group, resource, verb, namespace or "" for cluster-wide, resourceName or "").
type Grant = (String, String, String, String, String);

fn grants_of(rules: &[PolicyRule], namespace: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules {
        let names: Vec<String> = match rule.resource_names.as_deref() {
            None | Some([]) => vec![String::new()],
            Some(names) => names.to_vec(),
        };
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for name in &names {
                        out.insert((
                            group.clone(),
                            resource.clone(),
                            verb.clone(),
                            namespace.to_string(),
                            name.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// What the chart grants the ServiceAccount `account` (default values).
fn chart_grants(account: &str) -> BTreeSet<Grant> {
    let objects = support::Render::default().render();
    let mut out = BTreeSet::new();
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for binding in objects.of_kind(kind) {
            let bound = binding["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| {
                    s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == NS
                });
            if !bound {
                continue;
            }
            let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
            let role_name = binding["roleRef"]["name"].as_str().unwrap();
            let role = objects.get(role_kind, role_name);
            let (rules, namespace) = if role_kind == "ClusterRole" {
                let r: ClusterRole = support::typed(role);
                (r.rules.unwrap_or_default(), String::new())
            } else {
                let r: Role = support::typed(role);
                (r.rules.unwrap_or_default(), NS.to_string())
            };
            out.extend(grants_of(&rules, &namespace));
        }
    }
    out
}

fn allowed(grants: &BTreeSet<Grant>, e: &Exchange) -> bool {
    let ns = e.namespace.clone().unwrap_or_default();
    let name = e.name.clone().unwrap_or_default();
    grants.iter().any(|(g, r, v, gns, gname)| {
        *g == e.group
            && *r == e.resource
            && *v == e.verb
            && (gns.is_empty() || *gns == ns)
            && (gname.is_empty() || *gname == name)
    })
}

/// Every call of `user` is granted to `account`, and every grant was used (except
/// `unused_ok`: (group, resource, verb)).
fn check_rbac(exchanges: &[Exchange], user: &str, account: &str, unused_ok: &[(&str, &str, &str)]) {
    let grants = chart_grants(account);
    let calls: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.user.as_deref() == Some(user) && !e.verb.is_empty())
        .collect();
    assert!(!calls.is_empty(), "{user} made no calls");
    let denied: BTreeSet<String> = calls
        .iter()
        .filter(|e| !allowed(&grants, e))
        .map(|e| {
            format!(
                "{} {}/{} {:?}/{:?}",
                e.verb, e.group, e.resource, e.namespace, e.name
            )
        })
        .collect();
    assert!(
        denied.is_empty(),
        "{user} made calls the chart does not grant {account}: {denied:#?}"
    );
    let used: BTreeSet<(String, String, String)> = calls
        .iter()
        .map(|e| (e.group.clone(), e.resource.clone(), e.verb.clone()))
        .collect();
    let unused: BTreeSet<(String, String, String)> = grants
        .iter()
        .map(|(g, r, v, _, _)| (g.clone(), r.clone(), v.clone()))
        .filter(|k| !used.contains(k))
        .filter(|(g, r, v)| !unused_ok.contains(&(g.as_str(), r.as_str(), v.as_str())))
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants {account} what {user} never used: {unused:#?}\nused: {used:#?}"
    );
}
