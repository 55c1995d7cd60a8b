//! Twill's chart and Kubernetes mode against a real API server: kube-apiserver v1.20.2
//! (built from Debian's source package by `scripts/kube-apiserver.sh`) on Debian's etcd,
//! with RBAC, started by `twill_harness::kube_real`.
//!
//! - The chart (`helm template --include-crds`) installs: its CRDs are accepted and become
//!   Established, every other object is accepted (except kinds 1.20 does not serve, listed
//!   in [`NOT_IN_1_20`]); the printer columns print; the structural schemas refuse a wrong
//!   type and prune an unknown field.
//! - End to end in a node's network namespace: tokens for the chart's ServiceAccounts come
//!   from TokenRequest; two real `twill-ipam-controller` replicas and a real `twill-felix`
//!   run with exactly those identities; one leads through a real Lease; the node gets a
//!   Twill Node; a pod's CNI ADD through the real plugin gets an address and an endpoint
//!   with its Pod's labels; a relabel reaches the endpoint; a LoadBalancer Service gets the
//!   address it asks for in its status, another asking for the same one gets a condition
//!   and a Warning Event; and the API server's audit log
//!   shows no call refused (403) to any of them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

#[allow(dead_code)]
#[path = "chart/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use twill_api::datastore::Datastore;
use twill_api::datastore::kubernetes::KubernetesBackend;
use twill_api::resources::{IPPool, WorkloadEndpoint};
use twill_harness::kube_real::{self, RealApiServer};
use twill_harness::netns::Netns;
use twill_harness::process::ChildGuard;
use twillctl::lab::cni::{self, Attachment};

const NS: &str = "twill-system";
const TW: &str = "networking.twill.dev/v1";

/// Kinds the chart renders that kube-apiserver 1.20 does not serve (the fake and the chart
/// tests keep covering them).
const NOT_IN_1_20: &[(&str, &str)] = &[("policy/v1", "PodDisruptionBudget")];

/// Fields of built-in kinds the chart sets that 1.20's schemas do not have (server-side
/// apply refuses them): (kind, JSON pointer of the field). A DaemonSet's `maxSurge` came in
/// 1.21 (GA 1.25).
const FIELDS_NOT_IN_1_20: &[(&str, &str)] =
    &[("DaemonSet", "/spec/updateStrategy/rollingUpdate/maxSurge")];

/// `object` without the fields 1.20 does not know.
fn for_1_20(object: &Value) -> Value {
    let mut object = object.clone();
    for (kind, pointer) in FIELDS_NOT_IN_1_20 {
        if object["kind"] != *kind {
            continue;
        }
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        if let Some(map) = object.pointer_mut(parent).and_then(Value::as_object_mut) {
            map.remove(field);
        }
    }
    object
}

