//! The datastore's error enum. Each variant is a distinct outcome callers act on:
//! `Conflict` → re-read and retry, `NotFound`/`AlreadyExists` → a decision, `Unavailable` →
//! try again later, `Invalid` → fix the object, `Expired` → re-list.

use crate::validate::ValidationError;

/// What can go wrong talking to a datastore.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// A compare-and-swap lost: the object's revision is no longer `expected`.
    #[error(
        "{kind} {name:?} was modified concurrently (expected revision {expected}): re-read and retry"
    )]
    Conflict {
        kind: String,
        name: String,
        expected: String,
    },
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: String, name: String },
    /// The datastore cannot be reached or did not answer in time: try again later.
    #[error("datastore {endpoint} is unavailable, try again later: {reason}")]
    Unavailable { endpoint: String, reason: String },
    /// The object breaks a validation rule; `error.field` names the field.
    #[error("invalid {kind} {name:?}: {error}")]
    Invalid {
        kind: String,
        name: String,
        error: ValidationError,
    },
    /// A watch asked for a revision the datastore no longer has (etcd compaction, HTTP 410).
    #[error("revision {revision} is too old (compacted): re-list")]
    Expired { revision: String },
    /// The datastore answered something this client does not understand.
    #[error("datastore {endpoint}: {reason}")]
    Backend { endpoint: String, reason: String },
}

impl DatastoreError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, DatastoreError::Unavailable { .. })
    }

    /// A short, bounded label for metrics (never an object name).
    pub fn kind_label(&self) -> &'static str {
        match self {
            DatastoreError::Conflict { .. } => "conflict",
            DatastoreError::NotFound { .. } => "not_found",
            DatastoreError::AlreadyExists { .. } => "already_exists",
            DatastoreError::Unavailable { .. } => "unavailable",
            DatastoreError::Invalid { .. } => "invalid",
            DatastoreError::Expired { .. } => "expired",
            DatastoreError::Backend { .. } => "backend",
        }
    }
}

/// Shorthand for datastore results.
pub type Result<T, E = DatastoreError> = std::result::Result<T, E>;
