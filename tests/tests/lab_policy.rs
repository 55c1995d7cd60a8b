//! Network policy end to end, as a truth table in the style of the upstream Kubernetes
//! network-policy tests: pods a, b, c in namespaces x, y, z spread over two nodes running
//! the real felix, a sequence of policies (Kubernetes `NetworkPolicy` and Twill
//! `GlobalNetworkPolicy`), and after each step the reachability matrix that real TCP and
//! UDP probes see, compared with the one an independent model in this file computes.
//! Once with nftables, once with iptables.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::{Value, json};
use twill_api::Datastore;
use twill_api::resources::native::NetworkPolicy;
use twill_api::resources::{GlobalNetworkPolicy, WorkloadEndpoint};
use twill_tests::probe::{Proto, netns_path, probe, serve};
use twill_tests::{LabGuard, unique_name};
use twillctl::lab::{LabSpec, PodSpec, TorKind};

const PORTS: [(Proto, u16); 3] = [(Proto::Tcp, 80), (Proto::Tcp, 81), (Proto::Udp, 80)];
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug)]
struct Pod {
    ns: String,
    name: String,
    ip: IpAddr,
    labels: Labels,
    /// Named ports: name -> (proto, port).
    named: BTreeMap<String, (Proto, u16)>,
    netns: PathBuf,
}

impl Pod {
    fn id(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }
}

// ---- the model: policies as plain data, evaluated without felix's code ----

#[derive(Clone, Debug)]
enum PortSpec {
    Num(Proto, u16, Option<u16>),
    Named(String),
}

#[derive(Clone, Debug, Default)]
struct Peer {
    pods: Option<Labels>,
    namespaces: Option<Labels>,
    ip_block: Option<(IpNet, Vec<IpNet>)>,
}

#[derive(Clone, Debug, Default)]
struct K8sRule {
    peers: Vec<Peer>,
    ports: Vec<PortSpec>,
}

#[derive(Clone, Debug)]
struct K8sPolicy {
    ns: String,
    name: String,
    select: Labels,
    ingress: Option<Vec<K8sRule>>,
    egress: Option<Vec<K8sRule>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum GAction {
    Allow,
    Deny,
    Pass,
}

#[derive(Clone, Debug)]
struct GRule {
    action: GAction,
    /// The other side's namespace (`kubernetes.io/metadata.name`), when set.
    peer_namespace: Option<String>,
}

#[derive(Clone, Debug)]
struct GlobalPolicy {
    name: String,
    order: f64,
    /// The selected endpoints' namespace.
    namespace: String,
    ingress: Vec<GRule>,
}

fn subset(want: &Labels, have: &Labels) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn ns_labels(ns: &str) -> Labels {
    BTreeMap::from([(NAME_LABEL.to_string(), ns.to_string())])
}

fn port_matches(ports: &[PortSpec], dst: &Pod, proto: Proto, port: u16) -> bool {
    ports.is_empty()
        || ports.iter().any(|p| match p {
            PortSpec::Num(pr, lo, hi) => *pr == proto && port >= *lo && port <= hi.unwrap_or(*lo),
            PortSpec::Named(n) => dst.named.get(n) == Some(&(proto, port)),
        })
}

fn peer_matches(peer: &Peer, policy_ns: &str, other: &Pod) -> bool {
    if let Some((cidr, except)) = &peer.ip_block {
        return cidr.contains(&other.ip) && !except.iter().any(|e| e.contains(&other.ip));
    }
    let ns_ok = match &peer.namespaces {
        Some(sel) => subset(sel, &ns_labels(&other.ns)),
        None => other.ns == policy_ns,
    };
    let pod_ok = peer
        .pods
        .as_ref()
        .is_none_or(|sel| subset(sel, &other.labels));
    ns_ok && pod_ok
}

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Ingress,
    Egress,
}

/// One flow: from `src` to port `port`/`proto` of `dst`.
#[derive(Clone, Copy)]
struct Flow<'a> {
    src: &'a Pod,
    dst: &'a Pod,
    proto: Proto,
    port: u16,
}

