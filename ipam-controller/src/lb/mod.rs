//! LoadBalancer IPAM: addresses for Services of type `LoadBalancer` from `IPPool`s whose
//! `allowedUses` is `[LoadBalancer]`.
//!
//! - [`want`]: what a Service asks for (pure).
//! - [`alloc`]: claiming and freeing addresses in blocks with compare-and-swap.
//! - [`reconcile`]: one pass over every Service (run by the controller on every change of a
//!   Service and on resync).
//! - [`events`]: Warning Events for requests that cannot be met.

pub mod alloc;
pub mod events;
pub mod reconcile;
pub mod want;

pub use reconcile::{LbReport, handle_of, is_lb_handle, reconcile};
