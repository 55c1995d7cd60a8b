//! Twill's IPAM: pools, per-node blocks, addresses, handles, GC rules.
//!
//! The pure core (`block`, `plan`, `net`, `selector`) decides; the datastore layer writes
//! with compare-and-swap.

pub mod allocator;
pub mod block;
pub mod connect;
pub mod controller;
pub mod finalizer;
pub mod gc;
pub mod inventory;
pub mod lb;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod net;
pub mod nodes;
pub mod plan;
pub mod reconcile;
pub mod retry;
pub mod status;
