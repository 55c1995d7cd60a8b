//! Real TCP and UDP reachability between pods of one node, through the policy engine, for
//! both dataplanes: a "node" namespace with four pods and an outside host; a sequence of
//! policies; after each, connections that must pass and connections that must not.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod policy_support;

use std::sync::Arc;

use policy_support::inputs_from_yaml;
use policy_support::topo::Topo;
use twill_felix::policy::inputs::PolicyInputs;
use twill_felix::policy::{DataplaneKind, PolicyEngine};

const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: { name: prod, labels: { team: a } }
---
apiVersion: v1
kind: Namespace
metadata: { name: dev, labels: { team: b } }
---
apiVersion: networking.twill.dev/v1
kind: IPPool
metadata: { name: v4 }
spec: { cidr: 10.244.0.0/16 }
---
apiVersion: networking.twill.dev/v1
kind: WorkloadEndpoint
metadata: { name: web, namespace: prod, labels: { app: web } }
spec:
  node: node1
  interfaceName: tw0000000000b
  ipNetworks: [10.244.0.11/32]
  ports: [{ name: http, protocol: TCP, port: 8080 }]
---
apiVersion: networking.twill.dev/v1
kind: WorkloadEndpoint
metadata: { name: db, namespace: prod, labels: { app: db } }
spec: { node: node1, interfaceName: tw0000000000c, ipNetworks: [10.244.0.12/32] }
---
apiVersion: networking.twill.dev/v1
kind: WorkloadEndpoint
metadata: { name: client, namespace: dev, labels: { app: client } }
spec: { node: node1, interfaceName: tw0000000000d, ipNetworks: [10.244.0.13/32] }
---
apiVersion: networking.twill.dev/v1
kind: WorkloadEndpoint
metadata: { name: other, namespace: dev, labels: { app: other } }
spec: { node: node1, interfaceName: tw0000000000e, ipNetworks: [10.244.0.14/32] }
"#;

/// Adds (or replaces) objects written as YAML.
fn with(inputs: &PolicyInputs, yaml: &str) -> PolicyInputs {
    let mut next = inputs.clone();
    let extra = inputs_from_yaml(yaml, &inputs.node_name);
    next.namespaces.extend(extra.namespaces);
    next.endpoints.extend(extra.endpoints);
    next.network_policies.extend(extra.network_policies);
    next.global_policies.extend(extra.global_policies);
    next.pools.extend(extra.pools);
    next
}

