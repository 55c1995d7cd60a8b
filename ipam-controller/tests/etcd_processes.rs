//! Several allocator *processes* (the `twill-ipam-bench worker` binary) for three nodes on
//! a pool small enough that blocks run out and borrowing happens, against a real etcd:
//! thousands of allocations, zero duplicates, a clean check. Then the same with one worker
//! SIGKILLed mid-way: still zero duplicates, and GC reclaims what it leaked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use twill_api::resources::WorkloadEndpoint;
use twill_harness::etcd::EtcdServer;
use twill_harness::process::ChildGuard;
use twill_harness::wait::wait_until;
use twill_ipam::allocator::Ipam;
use twill_ipam::gc::Gc;
use twill_ipam::inventory::{Finding, Inventory, WorkloadSource};

/// (node, worker id, allocations, max live). n1 runs three workers, so it needs more
/// blocks than its share of the pool and must borrow; total live (120) fits the pool (128).
const WORKERS: &[(&str, &str, u32, usize)] = &[
    ("n1", "a", 400, 30),
    ("n1", "b", 400, 30),
    ("n1", "c", 400, 30),
    ("n2", "d", 400, 20),
    ("n3", "e", 400, 10),
];

fn spawn_worker(etcd: &EtcdServer, node: &str, id: &str, count: u32, live: usize) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twill-ipam-bench"));
    cmd.args(["--datastore", "etcd", "--etcd-endpoints", &etcd.endpoint()])
        .args(["worker", "--node", node, "--id", id])
        .args(["--count", &count.to_string(), "--live", &live.to_string()]);
    ChildGuard::spawn(&format!("worker-{id}"), cmd).expect("worker starts")
}

/// What a worker's output says it holds at the end: handle -> addresses. A handle whose
/// release had started (`RELEASING`) but not finished (`RELEASE`) when the worker died is
/// left out: its addresses may or may not have been freed.
fn held_by(log: &str) -> BTreeMap<String, Vec<IpAddr>> {
    let mut held: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for line in log.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["ALLOC", addr, handle, _] => held
                .entry((*handle).to_owned())
                .or_default()
                .push(addr.parse().unwrap()),
            ["RELEASING", handle] | ["RELEASE", handle] => {
                held.remove(*handle);
            }
            _ => {}
        }
    }
    held
}

fn allocs(log: &str) -> usize {
    log.lines().filter(|l| l.starts_with("ALLOC ")).count()
}

fn borrowed(log: &str) -> usize {
    log.lines()
        .filter(|l| l.starts_with("ALLOC ") && l.ends_with(" true"))
        .count()
}

async fn setup() -> (EtcdServer, twill_api::datastore::Datastore) {
    let (etcd, ds) = common::etcd().await;
    common::pool(&ds, "small", "10.244.0.0/25", 28).await;
    for n in ["n1", "n2", "n3"] {
        common::node(&ds, n).await;
    }
    (etcd, ds)
}

