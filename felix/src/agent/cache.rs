//! felix's view of the datastore: one watch per kind it needs, each feeding changes to the
//! reconciler (the only owner of the [`Snapshot`]) as small closures over a channel.
//!
//! A watch starts with a full list (`Relisted`), resumes by itself, and re-lists when the
//! datastore says it fell too far behind; the snapshot is replaced, never merged, on a
//! re-list. A kind counts as synced after its first list.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use twill_api::datastore::WatchEvent;
use twill_api::resources::native::{EndpointSlice, Namespace, NetworkPolicy, Service};
use twill_api::resources::{
    BFDProfile, BGPConfiguration, BGPFilter, BGPPeer, FelixConfiguration, GlobalNetworkPolicy,
    IPAMBlock, IPPool, Node, WorkloadEndpoint,
};
use twill_api::{Datastore, Resource};

use crate::policy::PolicyInputs;

use twill_bgpd::task::TaskGuard;

/// `namespace/name` (or `name` for cluster-scoped kinds).
pub type Key = String;

/// Every object felix watches, by kind. What policy depends on (endpoints, namespaces,
/// policies, pools) lives in [`PolicyInputs`], shared by `Arc` with the policy engine.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub nodes: BTreeMap<Key, Node>,
    pub bgp_configs: BTreeMap<Key, BGPConfiguration>,
    pub bgp_peers: BTreeMap<Key, BGPPeer>,
    pub bgp_filters: BTreeMap<Key, BGPFilter>,
    pub bfd_profiles: BTreeMap<Key, BFDProfile>,
    pub blocks: BTreeMap<Key, IPAMBlock>,
    pub felix_configs: BTreeMap<Key, FelixConfiguration>,
    /// Services (their addresses are advertised per `BGPConfiguration`).
    pub services: BTreeMap<Key, Service>,
    /// EndpointSlices (which nodes have ready endpoints of a Service).
    pub endpoint_slices: BTreeMap<Key, EndpointSlice>,
    pub policy: PolicyInputs,
    /// Kinds listed at least once.
    pub synced: Vec<&'static str>,
}

/// How many kinds felix needs (the snapshot is complete when all are synced).
pub const WATCHED_KINDS: usize = 13;
/// Kinds felix watches but does not wait for: API servers before 1.21 do not serve
/// `discovery.k8s.io/v1` EndpointSlices (Services' local endpoints then come from the
/// workload endpoints their selectors match).
pub const OPTIONAL_KINDS: [&str; 1] = ["EndpointSlice"];

impl Snapshot {
    pub fn is_complete(&self) -> bool {
        self.synced
            .iter()
            .filter(|k| !OPTIONAL_KINDS.contains(k))
            .count()
            == WATCHED_KINDS
    }
}

/// A change to apply to the snapshot, and the kind it concerns.
pub struct Change {
    pub kind: &'static str,
    /// The node the changed object belongs to, for kinds that name one (a
    /// `WorkloadEndpoint`'s `spec.node`); `None` for other kinds and for re-lists.
    pub node: Option<String>,
    pub apply: Box<dyn FnOnce(&mut Snapshot) + Send>,
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Change({})", self.kind)
    }
}

/// Where in the snapshot a kind lives, and how it is keyed there.
pub trait Cached: Resource {
    /// The node this object belongs to, when its kind names one.
    fn node(&self) -> Option<&str> {
        None
    }
    fn upsert(s: &mut Snapshot, o: Self);
    fn remove(s: &mut Snapshot, o: &Self);
    fn replace_all(s: &mut Snapshot, items: Vec<Self>);
}

/// Kinds kept as plain values under `namespace/name`.
macro_rules! cached_plain {
    ($($ty:ty => $field:ident),* $(,)?) => {
        $(impl Cached for $ty {
            fn upsert(s: &mut Snapshot, o: Self) {
                s.$field.insert(key_of(&o), o);
            }
            fn remove(s: &mut Snapshot, o: &Self) {
                s.$field.remove(&key_of(o));
            }
            fn replace_all(s: &mut Snapshot, items: Vec<Self>) {
                s.$field = items.into_iter().map(|o| (key_of(&o), o)).collect();
            }
        })*
    };
}

