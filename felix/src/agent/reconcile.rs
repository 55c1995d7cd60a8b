//! The reconciler: the one owner of felix's view of the cluster. It applies datastore
//! changes to the [`Snapshot`], and after each burst of changes (or drift, or the periodic
//! resync) makes the node match: BGP sessions, the prefixes it announces, and its host
//! routes. Each step is idempotent and computed from plain data; a failed step is retried
//! one second later, and a full resync re-reads everything from the kernel anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::{RwLock, mpsc, watch};
use twill_bgpd::kernel::KernelConfig;
use twill_bgpd::speaker::Communities;
use twill_bgpd::{Speaker, SpeakerConfig};

use super::audit::{Audit, AuditReport};
use super::bgp::communities::advertisements;
use super::bgp::{BgpInputs, BgpPlan, plan, secret_refs};
use super::bgp_api::SpeakerSlot;
use super::cache::{Change, Snapshot};
use super::drift::Drift;
use super::endpoints::EndpointStore;
use super::health::Health;
use super::ipam::families_from;
use super::kubernetes::secrets::SecretReader;
use super::local::{Owned, announce_diff, desired_routes, originated, owned};
use crate::dataplane::{BGPD_ROUTE_PROTOCOL, PodNetwork};
use crate::policy::PolicyEngine;

/// What needs redoing.
#[derive(Debug, Default, Clone, Copy)]
struct Dirty {
    bgp: bool,
    routes: bool,
    policy: bool,
    /// Check the kernel's copy of the policy, rebuild it when it drifted.
    policy_check: bool,
    /// Audit the node's allocations, endpoints and interfaces (start and resync).
    audit: bool,
    /// Recompute the effective FelixConfiguration.
    config: bool,
}

impl Dirty {
    fn all() -> Dirty {
        Dirty {
            bgp: true,
            routes: true,
            policy: true,
            policy_check: true,
            audit: true,
            config: true,
        }
    }

    fn any(self) -> bool {
        self.bgp || self.routes || self.policy || self.policy_check || self.audit || self.config
    }

    /// What a change makes stale on node `me`.
    fn of_change(c: &Change, me: &str) -> Dirty {
        let mut d = Dirty::default();
        match c.kind {
            "Node" | "BGPPeer" | "BGPFilter" | "BFDProfile" => d.bgp = true,
            // Its communities tag what the node announces.
            "BGPConfiguration" => {
                d.bgp = true;
                d.routes = true;
            }
            // Service addresses are announced per BGPConfiguration (and local endpoints).
            "IPAMBlock" | "Service" | "EndpointSlice" => d.routes = true,
            "WorkloadEndpoint" => {
                // Host routes follow this node's endpoints only; a pod elsewhere changes
                // selector memberships, not this node's routes.
                d.routes = c.node.as_deref().is_none_or(|n| n == me);
                d.policy = true;
            }
            "Namespace" | "NetworkPolicy" | "GlobalNetworkPolicy" | "IPPool" => d.policy = true,
            // It may change the host-facing policy.
            "FelixConfiguration" => {
                d.config = true;
                d.policy = true;
            }
            _ => {}
        }
        d
    }

    fn merge(&mut self, o: Dirty) {
        self.bgp |= o.bgp;
        self.routes |= o.routes;
        self.policy |= o.policy;
        self.policy_check |= o.policy_check;
        self.audit |= o.audit;
        self.config |= o.config;
    }
}

/// The speaker settings that need a new speaker when they change.
fn identity(p: &BgpPlan) -> (u32, std::net::Ipv4Addr, u16, Option<std::net::Ipv4Addr>) {
    (p.asn, p.router_id, p.listen_port, p.cluster_id)
}

/// The configuration of an embedded speaker for `p`, announcing `announce` (without
/// communities: the first reconcile re-announces what carries some).
pub fn speaker_config(p: &BgpPlan, announce: &BTreeMap<IpNet, Communities>) -> SpeakerConfig {
    let mut cfg = SpeakerConfig::new(p.asn, p.router_id);
    cfg.listen = Some(SocketAddr::new(
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        p.listen_port,
    ));
    cfg.kernel = Some(KernelConfig {
        protocol: BGPD_ROUTE_PROTOCOL,
        ..KernelConfig::default()
    });
    cfg.cluster_id = p.cluster_id;
    cfg.filters = p.filters.clone();
    cfg.peers = p.peers.clone();
    cfg.originate = announce.keys().copied().collect();
    cfg
}

