//! Leader election on a Kubernetes `Lease` (coordination.k8s.io/v1), as client-go's
//! `leaderelection` does it: the holder writes its identity and renews `renewTime`;
//! every write is a compare-and-swap on the Lease's `resourceVersion`, so two candidates
//! can never both take it.
//!
//! A candidate judges expiry by its own clock: the Lease is free once its record has not
//! changed for a lease duration since this candidate first saw that version, never by
//! comparing another machine's `renewTime` with the local time (no clock skew involved).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{LeaderGuard, deadline_after};

/// One candidate's handle on the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    id: String,
    duration: Duration,
    /// The version of the record last seen, and when this candidate first saw it.
    observed: Option<(String, Instant)>,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeaseLock({} for {})", self.name, self.id)
    }
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

impl LeaseLock {
    /// The Lease `namespace/name`, for candidate `id`, held for `duration` per renewal.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        id: &str,
        duration: Duration,
    ) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            id: id.to_owned(),
            duration: duration.max(Duration::from_secs(1)),
            observed: None,
        }
    }

    /// How long one renewal holds the Lease.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// One attempt to take or renew the Lease: `Ok(true)` when this candidate holds it
    /// after the call, `Ok(false)` when another does (or won a race just now).
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.id.clone()),
                    lease_duration_seconds: Some(seconds(self.duration)),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(true)
                }
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == version => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((version, at));
                at
            }
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_for = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            .unwrap_or(self.duration);
        let ours = holder == self.id;
        let lapsed = holder.is_empty() || first_seen.elapsed() >= held_for;
        if !ours && !lapsed {
            return Ok(false);
        }
        if !ours {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(self.id.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds(self.duration));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observe(&updated);
                Ok(true)
            }
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn observe(&mut self, lease: &Lease) {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        self.observed = Some((version, Instant::now()));
    }

    /// Gives the Lease up if this candidate holds it: clears the holder, so the others take
    /// it at their next attempt instead of waiting out the duration.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.id.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            // Someone else wrote it meanwhile: it is no longer ours to release.
            Err(e) if conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Tries every third of the duration until `lock` is held, then keeps renewing it in the
/// background, moving the guard's deadline after each renewal.
pub(super) async fn campaign(
    mut lock: LeaseLock,
) -> (Arc<Mutex<LeaseLock>>, LeaderGuard, JoinHandle<()>) {
    let duration = lock.duration();
    let interval = (duration / 3).max(Duration::from_millis(300));
    let sent = loop {
        let sent = Instant::now();
        match lock.try_acquire_or_renew().await {
            Ok(true) => break sent,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot reach the leader Lease; retrying"),
        }
        tokio::time::sleep(interval).await;
    };
    let (tx, deadline) = watch::channel(deadline_after(sent, duration));
    let lock = Arc::new(Mutex::new(lock));
    let renewer = tokio::spawn(renew(lock.clone(), interval, tx));
    (lock, LeaderGuard { deadline }, renewer)
}

async fn renew(lock: Arc<Mutex<LeaseLock>>, interval: Duration, tx: watch::Sender<Instant>) {
    loop {
        tokio::time::sleep(interval).await;
        let mut lock = lock.lock().await;
        let sent = Instant::now();
        match lock.try_acquire_or_renew().await {
            Ok(true) => {
                let _ = tx.send(deadline_after(sent, lock.duration()));
            }
            Ok(false) => {
                tracing::warn!("another replica holds the leader Lease");
                let _ = tx.send(Instant::now());
                return;
            }
            // The deadline passes by itself if renewals keep failing.
            Err(e) => tracing::warn!(error = %e, "could not renew the leader Lease"),
        }
    }
}
