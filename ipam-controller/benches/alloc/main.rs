//! IPAM benchmark (a bench binary, not run in CI): allocations per second and the latency
//! of one allocation, for 1 and for 8 concurrent nodes, against a real etcd started for the
//! run, next to that etcd's own compare-and-swap rate measured in the same run with the
//! same concurrency and an object of the same size.
//!
//! Each node is what felix is: one `Ipam` over its own datastore connection. Every
//! request is counted (see `counting.rs`), so the run also says how many datastore round
//! trips an allocation costs, by kind, and how fast the common case (one round trip: an
//! address from a block the node already owns) is.
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p twill-ipam --bench alloc`
//! (`TWILL_BENCH_COUNT` sets the allocations per node, default 1000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod counting;

use std::sync::Arc;
use std::time::{Duration, Instant};

use counting::{Counting, Counts, Snapshot};
use twill_api::datastore::Datastore;
use twill_api::datastore::etcd::EtcdBackend;
use twill_api::resources::{IPAMBlock, IPPool, IPPoolSpec, Node, NodeSpec};
use twill_harness::etcd::EtcdServer;
use twill_ipam::allocator::{Ipam, Request};
use twill_ipam::block::Block;
use twill_ipam::model::block_to_spec;

fn count() -> usize {
    std::env::var("TWILL_BENCH_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// One timed operation and the requests it made.
struct Sample {
    latency: Duration,
    trips: Snapshot,
}

struct Run {
    ops: usize,
    elapsed: Duration,
    samples: Vec<Sample>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

fn percentile(mut lat: Vec<Duration>, p: f64) -> Duration {
    if lat.is_empty() {
        return Duration::ZERO;
    }
    lat.sort();
    let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
    lat[i.min(lat.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn connect(endpoints: &[String]) -> EtcdBackend {
    EtcdBackend::connect(endpoints, Duration::from_secs(10))
        .await
        .unwrap()
}

fn request(node: &str, n: usize) -> Request {
    Request {
        handle: format!("bench.{node}-{n}"),
        node: node.to_owned(),
        attrs: [("namespace", "bench"), ("pod", "p")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        v4: true,
        v6: false,
    }
}

/// `nodes` allocators, each on its own connection, `count` allocations each, concurrently.
async fn ipam_run(endpoints: &[String], nodes: &[String], count: usize) -> Run {
    let mut allocators = Vec::new();
    for node in nodes {
        let counts = Arc::new(Counts::default());
        let backend = Counting {
            inner: Arc::new(connect(endpoints).await),
            counts: counts.clone(),
        };
        let ipam = Arc::new(Ipam::new(Datastore::new(Arc::new(backend))));
        // Warm-up, not measured: the first block is claimed, settings are read.
        ipam.allocate(&request(node, usize::MAX)).await.unwrap();
        allocators.push((node.clone(), ipam, counts));
    }
    let start = Instant::now();
    let tasks: Vec<_> = allocators
        .into_iter()
        .map(|(node, ipam, counts)| {
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(count);
                for n in 0..count {
                    let before = counts.snapshot();
                    let t = Instant::now();
                    ipam.allocate(&request(&node, n)).await.unwrap();
                    samples.push(Sample {
                        latency: t.elapsed(),
                        trips: counts.snapshot().since(&before),
                    });
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap());
    }
    Run {
        ops: samples.len(),
        elapsed: start.elapsed(),
        samples,
    }
}

/// The datastore's own CAS: `writers` writers, each on its own connection, each updating
/// its own block-sized object (a /26 with 32 addresses held) with the revision its last
/// write returned: one round trip per update, like the allocator's common case.
async fn cas_run(endpoints: &[String], writers: usize, count: usize, tag: &str) -> Run {
    let mut objects = Vec::new();
    for i in 0..writers {
        let ds = Datastore::new(Arc::new(connect(endpoints).await));
        let cidr = format!("10.245.{}.0/26", i).parse().unwrap();
        let mut block = Block::new(cidr, Some(format!("cas-{i}")));
        for n in 0..32 {
            let attrs = request("cas", n).attrs;
            block.allocate(&format!("bench.cas-{n}"), &attrs, &|_| false);
        }
        let name = format!("cas-{writers}-{tag}-{i}");
        let object = ds
            .create(&IPAMBlock::new(&name, block_to_spec(&block, false)))
            .await
            .unwrap();
        objects.push((ds, object));
    }
    let start = Instant::now();
    let tasks: Vec<_> = objects
        .into_iter()
        .map(|(ds, mut object)| {
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(count);
                for _ in 0..count {
                    let t = Instant::now();
                    object.spec.sequence_number += 1;
                    object = ds.update(&object).await.unwrap();
                    samples.push(Sample {
                        latency: t.elapsed(),
                        trips: Snapshot {
                            update: 1,
                            ..Snapshot::default()
                        },
                    });
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap());
    }
    Run {
        ops: samples.len(),
        elapsed: start.elapsed(),
        samples,
    }
}

fn report(nodes: usize, ipam: &Run, cas_runs: &[Run]) {
    let all: Vec<Duration> = ipam.samples.iter().map(|s| s.latency).collect();
    let one_trip: Vec<Duration> = ipam
        .samples
        .iter()
        .filter(|s| s.trips.total() == 1)
        .map(|s| s.latency)
        .collect();
    let mut trips = Snapshot::default();
    for s in &ipam.samples {
        trips = trips.plus(&s.trips);
    }
    let n = ipam.samples.len() as f64;
    let cas_lat: Vec<Duration> = cas_runs
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.latency))
        .collect();
    let cas_rate = cas_runs.iter().map(Run::rate).sum::<f64>() / cas_runs.len() as f64;
    let per_node = ipam.rate() / nodes as f64;
    let per_writer = cas_rate / nodes as f64;
    println!("== {nodes} node(s), {} allocations", ipam.ops);
    println!(
        "ipam: {:.0} alloc/s ({per_node:.0}/s per node), p50 {:.2} ms, p99 {:.2} ms",
        ipam.rate(),
        ms(percentile(all.clone(), 0.5)),
        ms(percentile(all, 0.99)),
    );
    println!(
        "      round trips per allocation {:.3} (update {:.3}, create {:.3}, get {:.3}, list {:.3}, list-names {:.3}, delete {:.3})",
        trips.total() as f64 / n,
        trips.update as f64 / n,
        trips.create as f64 / n,
        trips.get as f64 / n,
        trips.list as f64 / n,
        trips.list_names as f64 / n,
        trips.delete as f64 / n,
    );
    println!(
        "      one round trip: {:.1}% of allocations, p50 {:.2} ms, p99 {:.2} ms",
        100.0 * one_trip.len() as f64 / n,
        ms(percentile(one_trip.clone(), 0.5)),
        ms(percentile(one_trip, 0.99)),
    );
    let each: Vec<String> = cas_runs
        .iter()
        .map(|r| format!("{:.0}", r.rate()))
        .collect();
    println!(
        "cas:  {cas_rate:.0} updates/s ({per_writer:.0}/s per writer; runs before and after: {}), p50 {:.2} ms, p99 {:.2} ms",
        each.join(", "),
        ms(percentile(cas_lat.clone(), 0.5)),
        ms(percentile(cas_lat, 0.99)),
    );
    println!(
        "ratio: CAS per writer / IPAM per node = {:.2} (target <= 2)",
        per_writer / per_node
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --benches` lists; nothing to list here.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let count = count();
    let etcd = EtcdServer::start().unwrap();
    let endpoints = etcd.endpoints();
    let admin = Datastore::new(Arc::new(connect(&endpoints).await));
    let pool = IPPoolSpec {
        cidr: "10.244.0.0/16".into(),
        block_size: Some(26),
        ..Default::default()
    };
    admin.create(&IPPool::new("bench", pool)).await.unwrap();
    println!(
        "etcd {} ({}), {count} allocations per node, /26 blocks",
        etcd.endpoint(),
        etcd.dir().display()
    );
    for nodes in [1, 8] {
        let names: Vec<String> = (0..nodes).map(|i| format!("n{nodes}-{i}")).collect();
        for name in &names {
            admin
                .create(&Node::new(name, NodeSpec::default()))
                .await
                .unwrap();
        }
        // The CAS rate is measured right before and right after, to bracket the IPAM run
        // on a machine whose load varies.
        let before = cas_run(&endpoints, nodes, count, "before").await;
        let ipam = ipam_run(&endpoints, &names, count).await;
        let after = cas_run(&endpoints, nodes, count, "after").await;
        report(nodes, &ipam, &[before, after]);
    }
}