/// `(from, to, port, expected)` TCP checks; all are run, then failures reported together.
fn expect_tcp(t: &Topo, step: &str, cases: &[(&str, &str, u16, bool)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(f, to, p, want)| t.tcp(f, to, *p) != *want)
        .map(|(f, to, p, want)| {
            format!(
                "{f} -> {to}:{p}/tcp should {}pass",
                if *want { "" } else { "not " }
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{step}: {wrong:?}");
}

fn expect_udp(t: &Topo, step: &str, cases: &[(&str, &str, u16, bool)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(f, to, p, want)| t.udp(f, to, *p) != *want)
        .map(|(f, to, p, want)| {
            format!(
                "{f} -> {to}:{p}/udp should {}pass",
                if *want { "" } else { "not " }
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{step}: {wrong:?}");
}

async fn scenario(kind: DataplaneKind, prefix: &str) {
    let t = Topo::new(
        prefix,
        &[("web", 11), ("db", 12), ("client", 13), ("other", 14)],
    );
    // The engine's thread is started inside the node namespace: netlink sockets and
    // restore processes stay there.
    let engine = t
        .node
        .run(move || PolicyEngine::new(kind))
        .unwrap()
        .unwrap();
    let apply = |inputs: &PolicyInputs| {
        let inputs = Arc::new(inputs.clone());
        let engine = &engine;
        async move { engine.apply(inputs).await.unwrap() }
    };

    // 1. No policy: everything open.
    let mut inputs = inputs_from_yaml(BASE, "node1");
    let stats = apply(&inputs).await;
    assert!(stats.full && stats.endpoints == 4, "{stats:?}");
    expect_tcp(
        &t,
        "open",
        &[
            ("client", "web", 80, true),
            ("outside", "web", 80, true),
            ("web", "client", 80, true),
            ("db", "web", 8080, true),
        ],
    );
    expect_udp(&t, "open", &[("client", "web", 5005, true)]);

    // Masquerade: the pool is not natOutgoing, so the outside host sees the pod's own
    // address; once it is, the node's.
    assert_eq!(t.seen_by_outside("web"), t.pod("web").ip);
    inputs = with(
        &inputs,
        r#"
apiVersion: networking.twill.dev/v1
kind: IPPool
metadata: { name: v4 }
spec: { cidr: 10.244.0.0/16, natOutgoing: true }
"#,
    );
    apply(&inputs).await;
    assert_eq!(t.seen_by_outside("web"), policy_support::topo::NODE_IP);
    // Traffic inside the pools is never masqueraded.
    expect_tcp(&t, "nat inside pools", &[("client", "web", 80, true)]);

    // 2. Ingress isolation with a podSelector peer (same namespace only).
    inputs = with(
        &inputs,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: web-in, namespace: prod }
spec:
  podSelector: { matchLabels: { app: web } }
  ingress: [{ from: [{ podSelector: { matchLabels: { app: db } } }] }]
"#,
    );
    apply(&inputs).await;
    expect_tcp(
        &t,
        "podSelector",
        &[
            ("db", "web", 80, true),
            ("client", "web", 80, false),
            ("outside", "web", 80, false),
            ("node", "web", 80, true), // host-originated (kubelet probes) passes
            ("web", "client", 80, true), // egress open, replies pass
            ("client", "db", 80, true), // db is not selected
        ],
    );

    // 3. namespaceSelector AND podSelector in one peer.
    inputs = with(
        &inputs,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: web-in, namespace: prod }
spec:
  podSelector: { matchLabels: { app: web } }
  ingress:
    - from:
        - podSelector: { matchLabels: { app: db } }
        - namespaceSelector: { matchLabels: { team: b } }
          podSelector: { matchLabels: { app: client } }
"#,
    );
    apply(&inputs).await;
    expect_tcp(
        &t,
        "namespaceSelector",
        &[
            ("client", "web", 80, true),
            ("other", "web", 80, false),
            ("db", "web", 80, true),
        ],
    );

    // 4. ipBlock with except: the outside host (192.0.2.2) is in the except, then not.
    let block = |except: &str| {
        format!(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{ name: web-outside, namespace: prod }}
spec:
  podSelector: {{ matchLabels: {{ app: web }} }}
  ingress: [{{ from: [{{ ipBlock: {{ cidr: 192.0.2.0/24, except: [{except}] }} }}] }}]
"#
        )
    };
    inputs = with(&inputs, &block("192.0.2.0/30"));
    apply(&inputs).await;
    expect_tcp(
        &t,
        "ipBlock except",
        &[("outside", "web", 80, false), ("client", "web", 80, true)],
    );
    inputs = with(&inputs, &block("192.0.2.128/25"));
    apply(&inputs).await;
    expect_tcp(
        &t,
        "ipBlock",
        &[("outside", "web", 80, true), ("other", "web", 80, false)],
    );

    // 5. Named port and endPort: client may reach web's "http" (8080) and UDP 5000-5003.
    inputs
        .network_policies
        .remove(&("prod".into(), "web-outside".into()));
    inputs = with(
        &inputs,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: web-in, namespace: prod }
spec:
  podSelector: { matchLabels: { app: web } }
  ingress:
    - from: [{ namespaceSelector: { matchLabels: { team: b } }, podSelector: { matchLabels: { app: client } } }]
      ports: [{ port: http }, { protocol: UDP, port: 5000, endPort: 5003 }]
"#,
    );
    apply(&inputs).await;
    expect_tcp(
        &t,
        "named port",
        &[
            ("client", "web", 8080, true),
            ("client", "web", 80, false),
            ("outside", "web", 8080, false),
        ],
    );
    expect_udp(
        &t,
        "endPort",
        &[
            ("client", "web", 5000, true),
            ("client", "web", 5005, false),
        ],
    );

    // 6. Egress: client may only talk to db (in another namespace).
    inputs = with(
        &inputs,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: client-out, namespace: dev }
spec:
  podSelector: { matchLabels: { app: client } }
  policyTypes: [Egress]
  egress: [{ to: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: db } } }] }]