/// Polls `probe` every 200 ms for up to `secs` seconds.
async fn eventually<T>(what: &str, secs: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..secs * 5 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// Installs the chart as rendered with default values: the namespace, the CRDs (waited
/// for until Established), then every other object. Returns the kinds refused as absent.
async fn install_chart(admin: &kube::Client) -> Vec<(String, String)> {
    let objects = support::Render::default().with_crds().render();
    kube_real::apply(
        admin,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await
    .unwrap();
    let crds: Vec<Value> = objects
        .of_kind("CustomResourceDefinition")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(crds.len(), 14, "the chart's CRDs");
    kube_real::install_crds(admin, &crds).await.unwrap();
    let mut absent = Vec::new();
    for object in objects
        .0
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
    {
        let api_version = object["apiVersion"].as_str().unwrap();
        let kind = object["kind"].as_str().unwrap();
        match kube_real::apply_in(admin, &for_1_20(object), NS).await {
            Ok(_) => {}
            Err(e) if NOT_IN_1_20.contains(&(api_version, kind)) => {
                assert!(
                    e.to_string().contains("404") || e.to_string().contains("not found"),
                    "{kind}: {e}"
                );
                absent.push((api_version.to_string(), kind.to_string()));
            }
            Err(e) => panic!("the API server refused the chart's {kind}: {e}"),
        }
    }
    absent
}

async fn start_server() -> RealApiServer {
    tokio::task::spawn_blocking(RealApiServer::start)
        .await
        .unwrap()
        .unwrap()
}

fn datastore(client: kube::Client, server: &RealApiServer) -> Datastore {
    Datastore::new(Arc::new(KubernetesBackend::from_client(
        client,
        server.url(),
    )))
}

#[tokio::test]
async fn the_chart_installs_onto_a_real_apiserver_and_its_schemas_hold() {
    let server = start_server().await;
    let admin = server.admin_client().await.unwrap();
    let absent = install_chart(&admin).await;
    assert_eq!(
        absent,
        [("policy/v1".to_string(), "PodDisruptionBudget".to_string())],
        "only the kinds 1.20 lacks are left out"
    );

    // The chart's pool, read through Twill's own client; its printer columns as
    // `kubectl get` shows them.
    let ds = datastore(admin.clone(), &server);
    let pool: IPPool = ds.get(None, "default-ipv4").await.unwrap();
    assert_eq!(pool.spec.cidr.to_string(), "10.244.0.0/16");
    let request = http::Request::get("/apis/networking.twill.dev/v1/ippools/default-ipv4")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = serde_json::from_str(&admin.request_text(request).await.unwrap()).unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let cells = table["rows"][0]["cells"].as_array().unwrap().clone();
    let cell = |name: &str| cells[columns.iter().position(|c| *c == name).unwrap()].clone();
    assert_eq!(cell("Name"), "default-ipv4", "{table:#}");
    assert_eq!(cell("CIDR"), "10.244.0.0/16", "{table:#}");
    assert_eq!(cell("BlockSize"), 26, "{table:#}");
    assert_eq!(cell("NAT"), true, "{table:#}");

    // The structural schema: a wrong type is refused, an unknown field is pruned.
    let pools: Api<kube::api::DynamicObject> = Api::all_with(
        admin.clone(),
        &kube::discovery::ApiResource {
            group: "networking.twill.dev".into(),
            version: "v1".into(),
            api_version: TW.into(),
            kind: "IPPool".into(),
            plural: "ippools".into(),
        },
    );
    let wrong: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": TW, "kind": "IPPool", "metadata": {"name": "wrong"},
        "spec": {"cidr": "10.244.0.0/24", "blockSize": "big"}}))
    .unwrap();
    let err = pools
        .create(&PostParams::default(), &wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("spec.blockSize")),
        "{err:?}"
    );
    let unknown: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": TW, "kind": "IPPool", "metadata": {"name": "extra"},
        "spec": {"cidr": "10.244.1.0/24", "blockSize": 26, "colour": "blue"}}))
    .unwrap();
    let stored = pools
        .create(&PostParams::default(), &unknown)
        .await
        .unwrap();
    assert_eq!(stored.data["spec"]["cidr"], "10.244.1.0/24");
    assert!(
        stored.data["spec"].get("colour").is_none(),
        "1.20 prunes unknown fields: {:#}",
        stored.data
    );
    assert!(server.forbidden().is_empty(), "{:#?}", server.forbidden());
}

fn kube_node(rack: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1", "rack": rack}}})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"namespace": "shop", "name": name, "labels": {"app": "web"}},
           "spec": {"nodeName": "node-1",
                    "containers": [{"name": "web", "image": "registry.example/web",
                                    "ports": [{"name": "http", "containerPort": 8080}]}]}})
}

fn leading(a: &ChildGuard) -> bool {
    a.log().lines().any(|l| l.contains(" leading"))
}

/// Spawns `program args` from the calling thread, so in its network namespace.
fn spawn(name: &str, program: &std::path::Path, args: &[&str]) -> ChildGuard {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    ChildGuard::spawn(name, cmd).unwrap()
}

#[test]
fn felix_and_the_controller_run_under_the_charts_rbac_on_a_real_apiserver() {
    let node = Netns::new("kreal").unwrap();
    node.veth(&["192.0.2.1/24"], &node, &["192.0.2.2/24"])
        .unwrap();
    // Everything below runs on a thread in the node's namespace: the API server and its
    // etcd listen there, felix and the controllers run there, and so do the test's clients.
    let name = node.name().to_string();
    node.block_on(move || end_to_end(name)).unwrap();
}

