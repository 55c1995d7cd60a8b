//! Kernel route sync against the real kernel, each test in its own network namespace with a
//! veth pair as the uplink (192.0.2.1/24, fd00:1::1/64): next hops 192.0.2.2/.3 and
//! fd00:1::2/::3 are on-link, 203.0.113.0/24 is unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use ipnet::IpNet;
use twill_bgpd::kernel::{
    ChangeKind, KernelConfig, KernelError, KernelRoute, KernelSync, NextHop, RouteChange,
};
use twill_harness::netns::{Netns, NsRuntime};

struct Node {
    ns: Netns,
    rt: NsRuntime,
}

impl Node {
    fn new(prefix: &str) -> Self {
        let ns = Netns::new(prefix).unwrap();
        ns.veth(&["192.0.2.1/24", "fd00:1::1/64"], &ns, &[])
            .unwrap();
        let rt = NsRuntime::start(&ns).unwrap();
        Self { ns, rt }
    }

    async fn start(&self, cfg: KernelConfig) -> (KernelSync, Vec<KernelRoute>) {
        self.rt.run(KernelSync::start(cfg)).await.unwrap().unwrap()
    }

    /// `ip [-6] route show ARGS` inside the namespace, one route per line.
    fn routes(&self, v6: bool, args: &[&str]) -> String {
        let fam = if v6 { "-6" } else { "-4" };
        self.ns
            .ip(&[&["-o", fam, "route", "show"][..], args].concat())
            .unwrap()
    }
}

fn route(prefix: &str, nhs: &[&str]) -> KernelRoute {
    KernelRoute::new(
        prefix.parse().unwrap(),
        nhs.iter().map(|n| n.parse::<IpAddr>().unwrap()).collect(),
    )
}

fn replace(prefix: &str, nhs: &[&str]) -> RouteChange {
    RouteChange::Replace(route(prefix, nhs))
}

fn delete(prefix: &str) -> RouteChange {
    RouteChange::Delete(prefix.parse().unwrap())
}

fn sorted(mut v: Vec<KernelRoute>) -> Vec<KernelRoute> {
    v.sort_by_key(|r| r.prefix);
    v
}

#[tokio::test]
async fn install_replace_and_delete_an_ipv4_route() {
    let node = Node::new("tw-k-ird");
    let (sync, existing) = node.start(KernelConfig::default()).await;
    assert!(existing.is_empty());

    sync.submit(vec![replace("10.244.1.0/26", &["192.0.2.2"])]);
    sync.flush().await.unwrap();
    let shown = node.routes(false, &["10.244.1.0/26"]);
    assert!(shown.contains("via 192.0.2.2"), "{shown}");
    assert!(
        shown.contains("proto 82") && shown.contains("metric 20"),
        "{shown}"
    );

    sync.submit(vec![replace("10.244.1.0/26", &["192.0.2.3"])]);
    sync.flush().await.unwrap();
    let shown = node.routes(false, &["10.244.1.0/26"]);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert!(shown.contains("via 192.0.2.3"), "{shown}");

    sync.submit(vec![delete("10.244.1.0/26")]);
    sync.flush().await.unwrap();
    assert_eq!(node.routes(false, &["10.244.1.0/26"]), "");

    // Deleting a route that is already gone is success.
    sync.submit(vec![delete("10.244.1.0/26")]);
    sync.flush().await.unwrap();
    let stats = sync.stats();
    assert_eq!((stats.replaced, stats.deleted, stats.failed), (2, 2, 0));
}

