//! `twillctl ipam show|check|release`: the IPAM picture for operators.
//!
//! Wiring (for `cli.rs`): add `Ipam(crate::ipam::IpamArgs)` to `Command`, and run it with
//! `args.run(ds, self.datastore.datastore, out)`; the returned `i32` is the exit status
//! (`ipam check` returns 1 when it finds problems, after printing its report).
//! `refuse_pool_delete_in_use` is for `delete` of an `IPPool`.
//!
//! Reads everything through `twill_ipam::inventory`; the only write is `release`, which
//! goes through the allocator (compare-and-swap, guarded by the address's sequence number).

use std::io::Write;
use std::net::IpAddr;

use ipnet::IpNet;
use twill_api::datastore::{Datastore, DatastoreType};
use twill_ipam::allocator::Ipam;
use twill_ipam::inventory::{Inventory, WorkloadSource};

use crate::error::{CtlError, Result};

/// `twillctl ipam ...`.
#[derive(Debug, clap::Args)]
pub struct IpamArgs {
    #[command(subcommand)]
    pub command: IpamCommand,
}

/// The IPAM subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum IpamCommand {
    /// Per pool: size, in use, free; --show-blocks per block; --ip who holds an address.
    Show {
        /// Also list every block with its node.
        #[arg(long)]
        show_blocks: bool,
        /// Show who holds this address.
        #[arg(long)]
        ip: Option<IpAddr>,
    },
    /// Find inconsistencies; exits 1 with a report when there are any.
    Check,
    /// Release one address.
    Release {
        /// The address to release.
        #[arg(long)]
        ip: IpAddr,
        /// Release even when a live workload uses it.
        #[arg(long)]
        force: bool,
    },
}

fn w(e: std::io::Error) -> CtlError {
    CtlError::Output(e.to_string())
}

fn source(mode: DatastoreType) -> WorkloadSource {
    match mode {
        DatastoreType::Etcd => WorkloadSource::Endpoints,
        DatastoreType::Kubernetes => WorkloadSource::Pods,
    }
}

fn ipam_err(e: twill_ipam::allocator::IpamError) -> CtlError {
    match e {
        twill_ipam::allocator::IpamError::Datastore(d) => CtlError::Datastore(d),
        other => CtlError::Usage(other.to_string()),
    }
}

impl IpamArgs {
    /// Runs the subcommand; returns the exit status.
    pub async fn run(
        &self,
        ds: &Datastore,
        mode: DatastoreType,
        out: &mut dyn Write,
    ) -> Result<i32> {
        let inv = Inventory::load(ds, source(mode)).await.map_err(ipam_err)?;
        match &self.command {
            IpamCommand::Show { show_blocks, ip } => {
                match ip {
                    Some(ip) => show_ip(&inv, *ip, out)?,
                    None => show(&inv, *show_blocks, out)?,
                }
                Ok(0)
            }
            IpamCommand::Check => check(&inv, out),
            IpamCommand::Release { ip, force } => release(ds, &inv, *ip, *force, out).await,
        }
    }
}

fn show(inv: &Inventory, show_blocks: bool, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "{:<20} {:<28} {:>12} {:>8} {:>12} {:>9} {:>7}",
        "POOL", "CIDR", "SIZE", "IN USE", "FREE", "BORROWED", "BLOCKS"
    )
    .map_err(w)?;
    for u in inv.pool_usage() {
        let name = if u.disabled {
            format!("{} (disabled)", u.name)
        } else {
            u.name.clone()
        };
        writeln!(
            out,
            "{:<20} {:<28} {:>12} {:>8} {:>12} {:>9} {:>7}",
            name,
            // IpNet's Display ignores width: pad the string.
            u.cidr.to_string(),
            u.size,
            u.used,
            u.size.saturating_sub(u.used),
            u.borrowed,
            u.blocks
        )
        .map_err(w)?;
    }
    if show_blocks {
        writeln!(out).map_err(w)?;
        writeln!(
            out,
            "{:<28} {:<20} {:<24} {:>6} {:>8} {:>6}",
            "BLOCK", "POOL", "NODE", "SIZE", "IN USE", "FREE"
        )
        .map_err(w)?;
        let mut blocks: Vec<_> = inv.blocks.iter().map(|(_, b)| b).collect();
        blocks.sort_by_key(|b| b.cidr);
        for b in blocks {
            writeln!(
                out,
                "{:<28} {:<20} {:<24} {:>6} {:>8} {:>6}",
                b.cidr.to_string(),
                inv.pool_of(&b.cidr)
                    .map(|p| p.name.as_str())
                    .unwrap_or("(none)"),
                b.affinity.as_deref().unwrap_or("(none)"),
                b.size(),
                b.used(),
                b.free.len()
            )
            .map_err(w)?;
        }
    }
    Ok(())
}

