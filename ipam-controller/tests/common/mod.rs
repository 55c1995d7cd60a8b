//! Shared setup of the etcd tests: a real etcd, a datastore over it, pools and nodes.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use twill_api::datastore::Datastore;
use twill_api::datastore::etcd::EtcdBackend;
use twill_api::resources::{
    IPAMConfig, IPAMConfigSpec, IPPool, IPPoolSpec, IPPoolUse, Node, NodeSpec,
};
use twill_harness::etcd::EtcdServer;

/// A fresh etcd and a datastore over it.
pub async fn etcd() -> (EtcdServer, Datastore) {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .expect("etcd starts");
    let backend = EtcdBackend::connect(&server.endpoints(), Duration::from_secs(30))
        .await
        .expect("etcd answers");
    (server, Datastore::new(Arc::new(backend)))
}

pub async fn pool(ds: &Datastore, name: &str, cidr: &str, block: u8) {
    let pool = IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.into(),
            block_size: Some(block),
            ..Default::default()
        },
    );
    ds.create(&pool).await.unwrap();
}

/// A `LoadBalancer` pool (addresses for Services only).
pub async fn lb_pool(ds: &Datastore, name: &str, cidr: &str, block: u8) {
    let pool = IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.into(),
            block_size: Some(block),
            allowed_uses: Some(vec![IPPoolUse::LoadBalancer]),
            ..Default::default()
        },
    );
    ds.create(&pool).await.unwrap();
}

pub async fn node(ds: &Datastore, name: &str) {
    ds.create(&Node::new(name, NodeSpec::default()))
        .await
        .unwrap();
}

pub async fn config(ds: &Datastore, strict_affinity: bool, max_blocks_per_host: u32) {
    let c = IPAMConfig::new(
        "default",
        IPAMConfigSpec {
            strict_affinity,
            auto_allocate_blocks: true,
            max_blocks_per_host,
        },
    );
    ds.create(&c).await.unwrap();
}