#[tokio::test]
async fn ipv6_routes_are_installed_and_deleted() {
    let node = Node::new("tw-k-v6");
    let (sync, _) = node.start(KernelConfig::default()).await;
    sync.submit(vec![replace("fd00:10:244:1::/64", &["fd00:1::2"])]);
    sync.flush().await.unwrap();
    let shown = node.routes(true, &["fd00:10:244:1::/64"]);
    assert!(shown.contains("via fd00:1::2"), "{shown}");
    assert!(
        shown.contains("proto 82") && shown.contains("metric 20"),
        "{shown}"
    );
    assert_eq!(
        sync.routes().await.unwrap(),
        vec![route("fd00:10:244:1::/64", &["fd00:1::2"])]
    );

    sync.submit(vec![delete("fd00:10:244:1::/64")]);
    sync.flush().await.unwrap();
    assert_eq!(node.routes(true, &["fd00:10:244:1::/64"]), "");
}

#[tokio::test]
async fn ecmp_is_one_multipath_route_in_both_families() {
    let node = Node::new("tw-k-ecmp");
    let (sync, _) = node.start(KernelConfig::default()).await;
    sync.submit(vec![
        replace("10.244.2.0/26", &["192.0.2.2", "192.0.2.3"]),
        replace("fd00:10:244:2::/64", &["fd00:1::2", "fd00:1::3"]),
    ]);
    sync.flush().await.unwrap();

    let v4 = node.routes(false, &["10.244.2.0/26"]);
    assert_eq!(v4.lines().count(), 1, "one route, not two: {v4}");
    assert!(
        v4.contains("nexthop via 192.0.2.2") && v4.contains("nexthop via 192.0.2.3"),
        "{v4}"
    );
    let v6 = node.routes(true, &["fd00:10:244:2::/64"]);
    assert!(
        v6.contains("nexthop via fd00:1::2") && v6.contains("nexthop via fd00:1::3"),
        "{v6}"
    );

    // Shrinking the set replaces the multipath route by a single-path one.
    sync.submit(vec![
        replace("10.244.2.0/26", &["192.0.2.3"]),
        replace("fd00:10:244:2::/64", &["fd00:1::3"]),
    ]);
    sync.flush().await.unwrap();
    assert_eq!(
        sorted(sync.routes().await.unwrap()),
        vec![
            route("10.244.2.0/26", &["192.0.2.3"]),
            route("fd00:10:244:2::/64", &["fd00:1::3"]),
        ]
    );
    let v6 = node.routes(true, &["fd00:10:244:2::/64"]);
    assert!(!v6.contains("fd00:1::2"), "{v6}");
}

#[tokio::test]
async fn queued_changes_coalesce_to_the_last_per_prefix() {
    let node = Node::new("tw-k-coal");
    let (sync, _) = node.start(KernelConfig::default()).await;
    sync.submit(vec![
        replace("10.244.3.0/26", &["192.0.2.2"]),
        replace("10.244.4.0/26", &["192.0.2.2"]),
    ]);
    sync.submit(vec![
        replace("10.244.3.0/26", &["192.0.2.3"]),
        delete("10.244.4.0/26"),
    ]);
    sync.flush().await.unwrap();
    assert_eq!(
        sync.routes().await.unwrap(),
        vec![route("10.244.3.0/26", &["192.0.2.3"])]
    );
}

