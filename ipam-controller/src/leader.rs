//! Leader election over an etcd lease (etcd mode), so two controller replicas never both
//! act: campaign on an election name with a lease kept alive in the background. When a
//! keep-alive fails the lease is presumed lost and `lost()` resolves: the holder must stop
//! acting at once (the controller exits and is restarted).

use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The etcd election key of the IPAM controller.
pub const ELECTION: &str = "/twill/v1/leader/ipam-controller";

/// Held leadership. Dropping it stops the keep-alive (the lease then expires); prefer
/// `resign` for a prompt hand-over.
pub struct Leadership {
    client: Client,
    lease: i64,
    lost: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Leadership(lease {:x})", self.lease)
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl Leadership {
    /// Grants a lease of `ttl`, keeps it alive, and waits until this candidate (`id`) is
    /// the leader of `election`.
    pub async fn acquire(
        mut client: Client,
        election: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<Leadership, etcd_client::Error> {
        let ttl_secs = i64::try_from(ttl.as_secs().max(2)).unwrap_or(15);
        let lease = client.lease_grant(ttl_secs, None).await?.id();
        let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
        let (tx, lost) = watch::channel(false);
        let interval = Duration::from_secs((ttl_secs / 3).max(1) as u64);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let alive = match keeper.keep_alive().await {
                    Ok(()) => matches!(
                        tokio::time::timeout(interval, stream.message()).await,
                        Ok(Ok(Some(r))) if r.ttl() > 0
                    ),
                    Err(_) => false,
                };
                if !alive {
                    let _ = tx.send(true);
                    return;
                }
            }
        });
        let keeper_guard = Leadership {
            client: client.clone(),
            lease,
            lost,
            keeper: task,
        };
        client.campaign(election, id, lease).await?;
        Ok(keeper_guard)
    }

    /// Resolves when the lease is lost.
    pub async fn lost(&mut self) {
        while !*self.lost.borrow() {
            if self.lost.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives leadership up now (revokes the lease, which deletes the leader key).
    pub async fn resign(mut self) {
        self.keeper.abort();
        if let Err(e) = self.client.lease_revoke(self.lease).await {
            tracing::warn!(error = %e, "could not revoke the leader lease; it will expire");
        }
    }
}
