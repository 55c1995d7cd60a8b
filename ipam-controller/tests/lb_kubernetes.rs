//! LoadBalancer IPAM in Kubernetes mode, against the fake API server (in-process): the
//! controller's real pass over Services, pools and blocks, with the API server's
//! compare-and-swap on every write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use twill_api::datastore::Datastore;
use twill_api::datastore::kubernetes::KubernetesBackend;
use twill_api::resources::IPAMBlock;
use twill_api::resources::kinds::ALL_KINDS;
use twill_harness::kube_fake::{FakeApiServer, FakeKind};
use twill_ipam::controller::{Controller, ControllerConfig};
use twill_ipam::inventory::WorkloadSource;
use twill_ipam::metrics::Metrics;
use twill_ipam::model::block_from_spec;

const TW: &str = "networking.twill.dev/v1";

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

fn datastore(server: &FakeApiServer) -> Datastore {
    let backend = KubernetesBackend::from_client(server.client(), "https://fake-apiserver");
    Datastore::new(Arc::new(backend))
}

fn controller(server: &FakeApiServer) -> Controller {
    let config = ControllerConfig::for_source(
        WorkloadSource::Pods,
        Duration::ZERO,
        Duration::from_secs(60),
    );
    let metrics = Arc::new(Metrics::register(&mut Registry::default()));
    Controller::new(datastore(server), config, metrics)
}

async fn world(lb_v4: &str, lb_block: u8) -> FakeApiServer {
    let server = FakeApiServer::new(twill_kinds()).with_namespaces(&["default", "shop"]);
    server
        .put(
            json!({"apiVersion": TW, "kind": "IPPool", "metadata": {"name": "pods"},
                    "spec": {"cidr": "10.244.0.0/24", "blockSize": 26}}),
        )
        .await;
    server
        .put(
            json!({"apiVersion": TW, "kind": "IPPool", "metadata": {"name": "lb"},
                    "spec": {"cidr": lb_v4, "blockSize": lb_block,
                             "allowedUses": ["LoadBalancer"]}}),
        )
        .await;
    server
        .put(
            json!({"apiVersion": TW, "kind": "IPPool", "metadata": {"name": "lb6"},
                    "spec": {"cidr": "2001:db8:1b::/120", "blockSize": 124,
                             "allowedUses": ["LoadBalancer"]}}),
        )
        .await;
    server
}

fn service(name: &str, spec: Value, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
           "spec": spec})
}

fn lb(families: &[&str]) -> Value {
    json!({"type": "LoadBalancer", "ipFamilies": families,
           "ports": [{"port": 80, "protocol": "TCP"}]})
}

async fn svc(server: &FakeApiServer, name: &str) -> Value {
    server.object("v1", "Service", "shop", name).await.unwrap()
}

