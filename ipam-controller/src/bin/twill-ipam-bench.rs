//! `twill-ipam-bench`: a test and benchmark driver for the IPAM library against a real etcd.
//!
//! - `worker`: one allocator *process* for one node, as felix would be: allocate (then
//!   record a WorkloadEndpoint, as felix does after CNI ADD), keep at most `--live`
//!   addresses, release the oldest (delete its endpoint, then release by handle). Prints
//!   `ALLOC <addr> <handle> <borrowed>`, `RELEASING <handle>` and `RELEASE <handle>` lines,
//!   flushed, so a test can SIGKILL it at any point and still know what it did.
//! - `bench`: allocations per second and latency percentiles for N concurrent nodes, next
//!   to the datastore's own CAS update rate on an object of the same size, in the same run.
//!
//! Not a product binary: it writes test objects wherever it is pointed.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::{
    IPAMBlock, IPPool, IPPoolSpec, Node, NodeSpec, WorkloadEndpoint, WorkloadEndpointSpec,
};
use twill_ipam::allocator::{Ipam, Request};
use twill_ipam::block::Block;
use twill_ipam::connect::{DatastoreArgs, connect};
use twill_ipam::model::block_to_spec;

#[derive(Parser, Debug)]
#[command(name = "twill-ipam-bench")]
struct Args {
    #[command(flatten)]
    ds: DatastoreArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Allocate and release in a loop for one node.
    Worker {
        #[arg(long)]
        node: String,
        /// Unique id of this worker (handles are `stress.<id>-<n>`).
        #[arg(long)]
        id: String,
        /// Allocations to make.
        #[arg(long, default_value_t = 100)]
        count: u32,
        /// Addresses held at most at once.
        #[arg(long, default_value_t = 10)]
        live: usize,
    },
    /// Measure allocation throughput and latency.
    Bench {
        /// Concurrent nodes (one allocator each).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// Allocations per node.
        #[arg(long, default_value_t = 500)]
        count: usize,
        /// Create the pool and nodes first (a fresh etcd).
        #[arg(long)]
        setup: bool,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (ds, _) = connect(&args.ds, Duration::from_secs(10))
            .await
            .context("connecting to the datastore")?;
        match args.cmd {
            Cmd::Worker {
                node,
                id,
                count,
                live,
            } => worker(ds, &node, &id, count, live).await,
            Cmd::Bench {
                nodes,
                count,
                setup,
            } => bench(ds, nodes, count, setup).await,
        }
    })
}

