//! Policy engine latency against the real kernel, in a test network namespace: 1,000
//! NetworkPolicies (plus a few GlobalNetworkPolicies) over 5,000 endpoints (100 of them
//! local), for nftables (netlink) and iptables (ipset/iptables-restore):
//!
//! - full initial build (compute + push, one transaction);
//! - one pod's labels change so it joins a selector: `apply` of the new snapshot until the
//!   kernel acknowledged the change (the update is synchronous with the ack);
//! - one policy changed (a port edited);
//! - next to them, in the same run and on the same ruleset, the `nft` CLI adding and
//!   deleting one element of the same set (process start to exit).
//!
//! Not run in CI. Run as root:
//!   cargo bench -p twill-felix --bench policy
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use twill_api::resources::native::Namespace;
use twill_api::resources::{
    GlobalNetworkPolicy, GlobalNetworkPolicySpec, IPPool, IPPoolSpec, WorkloadEndpoint,
    WorkloadEndpointSpec,
};
use twill_felix::policy::ir::{NsMatch, SetDef};
use twill_felix::policy::{BlockingPolicyEngine, DataplaneKind, PolicyInputs};
use twill_harness::netns::Netns;

const NAMESPACES: usize = 50;
const POLICIES: usize = 1_000;
const ENDPOINTS: usize = 5_000;
const LOCAL: usize = 100;
const ROLES: usize = 37;
const APPS: usize = 100;
const ROUNDS: usize = 200;
const CLI_ROUNDS: usize = 50;

fn labels(pairs: &[(&str, String)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn selector(pairs: &[(&str, String)]) -> LabelSelector {
    LabelSelector {
        match_labels: labels(pairs),
        match_expressions: None,
    }
}

fn endpoint(i: usize, role: usize) -> WorkloadEndpoint {
    let local = i < LOCAL;
    let ip = format!("10.{}.{}.{}/32", 100 + i / 65536, (i / 256) % 256, i % 256);
    let mut wep = WorkloadEndpoint::new(
        &format!("pod{i}"),
        WorkloadEndpointSpec {
            node: if local {
                "node1".into()
            } else {
                format!("node{}", 2 + i % 50)
            },
            interface_name: Some(format!("tw{i:011x}")),
            ip_networks: vec![ip],
            ..Default::default()
        },
    );
    wep.metadata.namespace = Some(format!("ns{}", i % NAMESPACES));
    wep.metadata.labels = labels(&[
        ("app", format!("app{}", i % APPS)),
        ("role", format!("role{role}")),
    ]);
    wep
}

fn policy(i: usize, port: i32) -> NetworkPolicy {
    let ns = format!("ns{}", i % NAMESPACES);
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(format!("np{i}")),
            namespace: Some(ns),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&[("app", format!("app{}", i % APPS))])),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    NetworkPolicyPeer {
                        pod_selector: Some(selector(&[("role", format!("role{}", i % ROLES))])),
                        ..Default::default()
                    },
                    NetworkPolicyPeer {
                        namespace_selector: Some(selector(&[("team", format!("team{}", i % 10))])),
                        pod_selector: Some(selector(&[(
                            "role",
                            format!("role{}", (i + 1) % ROLES),
                        )])),
                        ..Default::default()
                    },
                ]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(port)),
                    protocol: Some("TCP".into()),
                    end_port: None,
                }]),
            }]),
            ..Default::default()
        }),
    }
}

