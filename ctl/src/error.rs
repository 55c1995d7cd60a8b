//! twillctl's error: what the user reads after `error:`. Datastore errors keep their
//! message (which names the endpoint or the field); manifest errors name the document.

use twill_api::datastore::DatastoreError;

/// Why a twillctl command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    /// A manifest problem: `FILE: document N (Kind/name): field: rule`.
    #[error("{0}")]
    Manifest(String),
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write output: {0}")]
    Output(String),
    #[error(transparent)]
    Bgp(#[from] crate::bgp::BgpCtlError),
    #[error(transparent)]
    Lab(#[from] crate::lab::LabError),
}

impl CtlError {
    /// Exit status: 2 for usage/manifest errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Usage(_) | CtlError::Manifest(_) => 2,
            CtlError::Lab(crate::lab::LabError::Usage(_)) => 2,
            _ => 1,
        }
    }
}

pub type Result<T, E = CtlError> = std::result::Result<T, E>;
