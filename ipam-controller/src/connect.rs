//! Connecting to the datastore from the flags every binary shares (docs/ARCHITECTURE.md:
//! `--datastore`, `--etcd-endpoints`, `--kubeconfig`; `twill_api`'s `DatastoreArgs`), plus
//! the client leader election needs in that mode (etcd's, or the API server's).

use std::sync::Arc;
use std::time::Duration;

use twill_api::datastore::etcd::EtcdBackend;
use twill_api::datastore::kubernetes::KubernetesBackend;
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

/// The client leader election runs on.
#[derive(Clone)]
pub enum ElectionClient {
    /// An etcd lease and etcd's election API.
    Etcd(Box<etcd_client::Client>),
    /// A `coordination.k8s.io/v1` Lease.
    Kubernetes(kube::Client),
}

impl std::fmt::Debug for ElectionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ElectionClient::Etcd(_) => write!(f, "ElectionClient(etcd)"),
            ElectionClient::Kubernetes(_) => write!(f, "ElectionClient(kubernetes)"),
        }
    }
}

/// Connects within `timeout`; also returns the client for leader election.
pub async fn connect(
    args: &DatastoreArgs,
    timeout: Duration,
) -> Result<(Datastore, ElectionClient), DatastoreError> {
    match args.datastore {
        DatastoreType::Etcd => {
            let backend = EtcdBackend::connect(&args.etcd_endpoints, timeout).await?;
            let client = backend.client();
            Ok((
                Datastore::new(Arc::new(backend)),
                ElectionClient::Etcd(Box::new(client)),
            ))
        }
        DatastoreType::Kubernetes => {
            let backend = KubernetesBackend::connect(args.kubeconfig.as_deref(), timeout).await?;
            let client = backend.client();
            Ok((
                Datastore::new(Arc::new(backend)),
                ElectionClient::Kubernetes(client),
            ))
        }
    }
}
