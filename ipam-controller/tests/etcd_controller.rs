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

fn controller(etcd: &twill_harness::etcd::EtcdServer, id: &str) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twill-ipam-controller"));
    cmd.args(["--datastore", "etcd", "--etcd-endpoints", &etcd.endpoint()])
        .args(["--metrics-listen", "127.0.0.1:0", "--resync-interval", "1s"])
        .args(["--leader-lease", "3s", "--leader-id", id])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info");
    ChildGuard::spawn(&format!("controller-{id}"), cmd).unwrap()
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
    let text = tokio::task::block_in_place(|| scrape(&addr));
    assert!(
        text.contains("twill_ipam_pool_size{pool=\"v4\"} 256"),
        "{text}"
    );
    assert!(text.contains("twill_ipam_leader 1"), "{text}");
    assert!(
        text.contains("twill_ipam_nodes_by_block_count{blocks=\"1\"} 2"),
        "{text}"
    );
    assert!(
        !text.contains("n3"),
        "metrics must not carry node names: {text}"
    );
    assert!(
        !b.log().contains("leading"),
        "two leaders: {}",
        b.log_tail(10)
    );

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
