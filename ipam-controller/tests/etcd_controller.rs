//! The controller against a real etcd: nodes get blocks, a deleted node's allocations and
//! blocks are freed; the binary serves metrics, elects one leader and exits cleanly on
//! SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use twill_api::resources::native::Service;
use twill_api::resources::{BlockAffinity, IPAMBlock, Node};
use twill_harness::process::ChildGuard;
use twill_harness::wait::{wait_until, wait_until_async};
use twill_ipam::allocator::{Ipam, Request};
use twill_ipam::controller::{Controller, ControllerConfig};
use twill_ipam::inventory::WorkloadSource;
use twill_ipam::metrics::Metrics;
use twill_ipam::model::block_from_spec;

async fn affine_blocks(ds: &twill_api::datastore::Datastore, node: &str) -> usize {
    ds.list::<IPAMBlock>(None)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|b| b.spec.affinity.as_deref() == Some(&format!("host:{node}")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_blocks_and_a_deleted_nodes_blocks_are_freed() {
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/24", 26).await;
    common::pool(&ds, "v6", "fd00:10:244::/120", 122).await;
    common::node(&ds, "n1").await;
    common::node(&ds, "n2").await;
    let config = ControllerConfig {
        gc_grace: Duration::from_secs(900),
        resync: Duration::from_secs(60),
        source: WorkloadSource::Endpoints,
        prune_nodes: false,
    };
    let mut controller = Controller::new(ds.clone(), config, Arc::new(Metrics::default()));
    let first = controller.pass().await.unwrap();
    assert_eq!(first.blocks.claimed, 4, "each node gets one block per pool");
    assert_eq!(affine_blocks(&ds, "n1").await, 2);
    assert_eq!(affine_blocks(&ds, "n2").await, 2);
    assert_eq!(ds.list::<BlockAffinity>(None).await.unwrap().items.len(), 4);
    // Idempotent: a second pass changes nothing.
    let second = controller.pass().await.unwrap();
    assert_eq!(second.blocks.claimed + second.blocks.released, 0);

    // n2 runs a pod (from its pre-claimed block), then n2 is deleted.
    let ipam = Ipam::new(ds.clone());
    let got = ipam
        .allocate(&Request {
            handle: "net.pod".into(),
            node: "n2".into(),
            attrs: BTreeMap::new(),
            v4: true,
            v6: false,
        })
        .await
        .unwrap();
    assert!(
        !got[0].borrowed,
        "the first pod used the block the controller claimed"
    );
    ds.delete::<Node>(None, "n2", None).await.unwrap();
    let third = controller.pass().await.unwrap();
    assert_eq!(
        third.gc.released, 1,
        "a gone node's allocation is released at once"
    );
    assert_eq!(third.blocks.released, 2);
    assert_eq!(affine_blocks(&ds, "n2").await, 0);
    assert_eq!(affine_blocks(&ds, "n1").await, 2);
    let records = ds.list::<BlockAffinity>(None).await.unwrap().items;
    assert!(records.iter().all(|a| a.spec.node == "n1"), "{records:?}");
    for b in ds.list::<IPAMBlock>(None).await.unwrap().items {
        assert!(block_from_spec(&b.spec).unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_mode_services_get_load_balancer_addresses_and_free_them_when_deleted() {
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/24", 26).await;
    common::lb_pool(&ds, "lb", "203.0.113.0/28", 28).await;
    let svc: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "front", "namespace": "shop"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
    }))
    .unwrap();
    ds.create(&svc).await.unwrap();
    let config = ControllerConfig {
        gc_grace: Duration::ZERO,
        resync: Duration::from_secs(60),
        source: WorkloadSource::Endpoints,
        prune_nodes: false,
    };
    let mut controller = Controller::new(ds.clone(), config, Arc::new(Metrics::default()));
    let pass = controller.pass().await.unwrap();
    assert_eq!(pass.lb.allocated, 1, "{pass:?}");
    let stored: Service = ds.get(Some("shop"), "front").await.unwrap();
    let ingress = stored
        .status
        .unwrap()
        .load_balancer
        .unwrap()
        .ingress
        .unwrap();
    assert_eq!(ingress[0].ip.as_deref(), Some("203.0.113.0"));
    // Pod GC (grace 0, no endpoint holds it) leaves a Service's address alone.
    controller.pass().await.unwrap();
    let held = |blocks: Vec<IPAMBlock>| -> usize {
        blocks
            .iter()
            .map(|b| block_from_spec(&b.spec).unwrap().used())
            .sum()
    };
    assert_eq!(held(ds.list::<IPAMBlock>(None).await.unwrap().items), 1);
    ds.delete::<Service>(Some("shop"), "front", None)
        .await
        .unwrap();
    let pass = controller.pass().await.unwrap();
    assert_eq!(pass.lb.released, 1, "{pass:?}");
    assert_eq!(held(ds.list::<IPAMBlock>(None).await.unwrap().items), 0);
}

async fn allocatable(ds: &twill_api::datastore::Datastore, pool: &str) -> (String, String) {
    let pool = ds
        .get::<twill_api::resources::IPPool>(None, pool)
        .await
        .unwrap();
    let conditions = pool.status.map(|s| s.conditions).unwrap_or_default();
    let c = conditions
        .iter()
        .find(|c| c.type_ == "Allocatable")
        .unwrap_or_else(|| panic!("no Allocatable condition: {conditions:?}"));
    (c.status.clone(), c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_report_whether_they_are_allocatable_and_why() {
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "open", "10.244.0.0/24", 26).await;
    common::pool(&ds, "tiny", "10.245.0.0/32", 32).await;
    let picky = twill_api::resources::IPPool::new(
        "picky",
        twill_api::resources::IPPoolSpec {
            cidr: "10.246.0.0/24".into(),
            node_selector: Some("zone == 'nowhere'".into()),
            ..Default::default()
        },
    );
    ds.create(&picky).await.unwrap();
    common::node(&ds, "n1").await;
    let config = ControllerConfig {
        gc_grace: Duration::from_secs(900),
        resync: Duration::from_secs(60),
        source: WorkloadSource::Endpoints,
        prune_nodes: false,
    };
    let mut controller = Controller::new(ds.clone(), config, Arc::new(Metrics::default()));
    let first = controller.pass().await.unwrap();
    assert_eq!(first.pools_reported, 3);
    assert_eq!(
        allocatable(&ds, "open").await,
        ("True".into(), "Allocatable".into())
    );
    assert_eq!(
        allocatable(&ds, "picky").await,
        ("False".into(), "NoNodes".into())
    );
    // The one address of "tiny" is reserved.
    ds.create(&twill_api::resources::IPReservation::new(
        "tiny-gw",
        twill_api::resources::IPReservationSpec {
            reserved_cidrs: vec!["10.245.0.0".into()],
        },
    ))
    .await
    .unwrap();
    let second = controller.pass().await.unwrap();
    assert_eq!(second.pools_reported, 1, "only tiny changed");
    assert_eq!(
        allocatable(&ds, "tiny").await,
        ("False".into(), "Exhausted".into())
    );
    let again = controller.pass().await.unwrap();
    assert_eq!(again.pools_reported, 0, "no churn without a change");

    let mut open = ds
        .get::<twill_api::resources::IPPool>(None, "open")
        .await
        .unwrap();
    open.spec.disabled = Some(true);
    ds.update(&open).await.unwrap();
    let mut n1 = ds.get::<Node>(None, "n1").await.unwrap();
    n1.metadata.labels = Some([("zone".to_owned(), "nowhere".to_owned())].into());
    ds.update(&n1).await.unwrap();
    controller.pass().await.unwrap();
    assert_eq!(
        allocatable(&ds, "open").await,
        ("False".into(), "Disabled".into())
    );
    assert_eq!(
        allocatable(&ds, "picky").await,
        ("True".into(), "Allocatable".into())
    );
}

fn metrics_addr(log: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains("serving metrics"))
        .and_then(|l| l.split("addr=").nth(1))
        .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
}

fn scrape(addr: &str) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    out
}

/// The value of an unlabelled metric in a scrape.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn controller(etcd: &twill_harness::etcd::EtcdServer, id: &str) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twill-ipam-controller"));
    cmd.args(["--datastore", "etcd", "--etcd-endpoints", &etcd.endpoint()])
        .args(["--metrics-listen", "127.0.0.1:0", "--resync-interval", "1s"])
        .args(["--leader-lease-duration", "3s", "--leader-id", id])
        .env("NO_COLOR", "1")
        // `pass starting` (debug) shows every pass a replica begins.
        .env("RUST_LOG", "info,twill_ipam::controller=debug");
    ChildGuard::spawn(&format!("controller-{id}"), cmd).unwrap()
}