fn no_duplicates(inv: &Inventory) {
    let dups: Vec<Finding> = inv
        .check()
        .into_iter()
        .filter(|f| matches!(f, Finding::Duplicate { .. }))
        .collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocator_processes_on_three_nodes_never_duplicate() {
    let (etcd, ds) = setup().await;
    let mut workers: Vec<ChildGuard> = WORKERS
        .iter()
        .map(|(node, id, count, live)| spawn_worker(&etcd, node, id, *count, *live))
        .collect();
    for w in &mut workers {
        let status = tokio::task::block_in_place(|| w.wait_timeout(Duration::from_secs(600)));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} failed: {:?}\n{}",
            w.name(),
            status,
            w.log_tail(20)
        );
    }
    let logs: Vec<String> = workers.iter().map(ChildGuard::log).collect();
    let total: usize = logs.iter().map(|l| allocs(l)).sum();
    assert_eq!(total, 2000);
    let total_borrowed: usize = logs.iter().map(|l| borrowed(l)).sum();
    assert!(total_borrowed > 0, "no allocation had to borrow");

    // What the workers say they hold is exactly what the datastore holds, once each.
    let mut expected: BTreeSet<(IpAddr, String)> = BTreeSet::new();
    for log in &logs {
        for (handle, addrs) in held_by(log) {
            for a in addrs {
                assert!(expected.insert((a, handle.clone())), "{a} reported twice");
            }
        }
    }
    let addrs: BTreeSet<IpAddr> = expected.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        addrs.len(),
        expected.len(),
        "one address held by two live handles"
    );
    let inv = Inventory::load(&ds, WorkloadSource::Endpoints)
        .await
        .unwrap();
    let stored: BTreeSet<(IpAddr, String)> = inv
        .used()
        .map(|(ip, _, a)| (ip, a.handle.clone()))
        .collect();
    assert_eq!(stored, expected);
    let findings = inv.check();
    assert!(findings.is_empty(), "check found: {findings:#?}");
    assert_eq!(inv.blocks.len(), 8, "every block of the pool was claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_allocator_leaves_no_duplicates_and_gc_reclaims_its_leak() {
    let (etcd, ds) = setup().await;
    let mut workers: Vec<ChildGuard> = WORKERS
        .iter()
        .map(|(node, id, count, live)| spawn_worker(&etcd, node, id, *count, *live))
        .collect();
    // Kill worker "a" once it has done a good part of its work.
    let victim = &mut workers[0];
    tokio::task::block_in_place(|| {
        wait_until(
            "worker a to make 150 allocations",
            Duration::from_secs(300),
            Duration::from_millis(20),
            || allocs(&victim.log()) >= 150,
        )
    })
    .unwrap();
    victim.kill().unwrap();
    let victim_log = victim.log();
    for w in workers.iter_mut().skip(1) {
        let status = tokio::task::block_in_place(|| w.wait_timeout(Duration::from_secs(600)));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} failed: {:?}\n{}",
            w.name(),
            status,
            w.log_tail(20)
        );
    }

    let inv = Inventory::load(&ds, WorkloadSource::Endpoints)
        .await
        .unwrap();
    no_duplicates(&inv);

    // The victim's pods are gone without a CNI DEL (its endpoints are removed, as
    // Kubernetes would delete the pods); whatever it allocated is now leaked.
    for w in ds
        .list::<WorkloadEndpoint>(Some("stress"))
        .await
        .unwrap()
        .items
    {
        if w.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("a-"))
        {
            ds.delete::<WorkloadEndpoint>(
                Some("stress"),
                w.metadata.name.as_deref().unwrap(),
                None,
            )
            .await
            .unwrap();
        }
    }
    let leaked: BTreeSet<IpAddr> = inv
        .used()
        .filter(|(_, _, a)| a.handle.starts_with("stress.a-"))
        .map(|(ip, _, _)| ip)
        .collect();
    assert!(!leaked.is_empty());
    // Everything the victim reported holding is among what it leaked (it may also have
    // leaked an allocation it never got to report).
    for addrs in held_by(&victim_log).values() {
        for a in addrs {
            assert!(
                leaked.contains(a),
                "{a} reported by the victim but not stored"
            );
        }
    }

    let ipam = Ipam::new(ds.clone());
    let mut gc = Gc::new(Duration::from_millis(500), WorkloadSource::Endpoints);
    let first = gc.pass(&ipam).await.unwrap();
    assert_eq!(
        first.released, 0,
        "nothing is released before the grace period"
    );
    assert!(first.candidates >= leaked.len());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut released = 0;
    for _ in 0..10 {
        let pass = gc.pass(&ipam).await.unwrap();
        released += pass.released;
        if pass.candidates == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(released, leaked.len());
    let inv = Inventory::load(&ds, WorkloadSource::Endpoints)
        .await
        .unwrap();
    let findings = inv.check();
    assert!(findings.is_empty(), "check after GC found: {findings:#?}");
    assert!(
        inv.used()
            .all(|(_, _, a)| !a.handle.starts_with("stress.a-")),
        "victim's addresses still allocated"
    );
}
