//! The resource commands: `get`, `create`, `apply`, `replace`, `delete`, `patch`, `label`,
//! plus `crds` and `version`, and the reference pages generated from the CRDs. Each is a
//! clap `Args` struct with an async `run` that takes a connected [`Datastore`] and writes
//! to `out`, so tests drive them without a process.

pub mod crds;
pub mod delete;
pub mod get;
pub mod patch;
pub mod reference;
pub mod write;

use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::KindInfo;
use twill_api::resources::kinds::find_kind;

use crate::error::{CtlError, Result};

/// Namespace used for namespaced kinds when neither the manifest nor `-n` gives one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Resolves a kind name as typed on the command line (`ippool`, `ippools`, `pool`, ...).
pub fn kind_arg(name: &str) -> Result<&'static KindInfo> {
    find_kind(name).ok_or_else(|| {
        let known: Vec<&str> = twill_api::resources::kinds::ALL_KINDS
            .iter()
            .map(|k| k.plural)
            .collect();
        CtlError::Usage(format!(
            "unknown resource kind {name:?} (known: {})",
            known.join(", ")
        ))
    })
}

/// How many times a read-modify-write is retried after a `Conflict`.
pub(crate) const CAS_RETRIES: usize = 10;

/// Runs `attempt` until it does not lose a compare-and-swap (bounded).
pub(crate) async fn with_cas_retries<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DatastoreError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(DatastoreError::Conflict { .. }) if tries < CAS_RETRIES => tries += 1,
            other => return other.map_err(CtlError::from),
        }
    }
}

/// The namespace to act in for `kind`: `-n`, else `default`; `None` for cluster kinds.
pub(crate) fn namespace_for<'a>(kind: &KindInfo, namespace: Option<&'a str>) -> Option<&'a str> {
    if kind.namespaced {
        Some(namespace.unwrap_or(DEFAULT_NAMESPACE))
    } else {
        None
    }
}

/// Anything that can be asked of a connected datastore.
pub(crate) type Ds = Datastore;
