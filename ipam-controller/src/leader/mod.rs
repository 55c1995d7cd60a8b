//! Leader election, so two controller replicas never both act: an etcd lease in etcd mode
//! ([`etcd`]), a Kubernetes `Lease` object in Kubernetes mode ([`kube`]).
//!
//! Leadership is a *deadline*, not a flag: each renewal moves it to the time the renewal
//! was sent plus the lease duration, minus a safety margin. Another replica can take over
//! no earlier than one lease duration after it saw that renewal (etcd expires the lease a
//! TTL after receiving the keep-alive; a Kubernetes candidate waits a lease duration after
//! it last saw the record change), so a replica that stops acting at its deadline has
//! stopped before anyone else can be elected, even when it was frozen (SIGSTOP, a VM
//! pause) and never saw a renewal fail. Callers check [`LeaderGuard::is_leader`] before
//! acting and stop when [`LeaderGuard::lost`] resolves.

pub mod etcd;
pub mod kube;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::etcd::ELECTION;
use self::kube::LeaseLock;

/// Held leadership. Dropping it stops the renewals (leadership then lapses); prefer
/// `resign` for a prompt hand-over.
pub struct Leadership {
    guard: LeaderGuard,
    renewer: JoinHandle<()>,
    holder: Holder,
}

enum Holder {
    Etcd {
        client: Box<etcd_client::Client>,
        lease: i64,
    },
    Kube(Arc<Mutex<LeaseLock>>),
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.holder {
            Holder::Etcd { lease, .. } => write!(f, "Leadership(etcd lease {lease:x})"),
            Holder::Kube(_) => write!(f, "Leadership(Kubernetes Lease)"),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Whether this replica may still act: cheap to clone and to ask.
#[derive(Clone, Debug)]
pub struct LeaderGuard {
    deadline: watch::Receiver<Instant>,
}

impl LeaderGuard {
    /// True until the leadership deadline passes (read from the clock on every call).
    pub fn is_leader(&self) -> bool {
        Instant::now() < *self.deadline.borrow()
    }

    /// Resolves when the deadline passes without a renewal.
    pub async fn lost(&mut self) {
        loop {
            let deadline = *self.deadline.borrow_and_update();
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                changed = self.deadline.changed() => {
                    if changed.is_err() {
                        // No more renewals will come: leadership ends at the deadline.
                        tokio::time::sleep_until(deadline).await;
                        return;
                    }
                }
            }
        }
    }
}

/// The part of a lease's duration a replica does not use: covers a write already on its
/// way when the deadline passes, and clocks that run at slightly different rates.
pub(crate) fn margin(duration: Duration) -> Duration {
    (duration / 5).max(Duration::from_millis(200))
}

/// The deadline after a renewal sent at `sent` for `duration`.
pub(crate) fn deadline_after(sent: Instant, duration: Duration) -> Instant {
    sent + duration - margin(duration).min(duration)
}

impl Leadership {
    /// Campaigns on `election` in etcd with a lease of `ttl` (at least 2 s) and returns
    /// once this candidate (`id`) leads.
    pub async fn acquire_etcd(
        client: etcd_client::Client,
        election: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<Leadership, etcd_client::Error> {
        let (lease, guard, renewer) = etcd::campaign(client.clone(), election, id, ttl).await?;
        Ok(Leadership {
            guard,
            renewer,
            holder: Holder::Etcd {
                client: Box::new(client),
                lease,
            },
        })
    }

    /// Takes the Kubernetes `Lease` `namespace/name` for `id` (waiting while another
    /// replica holds it) and keeps renewing it.
    pub async fn acquire_kube(
        client: ::kube::Client,
        namespace: &str,
        name: &str,
        id: &str,
        duration: Duration,
    ) -> Leadership {
        let lock = LeaseLock::new(client, namespace, name, id, duration);
        let (lock, guard, renewer) = kube::campaign(lock).await;
        Leadership {
            guard,
            renewer,
            holder: Holder::Kube(lock),
        }
    }

    /// The guard to check before acting.
    pub fn guard(&self) -> LeaderGuard {
        self.guard.clone()
    }

    /// Gives leadership up now, so another replica takes over without waiting out the
    /// lease: revokes the etcd lease, or clears the Kubernetes Lease's holder.
    pub async fn resign(self) {
        self.renewer.abort();
        match &self.holder {
            Holder::Etcd { client, lease } => {
                if let Err(e) = client.as_ref().clone().lease_revoke(*lease).await {
                    tracing::warn!(error = %e, "could not revoke the leader lease; it will expire");
                }
            }
            Holder::Kube(lock) => {
                if let Err(e) = lock.lock().await.release().await {
                    tracing::warn!(error = %e, "could not release the Lease; it will expire");
                }
            }
        }
    }
}
