//! Leader election on a Kubernetes Lease, against the fake API server
//! (`twill_harness::kube_fake`): one of several candidates leads, a standby takes over
//! only after the Lease expired (or at once after a release), a leader that cannot renew
//! stops before anyone else may start, a 409 on renewal means another holder, and under
//! crashes, releases, conflicts and server errors two candidates never lead at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use twill_harness::kube_fake::FakeApiServer;
use twill_ipam::lease::{LeaseConfig, LeaseLeadership};

const NS: &str = "twill-system";
const LEASE: &str = "twill-ipam-controller";

fn config(identity: &str, lease: Duration) -> LeaseConfig {
    LeaseConfig::new(NS, LEASE, identity, lease)
}

async fn holder(server: &FakeApiServer) -> Option<String> {
    server
        .object("coordination.k8s.io/v1", "Lease", NS, LEASE)
        .await
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

#[tokio::test]
async fn one_candidate_leads_and_the_other_waits_while_it_renews() {
    let server = FakeApiServer::new([]);
    let lease = Duration::from_secs(2);
    let a = tokio::spawn(LeaseLeadership::acquire(
        server.client_as(Some("a")),
        config("a", lease),
    ));
    let b = tokio::spawn(LeaseLeadership::acquire(
        server.client_as(Some("b")),
        config("b", lease),
    ));
    // One leads at once; the other still waits after three lease durations.
    tokio::time::sleep(lease * 3).await;
    assert!(
        a.is_finished() ^ b.is_finished(),
        "exactly one leads: a {}, b {}",
        a.is_finished(),
        b.is_finished()
    );
    let (winner, waiting) = if a.is_finished() { (a, b) } else { (b, a) };
    let leadership = winner.await.unwrap().unwrap();
    let held_by = holder(&server).await.unwrap();
    assert!(held_by == "a" || held_by == "b");
    let renewals = server
        .exchanges()
        .await
        .iter()
        .filter(|e| {
            e.resource == "leases"
                && e.verb == "update"
                && e.user.as_deref() == Some(&held_by)
                && e.status == 200
        })
        .count();
    assert!(renewals >= 10, "renewed every retry period: {renewals}");
    waiting.abort();
    drop(leadership);
    assert!(server.violations().await.is_empty());
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_after_the_lease_duration_and_not_before() {
    let server = FakeApiServer::new([]);
    let lease = Duration::from_secs(2);
    let cfg = config("a", lease);
    let retry = cfg.retry_period;
    let a = LeaseLeadership::acquire(server.client_as(Some("a")), cfg)
        .await
        .unwrap();
    let b = tokio::spawn(LeaseLeadership::acquire(
        server.client_as(Some("b")),
        config("b", lease),
    ));
    tokio::time::sleep(lease).await;
    assert!(!b.is_finished(), "b waits while a renews");
    // a crashes: no release, its renewals simply stop.
    drop(a);
    let crashed = Instant::now();
    let _b = b.await.unwrap().unwrap();
    let waited = crashed.elapsed();
    assert!(
        waited + retry >= lease,
        "b took over {waited:?} after the last renewal window, before the lease ({lease:?}) ran out"
    );
    assert!(waited < lease + retry * 4, "b took {waited:?}");
    assert_eq!(holder(&server).await.as_deref(), Some("b"));
    let transitions = server
        .object("coordination.k8s.io/v1", "Lease", NS, LEASE)
        .await
        .unwrap()["spec"]["leaseTransitions"]
        .clone();
    assert_eq!(transitions, 1);
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let server = FakeApiServer::new([]);
    let lease = Duration::from_secs(5);
    let a = LeaseLeadership::acquire(server.client_as(Some("a")), config("a", lease))
        .await
        .unwrap();
    let b = tokio::spawn(LeaseLeadership::acquire(
        server.client_as(Some("b")),
        config("b", lease),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    a.resign().await;
    let _b = b.await.unwrap().unwrap();
    assert!(
        released.elapsed() < lease / 2,
        "took {:?} after a release",
        released.elapsed()
    );
    assert_eq!(holder(&server).await.as_deref(), Some("b"));
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_before_a_standby_starts() {
    let server = FakeApiServer::new([]);
    let lease = Duration::from_secs(2);
    let mut a = LeaseLeadership::acquire(server.client_as(Some("a")), config("a", lease))
        .await
        .unwrap();
    let b = tokio::spawn(LeaseLeadership::acquire(
        server.client_as(Some("b")),
        config("b", lease),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // From now on every renewal fails (the API server answers 500 to a's writes).
    server.fail_next("PUT", "leases", 500, usize::MAX).await;
    let broken = Instant::now();
    a.lost().await;
    let lost_at = Instant::now();
    assert!(
        lost_at - broken < lease,
        "a gave up {:?} after its renewals broke: not before the lease ran out",
        lost_at - broken
    );
    // b cannot write either while the fault lasts; lift it and b takes over.
    assert!(
        !b.is_finished(),
        "nobody may take the lease while a could still act"
    );
    server.clear_faults().await;
    let _b = b.await.unwrap().unwrap();
    assert!(Instant::now() > lost_at);
    assert_eq!(holder(&server).await.as_deref(), Some("b"));
}

#[tokio::test]
async fn a_conflict_while_renewing_means_leadership_is_lost() {
    let server = FakeApiServer::new([]);
    let mut a = LeaseLeadership::acquire(
        server.client_as(Some("a")),
        config("a", Duration::from_secs(3)),
    )
    .await
    .unwrap();
    server.fail_next("PUT", "leases", 409, 1).await;
    tokio::time::timeout(Duration::from_secs(2), a.lost())
        .await
        .expect("a 409 on renewal ends leadership at once");
}

/// Who acted when: (identity, from, until).
type Terms = Arc<Mutex<Vec<(String, Instant, Instant)>>>;

async fn candidate(server: FakeApiServer, id: String, terms: Terms, until: Instant) {
    let lease = Duration::from_secs(2);
    let mut round = 0u64;
    while Instant::now() < until {
        round += 1;
        // Each round is a new pod of this candidate: a new identity.
        let me = format!("{id}-{round}");
        let acquire = LeaseLeadership::acquire(server.client_as(Some(&id)), config(&me, lease));
        let Ok(Ok(mut leadership)) = tokio::time::timeout_at(until, acquire).await else {
            return;
        };
        let from = Instant::now();
        // Act for a while, then crash, resign, or lose the lease.
        let act = Duration::from_millis(300 + (round * 137 + id.as_bytes()[0] as u64 * 71) % 1500);
        let lost = tokio::select! {
            () = leadership.lost() => true,
            () = tokio::time::sleep(act) => false,
        };
        let to = Instant::now();
        terms.lock().await.push((me.clone(), from, to));
        if !lost {
            match round % 3 {
                0 => drop(leadership),
                _ => leadership.resign().await,
            }
        }
        // A replacement pod takes a moment to start.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_candidates_never_lead_at_once_through_crashes_releases_and_faults() {
    let server = FakeApiServer::new([]);
    let terms: Terms = Arc::default();
    let until = Instant::now() + Duration::from_secs(20);
    let tasks: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|id| tokio::spawn(candidate(server.clone(), id.into(), terms.clone(), until)))
        .collect();
    // Faults along the way: conflicts and server errors on Lease writes and reads.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        server.fail_next("PUT", "leases", 409, 1).await;
        server.fail_next("GET", "leases", 500, 2).await;
        server.fail_next("PUT", "leases", 500, 1).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut terms = terms.lock().await.clone();
    terms.sort_by_key(|(_, from, _)| *from);
    assert!(terms.len() >= 4, "leadership changed hands: {terms:?}");
    for pair in terms.windows(2) {
        let (a, _, a_to) = &pair[0];
        let (b, b_from, _) = &pair[1];
        assert!(
            a_to <= b_from,
            "{a} still acted until {a_to:?} when {b} started at {b_from:?}"
        );
    }
    let identities: std::collections::BTreeSet<&str> = terms
        .iter()
        .map(|(id, _, _)| id.split('-').next().unwrap_or_default())
        .collect();
    assert!(
        identities.len() >= 2,
        "more than one candidate led: {terms:?}"
    );
    assert!(server.violations().await.is_empty());
}