/// The BGP plan of `node` for a snapshot and the passwords read from Secrets.
pub fn plan_for(node: &str, s: &Snapshot, secrets: &BTreeMap<(String, String), String>) -> BgpPlan {
    plan(BgpInputs {
        node,
        nodes: &s.nodes,
        configs: &s.bgp_configs,
        peers: &s.bgp_peers,
        filters: &s.bgp_filters,
        bfd_profiles: &s.bfd_profiles,
        secrets,
    })
}

/// Reads the passwords the snapshot's peers name (none without a Secret reader).
pub async fn read_secrets(
    reader: Option<&SecretReader>,
    s: &Snapshot,
) -> BTreeMap<(String, String), String> {
    match reader {
        Some(r) => r.read(&secret_refs(s.bgp_peers.values())).await,
        None => BTreeMap::new(),
    }
}

/// Everything the reconciler drives.
pub struct Reconciler {
    pub node: String,
    pub snapshot: Snapshot,
    pub speaker: SpeakerSlot,
    /// The plan the current speaker runs.
    pub applied: BgpPlan,
    /// What the current speaker announces, with the communities it carries.
    pub announced: BTreeMap<IpNet, Communities>,
    pub pods: Arc<PodNetwork>,
    pub store: Arc<EndpointStore>,
    /// Taken for writing around route sync (see `CniService::dataplane_lock`).
    pub lock: Arc<RwLock<()>>,
    pub health: Arc<Health>,
    pub resync: Duration,
    /// The address families this node's pools serve, for IPAM (see `NodeIpam`).
    pub families: watch::Sender<Option<(bool, bool)>>,
    pub policy: PolicyEngine,
    /// Host interfaces of local endpoints whose policy is in the kernel (CNI ADD waits
    /// for its pod to appear here).
    pub programmed: watch::Sender<BTreeSet<String>>,
    /// Warnings (policy, communities) already logged, so each is logged once.
    pub logged_warnings: BTreeSet<String>,
    /// Whether the engine has applied once (its kernel copy can be checked from then on).
    pub policy_applied: bool,
    /// Reads BGP passwords from Secrets (Kubernetes mode).
    pub secrets: Option<SecretReader>,
    /// The passwords read at the last BGP sync.
    pub passwords: BTreeMap<(String, String), String>,
    /// Reconciles the node's allocations, endpoints and interfaces.
    pub audit: Audit,
    /// Inconsistencies already reported (each is logged once while it lasts).
    pub reported: BTreeSet<String>,
    /// Where peer status (`ReferencesResolved`) is written.
    pub ds: twill_api::Datastore,
    /// felix's command-line settings, under FelixConfiguration.
    pub base: crate::config::Config,
    /// The settings applied last (`None` before the first reconcile).
    pub effective: Option<super::felix_config::Effective>,
    /// The CNI service's default pod MTU.
    pub default_mtu: Arc<std::sync::atomic::AtomicU32>,
    /// The uplink's MTU (the default pod MTU when nothing sets one).
    pub uplink_mtu: u32,
    /// Workload interfaces without endpoint, as last reported.
    pub unknown_ifaces: super::unknown_ifaces::UnknownReport,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reconciler({})", self.node)
    }
}

impl Reconciler {
    /// The node's share of the IPAM state now.
    pub fn owned(&self) -> Owned {
        owned(&self.node, self.snapshot.blocks.values())
    }

    /// The BGP plan for the current snapshot.
    pub fn plan(&self) -> BgpPlan {
        plan_for(&self.node, &self.snapshot, &self.passwords)
    }

    async fn sync_bgp(&mut self) -> Result<(), String> {
        self.passwords = read_secrets(self.secrets.as_ref(), &self.snapshot).await;
        let plan = self.plan();
        self.health
            .metrics
            .bgp_peers_configured
            .set(plan.peers.len() as i64);
        if let Err(e) = super::bgp::status::report(
            &self.ds,
            &self.snapshot.bgp_peers,
            super::bgp::status::Known {
                filters: &plan.filters,
                bfd_profiles: &self.snapshot.bfd_profiles,
                secrets: &self.passwords,
            },
        )
        .await
        {
            tracing::warn!(error = %e, "writing BGPPeer status");
        }
        if plan == self.applied {
            return Ok(());
        }
        for w in plan
            .warnings
            .iter()
            .filter(|w| !self.applied.warnings.contains(w))
        {
            tracing::warn!(warning = %w, "BGP configuration");
        }
        if identity(&plan) != identity(&self.applied) {
            tracing::info!(
                asn = plan.asn,
                router_id = %plan.router_id,
                port = plan.listen_port,
                "BGP identity changed: restarting the speaker"
            );
            let old = self.speaker.read().await.clone();
            old.shutdown().await;
            // The old listener must be gone before the new one binds the same port.
            let mut slot = self.speaker.write().await;
            let new = Speaker::start_with_metrics(
                speaker_config(&plan, &self.announced),
                self.health.bgp_metrics(),
            )
            .await
            .map_err(|e| format!("restarting the speaker: {e}"))?;
            *slot = Arc::new(new);
        } else {
            let speaker = self.speaker.read().await.clone();
            speaker
                .set_peers(plan.peers.clone(), plan.filters.clone())
                .map_err(|e| format!("updating peers: {e}"))?;
        }
        self.applied = plan;
        Ok(())
    }

