//! Leader election on a `coordination.k8s.io/v1` Lease (Kubernetes mode), so two
//! controller replicas never both act. The algorithm is client-go's:
//!
//! - A candidate takes the Lease when it does not exist (create; a 409 means another
//!   won), when it has no holder, or when its holder has not renewed it for
//!   `lease_duration` *as observed by this candidate's own clock* (the time since the Lease's
//!   resourceVersion last changed, so clock skew between machines does not matter). Every
//!   write is compare-and-swap on the resourceVersion: of two candidates racing for an
//!   expired Lease, one gets 409 and stays a candidate.
//! - The leader renews every `retry_period`. It gives up (and [`LeaseLeadership::lost`]
//!   resolves) when it could not renew within `renew_deadline` of its last successful
//!   renewal, which is shorter than `lease_duration`: it has stopped acting before any
//!   other candidate may consider the Lease expired. A renewal that finds another holder
//!   (409, or the Lease taken) is lost at once.
//! - On a clean shutdown the leader releases the Lease (no holder, duration 1 s) so a
//!   standby takes over at its next try instead of waiting out the Lease.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Election settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Lease's namespace and name.
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (the holder written into the Lease): the pod's name.
    pub identity: String,
    /// How long a Lease that is not renewed stays its holder's.
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often candidates try, and the leader renews.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's proportions (15 s, 10 s, 2 s) scaled to `lease_duration`.
    pub fn new(namespace: &str, name: &str, identity: &str, lease_duration: Duration) -> Self {
        let lease_duration = lease_duration.max(Duration::from_millis(300));
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration * 2 / 15,
        }
    }
}

/// Why an election could not be held.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("Lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(
        "leader election: renew deadline {renew:?} must be shorter than the lease duration {lease:?}, and the retry period shorter than the renew deadline"
    )]
    Timing { lease: Duration, renew: Duration },
}

/// One candidate's view of the Lease.
struct Candidate {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The Lease's resourceVersion when last seen, and when (this candidate's clock).
    observed: Option<(String, Instant)>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whole seconds, rounded up: a Lease never says it lasts shorter than it does.
fn seconds(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
}

impl Candidate {
    fn err(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api {
            namespace: self.cfg.namespace.clone(),
            name: self.cfg.name.clone(),
            source,
        }
    }

    /// One try: Ok(true) when this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaseError> {
        let now = Timestamp::now();
        let Some(mut lease) = self
            .api
            .get_opt(&self.cfg.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(seconds(self.cfg.lease_duration)),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(self.err(e)),
            };
        };
        self.observe(&lease);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.cfg.identity.as_str());
        if let Some(holder) = &holder
            && !mine
        {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.cfg.lease_duration, Duration::from_secs);
            let expired = self
                .observed
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= duration);
            if !expired {
                tracing::trace!(%holder, "the Lease is held");
                return Ok(false);
            }
            tracing::info!(%holder, "the Lease expired; taking it");
        }
        if !mine {
            spec.acquire_time = Some(MicroTime(now));
            if holder.is_some() {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.holder_identity = Some(self.cfg.identity.clone());
        spec.lease_duration_seconds = Some(seconds(self.cfg.lease_duration));
        spec.renew_time = Some(MicroTime(now));
        // `lease` carries the resourceVersion it was read at: the write is a CAS.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(&written);
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    fn observe(&mut self, lease: &Lease) {
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != rv) {
            self.observed = Some((rv, Instant::now()));
        }
    }

    /// Gives the Lease up if this candidate still holds it.
    async fn release(&mut self) -> Result<(), LeaseError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.cfg.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}

/// Held leadership: renewed in the background until lost or resigned.
pub struct LeaseLeadership {
    lost: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    renewer: Option<JoinHandle<Candidate>>,
}

impl std::fmt::Debug for LeaseLeadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeaseLeadership(lost: {})", *self.lost.borrow())
    }
}

impl Drop for LeaseLeadership {
    fn drop(&mut self) {
        if let Some(renewer) = &self.renewer {
            renewer.abort();
        }
    }
}

impl LeaseLeadership {
    /// Campaigns until this candidate holds the Lease `cfg` names; errors talking to the
    /// API server are logged and retried (a candidate waits for as long as it takes).
    pub async fn acquire(
        client: kube::Client,
        cfg: LeaseConfig,
    ) -> Result<LeaseLeadership, LeaseError> {
        if cfg.renew_deadline >= cfg.lease_duration || cfg.retry_period >= cfg.renew_deadline {
            return Err(LeaseError::Timing {
                lease: cfg.lease_duration,
                renew: cfg.renew_deadline,
            });
        }
        let mut candidate = Candidate {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
        };
        let renewed_at = loop {
            let started = Instant::now();
            match candidate.try_acquire_or_renew().await {
                Ok(true) => break started,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: retrying"),
            }
            tokio::time::sleep(candidate.cfg.retry_period).await;
        };
        tracing::info!(identity = %candidate.cfg.identity, lease = %candidate.cfg.name, "acquired the Lease");
        let (tx, lost) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let renewer = tokio::spawn(renew(candidate, renewed_at, tx, stopped));
        Ok(LeaseLeadership {
            lost,
            stop: Some(stop),
            renewer: Some(renewer),
        })
    }

    /// Resolves when leadership is lost: the holder must stop acting at once.
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Stops renewing and releases the Lease, so a standby takes over promptly.
    pub async fn resign(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(renewer) = self.renewer.take() else {
            return;
        };
        match renewer.await {
            Ok(mut candidate) => {
                if let Err(e) = candidate.release().await {
                    tracing::warn!(error = %e, "could not release the Lease; it will expire");
                }
            }
            Err(e) => tracing::warn!(error = %e, "the renewer failed; the Lease will expire"),
        }
    }
}

/// The leader's renewal loop: returns the candidate (for a release) when it stops.
async fn renew(
    mut candidate: Candidate,
    mut renewed_at: Instant,
    lost: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) -> Candidate {
    loop {
        tokio::select! {
            _ = &mut stop => return candidate,
            () = tokio::time::sleep(candidate.cfg.retry_period) => {}
        }
        let deadline = renewed_at + candidate.cfg.renew_deadline;
        let started = Instant::now();
        match tokio::time::timeout_at(deadline, candidate.try_acquire_or_renew()).await {
            Ok(Ok(true)) => renewed_at = started,
            Ok(Ok(false)) => {
                tracing::warn!("the Lease is held by another candidate: leadership lost");
                break;
            }
            Ok(Err(e)) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "renewing the Lease failed; retrying");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not renew the Lease in time: leadership lost");
                break;
            }
            Err(_) => {
                tracing::warn!("could not renew the Lease in time: leadership lost");
                break;
            }
        }
    }
    let _ = lost.send(true);
    candidate
}
