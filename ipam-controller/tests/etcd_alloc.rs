//! The allocator against a real etcd, in one process: dual-stack, release by handle,
//! stale release by address, reservations, disabled pools, strict affinity, rollback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use twill_api::resources::{IPAMBlock, IPPool, IPReservation, IPReservationSpec};
use twill_ipam::allocator::{Ipam, IpamError, Request};
use twill_ipam::inventory::{Finding, Inventory, WorkloadSource};
use twill_ipam::model::block_from_spec;

fn req(handle: &str, node: &str, v4: bool, v6: bool) -> Request {
    Request {
        handle: handle.into(),
        node: node.into(),
        attrs: BTreeMap::new(),
        v4,
        v6,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_allocation_and_idempotent_release_by_handle() {
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/24", 26).await;
    common::pool(&ds, "v6", "fd00:10:244::/120", 122).await;
    common::node(&ds, "n1").await;
    let ipam = Ipam::new(ds.clone());

    let got = ipam
        .allocate(&req("net.a", "n1", true, true))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].addr, "10.244.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(got[1].addr, "fd00:10:244::".parse::<IpAddr>().unwrap());
    assert!(!got[0].borrowed && !got[1].borrowed);

    // The blocks are stored, affine to n1, recording the handle.
    let blocks = ds.list::<IPAMBlock>(None).await.unwrap().items;
    assert_eq!(blocks.len(), 2);
    for b in &blocks {
        assert_eq!(b.spec.affinity.as_deref(), Some("host:n1"));
        let block = block_from_spec(&b.spec).unwrap();
        assert_eq!(block.used(), 1);
        assert_eq!(block.allocations.values().next().unwrap().handle, "net.a");
    }

    let second = ipam
        .allocate(&req("net.b", "n1", true, false))
        .await
        .unwrap();
    assert_eq!(second[0].addr, "10.244.0.1".parse::<IpAddr>().unwrap());

    let mut released = ipam.release_handle("net.a").await.unwrap();
    released.sort();
    assert_eq!(released, vec![got[0].addr, got[1].addr]);
    assert!(ipam.release_handle("net.a").await.unwrap().is_empty());
    // A second allocator (another process's view) finds nothing left either.
    assert!(
        Ipam::new(ds.clone())
            .release_handle("net.a")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ipam.addrs_of("net.b").await.unwrap(), vec![second[0].addr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_release_by_address_cannot_free_a_reassigned_address() {
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "tiny", "10.244.0.0/32", 32).await;
    common::node(&ds, "n1").await;
    let ipam = Ipam::new(ds.clone());
    let first = ipam
        .allocate(&req("net.a", "n1", true, false))
        .await
        .unwrap()[0];
    ipam.release_handle("net.a").await.unwrap();
    let second = ipam
        .allocate(&req("net.b", "n1", true, false))
        .await
        .unwrap()[0];
    assert_eq!(first.addr, second.addr);
    let err = ipam
        .release_addr(first.addr, Some(first.seq))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::Stale(_)), "{err}");
    assert_eq!(ipam.addrs_of("net.b").await.unwrap(), vec![second.addr]);
    let freed = ipam
        .release_addr(second.addr, Some(second.seq))
        .await
        .unwrap();
    assert_eq!(freed.unwrap().handle, "net.b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_disabled_pools_and_exhaustion() {
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/30", 30).await;
    common::node(&ds, "n1").await;
    ds.create(&IPReservation::new(
        "gw",
        IPReservationSpec {
            reserved_cidrs: vec!["10.244.0.0/31".into()],
        },
    ))
    .await
    .unwrap();
    let ipam = Ipam::new(ds.clone());
    let a = ipam
        .allocate(&req("net.a", "n1", true, false))
        .await
        .unwrap()[0];
    let b = ipam
        .allocate(&req("net.b", "n1", true, false))
        .await
        .unwrap()[0];
    assert_eq!(a.addr.to_string(), "10.244.0.2");
    assert_eq!(b.addr.to_string(), "10.244.0.3");
    let err = ipam
        .allocate(&req("net.c", "n1", true, false))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::Exhausted(_)), "{err}");
    assert!(err.is_transient());

    // Dual-stack with no IPv6 pool: all or nothing, so the IPv4 address is given back.
    ipam.release_handle("net.b").await.unwrap();
    let err = ipam
        .allocate(&req("net.d", "n1", true, true))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::Exhausted(_)), "{err}");
    assert!(ipam.addrs_of("net.d").await.unwrap().is_empty());

    // A disabled pool hands out nothing new; existing allocations stay.
    let mut pool = ds.get::<IPPool>(None, "v4").await.unwrap();
    pool.spec.disabled = Some(true);
    ds.update(&pool).await.unwrap();
    let fresh = Ipam::new(ds.clone());
    let err = fresh
        .allocate(&req("net.e", "n1", true, false))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::Exhausted(_)), "{err}");
    assert_eq!(fresh.addrs_of("net.a").await.unwrap(), vec![a.addr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_never_get_addresses_from_a_load_balancer_pool() {
    let (_etcd, ds) = common::etcd().await;
    // The LoadBalancer pool sorts first and is the only IPv6 pool.
    common::lb_pool(&ds, "a-lb", "10.243.0.0/24", 26).await;
    common::lb_pool(&ds, "a-lb6", "fd00:1b::/120", 122).await;
    common::pool(&ds, "v4", "10.244.0.0/31", 31).await;
    common::node(&ds, "n1").await;
    let ipam = Ipam::new(ds.clone());
    let got = ipam
        .allocate(&req("net.a", "n1", true, false))
        .await
        .unwrap();
    assert!(got[0].addr.to_string().starts_with("10.244.0."), "{got:?}");
    let got = ipam
        .allocate(&req("net.b", "n1", true, false))
        .await
        .unwrap();
    assert!(got[0].addr.to_string().starts_with("10.244.0."), "{got:?}");
    // The workload pool is full: exhausted, not an address of the LoadBalancer pool.
    let err = ipam
        .allocate(&req("net.c", "n1", true, false))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::Exhausted(_)), "{err}");
    // Only a LoadBalancer pool of IPv6: no pool for pods at all.
    let err = ipam
        .allocate(&req("net.d", "n1", false, true))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no enabled"), "{err}");
    // No block of either LoadBalancer pool was carved for the node.
    for b in ds.list::<IPAMBlock>(None).await.unwrap().items {
        assert!(b.spec.cidr.starts_with("10.244.0."), "{}", b.spec.cidr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowing_follows_strict_affinity_and_is_indexed_by_handle() {
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/30", 31).await; // two blocks of two
    common::node(&ds, "n1").await;
    common::node(&ds, "n2").await;
    common::config(&ds, true, 1).await;
    let n1 = Ipam::new(ds.clone());
    let n2 = Ipam::new(ds.clone());
    n1.allocate(&req("net.a", "n1", true, false)).await.unwrap();
    n1.allocate(&req("net.b", "n1", true, false)).await.unwrap();
    n2.allocate(&req("net.c", "n2", true, false)).await.unwrap();
    // n1's block is full, it may hold one block only, and strict affinity forbids borrowing.
    let err = n1
        .allocate(&req("net.d", "n1", true, false))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::Exhausted(_)), "{err}");

    let mut cfg = ds
        .get::<twill_api::resources::IPAMConfig>(None, "default")
        .await
        .unwrap();
    cfg.spec.strict_affinity = false;
    ds.update(&cfg).await.unwrap();
    n1.invalidate_settings().await;
    let d = n1.allocate(&req("net.d", "n1", true, false)).await.unwrap()[0];
    assert!(d.borrowed);
    assert_eq!(d.addr.to_string(), "10.244.0.3");
    let inv = Inventory::load(&ds, WorkloadSource::Endpoints)
        .await
        .unwrap();
    assert_eq!(inv.handles.len(), 1, "borrowed allocation is indexed");
    // Release from a different process's view finds the borrowed address via the index.
    let released = Ipam::new(ds.clone()).release_handle("net.d").await.unwrap();
    assert_eq!(released, vec![d.addr]);
    let inv = Inventory::load(&ds, WorkloadSource::Endpoints)
        .await
        .unwrap();
    assert!(inv.handles.is_empty());
    assert!(
        !inv.check()
            .iter()
            .any(|f| matches!(f, Finding::Duplicate { .. })),
        "{:?}",
        inv.check()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_takes_the_address_free_longest_even_in_another_process() {
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/30", 30).await;
    common::node(&ds, "n1").await;
    let first = Ipam::new(ds.clone());
    for i in 0..4 {
        first
            .allocate(&req(&format!("net.{i}"), "n1", true, false))
            .await
            .unwrap();
    }
    // Released in this order by another process: .2 first, then .0.
    let other = Ipam::new(ds.clone());
    other.release_handle("net.2").await.unwrap();
    other.release_handle("net.0").await.unwrap();
    // A third view (a restarted felix) takes the address free longest, then the next.
    let third = Ipam::new(ds.clone());
    let a = third
        .allocate(&req("net.a", "n1", true, false))
        .await
        .unwrap()[0];
    let b = third
        .allocate(&req("net.b", "n1", true, false))
        .await
        .unwrap()[0];
    assert_eq!(a.addr.to_string(), "10.244.0.2");
    assert_eq!(b.addr.to_string(), "10.244.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_recreated_with_another_block_size_never_overlaps_old_blocks() {
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "old", "10.244.0.0/25", 26).await;
    common::node(&ds, "n1").await;
    common::node(&ds, "n2").await;
    let n1 = Ipam::new(ds.clone()).with_settings_ttl(std::time::Duration::ZERO);
    let held = n1
        .allocate(&req("net.old", "n1", true, false))
        .await
        .unwrap()[0];
    assert_eq!(held.block.to_string(), "10.244.0.0/26");
    // Resizing in place is refused (the datastore's rule)...
    let mut pool = ds.get::<IPPool>(None, "old").await.unwrap();
    pool.spec.block_size = Some(28);
    assert!(ds.update(&pool).await.is_err());
    // ...but deleting and re-creating bypasses it (kubectl has no twillctl guard): the
    // /26 still holds its address, and no /28 may be carved over it.
    let _: IPPool = ds.delete(None, "old", None).await.unwrap();
    common::pool(&ds, "new", "10.244.0.0/25", 28).await;
    let n2 = Ipam::new(ds.clone());
    let old_block: ipnet::IpNet = "10.244.0.0/26".parse().unwrap();
    for (i, ipam, node) in [
        (0, &n1, "n1"),
        (1, &n2, "n2"),
        (2, &n1, "n1"),
        (3, &n2, "n2"),
    ] {
        let got = ipam
            .allocate(&req(&format!("net.new{i}"), node, true, false))
            .await
            .unwrap()[0];
        assert_eq!(got.block.prefix_len(), 28, "{got:?}");
        assert!(
            !old_block.contains(&got.addr),
            "{} handed out inside the old block",
            got.addr
        );
    }
    let inv = Inventory::load(&ds, WorkloadSource::Endpoints)
        .await
        .unwrap();
    assert!(
        !inv.check()
            .iter()
            .any(|f| matches!(f, Finding::Duplicate { .. })),
        "{:?}",
        inv.check()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_claimed_elsewhere_for_the_node_is_found_before_claiming_another() {
    let (_etcd, ds) = common::etcd().await;
    common::pool(&ds, "v4", "10.244.0.0/24", 26).await;
    common::node(&ds, "n1").await;
    common::node(&ds, "n2").await;
    let felix = Ipam::new(ds.clone());
    // felix has read the blocks (n1's first allocation)...
    let a = felix
        .allocate(&req("net.a", "n1", true, false))
        .await
        .unwrap()[0];
    // ...before someone else (the controller, another process) claims n2's first block.
    let other = Ipam::new(ds.clone());
    let b = other
        .allocate(&req("net.b", "n2", true, false))
        .await
        .unwrap()[0];
    assert_ne!(a.block, b.block);
    // n2's next address comes from that block, not from a second claim.
    let c = felix
        .allocate(&req("net.c", "n2", true, false))
        .await
        .unwrap()[0];
    assert_eq!(c.block, b.block);
    assert!(!c.borrowed);
    assert_eq!(ds.list::<IPAMBlock>(None).await.unwrap().items.len(), 2);
}