    async fn sync_routes(&mut self) -> Result<(), String> {
        let owned = self.owned();
        let adv = advertisements(self.snapshot.bgp_configs.get("default").map(|c| &c.spec));
        for w in &adv.warnings {
            if self.logged_warnings.insert(w.clone()) {
                tracing::warn!(warning = %w, "BGP communities");
            }
        }
        let spec = self.snapshot.bgp_configs.get("default").map(|c| &c.spec);
        let services = super::bgp::services::advertised(
            &self.node,
            spec,
            self.snapshot.services.values(),
            self.snapshot.endpoint_slices.values(),
            &self.snapshot.policy.endpoints,
        );
        for w in &services.warnings {
            if self.logged_warnings.insert(w.clone()) {
                tracing::warn!(warning = %w, "BGP service advertisement");
            }
        }
        let announce: BTreeMap<IpNet, Communities> = originated(&owned)
            .into_iter()
            .chain(services.prefixes)
            .map(|p| (p, adv.for_prefix(&p)))
            .collect();
        let (add, del) = announce_diff(&self.announced, &announce);
        if !add.is_empty() || !del.is_empty() {
            let speaker = self.speaker.read().await.clone();
            // One call per set of communities, so each group packs into shared UPDATEs.
            let mut groups: BTreeMap<&Communities, Vec<IpNet>> = BTreeMap::new();
            for p in &add {
                if let Some(c) = announce.get(p) {
                    groups.entry(c).or_default().push(*p);
                }
            }
            for (communities, prefixes) in groups {
                tracing::info!(?prefixes, ?communities, "announcing");
                speaker
                    .originate_with(prefixes, communities.clone())
                    .map_err(|e| format!("originate: {e}"))?;
            }
            if !del.is_empty() {
                tracing::info!(prefixes = ?del, "withdrawing");
                speaker
                    .withdraw(del)
                    .map_err(|e| format!("withdraw: {e}"))?;
            }
            self.announced = announce;
        }
        self.health
            .metrics
            .announced_prefixes
            .set(self.announced.len() as i64);
        let _guard = self.lock.write().await;
        let endpoints = self.store.all().await;
        self.health
            .metrics
            .local_endpoints
            .set(endpoints.len() as i64);
        // An endpoint whose interface vanished gets no route (the audit reports it): a
        // route through a missing device would fail this pass every second.
        let links = self
            .pods
            .link_names()
            .await
            .map_err(|e| format!("listing interfaces: {e}"))?;
        let present: Vec<_> = endpoints
            .iter()
            .filter(|e| e.host_ifname.is_empty() || links.contains(&e.host_ifname))
            .cloned()
            .collect();
        let desired = desired_routes(&owned, &present);
        let ops = self
            .pods
            .sync_routes(&desired)
            .await
            .map_err(|e| format!("host routes: {e}"))?;
        if !ops.is_empty() {
            tracing::info!(changes = ops.len(), ?ops, "host routes repaired or updated");
            self.health.metrics.route_changes.inc_by(ops.len() as u64);
        }
        Ok(())
    }

    /// Tells IPAM which families this node's pools serve (only once the snapshot is
    /// complete: before that, IPAM reads them from the datastore).
    pub fn publish_families(&self) {
        if !self.snapshot.is_complete() {
            return;
        }
        let labels = self
            .snapshot
            .nodes
            .get(&self.node)
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        let f = families_from(
            self.snapshot.policy.pools.values().map(AsRef::as_ref),
            &labels,
        );
        self.families.send_if_modified(|old| {
            let changed = *old != Some(f);
            *old = Some(f);
            changed
        });
    }