fn ingress(s: &Value) -> Vec<IpAddr> {
    s["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["ip"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn condition(s: &Value) -> Value {
    s["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "twill.dev/LoadBalancerIPs")
        .cloned()
        .unwrap_or(Value::Null)
}

/// Address → handle, for every used address in every block.
async fn held(server: &FakeApiServer) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    for b in server.objects(TW, "IPAMBlock").await {
        let block: IPAMBlock = serde_json::from_value(b).unwrap();
        let block = block_from_spec(&block.spec).unwrap();
        for (ip, a) in block.used_addrs() {
            assert!(out.insert(ip, a.handle.clone()).is_none());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_services_get_addresses_from_load_balancer_pools_and_give_them_back() {
    let server = world("203.0.113.0/28", 30).await;
    server
        .put(service("dual", lb(&["IPv4", "IPv6"]), json!({})))
        .await;
    server
        .put(service("plain", json!({"type": "ClusterIP"}), json!({})))
        .await;
    let mut other = lb(&["IPv4"]);
    other["loadBalancerClass"] = "metallb.io/other".into();
    server.put(service("other", other, json!({}))).await;
    server
        .put(service(
            "fixed",
            lb(&["IPv4"]),
            json!({"twill.dev/loadBalancerIPs": "203.0.113.9"}),
        ))
        .await;
    let mut c = controller(&server);
    let summary = c.pass().await.unwrap();
    assert_eq!(summary.lb.allocated, 3, "{summary:?}");

    let dual = svc(&server, "dual").await;
    let ips = ingress(&dual);
    assert_eq!(ips.len(), 2, "{dual:#}");
    assert!(
        ips[0].is_ipv4()
            && "203.0.113.0/28"
                .parse::<ipnet::IpNet>()
                .unwrap()
                .contains(&ips[0])
    );
    assert!(
        ips[1].is_ipv6()
            && "2001:db8:1b::/120"
                .parse::<ipnet::IpNet>()
                .unwrap()
                .contains(&ips[1])
    );
    assert_eq!(condition(&dual)["status"], "True");
    assert_eq!(
        ingress(&svc(&server, "fixed").await),
        vec!["203.0.113.9".parse::<IpAddr>().unwrap()]
    );
    // Not Twill's: untouched.
    for name in ["plain", "other"] {
        assert_eq!(svc(&server, name).await["status"], Value::Null, "{name}");
    }
    // No pod address came out of it, no Service address out of the pod pool.
    let h = held(&server).await;
    assert_eq!(h.len(), 3, "{h:?}");
    assert!(h.keys().all(|ip| !ip.to_string().starts_with("10.244.")));
    assert_eq!(h[&ips[0]], "lb.shop.dual");

    // A pass with nothing new changes nothing; pod GC (grace 0) leaves these alone.
    let summary = c.pass().await.unwrap();
    assert_eq!(summary.lb, Default::default(), "{summary:?}");
    assert_eq!(held(&server).await, h);

    // A request for a taken address is reported on the Service (condition + Event).
    server
        .put(service(
            "late",
            json!({"type": "LoadBalancer", "loadBalancerIP": "203.0.113.9"}),
            json!({}),
        ))
        .await;
    let summary = c.pass().await.unwrap();
    assert_eq!(summary.lb.failed, 1, "{summary:?}");
    let late = svc(&server, "late").await;
    assert!(ingress(&late).is_empty());
    let cond = condition(&late);
    assert_eq!(cond["status"], "False", "{late:#}");
    assert_eq!(cond["reason"], "AddressTaken");
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("Service shop/fixed"),
        "{cond}"
    );
    let events = server.objects("v1", "Event").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["reason"], "AddressTaken");
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["involvedObject"]["name"], "late");
    // Reported once per change, not every pass.
    c.pass().await.unwrap();
    assert_eq!(server.objects("v1", "Event").await.len(), 1);

    // `fixed` stops being a LoadBalancer: its address is freed and leaves its status;
    // `late` gets it at the next pass.
    let mut fixed = svc(&server, "fixed").await;
    fixed["spec"]["type"] = "ClusterIP".into();
    server.put(fixed).await;
    c.pass().await.unwrap();
    let fixed = svc(&server, "fixed").await;
    assert!(ingress(&fixed).is_empty());
    // Its condition goes with it: the Service is no longer Twill's.
    assert_eq!(condition(&fixed), Value::Null, "{fixed:#}");
    c.pass().await.unwrap();
    let late = svc(&server, "late").await;
    assert_eq!(
        ingress(&late),
        vec!["203.0.113.9".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(condition(&late)["status"], "True");

    // `dual` is deleted: both addresses are free again.
    assert!(server.remove("v1", "Service", "shop", "dual").await);
    let summary = c.pass().await.unwrap();
    assert_eq!(summary.lb.released, 2, "{summary:?}");
    let h = held(&server).await;
    assert!(!h.values().any(|handle| handle == "lb.shop.dual"), "{h:?}");

    // A pool that is not a LoadBalancer pool, or does not exist, gives nothing.
    server
        .put(service(
            "wrong-pool",
            lb(&["IPv4"]),
            json!({"twill.dev/ipPool": "pods"}),
        ))
        .await;
    c.pass().await.unwrap();
    let wrong = svc(&server, "wrong-pool").await;
    assert!(ingress(&wrong).is_empty());
    assert_eq!(condition(&wrong)["reason"], "NoSuchPool", "{wrong:#}");
    assert!(
        condition(&wrong)["message"]
            .as_str()
            .unwrap()
            .contains("pods"),
        "{wrong:#}"
    );
    // It stops asking (no longer a LoadBalancer): the failure it was reported is withdrawn.
    let mut wrong = svc(&server, "wrong-pool").await;
    wrong["spec"]["type"] = "ClusterIP".into();
    server.put(wrong).await;
    c.pass().await.unwrap();
    let wrong = svc(&server, "wrong-pool").await;
    assert_eq!(condition(&wrong), Value::Null, "{wrong:#}");
    assert!(
        server.violations().await.is_empty(),
        "{:?}",
        server.violations().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_racing_never_hand_out_one_address_twice() {
    // 16 addresses in four blocks, 20 Services.
    let server = world("203.0.113.0/28", 30).await;
    for i in 0..20 {
        server
            .put(service(&format!("s{i:02}"), lb(&["IPv4"]), json!({})))
            .await;
    }
    let mut a = controller(&server);
    let mut b = controller(&server);
    for _ in 0..3 {
        let (ra, rb) = tokio::join!(a.pass(), b.pass());
        ra.unwrap();
        rb.unwrap();
    }
    // The two did race: some of their writes lost a compare-and-swap.
    let lost = server
        .exchanges()
        .await
        .iter()
        .filter(|e| {
            e.status == 409 && (e.resource == "ipamblocks" || e.resource == "services/status")
        })
        .count();
    assert!(
        lost > 0,
        "no write lost a race: the test did not test a race"
    );
    // Quiet passes settle what the race left (a Service that got one address from each).
    a.pass().await.unwrap();
    a.pass().await.unwrap();
    let h = held(&server).await;
    assert_eq!(h.len(), 16, "{h:?}");
    let handles: BTreeSet<&String> = h.values().collect();
    assert_eq!(handles.len(), 16, "one address per Service: {h:?}");
    let mut shown = BTreeMap::new();
    let mut exhausted = 0;
    for i in 0..20 {
        let name = format!("s{i:02}");
        let s = svc(&server, &name).await;
        match ingress(&s).as_slice() {
            [] => {
                assert_eq!(condition(&s)["reason"], "PoolExhausted", "{s:#}");
                exhausted += 1;
            }
            [ip] => {
                assert_eq!(h[ip], format!("lb.shop.{name}"));
                assert!(shown.insert(*ip, name).is_none(), "{ip} shown twice");
            }
            more => panic!("{name} shows {more:?}"),
        }
    }
    assert_eq!(exhausted, 4);
    assert_eq!(shown.len(), 16);
}
