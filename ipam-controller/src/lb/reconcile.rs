//! One LoadBalancer IPAM pass over every Service: each Service that is Twill's gets one
//! address per family it asks for (the one it holds if it holds one), written to
//! `status.loadBalancer.ingress`; addresses of Services that are gone, changed type or
//! class, or no longer ask for them are freed. A request that cannot be met is logged,
//! recorded as the Service condition `twill.dev/LoadBalancerIPs` (status `False`, with the
//! reason) and, in Kubernetes mode, as a Warning Event, once per change of reason.
//!
//! Addresses are held in IPAM blocks under the handle `lb.<namespace>.<name>`: a pass that
//! crashed between the block write and the status write finds the address again next time.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use twill_api::datastore::{Datastore, DatastoreError};
use twill_api::resources::native::Service;

use super::alloc::{Blocks, LbError};
use super::events;
use super::want::{Want, want_of};
use crate::allocator::{IpamError, Settings};
use crate::net::Family;
use crate::plan::Pool;

/// Prefix of the handles of LoadBalancer addresses.
pub const HANDLE_PREFIX: &str = "lb.";
/// The condition this controller keeps on each Service it serves.
pub const CONDITION: &str = "twill.dev/LoadBalancerIPs";

/// Whether an allocation's handle is a LoadBalancer address's (never a pod's: GC and the
/// workload checks leave these to this module).
pub fn is_lb_handle(handle: &str) -> bool {
    handle.starts_with(HANDLE_PREFIX)
}

/// The handle of a Service's addresses.
pub fn handle_of(namespace: &str, name: &str) -> String {
    format!("{HANDLE_PREFIX}{namespace}.{name}")
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbReport {
    /// Addresses handed out.
    pub allocated: usize,
    /// Addresses freed.
    pub released: usize,
    /// Services whose status was written.
    pub statuses: usize,
    /// Services whose request could not be met.
    pub failed: usize,
}

/// One pass.
pub async fn reconcile(ds: &Datastore, settings: &Settings) -> Result<LbReport, IpamError> {
    let services = ds.list::<Service>(None).await?.items;
    let mut blocks = Blocks::load(ds).await?;
    let mut report = LbReport::default();
    let mut held: BTreeMap<String, Vec<(IpAddr, u64)>> = BTreeMap::new();
    for (handle, ip, seq) in blocks.held(is_lb_handle) {
        held.entry(handle).or_default().push((ip, seq));
    }
    let lb_pools: Vec<&Pool> = settings
        .pools
        .iter()
        .filter(|p| p.load_balancer && !p.disabled)
        .collect();
    for svc in &services {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let handle = handle_of(&ns, &name);
        let mine = held.remove(&handle).unwrap_or_default();
        let want = match want_of(svc) {
            Ok(Some(want)) => want,
            Ok(None) => {
                // Not (or no longer) ours: free what it held, take it out of its status.
                for (ip, seq) in &mine {
                    blocks.release(*ip, &handle, *seq).await?;
                    report.released += 1;
                }
                let ips: Vec<IpAddr> = mine.iter().map(|(ip, _)| *ip).collect();
                let kept: Vec<IpAddr> = ingress_ips(svc)
                    .into_iter()
                    .filter(|ip| !ips.contains(ip))
                    .collect();
                if kept.len() != ingress_ips(svc).len() || current_condition(svc).is_some() {
                    write_status(ds, svc, &kept, None).await?;
                    report.statuses += 1;
                }
                continue;
            }
            Err(bad) => {
                report.failed += 1;
                problem(ds, svc, "InvalidRequest", &bad.0).await?;
                continue;
            }
        };
        let pools: Vec<&Pool> = if want.pools.is_empty() {
            lb_pools.clone()
        } else {
            lb_pools
                .iter()
                .copied()
                .filter(|p| want.pools.contains(&p.name))
                .collect()
        };
        if !want.pools.is_empty() && pools.is_empty() {
            report.failed += 1;
            let message = format!(
                "{} names {}: no enabled LoadBalancer pool of that name",
                super::want::POOL_ANNOTATION,
                want.pools.join(", ")
            );
            problem(ds, svc, "NoSuchPool", &message).await?;
            continue;
        }
        match ensure(&mut blocks, settings, &pools, svc, &handle, &want, &mine).await {
            Ok((ips, allocated)) => {
                report.allocated += allocated;
                // Everything else the handle holds (a lost race, a changed request) goes.
                for (ip, seq) in mine.iter().filter(|(ip, _)| !ips.contains(ip)) {
                    blocks.release(*ip, &handle, *seq).await?;
                    report.released += 1;
                }
                let ok = condition_true(&ips);
                if ingress_ips(svc) != ips || !has_condition(svc, &ok) {
                    write_status(ds, svc, &ips, Some(ok)).await?;
                    report.statuses += 1;
                    tracing::info!(service = %format!("{ns}/{name}"), addresses = ?ips, "LoadBalancer addresses allocated");
                }
            }
            Err(LbError::Ipam(e)) => return Err(e),
            Err(e) => {
                report.failed += 1;
                let reason = match &e {
                    LbError::Taken { .. } => "AddressTaken",
                    LbError::Reserved { .. } => "AddressReserved",
                    LbError::NotInPool { .. } => "AddressNotInPool",
                    LbError::Exhausted { .. } | LbError::Ipam(_) => "PoolExhausted",
                };
                problem(ds, svc, reason, &e.to_string()).await?;
            }
        }
    }
    // Handles of Services that are gone.
    for (handle, addrs) in held {
        for (ip, seq) in addrs {
            blocks.release(ip, &handle, seq).await?;
            report.released += 1;
            tracing::info!(%handle, %ip, "Service gone: LoadBalancer address freed");
        }
    }
    Ok(report)
}

/// The addresses `svc` ends up with (in its family order) and how many were new.
async fn ensure(
    blocks: &mut Blocks<'_>,
    settings: &Settings,
    pools: &[&Pool],
    svc: &Service,
    handle: &str,
    want: &Want,
    mine: &[(IpAddr, u64)],
) -> Result<(Vec<IpAddr>, usize), LbError> {
    let attrs = BTreeMap::from([
        (
            "namespace".to_owned(),
            svc.metadata.namespace.clone().unwrap_or_default(),
        ),
        (
            "service".to_owned(),
            svc.metadata.name.clone().unwrap_or_default(),
        ),
    ]);
    let shown = ingress_ips(svc);
    let mut out = Vec::new();
    let mut allocated = 0;
    for &family in &want.families {
        if let Some(addr) = want.addr_of(family) {
            if !mine.iter().any(|(ip, _)| *ip == addr) {
                blocks
                    .claim_addr(pools, &settings.reservations, addr, handle, &attrs)
                    .await?;
                allocated += 1;
            }
            out.push(addr);
            continue;
        }
        // Keep one it holds: the one its status shows first, else one of its pools.
        let of_family: Vec<IpAddr> = mine
            .iter()
            .map(|(ip, _)| *ip)
            .filter(|ip| Family::of_addr(ip) == family)
            .filter(|ip| pools.iter().any(|p| p.cidr.contains(ip)))
            .collect();
        let keep = of_family
            .iter()
            .find(|ip| shown.contains(ip))
            .or(of_family.first())
            .copied();
        match keep {
            Some(ip) => out.push(ip),
            None => {
                let ip = blocks
                    .claim_any(pools, &settings.reservations, family, handle, &attrs)
                    .await?;
                allocated += 1;
                out.push(ip);
            }
        }
    }
    Ok((out, allocated))
}

/// The addresses in `status.loadBalancer.ingress`.
pub fn ingress_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| {
            ingress
                .iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn condition(status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: CONDITION.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
        observed_generation: None,
    }
}

fn condition_true(ips: &[IpAddr]) -> Condition {
    let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    condition("True", "Allocated", &list.join(","))
}

/// Whether `svc` already carries `c` (type, status, reason and message).
fn has_condition(svc: &Service, c: &Condition) -> bool {
    current_condition(svc).is_some_and(|old| {
        old.status == c.status && old.reason == c.reason && old.message == c.message
    })
}

fn current_condition(svc: &Service) -> Option<&Condition> {
    svc.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == CONDITION)
}