    async fn sync_policy(&mut self, check: bool) -> Result<(), String> {
        // The first apply replaces the whole table anyway: nothing to check before it.
        if check && self.policy_applied {
            let in_sync = self
                .policy
                .in_sync()
                .await
                .map_err(|e| format!("policy check: {e}"))?;
            if !in_sync {
                tracing::warn!("policy in the kernel drifted from what felix applied: rebuilding");
                self.health.metrics.drift_repairs.inc();
                self.policy
                    .resync()
                    .await
                    .map_err(|e| format!("policy rebuild: {e}"))?;
            }
        }
        let inputs = Arc::new(self.snapshot.policy.clone());
        let stats = self
            .policy
            .apply(inputs)
            .await
            .map_err(|e| format!("policy: {e}"))?;
        self.policy_applied = true;
        for w in &stats.warnings {
            if self.logged_warnings.insert(w.clone()) {
                tracing::warn!(warning = %w, "policy (fails closed)");
            }
        }
        if stats.full || stats.chains_changed > 0 || stats.element_changes > 0 {
            tracing::debug!(?stats, "policy applied");
        }
        let local: BTreeSet<String> = self
            .snapshot
            .policy
            .endpoints
            .values()
            .filter(|w| w.spec.node == self.node)
            .filter_map(|w| w.spec.interface_name.clone())
            .collect();
        self.report_unknown_interfaces(&local).await;
        self.programmed.send_if_modified(|old| {
            let changed = *old != local;
            *old = local;
            changed
        });
        Ok(())
    }

    /// Runs the audit, logs what it reclaimed and (once each) what it found inconsistent.
    async fn audit(&mut self) -> Result<(), String> {
        let report = self.audit.run().await?;
        self.health.metrics.audited(&report);
        self.log_audit(&report);
        Ok(())
    }

    fn log_audit(&mut self, r: &AuditReport) {
        for ep in &r.removed_endpoints {
            tracing::warn!(endpoint = %ep, "audit: the endpoint's container is gone: removed it and released its addresses");
        }
        for h in &r.freed_handles {
            tracing::warn!(handle = %h, "audit: released an allocation no endpoint owns");
        }
        let mut now = BTreeSet::new();
        for (ep, ifname) in &r.missing_interfaces {
            let key = format!("missing {ep} {ifname}");
            if !self.reported.contains(&key) {
                tracing::warn!(endpoint = %ep, interface = %ifname, "audit: the endpoint's host interface is missing (its container is alive; CNI CHECK fails until the runtime re-adds it)");
            }
            now.insert(key);
        }
        self.reported = now;
    }