async fn worker(ds: Datastore, node: &str, id: &str, count: u32, live: usize) -> Result<()> {
    let ipam = Ipam::new(ds.clone());
    let mut held: VecDeque<(String, String)> = VecDeque::new();
    let mut out = std::io::stdout().lock();
    for n in 0..count {
        if held.len() >= live
            && let Some((handle, wep)) = held.pop_front()
        {
            // Said before the release starts: a SIGKILL from here until `RELEASE` leaves
            // the handle's addresses either held or freed, and the test must know which
            // handle was in that window.
            writeln!(out, "RELEASING {handle}")?;
            out.flush()?;
            // felix's DEL: forget the endpoint, then release by handle.
            match ds
                .delete::<WorkloadEndpoint>(Some("stress"), &wep, None)
                .await
            {
                Ok(_) | Err(DatastoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            ipam.release_handle(&handle).await?;
            writeln!(out, "RELEASE {handle}")?;
            out.flush()?;
        }
        let handle = format!("stress.{id}-{n}");
        let req = Request {
            handle: handle.clone(),
            node: node.to_owned(),
            attrs: [("namespace", "stress"), ("pod", "p")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            v4: true,
            v6: false,
        };
        let got = ipam
            .allocate(&req)
            .await
            .with_context(|| format!("allocating {handle}"))?;
        for a in &got {
            writeln!(out, "ALLOC {} {handle} {}", a.addr, a.borrowed)?;
        }
        out.flush()?;
        let wep = format!("{id}-{n}");
        let spec = WorkloadEndpointSpec {
            node: node.to_owned(),
            pod: Some(wep.clone()),
            ip_networks: got
                .iter()
                .map(|a| format!("{}/{}", a.addr, if a.addr.is_ipv4() { 32 } else { 128 }))
                .collect(),
            ipam_handle_id: Some(handle.clone()),
            ..Default::default()
        };
        let mut object = WorkloadEndpoint::new(&wep, spec);
        object.metadata.namespace = Some("stress".into());
        ds.create(&object).await?;
        held.push_back((handle, wep));
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Run {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

fn summarize(total: usize, elapsed: Duration, mut lat: Vec<Duration>) -> Run {
    lat.sort();
    Run {
        rate: total as f64 / elapsed.as_secs_f64(),
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
    }
}

async fn bench(ds: Datastore, nodes: usize, count: usize, setup: bool) -> Result<()> {
    if setup {
        let pool = IPPool::new(
            "bench",
            IPPoolSpec {
                cidr: "10.244.0.0/16".into(),
                block_size: Some(26),
                ..Default::default()
            },
        );
        ds.create(&pool).await?;
        for i in 0..nodes {
            ds.create(&Node::new(&format!("bench{i}"), NodeSpec::default()))
                .await?;
        }
    }
    // Warm up: each node claims its first block and caches it (not measured).
    let ipams: Vec<Arc<Ipam>> = (0..nodes)
        .map(|_| Arc::new(Ipam::new(ds.clone())))
        .collect();
    for (i, ipam) in ipams.iter().enumerate() {
        ipam.allocate(&bench_req(i, usize::MAX)).await?;
    }

    // IPAM allocations.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, ipam) in ipams.iter().enumerate() {
        let ipam = ipam.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(count);
            for n in 0..count {
                let t = Instant::now();
                ipam.allocate(&bench_req(i, n)).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let alloc = summarize(nodes * count, start.elapsed(), lat);

    // The datastore's own CAS: read-modify-write of a block-sized object per writer, keeping
    // the returned revision (one round trip per update, like the allocator's common case).
    let mut objects = Vec::new();
    for i in 0..nodes {
        let cidr = format!("10.245.{i}.0/26").parse()?;
        let mut block = Block::new(cidr, Some(format!("bench{i}")));
        for n in 0..32 {
            block.allocate(&format!("bench.cas-{n}"), &Default::default(), &|_| false);
        }
        let object = IPAMBlock::new(&format!("cas-bench-{i}"), block_to_spec(&block, false));
        objects.push(match ds.create(&object).await {
            Ok(o) => o,
            Err(DatastoreError::AlreadyExists { .. }) => {
                ds.get::<IPAMBlock>(None, &format!("cas-bench-{i}")).await?
            }
            Err(e) => return Err(e.into()),
        });
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut object in objects {
        let ds = ds.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(count);
            for _ in 0..count {
                let t = Instant::now();
                object.spec.sequence_number += 1;
                object = ds.update(&object).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let cas = summarize(nodes * count, start.elapsed(), lat);

    println!(
        "nodes={nodes} count={count} ipam: {:.0} alloc/s ({:.0}/s per node), p50 {:.2} ms, p99 {:.2} ms | datastore CAS: {:.0} updates/s ({:.0}/s per writer), p50 {:.2} ms, p99 {:.2} ms | ratio CAS/IPAM {:.2}",
        alloc.rate,
        alloc.rate / nodes as f64,
        alloc.p50.as_secs_f64() * 1e3,
        alloc.p99.as_secs_f64() * 1e3,
        cas.rate,
        cas.rate / nodes as f64,
        cas.p50.as_secs_f64() * 1e3,
        cas.p99.as_secs_f64() * 1e3,
        cas.rate / alloc.rate,
    );
    Ok(())
}

fn bench_req(node: usize, n: usize) -> Request {
    Request {
        handle: format!("bench.{node}-{n}"),
        node: format!("bench{node}"),
        attrs: Default::default(),
        v4: true,
        v6: false,
    }
}