fn show_ip(inv: &Inventory, ip: IpAddr, out: &mut dyn Write) -> Result<()> {
    let Some((_, block)) = inv.blocks.iter().find(|(_, b)| b.cidr.contains(&ip)) else {
        let pool = inv.pools.iter().find(|(_, p)| p.cidr.contains(&ip));
        match pool {
            Some((_, p)) => writeln!(out, "{ip} is free (pool {}, no block carved yet)", p.name),
            None => writeln!(out, "{ip} is not in any pool"),
        }
        .map_err(w)?;
        return Ok(());
    };
    let node = block.affinity.as_deref().unwrap_or("(none)");
    match block.holder(ip) {
        None => writeln!(out, "{ip} is free (block {}, node {node})", block.cidr).map_err(w)?,
        Some(a) => {
            let attr = |k: &str| a.attrs.get(k).map(String::as_str).unwrap_or("-");
            writeln!(
                out,
                "{ip} is in use by handle {} (namespace {}, pod {}, node {}), sequence {}",
                a.handle,
                attr("namespace"),
                attr("pod"),
                attr("node"),
                a.seq
            )
            .map_err(w)?;
            writeln!(out, "  block {} affine to {node}", block.cidr).map_err(w)?;
            for wl in inv.workloads.using(ip) {
                writeln!(out, "  used by workload {}/{}", wl.namespace, wl.name).map_err(w)?;
            }
        }
    }
    Ok(())
}

fn check(inv: &Inventory, out: &mut dyn Write) -> Result<i32> {
    let findings = inv.check();
    let used = inv.used().count();
    if findings.is_empty() {
        writeln!(
            out,
            "IPAM is consistent: {} pools, {} blocks, {used} addresses in use",
            inv.pools.len(),
            inv.blocks.len()
        )
        .map_err(w)?;
        return Ok(0);
    }
    for f in &findings {
        writeln!(out, "{f}").map_err(w)?;
    }
    writeln!(
        out,
        "{} problem(s) found ({} blocks, {used} addresses in use)",
        findings.len(),
        inv.blocks.len()
    )
    .map_err(w)?;
    Ok(1)
}

async fn release(
    ds: &Datastore,
    inv: &Inventory,
    ip: IpAddr,
    force: bool,
    out: &mut dyn Write,
) -> Result<i32> {
    let Some((_, block)) = inv.blocks.iter().find(|(_, b)| b.cidr.contains(&ip)) else {
        return Err(CtlError::Usage(format!("{ip} is not in any IPAM block")));
    };
    let Some(alloc) = block.holder(ip) else {
        writeln!(out, "{ip} is not allocated; nothing to release").map_err(w)?;
        return Ok(1);
    };
    let users = inv.workloads.using(ip);
    if !force && (inv.workloads.holds(ip, alloc)) {
        let who: Vec<String> = users
            .iter()
            .map(|u| format!("{}/{}", u.namespace, u.name))
            .collect();
        return Err(CtlError::Usage(format!(
            "{ip} is in use by a live workload (handle {}{}{}); use --force to release it anyway",
            alloc.handle,
            if who.is_empty() { "" } else { ", " },
            who.join(", ")
        )));
    }
    // Guarded by the sequence number seen: if the address was reassigned since, nothing
    // is freed.
    let ipam = Ipam::new(ds.clone());
    match ipam.release_addr(ip, Some(alloc.seq)).await {
        Ok(Some(freed)) => {
            writeln!(out, "released {ip} (handle {})", freed.handle).map_err(w)?;
            Ok(0)
        }
        Ok(None) => {
            writeln!(out, "{ip} was released meanwhile").map_err(w)?;
            Ok(0)
        }
        Err(e) => Err(ipam_err(e)),
    }
}

