//! Leader election over an etcd lease (etcd mode), so two controller replicas never both
//! act: campaign on an election name with a lease kept alive in the background.
//!
//! Leadership is a *deadline*, not a flag: each renewal of the lease moves it to the time
//! the renewal was sent plus the lease's TTL, minus a safety margin. The etcd server
//! expires the lease no earlier than TTL after it received that renewal, so a replica that
//! stops acting at its deadline has stopped before anyone else can be elected, even when
//! it was frozen (SIGSTOP, a VM pause, a long GC) and never saw a keep-alive fail. Callers
//! check [`LeaderGuard::is_leader`] before acting and stop when [`LeaderGuard::lost`]
//! resolves.

use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The etcd election key of the IPAM controller.
pub const ELECTION: &str = "/twill/v1/leader/ipam-controller";

/// Held leadership. Dropping it stops the keep-alive (the lease then expires); prefer
/// `resign` for a prompt hand-over.
pub struct Leadership {
    client: Client,
    lease: i64,
    guard: LeaderGuard,
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

/// The part of a lease's TTL a replica does not use: covers a write already on its way to
/// etcd when the deadline passes, and clocks that run at slightly different rates.
fn margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(200))
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
        let ttl = Duration::from_secs(ttl_secs.unsigned_abs());
        let sent = Instant::now();
        let lease = client.lease_grant(ttl_secs, None).await?.id();
        let (tx, deadline) = watch::channel(sent + ttl - margin(ttl));
        let keeper = tokio::spawn(keep_alive(client.clone(), lease, ttl, tx));
        let leadership = Leadership {
            client: client.clone(),
            lease,
            guard: LeaderGuard { deadline },
            keeper,
        };
        client.campaign(election, id, lease).await?;
        Ok(leadership)
    }

    /// The guard to check before acting.
    pub fn guard(&self) -> LeaderGuard {
        self.guard.clone()
    }

    /// Gives leadership up now (revokes the lease, which deletes the leader key).
    pub async fn resign(mut self) {
        self.keeper.abort();
        if let Err(e) = self.client.lease_revoke(self.lease).await {
            tracing::warn!(error = %e, "could not revoke the leader lease; it will expire");
        }
    }
}

/// Renews the lease every third of its TTL and moves the deadline after each renewal.
/// Ends (leaving the deadline to pass) when etcd says the lease is gone; a failed renewal
/// is retried on the next tick with a fresh keep-alive stream.
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, tx: watch::Sender<Instant>) {
    let interval = (ttl / 3).max(Duration::from_millis(500));
    let mut stream = None;
    loop {
        tokio::time::sleep(interval).await;
        if stream.is_none() {
            match client.lease_keep_alive(lease).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the lease keep-alive stream");
                    continue;
                }
            }
        }
        let Some((keeper, responses)) = stream.as_mut() else {
            continue;
        };
        let sent = Instant::now();
        let answer = match keeper.keep_alive().await {
            Ok(()) => tokio::time::timeout(interval, responses.message()).await,
            Err(e) => {
                tracing::warn!(error = %e, "lease keep-alive failed");
                stream = None;
                continue;
            }
        };
        match answer {
            Ok(Ok(Some(r))) if r.ttl() > 0 => {
                let granted = Duration::from_secs(r.ttl().unsigned_abs());
                let _ = tx.send(sent + granted - margin(granted));
            }
            Ok(Ok(Some(_))) => {
                tracing::warn!("the leader lease has expired");
                let _ = tx.send(Instant::now());
                return;
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                tracing::warn!("no answer to a lease keep-alive; retrying");
                stream = None;
            }
        }
    }
}
