//! Network policy for felix: Kubernetes `NetworkPolicy` and Twill `GlobalNetworkPolicy`,
//! enforced for this node's workload endpoints with nftables (default) or iptables.
//!
//! # API (what felix calls)
//!
//! ```text
//! inputs::PolicyInputs { node_name, endpoints, namespaces, network_policies,
//!                        global_policies, pools }            // maps of Arc'd objects
//!   ::new(node) .upsert_endpoint(wep) .upsert_namespace(ns) .upsert_network_policy(np)
//!   .upsert_global_policy(gnp) .upsert_pool(pool)             // or edit the maps directly
//! engine::PolicyEngine::new(DataplaneKind::Nftables | Iptables) -> Result<_, PolicyError>
//!     // starts a thread in the CURRENT thread's network namespace; dataplane opened there
//!   .apply(Arc<PolicyInputs>).await -> Result<ApplyStats, PolicyError>
//!     // diff with the last apply, push only the difference, one transaction
//!   .in_sync().await -> Result<bool, _>   // cheap: does the kernel still hold it?
//!   .resync().await -> Result<ApplyStats, _>   // atomic full rebuild (repairs drift)
//!   .ir().await -> Result<ir::Ir, _>
//! engine::BlockingPolicyEngine — the same, synchronous, on the calling thread.
//! ```
//!
//! Mapping from the datastore: `endpoints` = every `WorkloadEndpoint` of the cluster keyed
//! `(namespace, name)`, with the pod's labels in `metadata.labels` (in Kubernetes mode
//! felix copies the Pod's labels there; named ports in `spec.ports` from the Pod's
//! `containerPort`s with a name); local ones are those whose `spec.node` is `node_name`,
//! matched by `spec.interfaceName` (the host-side `tw…` veth). `namespaces` = `Namespace`
//! objects (a namespace without one still carries `kubernetes.io/metadata.name`).
//! `network_policies` = `networking.k8s.io/v1 NetworkPolicy`; `global_policies` =
//! `GlobalNetworkPolicy`; `pools` = `IPPool`s (`cidr`, `natOutgoing`).
//!
//! # Semantics
//!
//! Per local endpoint and direction (ingress = to the pod, egress = from it): the global
//! policies selecting it, by `order` (then name), rule by rule — Allow accepts, Deny drops,
//! Log logs and goes on, Pass skips to the Kubernetes policies; then the Kubernetes
//! policies selecting it (a union of allows); then, if any policy selected it for that
//! direction, drop (after a Pass: drop only if a Kubernetes policy selects it). Pods no
//! policy selects are open. Replies of allowed connections pass (conntrack); traffic
//! from the host itself to its pods (kubelet probes) is not filtered; traffic between
//! pods and anything that is not a pod is matched by `ipBlock`/`nets` only. Traffic from a
//! natOutgoing pool to destinations outside every pool is masqueraded.
//!
//! # Layout
//!
//! - [`inputs`], [`labels`], [`compile`], [`calc`]: pure — the IR ([`ir`]) and its deltas.
//! - [`nft`]: nftables model, renderer, netlink encoder and applier.
//! - [`ipt`]: iptables/ipset renderer and applier.
//! - [`engine`]: the two wrapped together.
//!
//! Nothing here ever touches a table, chain or set it did not create: table `inet twill`;
//! chains and ipsets named `twill-…` plus the jumps to them from FORWARD, INPUT and
//! POSTROUTING. Mark bits 0x00100000 (Pass) and 0x00200000 (iptables Allow) are used.

pub mod calc;
pub mod compile;
pub mod engine;
pub mod hash;
pub mod inputs;
pub mod ipt;
pub mod ir;
pub mod labels;
pub mod names;
pub mod nft;

pub use engine::{ApplyStats, BlockingPolicyEngine, DataplaneKind, PolicyEngine, PolicyError};
pub use inputs::PolicyInputs;