/// For `delete` of an `IPPool`: refuses while the pool still has allocations, saying how
/// many.
pub async fn refuse_pool_delete_in_use(ds: &Datastore, pool: &str) -> Result<()> {
    let inv = Inventory::load(ds, WorkloadSource::Endpoints)
        .await
        .map_err(ipam_err)?;
    let Some((_, p)) = inv.pools.iter().find(|(_, p)| p.name == pool) else {
        return Ok(());
    };
    let cidr: IpNet = p.cidr;
    let used = inv.used().filter(|(ip, _, _)| cidr.contains(ip)).count();
    if used > 0 {
        return Err(CtlError::Usage(format!(
            "IPPool {pool} still has {used} allocated address(es); release them (or disable the \
             pool with `disabled: true` and let them drain) before deleting it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use twill_api::datastore::etcd::EtcdBackend;
    use twill_api::resources::{
        IPPool, IPPoolSpec, Node, NodeSpec, WorkloadEndpoint, WorkloadEndpointSpec,
    };
    use twill_harness::etcd::EtcdServer;
    use twill_ipam::allocator::Request;

    use super::*;

    async fn run(ds: &Datastore, command: IpamCommand) -> (Result<i32>, String) {
        let mut out = Vec::new();
        let result = IpamArgs { command }
            .run(ds, DatastoreType::Etcd, &mut out)
            .await;
        (result, String::from_utf8(out).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn show_check_and_release_report_and_repair_a_leak() {
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
        ds.create(&IPPool::new("default", spec)).await.unwrap();
        ds.create(&Node::new("n1", NodeSpec::default()))
            .await
            .unwrap();
        let ipam = Ipam::new(ds.clone());
        let mut addrs = Vec::new();
        for handle in ["net.live", "net.leak"] {
            let req = Request {
                handle: handle.into(),
                node: "n1".into(),
                attrs: BTreeMap::new(),
                v4: true,
                v6: false,
            };
            addrs.push(ipam.allocate(&req).await.unwrap()[0].addr);
        }
        let wep = WorkloadEndpointSpec {
            node: "n1".into(),
            pod: Some("web".into()),
            ip_networks: vec![format!("{}/32", addrs[0])],
            ipam_handle_id: Some("net.live".into()),
            ..Default::default()
        };
        let mut wep = WorkloadEndpoint::new("web", wep);
        wep.metadata.namespace = Some("default".into());
        ds.create(&wep).await.unwrap();

        let (code, text) = run(
            &ds,
            IpamCommand::Show {
                show_blocks: true,
                ip: None,
            },
        )
        .await;
        assert_eq!(code.unwrap(), 0);
        assert!(text.contains("10.244.0.0/24"), "{text}");
        assert!(text.contains("10.244.0.0/26"), "{text}");
        assert!(text.contains("n1"), "{text}");

        let (code, text) = run(
            &ds,
            IpamCommand::Show {
                show_blocks: false,
                ip: Some(addrs[0]),
            },
        )
        .await;
        assert_eq!(code.unwrap(), 0);
        assert!(
            text.contains("handle net.live") && text.contains("default/web"),
            "{text}"
        );

        let (code, text) = run(&ds, IpamCommand::Check).await;
        assert_eq!(code.unwrap(), 1, "{text}");
        assert!(
            text.contains("allocated but unused") && text.contains("net.leak"),
            "{text}"
        );
        assert!(!text.contains("net.live"), "{text}");

        let err = refuse_pool_delete_in_use(&ds, "default").await.unwrap_err();
        assert!(err.to_string().contains("2 allocated"), "{err}");

        let (code, _) = run(
            &ds,
            IpamCommand::Release {
                ip: addrs[0],
                force: false,
            },
        )
        .await;
        let err = code.unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        let (code, text) = run(
            &ds,
            IpamCommand::Release {
                ip: addrs[1],
                force: false,
            },
        )
        .await;
        assert_eq!(code.unwrap(), 0);
        assert!(
            text.contains("released") && text.contains("net.leak"),
            "{text}"
        );

        let (code, text) = run(&ds, IpamCommand::Check).await;
        assert_eq!(code.unwrap(), 0, "{text}");
        assert!(text.contains("consistent"), "{text}");

        let (code, text) = run(
            &ds,
            IpamCommand::Release {
                ip: addrs[0],
                force: true,
            },
        )
        .await;
        assert_eq!(code.unwrap(), 0, "{text}");
        refuse_pool_delete_in_use(&ds, "default").await.unwrap();
    }
}