#[tokio::test]
async fn a_restart_reconciles_without_flushing() {
    let node = Node::new("tw-k-rst");
    let (first, _) = node.start(KernelConfig::default()).await;
    first.submit(vec![
        replace("10.244.10.0/26", &["192.0.2.2"]),
        replace("10.244.11.0/26", &["192.0.2.2"]),
        replace("10.244.12.0/26", &["192.0.2.2"]),
        replace("fd00:10:244:10::/64", &["fd00:1::2"]),
    ]);
    first.flush().await.unwrap();
    drop(first);

    // The "restarted" speaker finds the previous run's routes, and they are still there.
    let (second, existing) = node.start(KernelConfig::default()).await;
    assert_eq!(
        sorted(existing),
        vec![
            route("10.244.10.0/26", &["192.0.2.2"]),
            route("10.244.11.0/26", &["192.0.2.2"]),
            route("10.244.12.0/26", &["192.0.2.2"]),
            route("fd00:10:244:10::/64", &["fd00:1::2"]),
        ]
    );
    assert_eq!(node.routes(false, &["proto", "82"]).lines().count(), 3);

    let report = second
        .reconcile(vec![
            route("10.244.10.0/26", &["192.0.2.2"]),      // present: kept
            route("10.244.11.0/26", &["192.0.2.3"]),      // changed: replaced
            route("10.244.13.0/26", &["192.0.2.2"]),      // new
            route("fd00:10:244:10::/64", &["fd00:1::2"]), // present: kept
        ])
        .await
        .unwrap();
    assert_eq!(report.found, 4);
    assert_eq!(report.kept, 2);
    assert_eq!(report.replaced, 2);
    assert_eq!(report.deleted, 1);
    assert!(report.failures.is_empty());
    assert_eq!(
        sorted(second.routes().await.unwrap()),
        vec![
            route("10.244.10.0/26", &["192.0.2.2"]),
            route("10.244.11.0/26", &["192.0.2.3"]),
            route("10.244.13.0/26", &["192.0.2.2"]),
            route("fd00:10:244:10::/64", &["fd00:1::2"]),
        ]
    );
    assert_eq!(node.routes(false, &["10.244.12.0/26"]), "");
}

#[tokio::test]
async fn routes_of_other_protocols_metrics_and_types_are_left_alone() {
    let node = Node::new("tw-k-oth");
    let ip = |args: &[&str]| node.ns.ip(args).unwrap();
    // Same prefixes as ours, from someone else: static routes, felix-style routes of our
    // protocol at another metric (IPv6: the default 1024), and an IPv4 blackhole of our
    // protocol and metric (IPv6 deletes ignore the type; see the module doc).
    ip(&[
        "route",
        "add",
        "10.244.5.0/26",
        "via",
        "192.0.2.2",
        "proto",
        "static",
    ]);
    ip(&[
        "-6",
        "route",
        "add",
        "fd00:10:244:5::/64",
        "via",
        "fd00:1::2",
        "proto",
        "static",
    ]);
    ip(&[
        "route",
        "add",
        "10.244.6.0/26",
        "via",
        "192.0.2.2",
        "proto",
        "82",
        "metric",
        "0",
    ]);
    ip(&[
        "route",
        "add",
        "blackhole",
        "10.244.7.0/26",
        "proto",
        "82",
        "metric",
        "20",
    ]);
    ip(&[
        "-6",
        "route",
        "add",
        "fd00:10:244:6::/64",
        "via",
        "fd00:1::2",
        "proto",
        "82",
    ]);
    let before_v4 = node.routes(false, &[]);
    let before_v6 = node.routes(true, &[]);

    let (sync, existing) = node.start(KernelConfig::default()).await;
    assert!(existing.is_empty(), "{existing:?}");

    sync.submit(vec![
        replace("10.244.5.0/26", &["192.0.2.3"]),
        replace("fd00:10:244:5::/64", &["fd00:1::3"]),
        replace("10.244.6.0/26", &["192.0.2.3"]),
    ]);
    sync.flush().await.unwrap();
    // Ours sit beside theirs, at our metric.
    let v4 = node.routes(false, &["10.244.5.0/26"]);
    assert!(
        v4.contains("via 192.0.2.2 dev") && v4.contains("proto static"),
        "{v4}"
    );
    assert!(
        v4.contains("via 192.0.2.3") && v4.contains("metric 20"),
        "{v4}"
    );

    sync.submit(vec![
        delete("10.244.5.0/26"),
        delete("fd00:10:244:5::/64"),
        delete("10.244.6.0/26"),
        delete("10.244.7.0/26"),
        delete("fd00:10:244:6::/64"),
    ]);
    sync.flush().await.unwrap();
    assert_eq!(node.routes(false, &[]), before_v4);
    assert_eq!(node.routes(true, &[]), before_v6);

    // Reconciling to "nothing" removes nothing of theirs either.
    sync.submit(vec![replace("10.244.9.0/26", &["192.0.2.2"])]);
    let report = sync.reconcile(vec![]).await.unwrap();
    assert_eq!((report.found, report.deleted), (1, 1));
    assert_eq!(node.routes(false, &[]), before_v4);
    assert_eq!(node.routes(true, &[]), before_v6);
}