fn inputs() -> PolicyInputs {
    let mut inputs = PolicyInputs::new("node1");
    for n in 0..NAMESPACES {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(format!("ns{n}"));
        ns.metadata.labels = labels(&[("team", format!("team{}", n % 10))]);
        inputs.upsert_namespace(ns);
    }
    for i in 0..ENDPOINTS {
        inputs.upsert_endpoint(endpoint(i, i % ROLES));
    }
    for i in 0..POLICIES {
        inputs.upsert_network_policy(policy(i, 80 + (i % 100) as i32));
    }
    for i in 0..5 {
        let mut gnp = GlobalNetworkPolicy::new(
            &format!("gnp{i}"),
            GlobalNetworkPolicySpec {
                order: Some(i as f64),
                selector: Some(format!("app == 'app{i}'")),
                ingress: vec![twill_api::resources::policy::Rule {
                    action: twill_api::resources::policy::Action::Deny,
                    source: Some(twill_api::resources::policy::EntityRule {
                        selector: Some(format!("role == 'role{i}'")),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        gnp.metadata.name = Some(format!("gnp{i}"));
        inputs.upsert_global_policy(gnp);
    }
    inputs.upsert_pool(IPPool::new(
        "pool",
        IPPoolSpec {
            cidr: "10.100.0.0/14".into(),
            nat_outgoing: Some(true),
            ..Default::default()
        },
    ));
    inputs
}

struct Summary {
    median: Duration,
    p90: Duration,
    max: Duration,
}

fn summarize(mut v: Vec<Duration>) -> Summary {
    v.sort();
    Summary {
        median: v[v.len() / 2],
        p90: v[v.len() * 9 / 10],
        max: v[v.len() - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

struct Results {
    full: Duration,
    full_bytes: usize,
    join: Summary,
    policy_change: Summary,
    cli_add: Option<Summary>,
}

/// Runs on a thread inside the bench namespace.
fn measure(kind: DataplaneKind, base: PolicyInputs) -> Results {
    let mut engine = BlockingPolicyEngine::new(kind).unwrap();
    let mut inputs = base;
    let start = Instant::now();
    let stats = engine.apply(&inputs).unwrap();
    let full = start.elapsed();
    assert!(stats.full, "{stats:?}");
    println!(
        "{kind:?} full build: compute {} ms, push {} ms, {} messages",
        ms(stats.compute),
        ms(stats.push),
        stats.messages
    );
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);

    // A remote pod toggles between role7 and role8: it joins and leaves selectors.
    let key = ("ns3".to_owned(), "pod3003".to_owned());
    let mut join = Vec::new();
    for round in 0..ROUNDS {
        let role = if round % 2 == 0 { 7 } else { 8 };
        inputs.upsert_endpoint({
            let mut w = endpoint(3003, role);
            w.metadata.namespace = Some(key.0.clone());
            w
        });
        let start = Instant::now();
        let stats = engine.apply(&inputs).unwrap();
        join.push(start.elapsed());
        assert!(
            !stats.full && stats.element_changes > 0 && stats.chains_changed == 0,
            "{stats:?}"
        );
    }

    // One policy's port edited.
    let mut change = Vec::new();
    for round in 0..20 {
        inputs.upsert_network_policy(policy(17, 1000 + round));
        let start = Instant::now();
        let stats = engine.apply(&inputs).unwrap();
        change.push(start.elapsed());
        assert!(!stats.full && stats.chains_changed >= 1, "{stats:?}");
    }

    let cli_add = (kind == DataplaneKind::Nftables).then(|| {
        // The same one-element change with the nft CLI, on the same set and ruleset.
        let set = SetDef::Members {
            family: twill_felix::policy::ir::Family::V4,
            namespaces: NsMatch::Name("ns3".into()),
            pods: "role == 'role7'".into(),
        }
        .name();
        assert!(
            engine.ir().sets.contains_key(&set),
            "set {set} not in the IR"
        );
        let mut times = Vec::new();
        for round in 0..CLI_ROUNDS {
            let elem = format!("{{ 10.200.0.{} }}", round % 250 + 1);
            let start = Instant::now();
            let out = Command::new("nft")
                .args(["add", "element", "inet", "twill", &set, &elem])
                .output()
                .unwrap();
            times.push(start.elapsed());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = Command::new("nft")
                .args(["delete", "element", "inet", "twill", &set, &elem])
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        summarize(times)
    });
    assert!(engine.in_sync().unwrap());
    Results {
        full,
        full_bytes: stats.bytes,
        join: summarize(join),
        policy_change: summarize(change),
        cli_add,
    }
}

fn main() {
    let base = inputs();
    let (ir, _) = twill_felix::policy::calc::compute(&base);
    let rules: usize = ir
        .policies
        .values()
        .map(|p| p.ingress.as_ref().map_or(0, Vec::len) + p.egress.as_ref().map_or(0, Vec::len))
        .sum();
    let elements: usize = ir.sets.values().map(|s| s.elements.len()).sum();
    println!(
        "{} policies ({} rules), {} endpoints ({} local), {} sets holding {} elements",
        ir.policies.len(),
        rules,
        ENDPOINTS,
        ir.endpoints.len(),
        ir.sets.len(),
        elements
    );
    let mut table = Vec::new();
    for kind in [DataplaneKind::Nftables, DataplaneKind::Iptables] {
        let ns = Netns::new("tw-pbench").unwrap();
        let b = base.clone();
        let r = ns.run(move || measure(kind, b)).unwrap();
        table.push((kind, r));
    }
    println!(
        "\n| dataplane | full build | pod joins a selector: median / p90 / max | one policy changed: median / p90 / max | `nft add element` CLI, same set: median / p90 / max |"
    );
    println!("|---|---|---|---|---|");
    for (kind, r) in &table {
        let cli = r
            .cli_add
            .as_ref()
            .map(|c| format!("{} / {} / {} ms", ms(c.median), ms(c.p90), ms(c.max)))
            .unwrap_or_else(|| "—".into());
        println!(
            "| {kind:?} | {} ms ({} KiB) | {} / {} / {} ms | {} / {} / {} ms | {cli} |",
            ms(r.full),
            r.full_bytes / 1024,
            ms(r.join.median),
            ms(r.join.p90),
            ms(r.join.max),
            ms(r.policy_change.median),
            ms(r.policy_change.p90),
            ms(r.policy_change.max),
        );
    }
    if let Some((_, r)) = table.first()
        && let Some(cli) = &r.cli_add
    {
        println!(
            "\nnftables engine vs nft CLI for one element (medians): {:.1}x faster",
            cli.median.as_secs_f64() / r.join.median.as_secs_f64()
        );
    }
}