/// Writes `ips` as the Service's ingress and `cond` as its condition (CAS: a conflict
/// leaves it to the next pass, which re-reads the Service).
async fn write_status(
    ds: &Datastore,
    svc: &Service,
    ips: &[IpAddr],
    cond: Option<Condition>,
) -> Result<(), IpamError> {
    let mut updated = svc.clone();
    let status = updated.status.get_or_insert_with(ServiceStatus::default);
    let ingress: Vec<LoadBalancerIngress> = ips
        .iter()
        .map(|ip| LoadBalancerIngress {
            ip: Some(ip.to_string()),
            ..Default::default()
        })
        .collect();
    status.load_balancer = Some(LoadBalancerStatus {
        ingress: (!ingress.is_empty()).then_some(ingress),
    });
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match cond {
        Some(c) => match conditions.iter_mut().find(|old| old.type_ == CONDITION) {
            Some(old) => {
                if old.status == c.status {
                    let at = old.last_transition_time.clone();
                    *old = c;
                    old.last_transition_time = at;
                } else {
                    *old = c;
                }
            }
            None => conditions.push(c),
        },
        None => conditions.retain(|old| old.type_ != CONDITION),
    }
    if conditions.is_empty() {
        status.conditions = None;
    }
    match ds.update_status(&updated).await {
        Ok(_) => Ok(()),
        Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {
            tracing::debug!(service = ?svc.metadata.name, "Service changed under the status write; next pass");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Reports a request that cannot be met: a warning in the log every pass, and (once per
/// change of reason or message) the condition and a Warning Event.
async fn problem(
    ds: &Datastore,
    svc: &Service,
    reason: &str,
    message: &str,
) -> Result<(), IpamError> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    tracing::warn!(service = %format!("{ns}/{name}"), %reason, "cannot allocate LoadBalancer addresses: {message}");
    let c = condition("False", reason, message);
    if has_condition(svc, &c) {
        return Ok(());
    }
    let ips = ingress_ips(svc);
    write_status(ds, svc, &ips, Some(c)).await?;
    events::warn(ds, svc, reason, message).await;
    Ok(())
}