#[tokio::test]
async fn an_unreachable_next_hop_is_reported_for_that_route_only() {
    let node = Node::new("tw-k-bad");
    let (sync, _) = node.start(KernelConfig::default()).await;
    sync.submit(vec![
        replace("10.244.20.0/26", &["192.0.2.2"]),
        replace("10.244.21.0/26", &["203.0.113.9"]),
        replace("10.244.22.0/26", &["192.0.2.2"]),
        replace("fd00:10:244:21::/64", &["fd00:99::1"]),
    ]);
    let err = sync.flush().await.unwrap_err();
    let KernelError::Rejected { failures, more } = err else {
        panic!("expected Rejected, got {err}");
    };
    assert_eq!(more, 0);
    let mut bad: Vec<IpNet> = failures.iter().map(|f| f.prefix).collect();
    bad.sort();
    assert_eq!(
        bad,
        vec![
            "10.244.21.0/26".parse::<IpNet>().unwrap(),
            "fd00:10:244:21::/64".parse().unwrap()
        ]
    );
    let v4 = failures
        .iter()
        .find(|f| f.prefix.to_string() == "10.244.21.0/26")
        .unwrap();
    assert_eq!(v4.kind, ChangeKind::Replace);
    assert_eq!(v4.errno, 101, "ENETUNREACH: {}", v4.message);
    assert!(
        v4.message.to_lowercase().contains("gateway"),
        "{}",
        v4.message
    );
    // The rest of the batch went in.
    assert_eq!(
        sorted(sync.routes().await.unwrap()),
        vec![
            route("10.244.20.0/26", &["192.0.2.2"]),
            route("10.244.22.0/26", &["192.0.2.2"]),
        ]
    );
    // Failures are reported once.
    sync.flush().await.unwrap();
    assert_eq!(sync.stats().failed, 2);
}

#[tokio::test]
async fn thousands_of_refused_routes_are_all_reported() {
    let node = Node::new("tw-k-many");
    let (sync, _) = node.start(KernelConfig::default()).await;
    let bad: Vec<RouteChange> = (0..3000u32)
        .map(|i| {
            let prefix = format!("10.244.{}.{}/32", i / 256, i % 256);
            replace(&prefix, &["203.0.113.1"])
        })
        .collect();
    sync.submit(bad);
    sync.submit(vec![replace("10.244.200.0/26", &["192.0.2.2"])]);
    let KernelError::Rejected { failures, more } = sync.flush().await.unwrap_err() else {
        panic!("expected Rejected");
    };
    assert_eq!(failures.len() + more, 3000);
    assert!(failures.iter().all(|f| f.errno == 101));
    assert_eq!(
        sync.routes().await.unwrap(),
        vec![route("10.244.200.0/26", &["192.0.2.2"])]
    );
}

#[tokio::test]
async fn tens_of_thousands_of_routes_go_in_and_out() {
    let node = Node::new("tw-k-bulk");
    let (sync, _) = node.start(KernelConfig::default()).await;
    let prefixes: Vec<String> = (0..20_000u32)
        .map(|i| format!("10.244.{}.{}/32", i / 256, i % 256))
        .collect();
    sync.submit(
        prefixes
            .iter()
            .map(|p| replace(p, &["192.0.2.2"]))
            .collect(),
    );
    sync.flush().await.unwrap();
    assert_eq!(sync.routes().await.unwrap().len(), 20_000);
    assert_eq!(node.routes(false, &["proto", "82"]).lines().count(), 20_000);
    assert!(sync.stats().batches >= 1);

    sync.submit(prefixes.iter().map(|p| delete(p)).collect());
    sync.flush().await.unwrap();
    assert_eq!(node.routes(false, &["proto", "82"]), "");
}

