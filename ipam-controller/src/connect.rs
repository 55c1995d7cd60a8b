//! Connecting to the datastore from the flags every binary shares (DESIGN.md:
//! `--datastore`, `--etcd-endpoints`, `--kubeconfig`; `twill_api`'s `DatastoreArgs`), plus
//! the etcd client itself in etcd mode (for the leader lease).

use std::sync::Arc;
use std::time::Duration;

use twill_api::datastore::etcd::EtcdBackend;
use twill_api::datastore::{Datastore, DatastoreError};
pub use twill_api::datastore::{DatastoreArgs, DatastoreType};

use crate::inventory::WorkloadSource;

/// Where live workloads are found in this mode.
pub fn workload_source(args: &DatastoreArgs) -> WorkloadSource {
    match args.datastore {
        DatastoreType::Etcd => WorkloadSource::Endpoints,
        DatastoreType::Kubernetes => WorkloadSource::Pods,
    }
}

/// Connects within `timeout`; in etcd mode also returns the etcd client.
pub async fn connect(
    args: &DatastoreArgs,
    timeout: Duration,
) -> Result<(Datastore, Option<etcd_client::Client>), DatastoreError> {
    match args.datastore {
        DatastoreType::Etcd => {
            let backend = EtcdBackend::connect(&args.etcd_endpoints, timeout).await?;
            let client = backend.client();
            Ok((Datastore::new(Arc::new(backend)), Some(client)))
        }
        DatastoreType::Kubernetes => Ok((args.connect_with_timeout(timeout).await?, None)),
    }
}
