//! The `Datastore`: typed get/list/create/update (compare-and-swap)/delete/watch over two
//! backends, etcd v3 and Kubernetes, chosen by `--datastore`.
//!
//! Layers: [`Backend`] is the object-safe raw interface over JSON objects that each
//! backend implements; [`Datastore`] is the typed wrapper everyone uses, and the only
//! write path (it validates, so nothing invalid is ever stored).

mod backend;
mod config;
mod error;
pub mod etcd;
pub mod kubernetes;
pub mod lifecycle;
mod typed;

pub use backend::{Backend, RawEvent, RawList, RawWatchStream};
pub use config::{DEFAULT_CONNECT_TIMEOUT, DatastoreArgs, DatastoreType};
pub use error::{DatastoreError, Result};
pub use typed::{Datastore, List, WatchEvent};