    /// Reports `tw*` links that no local endpoint names (the dataplane shuts them).
    async fn report_unknown_interfaces(&mut self, local: &BTreeSet<String>) {
        use super::unknown_ifaces::{unknown, workload_links};
        let links = match workload_links(self.pods.handle()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "listing workload interfaces");
                return;
            }
        };
        let t = self.unknown_ifaces.update(unknown(&links, local));
        for iface in &t.appeared {
            tracing::warn!(
                interface = %iface,
                "workload interface with no endpoint on this node: traffic to and from it is dropped"
            );
        }
        for iface in &t.resolved {
            tracing::info!(interface = %iface, "workload interface no longer unknown");
        }
        self.health
            .metrics
            .unknown_workload_interfaces
            .set(self.unknown_ifaces.count() as i64);
    }

    /// Applies the effective FelixConfiguration: what changed takes effect now.
    fn apply_config(&mut self) {
        let (e, warnings) =
            super::felix_config::effective(&self.base, &self.snapshot.felix_configs, &self.node);
        for w in warnings {
            if self.logged_warnings.insert(w.clone()) {
                tracing::warn!(warning = %w, "FelixConfiguration");
            }
        }
        if self.effective.as_ref() == Some(&e) {
            return;
        }
        let old = self.effective.replace(e.clone());
        if old.as_ref().is_some_and(|o| o.log != e.log) {
            match crate::logging::reload(&e.log) {
                Ok(()) => tracing::info!(filter = %e.log, "log filter changed"),
                Err(err) => tracing::warn!(filter = %e.log, error = %err, "log filter refused"),
            }
        }
        if e.resync != self.resync {
            tracing::info!(seconds = e.resync.as_secs(), "resync interval changed");
            self.resync = e.resync;
            self.health
                .set_max_silence(e.resync * 3 + Duration::from_secs(10));
        }
        self.snapshot.policy.host = e.host.clone();
        self.default_mtu.store(
            e.mtu.unwrap_or(self.uplink_mtu),
            std::sync::atomic::Ordering::Relaxed,
        );
        tracing::info!(
            log = %e.log,
            resync_seconds = e.resync.as_secs(),
            endpoint_to_host = ?e.host.endpoint_to_host,
            failsafe_inbound = ?e.host.failsafe_inbound,
            mtu = ?e.mtu,
            "felix configuration applied"
        );
    }

    async fn reconcile(&mut self, dirty: Dirty) -> Result<(), String> {
        let start = Instant::now();
        let mut result = Ok(());
        if dirty.config {
            self.apply_config();
        }
        // First, so that routes and policy follow what it reclaimed.
        if dirty.audit
            && let Err(e) = self.audit().await
        {
            result = Err(format!("audit: {e}"));
        }
        if dirty.bgp
            && let Err(e) = self.sync_bgp().await
        {
            result = Err(e);
        }
        if dirty.routes
            && let Err(e) = self.sync_routes().await
        {
            result = Err(e);
        }
        if (dirty.policy || dirty.policy_check)
            && let Err(e) = self.sync_policy(dirty.policy_check).await
        {
            result = Err(e);
        }
        let took = start.elapsed();
        self.health
            .metrics
            .reconciled(if result.is_ok() { "ok" } else { "error" }, took);
        result
    }

    /// Runs until `shutdown` turns true or the change channel closes.
    pub async fn run(
        mut self,
        mut changes: mpsc::Receiver<Change>,
        mut drift: mpsc::UnboundedReceiver<Drift>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut period = self.resync;
        let mut resync = tokio::time::interval(period);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = Dirty::all();
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            if pending.any() && self.snapshot.is_complete() {
                match self.reconcile(pending).await {
                    Ok(()) => {
                        pending = Dirty::default();
                        retry_at = None;
                        self.health.set_ready(true);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reconcile failed; retrying in 1 s");
                        self.health.set_ready(false);
                        retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            if self.resync != period {
                period = self.resync;
                resync = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
            self.health.beat();
            let retry = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = changes.recv() => {
                    let Some(c) = c else { return };
                    pending.merge(Dirty::of_change(&c, &self.node));
                    (c.apply)(&mut self.snapshot);
                    // Take the whole burst before reconciling once.
                    while let Ok(c) = changes.try_recv() {
                        pending.merge(Dirty::of_change(&c, &self.node));
                        (c.apply)(&mut self.snapshot);
                    }
                    self.publish_families();
                    if retry_at.is_some() {
                        // Let the retry timer pace a failing step.
                        continue;
                    }
                }
                d = drift.recv() => {
                    let Some(d) = d else { return };
                    let mut kinds = vec![d];
                    while let Ok(d) = drift.try_recv() {
                        if !kinds.contains(&d) {
                            kinds.push(d);
                        }
                    }
                    // Every policy change notifies, felix's own too: the check decides
                    // whether it was drift (and then logs and counts it).
                    let kernel: Vec<Drift> =
                        kinds.iter().copied().filter(|d| *d != Drift::Policy).collect();
                    if !kernel.is_empty() {
                        tracing::info!(drift = ?kernel, "kernel state changed behind felix's back");
                        self.health.metrics.drift_repairs.inc();
                    }
                    pending.policy_check |= kinds.contains(&Drift::Policy);
                    // A vanished pod interface: the audit reports its endpoint.
                    pending.audit |= kinds.contains(&Drift::Link);
                    if kinds.contains(&Drift::BgpRoute) {
                        let speaker = self.speaker.read().await.clone();
                        if let Err(e) = speaker.resync_kernel() {
                            tracing::warn!(error = %e, "asking the speaker to repair its routes");
                        }
                    }
                    pending.routes |= kernel.iter().any(|d| *d != Drift::BgpRoute);
                }
                _ = resync.tick() => pending = Dirty::all(),
                () = retry => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: &'static str, node: Option<&str>) -> Change {
        Change {
            kind,
            node: node.map(str::to_string),
            apply: Box::new(|_| {}),
        }
    }

    #[test]
    fn only_this_nodes_endpoints_make_host_routes_stale() {
        let local = Dirty::of_change(&change("WorkloadEndpoint", Some("n1")), "n1");
        assert!(local.routes && local.policy);
        let remote = Dirty::of_change(&change("WorkloadEndpoint", Some("n2")), "n1");
        assert!(
            !remote.routes && remote.policy,
            "a remote pod changes policy only"
        );
        let relist = Dirty::of_change(&change("WorkloadEndpoint", None), "n1");
        assert!(relist.routes && relist.policy);
        let cfg = Dirty::of_change(&change("BGPConfiguration", None), "n1");
        assert!(cfg.bgp && cfg.routes && !cfg.policy);
        assert!(!Dirty::of_change(&change("Namespace", None), "n1").routes);
    }
}
