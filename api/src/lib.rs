//! Twill's resource model (group `networking.twill.dev`, version `v1`) and the `Datastore`
//! that stores it in etcd v3 or Kubernetes.
//!
//! - [`resources`]: the kinds (one file per area), the registry of kinds
//!   ([`resources::kinds`]: names, scope, CRDs, the per-kind check) and [`Resource`], the
//!   trait every storable type implements.
//! - [`validate`]: one-object rules; errors name the field (`spec.blockSize`) and the rule.
//! - [`datastore`]: [`Datastore`] (typed get/list/create/update-CAS/delete/watch, the only
//!   write path, validating everything), over a [`datastore::Backend`] (etcd or Kubernetes).
//! - [`selector`]: Calico-style label selectors (parse and match).

pub mod datastore;
pub mod resources;
pub mod selector;
pub mod validate;

pub use datastore::{Datastore, DatastoreError};
pub use resources::{KindInfo, Resource};
pub use validate::{Validate, ValidationError};