async fn end_to_end(node: String) {
    let bin = twillctl::lab::default_bin_dir().unwrap();
    let server = RealApiServer::start().unwrap();
    let admin = server.admin_client().await.unwrap();
    let absent = install_chart(&admin).await;
    assert_eq!(absent.len(), NOT_IN_1_20.len());

    let apply = |object: Value| {
        let admin = admin.clone();
        async move { kube_real::apply(&admin, &object).await.unwrap() }
    };
    apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).await;
    apply(kube_node("a")).await;
    let nodes: Api<Node> = Api::all(admin.clone());
    nodes
        .patch_status(
            "node-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"addresses": [
                {"type": "InternalIP", "address": "192.0.2.1"}]}})),
        )
        .await
        .unwrap();
    apply(pod("web-1")).await;
    apply(
        json!({"apiVersion": TW, "kind": "IPPool", "metadata": {"name": "pods"},
                 "spec": {"cidr": "10.244.0.0/24", "blockSize": 26, "nodeSelector": "all()"}}),
    )
    .await;
    // LoadBalancer IPAM: a pool for Services, a Service asking for a specific address and
    // another asking for the same one.
    apply(
        json!({"apiVersion": TW, "kind": "IPPool", "metadata": {"name": "lb"},
                 "spec": {"cidr": "203.0.113.0/28", "blockSize": 28,
                          "allowedUses": ["LoadBalancer"]}}),
    )
    .await;
    for name in ["front", "late"] {
        apply(json!({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"namespace": "shop", "name": name,
                                  "annotations": {"twill.dev/loadBalancerIPs": "203.0.113.10"}},
                     "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                              "ports": [{"port": 80, "protocol": "TCP"}]}}))
        .await;
    }

    // The chart's identities, with tokens from the real TokenRequest API.
    let felix_token = server.token_for(&admin, NS, "twill-node").await.unwrap();
    let ipam_token = server
        .token_for(&admin, NS, "twill-ipam-controller")
        .await
        .unwrap();
    let felix_cfg = server.write_kubeconfig("felix", &felix_token, NS).unwrap();
    let ipam_cfg = server.write_kubeconfig("ipam", &ipam_token, NS).unwrap();
    let (felix_cfg, ipam_cfg) = (
        felix_cfg.display().to_string(),
        ipam_cfg.display().to_string(),
    );

    let controller = |id: &str| {
        spawn(
            &format!("ipam-{id}"),
            &bin.join("twill-ipam-controller"),
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
    };
    let replicas = [controller("ipam-a"), controller("ipam-b")];
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let felix = spawn(
        "felix",
        &bin.join("twill-felix"),
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
            "127.0.0.1:0",
            "--resync-seconds",
            "5",
        ],
    );

    let ds = datastore(admin.clone(), &server);
    // The Twill Node follows the Kubernetes Node: its labels and InternalIP.
    let twill_node = eventually("the Twill Node with its Node's labels", 90, async || {
        let n: twill_api::resources::Node = ds.get(None, "node-1").await.ok()?;
        let rack = n.metadata.labels.as_ref()?.get("rack")?.clone();
        (rack == "a").then_some(n)
    })
    .await;
    let bgp = serde_json::to_value(&twill_node.spec).unwrap();
    assert_eq!(bgp["bgp"]["ipv4Address"], "192.0.2.1/24", "{bgp:#}");

    // One replica leads, through a real Lease.
    eventually("a leader", 90, async || {
        replicas.iter().any(leading).then_some(())
    })
    .await;
    let lease = Api::<Lease>::namespaced(admin.clone(), NS)
        .get("twill-ipam-controller")
        .await
        .unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap();
    let leader = replicas.iter().position(leading).unwrap();
    assert_eq!(holder, ["ipam-a", "ipam-b"][leader]);

    // The leader wrote front's address into its status (the real status subresource), and
    // reported late's unmeetable request with a condition and a Warning Event.
    let services: Api<Service> = Api::namespaced(admin.clone(), "shop");
    eventually("front's LoadBalancer address", 60, async || {
        let f = services.get("front").await.ok()?;
        let ingress = f.status?.load_balancer?.ingress?;
        (ingress.first()?.ip.as_deref() == Some("203.0.113.10")).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(admin.clone(), "shop");
    let event = eventually("a Warning Event on late", 60, async || {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.involved_object.name.as_deref() == Some("late"))
    })
    .await;
    assert_eq!(event.reason.as_deref(), Some("AddressTaken"), "{event:?}");
    let late = services.get("late").await.unwrap();
    let conditions = late.status.unwrap().conditions.unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "twill.dev/LoadBalancerIPs" && c.status == "False"),
        "{conditions:?}"
    );

    // A pod through the real CNI plugin: an address, and an endpoint with its Pod's labels.
    let list = json!({"cniVersion": "1.0.0", "name": "twill",
                      "plugins": [{"type": "twill", "agent_socket": sock, "mtu": 1500}]});
    let args_labels = BTreeMap::from([("from".to_string(), "cni-args".to_string())]);
    let pod_ns = Netns::new("krpod").unwrap();
    let path = pod_ns.path().display().to_string();
    let att = Attachment {
        container_id: "c-web-1",
        netns_path: &path,
        ifname: "eth0",
        namespace: "shop",
        pod: "web-1",
        labels: &args_labels,
        ports: &[],
    };
    let result = eventually("CNI ADD", 90, async || {
        cni::add(&node, &bin, &list, &att).await.ok()
    })
    .await;
    let ip = cni::result_ips(&result)[0].clone();
    assert!(ip.starts_with("10.244."), "{result:#}");
    let endpoint = async || -> Option<WorkloadEndpoint> {
        ds.list::<WorkloadEndpoint>(Some("shop"))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|w| w.spec.pod.as_deref() == Some("web-1"))
    };
    let wep = endpoint().await.expect("the pod's endpoint");
    assert_eq!(
        wep.metadata.labels.clone().unwrap_or_default(),
        BTreeMap::from([("app".to_string(), "web".to_string())])
    );

    // A relabel of the Pod reaches its endpoint (an update the real server must accept).
    Api::<Pod>::namespaced(admin.clone(), "shop")
        .patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"ver": "2"}}})),
        )
        .await
        .unwrap();
    eventually("the endpoint to follow its Pod's relabel", 60, async || {
        let w = endpoint().await?;
        (w.metadata.labels?.get("ver").map(String::as_str) == Some("2")).then_some(())
    })
    .await;

    cni::del(&node, &bin, &list, &att, None).await.unwrap();
    assert!(endpoint().await.is_none());

    // No call of felix or the controllers was refused, by the API server's own account.
    let forbidden = server.forbidden();
    assert!(forbidden.is_empty(), "refused calls: {forbidden:#?}");
    let audit = server.audit_events();
    for account in ["twill-node", "twill-ipam-controller"] {
        let user = format!("system:serviceaccount:{NS}:{account}");
        assert!(
            audit.iter().any(|e| e["user"]["username"] == user.as_str()),
            "{user} made no calls"
        );
    }
    for guard in replicas.iter().chain([&felix]) {
        assert!(
            !guard.log().to_lowercase().contains("forbidden"),
            "{} logged a refusal:\n{}",
            guard.name(),
            guard.log_tail(30)
        );
    }
    drop(felix);
    drop(replicas);
}