fn wait_log(child: &ChildGuard, what: &str, needle: &str) {
    wait_log_since(child, what, 0, needle, Duration::from_secs(60));
}

/// Waits until `needle` appears in `child`'s log after byte `from`.
fn wait_log_since(child: &ChildGuard, what: &str, from: usize, needle: &str, limit: Duration) {
    tokio::task::block_in_place(|| {
        wait_until(what, limit, Duration::from_millis(50), || {
            child.log()[from..].contains(needle)
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", child.log_tail(20)));
}

async fn wait_blocks(ds: &twill_api::datastore::Datastore, node: &str, n: usize) {
    wait_until_async(
        &format!("{node} to have {n} block(s)"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let ds = ds.clone();
            let node = node.to_owned();
            async move { (affine_blocks(&ds, &node).await == n).then_some(()) }
        },
    )
    .await
    .unwrap();
}

/// A standby replica neither leads nor runs a single pass.
fn assert_standby(b: &ChildGuard) {
    let addr = metrics_addr(&b.log()).expect("standby metrics address logged");
    let text = tokio::task::block_in_place(|| scrape(&addr));
    assert_eq!(metric(&text, "twill_ipam_leader"), Some(0.0), "{text}");
    assert_eq!(
        metric(&text, "twill_ipam_reconcile_passes_total"),
        Some(0.0),
        "the standby acted: {text}"
    );
    assert!(!b.log().contains("pass starting"), "{}", b.log_tail(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_leads_alone_serves_metrics_and_stops_on_sigterm() {
    let (etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/24", 26).await;
    common::node(&ds, "n1").await;
    let mut a = controller(&etcd, "a");
    tokio::task::block_in_place(|| {
        wait_until(
            "replica a to lead",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || a.log().contains("leading"),
        )
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(20)));
    let mut b = controller(&etcd, "b");
    wait_until_async(
        "n1 to get a block",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let ds = ds.clone();
            async move { (affine_blocks(&ds, "n1").await == 1).then_some(()) }
        },
    )
    .await
    .unwrap();

    common::node(&ds, "n3").await;
    wait_until_async(
        "n3 to get a block",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let ds = ds.clone();
            async move { (affine_blocks(&ds, "n3").await == 1).then_some(()) }
        },
    )
    .await
    .unwrap();
    let addr = metrics_addr(&a.log()).expect("metrics address logged");
    // The gauges are refreshed at the end of the pass that claimed n3's block.
    let text = tokio::task::block_in_place(|| {
        wait_until(
            "the metrics to count two nodes with one block",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                let text = scrape(&addr);
                text.contains("twill_ipam_nodes_by_block_count{blocks=\"1\"} 2")
                    .then_some(text)
            },
        )
    })
    .unwrap();
    assert!(
        text.contains("twill_ipam_pool_size{pool=\"v4\"} 256"),
        "{text}"
    );
    assert!(text.contains("twill_ipam_leader 1"), "{text}");
    assert!(
        !text.contains("n3"),
        "metrics must not carry node names: {text}"
    );
    assert!(
        metric(&text, "twill_ipam_reconcile_passes_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    wait_log(&b, "replica b to serve metrics", "serving metrics");
    assert!(
        !b.log().contains("leading"),
        "two leaders: {}",
        b.log_tail(10)
    );
    assert_standby(&b);

    // SIGTERM: a exits 0 promptly, and b takes over.
    a.signal(Signal::SIGTERM).unwrap();
    let status = tokio::task::block_in_place(|| a.wait_timeout(Duration::from_secs(20)));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        a.log_tail(20)
    );
    tokio::task::block_in_place(|| {
        wait_until(
            "replica b to lead",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || b.log().contains("leading"),
        )
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail(20)));
    ds.delete::<Node>(None, "n3", None).await.unwrap();
    wait_until_async(
        "n3's block to be freed",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let ds = ds.clone();
            async move { (affine_blocks(&ds, "n3").await == 0).then_some(()) }
        },
    )
    .await
    .unwrap();
    b.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_replaced_and_steps_down_without_acting_when_it_wakes() {
    let (etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/24", 26).await;
    common::node(&ds, "n1").await;
    let mut a = controller(&etcd, "a");
    wait_log(&a, "replica a to lead", "leading");
    wait_blocks(&ds, "n1", 1).await;
    let mut b = controller(&etcd, "b");
    wait_log(&b, "replica b to serve metrics", "campaigning");
    assert_standby(&b);

    // Freeze the leader: it cannot renew its lease, nor notice that it expires.
    a.signal(Signal::SIGSTOP).unwrap();
    let stat = format!("/proc/{}/stat", a.pid());
    tokio::task::block_in_place(|| {
        wait_until(
            "replica a to be stopped",
            Duration::from_secs(10),
            Duration::from_millis(10),
            || std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") T ")),
        )
    })
    .unwrap();
    let frozen_at = a.log().len();
    wait_log(&b, "replica b to take over", "leading");
    common::node(&ds, "n4").await;
    wait_blocks(&ds, "n4", 1).await;

    // Thawed, the old leader finds its deadline passed, steps down without a pass and
    // campaigns again: a standby, still running.
    a.signal(Signal::SIGCONT).unwrap();
    wait_log_since(
        &a,
        "replica a to campaign again",
        frozen_at,
        "campaigning",
        Duration::from_secs(30),
    );
    let log = a.log();
    let after = &log[frozen_at..];
    assert!(after.contains("lost the leader lease"), "{after}");
    assert!(
        !after.contains("pass starting"),
        "the old leader acted after waking: {after}"
    );
    assert!(a.is_running(), "the old leader exited: {after}");
    let addr = metrics_addr(&log).unwrap();
    let text = tokio::task::block_in_place(|| scrape(&addr));
    assert_eq!(metric(&text, "twill_ipam_leader"), Some(0.0), "{text}");
    assert_eq!(
        metric(&text, "twill_ipam_leader_losses_total"),
        Some(1.0),
        "{text}"
    );
    assert!(b.is_running(), "{}", b.log_tail(10));
    // b goes away: a, campaigning since, leads again and acts.
    // Measured before the stop: b resigns on SIGTERM and a may lead before stop returns.
    let relead = a.log().len();
    b.stop().unwrap();
    wait_log_since(
        &a,
        "replica a to lead again",
        relead,
        "leading",
        Duration::from_secs(60),
    );
    common::node(&ds, "n5").await;
    wait_blocks(&ds, "n5", 1).await;
    a.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datastore_freeze_makes_the_leader_step_down_and_lead_again_not_exit() {
    let (etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/24", 26).await;
    common::node(&ds, "n1").await;
    let mut a = controller(&etcd, "a");
    wait_log(&a, "replica a to lead", "leading");
    wait_blocks(&ds, "n1", 1).await;

    // etcd freezes (SIGSTOP): no renewal gets through, the 3 s lease runs out.
    let etcd_pid = nix::unistd::Pid::from_raw(etcd.pid() as i32);
    nix::sys::signal::kill(etcd_pid, Signal::SIGSTOP).unwrap();
    let frozen_at = a.log().len();
    let waited = tokio::task::block_in_place(|| {
        wait_until(
            "replica a to lose its lease",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || a.log()[frozen_at..].contains("lost the leader lease"),
        )
    });
    nix::sys::signal::kill(etcd_pid, Signal::SIGCONT).unwrap();
    waited.unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(20)));

    // Thawed: the same process campaigns, leads again and acts.
    let thawed_at = a.log().len();
    wait_log_since(
        &a,
        "replica a to lead again",
        thawed_at,
        "leading",
        Duration::from_secs(60),
    );
    assert!(a.is_running(), "{}", a.log_tail(20));
    common::node(&ds, "n2").await;
    wait_blocks(&ds, "n2", 1).await;
    let addr = metrics_addr(&a.log()).unwrap();
    let text = tokio::task::block_in_place(|| scrape(&addr));
    assert_eq!(metric(&text, "twill_ipam_leader"), Some(1.0), "{text}");
    assert_eq!(
        metric(&text, "twill_ipam_leader_losses_total"),
        Some(1.0),
        "{text}"
    );
    a.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_record_whose_kubernetes_node_is_gone_is_pruned_and_its_addresses_freed() {
    // Kubernetes mode's rule, run over etcd (which stores Kubernetes Nodes like any kind).
    use twill_api::resources::native::KubeNode;
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/24", 26).await;
    for name in ["k1", "k2"] {
        common::node(&ds, name).await;
        let mut kube = KubeNode::default();
        kube.metadata.name = Some(name.into());
        ds.create(&kube).await.unwrap();
    }
    let config = ControllerConfig {
        gc_grace: Duration::from_secs(900),
        resync: Duration::from_secs(60),
        source: WorkloadSource::Endpoints,
        prune_nodes: true,
    };
    let mut controller = Controller::new(ds.clone(), config, Arc::new(Metrics::default()));
    controller.pass().await.unwrap();
    let got = Ipam::new(ds.clone())
        .allocate(&Request {
            handle: "net.pod".into(),
            node: "k2".into(),
            attrs: BTreeMap::new(),
            v4: true,
            v6: false,
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let _: KubeNode = ds.delete(None, "k2", None).await.unwrap();
    // Seen orphaned once: kept (a misread must not free a live node's addresses).
    let first = controller.pass().await.unwrap();
    assert_eq!(first.nodes_pruned, 0);
    ds.get::<Node>(None, "k2").await.unwrap();
    // Seen twice: the record goes, and with it the node's address and block.
    let second = controller.pass().await.unwrap();
    assert_eq!(second.nodes_pruned, 1);
    assert_eq!(second.gc.released, 1);
    assert!(ds.get::<Node>(None, "k2").await.is_err());
    assert_eq!(affine_blocks(&ds, "k2").await, 0);
    assert_eq!(affine_blocks(&ds, "k1").await, 1);
    ds.get::<Node>(None, "k1").await.unwrap();
}