/// Whether the policies let `flow` through in `dir` (ingress: at the destination;
/// egress: at the source).
fn allowed(k8s: &[K8sPolicy], global: &[GlobalPolicy], dir: Dir, flow: Flow<'_>) -> bool {
    let (subject, other) = match dir {
        Dir::Ingress => (flow.dst, flow.src),
        Dir::Egress => (flow.src, flow.dst),
    };
    let (dst, proto, port) = (flow.dst, flow.proto, flow.port);
    let mut selected = false;
    let mut passed = false;
    if dir == Dir::Ingress {
        let mut gs: Vec<&GlobalPolicy> = global.iter().collect();
        gs.sort_by(|a, b| a.order.total_cmp(&b.order).then(a.name.cmp(&b.name)));
        'tier: for g in gs {
            if g.namespace != subject.ns {
                continue;
            }
            selected = true;
            for r in &g.ingress {
                if r.peer_namespace.as_ref().is_none_or(|n| *n == other.ns) {
                    match r.action {
                        GAction::Allow => return true,
                        GAction::Deny => return false,
                        GAction::Pass => {
                            passed = true;
                            break 'tier;
                        }
                    }
                }
            }
        }
    }
    let applying: Vec<&K8sPolicy> = k8s
        .iter()
        .filter(|p| p.ns == subject.ns && subset(&p.select, &subject.labels))
        .filter(|p| match dir {
            Dir::Ingress => p.ingress.is_some(),
            Dir::Egress => p.egress.is_some(),
        })
        .collect();
    if !applying.is_empty() {
        return applying.iter().any(|p| {
            let rules = match dir {
                Dir::Ingress => p.ingress.as_ref(),
                Dir::Egress => p.egress.as_ref(),
            };
            rules.into_iter().flatten().any(|r| {
                (r.peers.is_empty() || r.peers.iter().any(|peer| peer_matches(peer, &p.ns, other)))
                    && port_matches(&r.ports, dst, proto, port)
            })
        });
    }
    passed || !selected
}

fn expected(
    pods: &[Pod],
    k8s: &[K8sPolicy],
    global: &[GlobalPolicy],
) -> BTreeMap<(String, String, Proto, u16), bool> {
    let mut m = BTreeMap::new();
    for src in pods {
        for dst in pods {
            if src.id() == dst.id() {
                continue;
            }
            for (proto, port) in PORTS {
                let flow = Flow {
                    src,
                    dst,
                    proto,
                    port,
                };
                let ok = allowed(k8s, global, Dir::Egress, flow)
                    && allowed(k8s, global, Dir::Ingress, flow);
                m.insert((src.id(), dst.id(), proto, port), ok);
            }
        }
    }
    m
}

