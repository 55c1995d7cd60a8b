//! Choosing and connecting a backend: the `--datastore`, `--etcd-endpoints` and
//! `--kubeconfig` flags (with their environment fallbacks) shared by every binary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::error::Result;
use super::etcd::EtcdBackend;
use super::kubernetes::KubernetesBackend;
use super::typed::Datastore;

/// How long connecting may take before the datastore counts as unavailable.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Which backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DatastoreType {
    #[default]
    Kubernetes,
    Etcd,
}

/// The datastore flags (docs/ARCHITECTURE.md, "Binaries, flags and environment"); `#[command(flatten)]` them into a binary's args.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct DatastoreArgs {
    /// Where resources live.
    #[arg(long, env = "TWILL_DATASTORE", value_enum, default_value_t = DatastoreType::Kubernetes, global = true)]
    pub datastore: DatastoreType,
    /// etcd endpoints (comma-separated URLs), for `--datastore etcd`.
    #[arg(
        long,
        env = "TWILL_ETCD_ENDPOINTS",
        value_delimiter = ',',
        global = true
    )]
    pub etcd_endpoints: Vec<String>,
    /// kubeconfig file, for `--datastore kubernetes` (default: in-cluster or ~/.kube/config).
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
}

impl DatastoreArgs {
    /// etcd args for these endpoints.
    pub fn etcd(endpoints: Vec<String>) -> Self {
        DatastoreArgs {
            datastore: DatastoreType::Etcd,
            etcd_endpoints: endpoints,
            kubeconfig: None,
        }
    }

    /// Connects, failing with `Unavailable` (naming the endpoint) within a few seconds.
    pub async fn connect(&self) -> Result<Datastore> {
        self.connect_with_timeout(DEFAULT_CONNECT_TIMEOUT).await
    }

    pub async fn connect_with_timeout(&self, timeout: Duration) -> Result<Datastore> {
        match self.datastore {
            DatastoreType::Etcd => {
                let backend = EtcdBackend::connect(&self.etcd_endpoints, timeout).await?;
                Ok(Datastore::new(Arc::new(backend)))
            }
            DatastoreType::Kubernetes => {
                let backend =
                    KubernetesBackend::connect(self.kubeconfig.as_deref(), timeout).await?;
                Ok(Datastore::new(Arc::new(backend)))
            }
        }
    }
}
