//! `twillctl ipam show|check|release` and the refusal to delete a pool in use, through the
//! real binary against a real etcd. `ipam check` must exit non-zero with a report naming
//! each kind of inconsistency, one kind at a time, and exit 0 once it is repaired.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use twill_api::datastore::Datastore;
use twill_api::datastore::etcd::EtcdBackend;
use twill_api::resources::{
    IPAMBlock, IPAMHandle, IPAMHandleSpec, IPPool, IPPoolSpec, Node, NodeSpec, WorkloadEndpoint,
    WorkloadEndpointSpec,
};
use twill_harness::etcd::EtcdServer;
use twill_ipam::allocator::{Ipam, Request};
use twill_ipam::block::Block;
use twill_ipam::model::{block_name, block_to_spec};

fn twillctl(etcd: &EtcdServer, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twillctl"));
    cmd.args(["--datastore", "etcd", "--etcd-endpoints", &etcd.endpoint()])
        .args(args)
        .env_remove("TWILL_DATASTORE")
        .env_remove("TWILL_ETCD_ENDPOINTS");
    tokio::task::block_in_place(|| cmd.output().unwrap())
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ipam check` passes.
fn clean(etcd: &EtcdServer) {
    let out = twillctl(etcd, &["ipam", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("IPAM is consistent"),
        "{}",
        text(&out)
    );
}

/// `ipam check` fails, and its report has a line containing every one of `needles`.
fn finds(etcd: &EtcdServer, needles: &[&str]) {
    let out = twillctl(etcd, &["ipam", "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = stdout(&out);
    assert!(
        report
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n))),
        "no line with {needles:?}:\n{report}"
    );
    assert!(report.contains("problem(s) found"), "{report}");
}

fn request(handle: &str) -> Request {
    Request {
        handle: handle.into(),
        node: "n1".into(),
        attrs: BTreeMap::from([("namespace".into(), "default".into())]),
        v4: true,
        v6: false,
    }
}

async fn endpoint(ds: &Datastore, name: &str, ip: IpAddr, handle: Option<&str>) {
    let mut wep = WorkloadEndpoint::new(
        name,
        WorkloadEndpointSpec {
            node: "n1".into(),
            pod: Some(name.into()),
            ip_networks: vec![format!("{ip}/32")],
            ipam_handle_id: handle.map(str::to_owned),
            ..Default::default()
        },
    );
    wep.metadata.namespace = Some("default".into());
    ds.create(&wep).await.unwrap();
}

async fn delete_endpoint(ds: &Datastore, name: &str) {
    let _: WorkloadEndpoint = ds.delete(Some("default"), name, None).await.unwrap();
}

/// Stores a block as given (bypassing the allocator, to make an inconsistent state).
async fn put_block(ds: &Datastore, block: &Block) {
    ds.create(&IPAMBlock::new(
        &block_name(&block.cidr),
        block_to_spec(block, false),
    ))
    .await
    .unwrap();
}

async fn delete_block(ds: &Datastore, cidr: &str) {
    let _: IPAMBlock = ds
        .delete(None, &block_name(&cidr.parse().unwrap()), None)
        .await
        .unwrap();
}

fn block_with(cidr: &str, node: &str, handle: &str) -> Block {
    let mut b = Block::new(cidr.parse().unwrap(), Some(node.into()));
    let attrs = BTreeMap::from([("node".to_owned(), node.to_owned())]);
    b.allocate(handle, &attrs, &|_| false).unwrap();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_kind_of_inconsistency_and_release_and_delete_are_guarded() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let backend = EtcdBackend::connect(&etcd.endpoints(), Duration::from_secs(30))
        .await
        .unwrap();
    let ds = Datastore::new(Arc::new(backend));
    let spec = IPPoolSpec {
        cidr: "10.244.0.0/24".into(),
        block_size: Some(26),
        ..Default::default()
    };
    ds.create(&IPPool::new("p", spec)).await.unwrap();
    ds.create(&Node::new("n1", NodeSpec::default()))
        .await
        .unwrap();
    let ipam = Ipam::new(ds.clone());
    let live = ipam.allocate(&request("net.live")).await.unwrap()[0].addr;
    endpoint(&ds, "web", live, Some("net.live")).await;
    clean(&etcd);

    // show: per pool, per block, per address.
    let out = twillctl(&etcd, &["ipam", "show", "--show-blocks"]);
    let shown = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("p ") && l.contains("10.244.0.0/24") && l.contains("256")),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("10.244.0.0/26") && l.contains("n1")),
        "{shown}"
    );
    let out = twillctl(&etcd, &["ipam", "show", "--ip", &live.to_string()]);
    assert!(
        stdout(&out).contains("in use by handle net.live") && stdout(&out).contains("default/web"),
        "{}",
        text(&out)
    );

    // Allocated but unused (a leak); the live address cannot be released without --force.
    let leak = ipam.allocate(&request("net.leak")).await.unwrap()[0].addr;
    finds(
        &etcd,
        &["allocated but unused", &leak.to_string(), "net.leak"],
    );
    let out = twillctl(&etcd, &["ipam", "release", "--ip", &live.to_string()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        text(&out)
    );
    assert_eq!(ipam.addrs_of("net.live").await.unwrap(), vec![live]);
    let out = twillctl(&etcd, &["ipam", "release", "--ip", &leak.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(ipam.addrs_of("net.leak").await.unwrap().is_empty());
    clean(&etcd);

    // Used but not allocated.
    let ghost: IpAddr = "10.244.0.50".parse().unwrap();
    endpoint(&ds, "ghost", ghost, None).await;
    finds(
        &etcd,
        &["used but not allocated", "10.244.0.50", "default/ghost"],
    );
    delete_endpoint(&ds, "ghost").await;
    clean(&etcd);

    // A handle (index entry) without addresses.
    let handle = IPAMHandleSpec {
        handle_id: "net.gone".into(),
        block: BTreeMap::from([("10.244.0.0/26".into(), 1)]),
        deleted: false,
    };
    ds.create(&IPAMHandle::new("net.gone", handle))
        .await
        .unwrap();
    finds(&etcd, &["handle without addresses", "net.gone"]);
    let _: IPAMHandle = ds.delete(None, "net.gone", None).await.unwrap();
    clean(&etcd);

    // A block affine to a node that does not exist.
    put_block(
        &ds,
        &Block::new("10.244.0.128/26".parse().unwrap(), Some("gone".into())),
    )
    .await;
    finds(&etcd, &["10.244.0.128/26", "missing node gone"]);
    delete_block(&ds, "10.244.0.128/26").await;
    clean(&etcd);

    // Addresses outside every pool (the workload exists, so only that is wrong).
    put_block(&ds, &block_with("10.99.0.0/28", "n1", "net.out")).await;
    endpoint(&ds, "out", "10.99.0.0".parse().unwrap(), Some("net.out")).await;
    finds(&etcd, &["10.99.0.0/28", "outside every pool"]);
    delete_endpoint(&ds, "out").await;
    delete_block(&ds, "10.99.0.0/28").await;
    clean(&etcd);

    // A duplicate: an overlapping block hands out the live address a second time.
    put_block(&ds, &block_with("10.244.0.0/28", "n1", "net.dup")).await;
    finds(
        &etcd,
        &["duplicate", &live.to_string(), "net.live", "net.dup"],
    );
    delete_block(&ds, "10.244.0.0/28").await;
    clean(&etcd);

    // An address marked used without a handle.
    let mut spec = block_to_spec(&block_with("10.244.0.192/26", "n1", "x"), false);
    spec.attributes[0].handle_id = None;
    ds.create(&IPAMBlock::new("10-244-0-192-26", spec))
        .await
        .unwrap();
    finds(&etcd, &["used without handle", "10.244.0.192"]);
    delete_block(&ds, "10.244.0.192/26").await;
    clean(&etcd);

    // A block that does not parse (free and used disagree).
    let mut spec = block_to_spec(&block_with("10.244.0.64/26", "n1", "net.c"), false);
    spec.unallocated.push(0);
    ds.create(&IPAMBlock::new("10-244-0-64-26", spec))
        .await
        .unwrap();
    finds(&etcd, &["corrupt block", "10-244-0-64-26"]);
    delete_block(&ds, "10.244.0.64/26").await;
    clean(&etcd);

    // A pool with allocations cannot be deleted; the message says how many.
    let out = twillctl(&etcd, &["delete", "ippool", "p"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still has 1 allocated address"),
        "{}",
        text(&out)
    );
    ds.get::<IPPool>(None, "p").await.unwrap();
    let out = twillctl(
        &etcd,
        &["ipam", "release", "--ip", &live.to_string(), "--force"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = twillctl(&etcd, &["delete", "ippool", "p"]);
    assert!(out.status.success(), "{}", text(&out));
}