"#,
    );
    apply(&inputs).await;
    expect_tcp(
        &t,
        "egress",
        &[
            ("client", "db", 5432, true),
            ("client", "web", 8080, false),
            ("client", "other", 80, false),
            ("other", "client", 80, true), // client's ingress is not isolated; replies pass
        ],
    );
    inputs
        .network_policies
        .remove(&("dev".into(), "client-out".into()));

    // 7. A global Deny comes before the namespaced allow.
    inputs = with(
        &inputs,
        r#"
apiVersion: networking.twill.dev/v1
kind: GlobalNetworkPolicy
metadata: { name: no-client-to-web }
spec:
  order: 10
  selector: app == 'web'
  ingress: [{ action: Deny, source: { selector: "app == 'client'" } }]
  egress: [{ action: Allow }]
"#,
    );
    apply(&inputs).await;
    expect_tcp(
        &t,
        "global deny",
        &[("client", "web", 8080, false), ("web", "client", 80, true)],
    );

    // 8. An earlier Pass skips the Deny and goes on to the Kubernetes policies.
    inputs = with(
        &inputs,
        r#"
apiVersion: networking.twill.dev/v1
kind: GlobalNetworkPolicy
metadata: { name: pass-client }
spec:
  order: 5
  selector: app == 'web'
  ingress: [{ action: Pass, source: { selector: "app == 'client'" } }]
"#,
    );
    apply(&inputs).await;
    expect_tcp(
        &t,
        "pass",
        &[
            ("client", "web", 8080, true),
            ("client", "web", 80, false),
            ("other", "web", 8080, false),
        ],
    );

    // 9. A pod joining a selector: only set elements change.
    let mut other = inputs.endpoints[&("dev".into(), "other".into())]
        .as_ref()
        .clone();
    other
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app".into(), "client".into());
    inputs.upsert_endpoint(other);
    let stats = apply(&inputs).await;
    assert!(
        !stats.full && stats.element_changes > 0 && stats.chains_changed == 0,
        "{stats:?}"
    );
    expect_tcp(
        &t,
        "label change",
        &[("other", "web", 8080, true), ("other", "web", 80, false)],
    );

    // 10. Drift: someone removes felix's rules; the check sees it and a resync repairs it.
    assert!(engine.in_sync().await.unwrap());
    match kind {
        DataplaneKind::Nftables => t
            .node
            .exec("nft", &["delete", "table", "inet", "twill"])
            .map(drop),
        DataplaneKind::Iptables => t
            .node
            .exec("iptables", &["-F", "twill-ing-tw0000000000b"])
            .map(drop),
    }
    .unwrap();
    expect_tcp(&t, "drifted", &[("outside", "web", 80, true)]);
    assert!(!engine.in_sync().await.unwrap());
    let stats = engine.resync().await.unwrap();
    assert!(stats.full);
    assert!(engine.in_sync().await.unwrap());
    expect_tcp(
        &t,
        "repaired",
        &[
            ("outside", "web", 80, false),
            ("other", "web", 8080, true),
            ("client", "web", 80, false),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_enforced_with_nftables() {
    scenario(DataplaneKind::Nftables, "tw-prn").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_enforced_with_iptables() {
    scenario(DataplaneKind::Iptables, "tw-pri").await;
}

/// `(from pod, node port, expected)` TCP checks to the node's own address.
fn expect_to_node(t: &Topo, step: &str, cases: &[(&str, u16, bool)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(f, p, want)| t.tcp_to_node(f, *p) != *want)
        .map(|(f, p, want)| {
            format!(
                "{f} -> node:{p}/tcp should {}pass",
                if *want { "" } else { "not " }
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{step}: {wrong:?}");
}

/// Pods and the host: by default no pod reaches any host port (BGP's 179 included) but
/// the failsafe ones, still subject to the pod's egress policy; `Accept` opens the host,
/// and no configuration ever opens 179 through the failsafe list.
async fn host_facing(kind: DataplaneKind, prefix: &str) {
    use twill_felix::policy::ir::{EndpointToHostAction, HostPolicy, HostPort};
    let t = Topo::new(prefix, &[("web", 11), ("client", 13)]);
    let _servers = t.serve_on_node(&[179, 2222, 9099]);
    let engine = t
        .node
        .run(move || PolicyEngine::new(kind))
        .unwrap()
        .unwrap();
    let apply = |inputs: &PolicyInputs| {
        let inputs = Arc::new(inputs.clone());
        let engine = &engine;
        async move { engine.apply(inputs).await.unwrap() }
    };
    let mut inputs = inputs_from_yaml(BASE, "node1");
    inputs
        .endpoints
        .retain(|(_, name), _| name == "web" || name == "client");

    // Default: Drop, no failsafe port. Pod-to-pod and host-to-pod still work.
    apply(&inputs).await;
    expect_to_node(
        &t,
        "default drop",
        &[
            ("client", 179, false),
            ("client", 2222, false),
            ("web", 9099, false),
        ],
    );
    expect_tcp(
        &t,
        "default drop",
        &[("client", "web", 80, true), ("node", "web", 80, true)],
    );

    // Failsafe ports: 2222 opens; 179 in the list is ignored.
    inputs.host = HostPolicy {
        endpoint_to_host: EndpointToHostAction::Drop,
        failsafe_inbound: vec![
            HostPort {
                protocol: 6,
                port: 2222,
            },
            HostPort {
                protocol: 6,
                port: 179,
            },
        ],
    };
    let stats = apply(&inputs).await;
    assert!(stats.full, "{stats:?}");
    expect_to_node(
        &t,
        "failsafe",
        &[
            ("client", 2222, true),
            ("client", 179, false),
            ("client", 9099, false),
        ],
    );

    // The pod's egress policy still applies to a failsafe port.
    inputs = with(
        &inputs,
        r#"
apiVersion: networking.twill.dev/v1
kind: GlobalNetworkPolicy
metadata: { name: client-no-egress }
spec:
  selector: app == 'client'
  egress: [{ action: Deny }]
"#,
    );
    apply(&inputs).await;
    expect_to_node(
        &t,
        "failsafe under egress deny",
        &[("client", 2222, false), ("web", 2222, true)],
    );
    inputs.global_policies.remove("client-no-egress");

    // An allow-all egress policy does not open the host under Drop.
    inputs = with(
        &inputs,
        r#"
apiVersion: networking.twill.dev/v1
kind: GlobalNetworkPolicy
metadata: { name: web-allow-all }
spec:
  selector: app == 'web'
  egress: [{ action: Allow }]
"#,
    );
    apply(&inputs).await;
    expect_to_node(
        &t,
        "allow-all egress",
        &[("web", 179, false), ("web", 9099, false)],
    );

    // Accept: the host is open (as Calico's Accept/Return).
    inputs.host.endpoint_to_host = EndpointToHostAction::Accept;
    apply(&inputs).await;
    expect_to_node(&t, "accept", &[("client", 9099, true), ("web", 179, true)]);
    inputs.host = HostPolicy::default();
    apply(&inputs).await;
    expect_to_node(
        &t,
        "back to drop",
        &[("client", 9099, false), ("web", 179, false)],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_only_failsafe_host_ports_with_nftables() {
    host_facing(DataplaneKind::Nftables, "tw-phn").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_only_failsafe_host_ports_with_iptables() {
    host_facing(DataplaneKind::Iptables, "tw-phi").await;
}

/// A `tw*` interface whose endpoint felix does not know (its WorkloadEndpoint deleted) is
/// shut both ways, although no policy selected the pod; the endpoint coming back restores
/// it, policy included.
async fn unknown_interface(kind: DataplaneKind, prefix: &str) {
    let t = Topo::new(prefix, &[("web", 11), ("client", 13)]);
    let engine = t
        .node
        .run(move || PolicyEngine::new(kind))
        .unwrap()
        .unwrap();
    let apply = |inputs: &PolicyInputs| {
        let inputs = Arc::new(inputs.clone());
        let engine = &engine;
        async move { engine.apply(inputs).await.unwrap() }
    };
    let mut inputs = inputs_from_yaml(BASE, "node1");
    inputs
        .endpoints
        .retain(|(_, name), _| name == "web" || name == "client");
    apply(&inputs).await;
    expect_tcp(
        &t,
        "known",
        &[
            ("client", "web", 80, true),
            ("web", "client", 80, true),
            ("outside", "client", 80, true),
        ],
    );

    let client = inputs
        .endpoints
        .remove(&("dev".into(), "client".into()))
        .unwrap();
    apply(&inputs).await;
    expect_tcp(
        &t,
        "endpoint deleted",
        &[
            ("client", "web", 80, false),
            ("web", "client", 80, false),
            ("outside", "client", 80, false),
            ("outside", "web", 80, true),
        ],
    );
    assert!(t.seen_by_outside("client").is_empty());

    inputs
        .endpoints
        .insert(("dev".into(), "client".into()), client);
    apply(&inputs).await;
    expect_tcp(
        &t,
        "endpoint back",
        &[("client", "web", 80, true), ("outside", "client", 80, true)],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interface_without_endpoint_is_shut_with_nftables() {
    unknown_interface(DataplaneKind::Nftables, "tw-pun").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interface_without_endpoint_is_shut_with_iptables() {
    unknown_interface(DataplaneKind::Iptables, "tw-pui").await;
}