/// Runs `kubectl-twill args` (twillctl linked under its plugin name) with `kubeconfig`.
async fn kubectl_twill(
    link: &std::path::Path,
    kubeconfig: &std::path::Path,
    args: &[&str],
) -> String {
    let mut cmd = std::process::Command::new(link);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("TWILL_DATASTORE");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "kubectl twill {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn kubectl_twill_and_server_side_apply_store_the_same_objects() {
    let server = start_server().await;
    let admin = server.admin_client().await.unwrap();
    install_chart(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kubectl-twill");
    std::os::unix::fs::symlink(
        twillctl::lab::default_bin_dir().unwrap().join("twillctl"),
        &link,
    )
    .unwrap();
    let kubeconfig = server
        .write_kubeconfig("operator", server.admin_token(), "default")
        .unwrap();

    // The chart's pool, as `kubectl twill` lists it, and the IPAM view of it.
    let pools = kubectl_twill(&link, &kubeconfig, &["get", "ippools"]).await;
    assert!(
        pools.contains("default-ipv4") && pools.contains("10.244.0.0/16"),
        "{pools}"
    );
    let ipam = kubectl_twill(&link, &kubeconfig, &["ipam", "show"]).await;
    assert!(ipam.contains("10.244.0.0/16"), "{ipam}");

    // The same YAML through `kubectl twill apply` and through the API server's own apply
    // (what `kubectl apply --server-side` sends): the stored specs are the same.
    let yaml = |name: &str| {
        format!(
            "apiVersion: {TW}\nkind: BGPPeer\nmetadata:\n  name: {name}\n  labels: {{rack: a}}\n\
             spec:\n  peerIP: 192.0.2.10\n  asNumber: 65010\n  nodeSelector: all()\n"
        )
    };
    let manifest = dir.path().join("peer.yaml");
    std::fs::write(&manifest, yaml("via-twillctl")).unwrap();
    kubectl_twill(
        &link,
        &kubeconfig,
        &["apply", "-f", manifest.to_str().unwrap()],
    )
    .await;
    let applied: Value = serde_yaml::from_str(&yaml("via-apply")).unwrap();
    kube_real::apply(&admin, &applied).await.unwrap();
    let ds = datastore(admin.clone(), &server);
    let a: twill_api::resources::BGPPeer = ds.get(None, "via-twillctl").await.unwrap();
    let b: twill_api::resources::BGPPeer = ds.get(None, "via-apply").await.unwrap();
    assert_eq!(
        serde_json::to_value(&a.spec).unwrap(),
        serde_json::to_value(&b.spec).unwrap()
    );
    assert_eq!(a.metadata.labels, b.metadata.labels);
    // And the raw stored JSON, not only what Twill's types make of it.
    let raw = |name: &'static str| {
        let admin = admin.clone();
        async move {
            let request =
                http::Request::get(format!("/apis/networking.twill.dev/v1/bgppeers/{name}"))
                    .body(Vec::new())
                    .unwrap();
            let v: Value =
                serde_json::from_str(&admin.request_text(request).await.unwrap()).unwrap();
            v["spec"].clone()
        }
    };
    assert_eq!(raw("via-twillctl").await, raw("via-apply").await);
    assert!(server.forbidden().is_empty(), "{:#?}", server.forbidden());
}
