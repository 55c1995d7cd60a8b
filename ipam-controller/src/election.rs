//! How the controller's replicas pick the one that acts: a `coordination.k8s.io/v1` Lease
//! in Kubernetes mode ([`crate::lease`]), an etcd lease in etcd mode ([`crate::leader`]),
//! or no election at all (`--leader-elect=false`, for a single replica).

use std::time::Duration;

use crate::leader::{ELECTION, Leadership};
use crate::lease::{LeaseConfig, LeaseError, LeaseLeadership};

/// The election's flags (the chart sets them through the environment).
#[derive(Clone, Debug, clap::Args)]
pub struct ElectionArgs {
    /// Elect one replica to act; `false` only when a single replica runs.
    #[arg(long, env = "TWILL_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the Lease (Kubernetes mode; default: the client's namespace, which in
    /// a pod is the pod's own).
    #[arg(long, env = "TWILL_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease (Kubernetes mode).
    #[arg(
        long,
        env = "TWILL_LEADER_ELECTION_LEASE",
        default_value = "twill-ipam-controller"
    )]
    pub leader_election_lease: String,
}

/// Why no leadership could be had.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("etcd leader election: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("leader election needs a datastore client (neither etcd nor Kubernetes)")]
    NoClient,
}

/// Held leadership of one kind.
#[derive(Debug)]
pub enum Leader {
    /// Boxed: the etcd client is large.
    Etcd(Box<Leadership>),
    Lease(LeaseLeadership),
    /// `--leader-elect=false`: acting without an election.
    Alone,
}

impl Leader {
    /// Waits until this replica (`id`) leads, with a lease of `ttl`.
    pub async fn campaign(
        args: &ElectionArgs,
        etcd: Option<etcd_client::Client>,
        kube: Option<kube::Client>,
        id: &str,
        ttl: Duration,
    ) -> Result<Leader, ElectionError> {
        if !args.leader_elect {
            return Ok(Leader::Alone);
        }
        if let Some(etcd) = etcd {
            return Ok(Leader::Etcd(Box::new(
                Leadership::acquire(etcd, ELECTION, id, ttl).await?,
            )));
        }
        let Some(client) = kube else {
            return Err(ElectionError::NoClient);
        };
        let namespace = args
            .leader_election_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let cfg = LeaseConfig::new(&namespace, &args.leader_election_lease, id, ttl);
        Ok(Leader::Lease(LeaseLeadership::acquire(client, cfg).await?))
    }

    /// Resolves when leadership is lost (never, when acting alone).
    pub async fn lost(&mut self) {
        match self {
            Leader::Etcd(l) => l.lost().await,
            Leader::Lease(l) => l.lost().await,
            Leader::Alone => std::future::pending().await,
        }
    }

    /// Gives leadership up promptly.
    pub async fn resign(self) {
        match self {
            Leader::Etcd(l) => (*l).resign().await,
            Leader::Lease(l) => l.resign().await,
            Leader::Alone => {}
        }
    }
}
