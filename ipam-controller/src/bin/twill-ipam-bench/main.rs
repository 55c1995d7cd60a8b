//! `twill-ipam-bench`: a stress driver for the IPAM library against a real etcd (the
//! throughput benchmark itself is `benches/alloc`).
//!
//! - `worker`: one allocator *process* for one node, as felix would be: allocate (then
//!   record a WorkloadEndpoint, as felix does after CNI ADD), keep at most `--live`
//!   addresses, release the oldest (delete its endpoint, then release by handle). Prints
//!   `ALLOC <addr> <handle> <borrowed>`, `RELEASING <handle>` and `RELEASE <handle>` lines,
//!   flushed, so a test can SIGKILL it at any point and still know what it did.
//!
//! Not a product binary: it writes test objects wherever it is pointed.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::{WorkloadEndpoint, WorkloadEndpointSpec};
use twill_ipam::allocator::{Ipam, Request};
use twill_ipam::connect::{DatastoreArgs, connect};

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
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
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