#[tokio::test]
async fn a_table_other_than_main_is_used_and_created_on_demand() {
    let node = Node::new("tw-k-tbl");
    let cfg = KernelConfig {
        table: 1000,
        ..KernelConfig::default()
    };
    let (sync, existing) = node.start(cfg).await;
    assert!(existing.is_empty());
    sync.submit(vec![replace("10.244.30.0/26", &["192.0.2.2"])]);
    sync.flush().await.unwrap();
    assert!(
        node.routes(false, &["table", "1000"])
            .contains("10.244.30.0/26")
    );
    assert_eq!(node.routes(false, &["proto", "82"]), "", "not in main");
    assert_eq!(sync.routes().await.unwrap().len(), 1);
}

#[tokio::test]
async fn metric_zero_is_refused_at_start() {
    let cfg = KernelConfig {
        metric: 0,
        ..KernelConfig::default()
    };
    assert!(matches!(
        KernelSync::start(cfg).await,
        Err(KernelError::Config(_))
    ));
}

#[tokio::test]
async fn ipv6_link_local_next_hops_go_out_of_the_peers_interface() {
    let node = Node::new("tw-k-ll");
    let (sync, _) = node.start(KernelConfig::default()).await;
    // The interface of the route to the peer, as `ip route get` reports it.
    let oif = sync
        .oif_for("fd00:1::2".parse().unwrap())
        .await
        .unwrap()
        .expect("the peer is on-link");
    let dev = node.ns.ip(&["-6", "route", "get", "fd00:1::2"]).unwrap();
    let links = node.ns.ip(&["-o", "link", "show"]).unwrap();
    let name = links
        .lines()
        .find(|l| l.starts_with(&format!("{oif}: ")))
        .and_then(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .unwrap();
    assert!(dev.contains(&format!("dev {name}")), "{dev} vs {name}");
    assert_eq!(
        sync.oif_for("203.0.113.9".parse().unwrap()).await.unwrap(),
        None,
        "no route, no interface"
    );

    let ll = NextHop::new("fe80::2".parse().unwrap(), Some(oif));
    let global = NextHop::from("fd00:1::3".parse::<IpAddr>().unwrap());
    let one = KernelRoute::new("fd00:10:244:7::/64".parse().unwrap(), vec![ll]);
    let two = KernelRoute::new("fd00:10:244:8::/64".parse().unwrap(), vec![ll, global]);
    sync.submit(vec![
        RouteChange::Replace(one.clone()),
        RouteChange::Replace(two.clone()),
    ]);
    sync.flush().await.unwrap();
    let shown = node.routes(true, &["fd00:10:244:7::/64"]);
    assert!(
        shown.contains(&format!("via fe80::2 dev {name}")),
        "{shown}"
    );
    let shown = node.routes(true, &["fd00:10:244:8::/64"]);
    assert!(
        shown.contains(&format!("nexthop via fe80::2 dev {name}"))
            && shown.contains("nexthop via fd00:1::3"),
        "{shown}"
    );
    // Read back exactly as installed, so a restart's reconcile keeps them.
    assert_eq!(sorted(sync.routes().await.unwrap()), vec![one, two]);

    // Without an interface the kernel could not use it: refused before sending.
    sync.submit(vec![replace("fd00:10:244:9::/64", &["fe80::2"])]);
    match sync.flush().await {
        Err(KernelError::Rejected { failures, .. }) => {
            assert_eq!(failures.len(), 1);
            assert!(
                failures[0].message.contains("needs an interface"),
                "{failures:?}"
            );
        }
        other => panic!("expected a rejected route, got {other:?}"),
    }
}
