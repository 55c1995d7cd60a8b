//! Leader election on etcd: a lease kept alive in the background and etcd's election API
//! (`campaign`), as etcd's own `concurrency.Election`. The leader key disappears with the
//! lease, so a replica that dies or freezes is replaced once its lease expires.

use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{LeaderGuard, deadline_after};

/// The etcd election key of the IPAM controller.
pub const ELECTION: &str = "/twill/v1/leader/ipam-controller";

/// Grants a lease, keeps it alive, and waits until `id` leads `election`. Returns the
/// lease, the guard and the keep-alive task.
pub(super) async fn campaign(
    mut client: Client,
    election: &str,
    id: &str,
    ttl: Duration,
) -> Result<(i64, LeaderGuard, JoinHandle<()>), etcd_client::Error> {
    let ttl_secs = i64::try_from(ttl.as_secs().max(2)).unwrap_or(15);
    let ttl = Duration::from_secs(ttl_secs.unsigned_abs());
    let sent = Instant::now();
    let lease = client.lease_grant(ttl_secs, None).await?.id();
    let (tx, deadline) = watch::channel(deadline_after(sent, ttl));
    let keeper = tokio::spawn(keep_alive(client.clone(), lease, ttl, tx));
    if let Err(e) = client.campaign(election, id, lease).await {
        keeper.abort();
        return Err(e);
    }
    Ok((lease, LeaderGuard { deadline }, keeper))
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
                let _ = tx.send(deadline_after(sent, granted));
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