fn observed(pods: &[Pod]) -> BTreeMap<(String, String, Proto, u16), bool> {
    let mut jobs = Vec::new();
    for src in pods {
        for dst in pods {
            if src.id() != dst.id() {
                for (proto, port) in PORTS {
                    jobs.push((src, dst, proto, port));
                }
            }
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(src, dst, proto, port)| {
                s.spawn(move || {
                    let ok = probe(
                        &src.netns,
                        dst.ip,
                        *port,
                        *proto,
                        Duration::from_millis(700),
                    );
                    ((src.id(), dst.id(), *proto, *port), ok)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

// ---- the policies as datastore objects ----

fn labels_json(l: &Labels) -> Value {
    json!({ "matchLabels": l })
}

fn k8s_object(p: &K8sPolicy) -> Value {
    let rule = |r: &K8sRule, key: &str| {
        let peers: Vec<Value> = r
            .peers
            .iter()
            .map(|peer| {
                let mut v = json!({});
                if let Some(l) = &peer.pods {
                    v["podSelector"] = labels_json(l);
                }
                if let Some(l) = &peer.namespaces {
                    v["namespaceSelector"] = labels_json(l);
                }
                if let Some((cidr, except)) = &peer.ip_block {
                    v["ipBlock"] = json!({"cidr": cidr.to_string(),
                        "except": except.iter().map(ToString::to_string).collect::<Vec<_>>()});
                }
                v
            })
            .collect();
        let ports: Vec<Value> = r
            .ports
            .iter()
            .map(|p| match p {
                PortSpec::Num(proto, port, end) => {
                    let mut v = json!({"protocol": if *proto == Proto::Tcp { "TCP" } else { "UDP" }, "port": port});
                    if let Some(e) = end {
                        v["endPort"] = json!(e);
                    }
                    v
                }
                PortSpec::Named(n) => json!({"protocol": "TCP", "port": n}),
            })
            .collect();
        let mut v = json!({});
        if !peers.is_empty() {
            v[key] = json!(peers);
        }
        if !ports.is_empty() {
            v["ports"] = json!(ports);
        }
        v
    };
    let mut types = Vec::new();
    let mut spec = json!({ "podSelector": labels_json(&p.select) });
    if let Some(rules) = &p.ingress {
        types.push("Ingress");
        spec["ingress"] = json!(rules.iter().map(|r| rule(r, "from")).collect::<Vec<_>>());
    }
    if let Some(rules) = &p.egress {
        types.push("Egress");
        spec["egress"] = json!(rules.iter().map(|r| rule(r, "to")).collect::<Vec<_>>());
    }
    spec["policyTypes"] = json!(types);
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": p.name, "namespace": p.ns },
        "spec": spec
    })
}

fn global_object(g: &GlobalPolicy) -> Value {
    let rules: Vec<Value> = g
        .ingress
        .iter()
        .map(|r| {
            let action = match r.action {
                GAction::Allow => "Allow",
                GAction::Deny => "Deny",
                GAction::Pass => "Pass",
            };
            let mut v = json!({ "action": action });
            if let Some(ns) = &r.peer_namespace {
                v["source"] = json!({ "namespaceSelector": format!("{NAME_LABEL} == '{ns}'") });
            }
            v
        })
        .collect();
    json!({
        "apiVersion": "networking.twill.dev/v1", "kind": "GlobalNetworkPolicy",
        "metadata": { "name": g.name },
        "spec": {
            "order": g.order,
            "namespaceSelector": format!("{NAME_LABEL} == '{}'", g.namespace),
            "types": ["Ingress"],
            "ingress": rules
        }
    })
}

async fn install(ds: &Datastore, k8s: &[K8sPolicy], global: &[GlobalPolicy]) {
    for old in ds.list::<NetworkPolicy>(None).await.unwrap().items {
        let (ns, name) = (
            old.metadata.namespace.clone().unwrap(),
            old.metadata.name.clone().unwrap(),
        );
        if !k8s.iter().any(|p| p.ns == ns && p.name == name) {
            ds.delete::<NetworkPolicy>(Some(&ns), &name, None)
                .await
                .unwrap();
        }
    }
    for old in ds.list::<GlobalNetworkPolicy>(None).await.unwrap().items {
        let name = old.metadata.name.clone().unwrap();
        if !global.iter().any(|g| g.name == name) {
            ds.delete::<GlobalNetworkPolicy>(None, &name, None)
                .await
                .unwrap();
        }
    }
    for p in k8s {
        let obj: NetworkPolicy = serde_json::from_value(k8s_object(p)).unwrap();
        match ds.get::<NetworkPolicy>(Some(&p.ns), &p.name).await {
            Ok(cur) => {
                let mut obj = obj;
                obj.metadata.resource_version = cur.metadata.resource_version;
                ds.update(&obj).await.unwrap();
            }
            Err(_) => {
                ds.create(&obj).await.unwrap();
            }
        }
    }
    for g in global {
        let obj: GlobalNetworkPolicy = serde_json::from_value(global_object(g)).unwrap();
        match ds.get::<GlobalNetworkPolicy>(None, &g.name).await {
            Ok(cur) => {
                let mut obj = obj;
                obj.metadata.resource_version = cur.metadata.resource_version;
                ds.update(&obj).await.unwrap();
            }
            Err(_) => {
                ds.create(&obj).await.unwrap();
            }
        }
    }
}

/// Changes a pod's labels and named ports on its `WorkloadEndpoint` (etcd mode keeps the
/// workload's labels there).
async fn relabel(
    ds: &Datastore,
    pod: &mut Pod,
    labels: Labels,
    named: BTreeMap<String, (Proto, u16)>,
) {
    let weps = ds
        .list::<WorkloadEndpoint>(Some(&pod.ns))
        .await
        .unwrap()
        .items;
    let mut wep = weps
        .into_iter()
        .find(|w| w.spec.pod.as_deref() == Some(format!("{}{}", pod.ns, pod.name).as_str()))
        .expect("the pod's endpoint");
    wep.metadata.labels = Some(labels.clone());
    let mut v = serde_json::to_value(&wep).unwrap();
    v["spec"]["ports"] = json!(named
        .iter()
        .map(|(n, (proto, port))| json!({"name": n, "protocol": if *proto == Proto::Tcp { "TCP" } else { "UDP" }, "port": port}))
        .collect::<Vec<_>>());
    let wep: WorkloadEndpoint = serde_json::from_value(v).unwrap();
    ds.update(&wep).await.unwrap();
    pod.labels = labels;
    pod.named = named;
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ns_sel(ns: &str) -> Option<Labels> {
    Some(l(&[(NAME_LABEL, ns)]))
}

fn compare(step: &str, pods: &[Pod], want: &BTreeMap<(String, String, Proto, u16), bool>) {
    let start = Instant::now();
    loop {
        let got = observed(pods);
        let diff: Vec<String> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .map(|((s, d, p, port), v)| {
                format!(
                    "{s} -> {d} {p:?}/{port}: want {}",
                    if *v { "open" } else { "blocked" }
                )
            })
            .collect();
        if diff.is_empty() {
            let open = want.values().filter(|v| **v).count();
            eprintln!(
                "step {step}: {open}/{} flows open, as the model says ({:.1} s)",
                want.len(),
                start.elapsed().as_secs_f64()
            );
            return;
        }
        if start.elapsed() > Duration::from_secs(20) {
            panic!(
                "step {step}: {} flows differ from the model, e.g.\n{}",
                diff.len(),
                diff[..diff.len().min(20)].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

async fn truth_table(prefix: &str, dataplane: &str) {
    let mut spec = LabSpec::new(&unique_name(prefix), 2).unwrap();
    spec.tor = TorKind::None;
    spec.dataplane = dataplane.into();
    let g = LabGuard::up_with(spec).await;
    let ds = g.lab.datastore().await.unwrap();
    let mut pods = Vec::new();
    let mut i = 0;
    for ns in ["x", "y", "z"] {
        for name in ["a", "b", "c"] {
            let labels = l(&[("pod", name)]);
            let p = g
                .lab
                .add_pod(&PodSpec {
                    name: format!("{ns}{name}"),
                    node: i % 2 + 1,
                    namespace: ns.into(),
                    labels: labels.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            i += 1;
            let netns = netns_path(&p.netns);
            serve(&netns, &PORTS).unwrap();
            pods.push(Pod {
                ns: ns.into(),
                name: name.into(),
                ip: p.ips[0].parse().unwrap(),
                labels,
                named: BTreeMap::new(),
                netns,
            });
        }
    }
    let pod = |pods: &[Pod], id: &str| pods.iter().position(|p| p.id() == id).unwrap();
    let xc_ip = pods[pod(&pods, "x/c")].ip;

    let deny_x = K8sPolicy {
        ns: "x".into(),
        name: "deny-ingress".into(),
        select: l(&[]),
        ingress: Some(vec![]),
        egress: None,
    };
    let allow_b = K8sPolicy {
        ns: "x".into(),
        name: "allow-b-to-a".into(),
        select: l(&[("pod", "a")]),
        ingress: Some(vec![K8sRule {
            peers: vec![Peer {
                pods: Some(l(&[("pod", "b")])),
                ..Default::default()
            }],
            ports: vec![PortSpec::Num(Proto::Tcp, 80, None)],
        }]),
        egress: None,
    };
    let from_y = K8sPolicy {
        ns: "x".into(),
        name: "from-y".into(),
        select: l(&[]),
        ingress: Some(vec![K8sRule {
            peers: vec![Peer {
                namespaces: ns_sel("y"),
                ..Default::default()
            }],
            ports: vec![],
        }]),
        egress: None,
    };
    let and_peer = K8sPolicy {
        ns: "x".into(),
        name: "z-c-udp".into(),
        select: l(&[("pod", "c")]),
        ingress: Some(vec![K8sRule {
            peers: vec![Peer {
                namespaces: ns_sel("z"),
                pods: Some(l(&[("pod", "c")])),
                ip_block: None,
            }],
            ports: vec![PortSpec::Num(Proto::Udp, 80, None)],
        }]),
        egress: None,
    };
    let ip_block = K8sPolicy {
        ns: "z".into(),
        name: "ipblock".into(),
        select: l(&[("pod", "b")]),
        ingress: Some(vec![K8sRule {
            peers: vec![Peer {
                ip_block: Some(("10.244.0.0/16".parse().unwrap(), vec![IpNet::from(xc_ip)])),
                ..Default::default()
            }],
            ports: vec![PortSpec::Num(Proto::Tcp, 81, None)],
        }]),
        egress: None,
    };
    let egress_ya = K8sPolicy {
        ns: "y".into(),
        name: "a-to-x-only".into(),
        select: l(&[("pod", "a")]),
        ingress: None,
        egress: Some(vec![K8sRule {
            peers: vec![Peer {
                namespaces: ns_sel("x"),
                ..Default::default()
            }],
            ports: vec![],
        }]),
    };
    let named = K8sPolicy {
        ns: "y".into(),
        name: "named-http".into(),
        select: l(&[("pod", "b")]),
        ingress: Some(vec![K8sRule {
            peers: vec![],
            ports: vec![PortSpec::Named("http".into())],
        }]),
        egress: None,
    };
    let end_port = K8sPolicy {
        ns: "y".into(),
        name: "range".into(),
        select: l(&[("pod", "c")]),
        ingress: Some(vec![K8sRule {
            peers: vec![],
            ports: vec![PortSpec::Num(Proto::Tcp, 79, Some(80))],
        }]),
        egress: None,
    };
    let gnp = GlobalPolicy {
        name: "z-may-not-reach-x".into(),
        order: 10.0,
        namespace: "x".into(),
        ingress: vec![
            GRule {
                action: GAction::Allow,
                peer_namespace: Some("y".into()),
            },
            GRule {
                action: GAction::Deny,
                peer_namespace: Some("z".into()),
            },
            GRule {
                action: GAction::Pass,
                peer_namespace: None,
            },
        ],
    };

    let step = |name: &'static str, k: Vec<K8sPolicy>, gl: Vec<GlobalPolicy>| (name, k, gl);
    let steps = vec![
        step("1 open", vec![], vec![]),
        step("2 deny all ingress in x", vec![deny_x.clone()], vec![]),
        step(
            "3 + x/a from pod=b on TCP 80",
            vec![deny_x.clone(), allow_b.clone()],
            vec![],
        ),
        step(
            "4 + x from namespace y",
            vec![deny_x.clone(), allow_b.clone(), from_y.clone()],
            vec![],
        ),
        step(
            "5 + x/c from z AND pod=c on UDP 80",
            vec![
                deny_x.clone(),
                allow_b.clone(),
                from_y.clone(),
                and_peer.clone(),
            ],
            vec![],
        ),
        step(
            "6 z/b from ipBlock except x/c, TCP 81",
            vec![ip_block.clone()],
            vec![],
        ),
        step(
            "7 + y/a egress only to x",
            vec![ip_block.clone(), egress_ya.clone()],
            vec![],
        ),
        step(
            "9 + named port and endPort in y",
            vec![ip_block.clone(), named.clone(), end_port.clone()],
            vec![],
        ),
        step(
            "10 global Allow y->x, Deny z->x, Pass the rest, over k8s policies",
            vec![deny_x.clone(), from_y.clone(), and_peer.clone()],
            vec![gnp.clone()],
        ),
        step("11 nothing", vec![], vec![]),
    ];
    for (name, k, gl) in steps {
        if name.starts_with("9") {
            // Step 8: z/a now carries pod=b (a set-element change), and y/b names port 81 "http".
            let za = pod(&pods, "z/a");
            relabel(&ds, &mut pods[za], l(&[("pod", "b")]), BTreeMap::new()).await;
            let yb = pod(&pods, "y/b");
            relabel(
                &ds,
                &mut pods[yb],
                l(&[("pod", "b")]),
                BTreeMap::from([("http".to_string(), (Proto::Tcp, 81))]),
            )
            .await;
            install(&ds, std::slice::from_ref(&ip_block), &[]).await;
            compare(
                "8 z/a relabelled pod=b joins z/ipblock's selector",
                &pods,
                &expected(&pods, std::slice::from_ref(&ip_block), &[]),
            );
        }
        install(&ds, &k, &gl).await;
        let want = expected(&pods, &k, &gl);
        compare(name, &pods, &want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_truth_table_with_nftables() {
    truth_table("pol-nft", "nftables").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_truth_table_with_iptables() {
    truth_table("pol-ipt", "iptables").await;
}