cached_plain! {
    Node => nodes,
    BGPConfiguration => bgp_configs,
    BGPPeer => bgp_peers,
    BGPFilter => bgp_filters,
    BFDProfile => bfd_profiles,
    IPAMBlock => blocks,
    FelixConfiguration => felix_configs,
    Service => services,
    EndpointSlice => endpoint_slices,
}

fn name_key<T: kube::Resource>(o: &T) -> String {
    o.meta().name.clone().unwrap_or_default()
}

fn ns_key<T: kube::Resource>(o: &T) -> (String, String) {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

/// Kinds kept in the policy inputs, behind `Arc`s.
macro_rules! cached_policy {
    ($($ty:ty => $field:ident by $key:ident $(, node $node:expr)?);* $(;)?) => {
        $(impl Cached for $ty {
            $(fn node(&self) -> Option<&str> {
                let node: fn(&Self) -> &str = $node;
                Some(node(self))
            })?
            fn upsert(s: &mut Snapshot, o: Self) {
                s.policy.$field.insert($key(&o), Arc::new(o));
            }
            fn remove(s: &mut Snapshot, o: &Self) {
                s.policy.$field.remove(&$key(o));
            }
            fn replace_all(s: &mut Snapshot, items: Vec<Self>) {
                s.policy.$field = items.into_iter().map(|o| ($key(&o), Arc::new(o))).collect();
            }
        })*
    };
}

cached_policy! {
    IPPool => pools by name_key;
    WorkloadEndpoint => endpoints by ns_key, node |w| w.spec.node.as_str();
    Namespace => namespaces by name_key;
    NetworkPolicy => network_policies by ns_key;
    GlobalNetworkPolicy => global_policies by name_key;
}

/// The snapshot key of an object.
pub fn key_of<T: kube::Resource>(o: &T) -> Key {
    let meta = o.meta();
    let name = meta.name.clone().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name,
    }
}

fn change_of<T: Cached>(event: WatchEvent<T>) -> Change {
    let kind = T::kind_info().kind;
    let node = match &event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
            o.node().map(str::to_string)
        }
        WatchEvent::Relisted { .. } => None,
    };
    let apply: Box<dyn FnOnce(&mut Snapshot) + Send> = match event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) => Box::new(move |s| T::upsert(s, o)),
        WatchEvent::Deleted(o) => Box::new(move |s| T::remove(s, &o)),
        WatchEvent::Relisted { items, .. } => Box::new(move |s| {
            T::replace_all(s, items);
            if !s.synced.contains(&kind) {
                s.synced.push(kind);
            }
        }),
    };
    Change { kind, node, apply }
}

/// Watches one kind until the receiver goes away.
fn watch<T: Cached>(ds: &Datastore, tx: mpsc::Sender<Change>) -> TaskGuard {
    let mut stream = ds.watch::<T>(None, None);
    TaskGuard::spawn(async move {
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    if tx.send(change_of(event)).await.is_err() {
                        return;
                    }
                }
                // The stream backs off and resumes by itself.
                Err(e) => tracing::warn!(kind = T::kind_info().kind, error = %e, "watch error"),
            }
        }
    })
}

/// Starts the watches of every kind felix needs.
pub fn watch_all(ds: &Datastore, tx: &mpsc::Sender<Change>) -> Vec<TaskGuard> {
    vec![
        watch::<Node>(ds, tx.clone()),
        watch::<BGPConfiguration>(ds, tx.clone()),
        watch::<BGPPeer>(ds, tx.clone()),
        watch::<BGPFilter>(ds, tx.clone()),
        watch::<BFDProfile>(ds, tx.clone()),
        watch::<IPPool>(ds, tx.clone()),
        watch::<IPAMBlock>(ds, tx.clone()),
        watch::<WorkloadEndpoint>(ds, tx.clone()),
        watch::<Namespace>(ds, tx.clone()),
        watch::<NetworkPolicy>(ds, tx.clone()),
        watch::<GlobalNetworkPolicy>(ds, tx.clone()),
        watch::<FelixConfiguration>(ds, tx.clone()),
        watch::<Service>(ds, tx.clone()),
        watch::<EndpointSlice>(ds, tx.clone()),
    ]
}
