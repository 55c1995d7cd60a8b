//! The CNI request flow on felix's side: validate → allocate → plumb → record → result,
//! undoing what was done when a step fails; DEL idempotent; CHECK, GC (CNI 1.1
//! `cni.dev/valid-attachments`) and STATUS.
//!
//! Every outcome is a CNI result or a CNI error object with a spec code: this layer never
//! lets a transport error or a panic stand in for an answer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{RwLock, watch};

use ipnet::IpNet;
use serde_json::Value;
use twill_cni::config::{self, NetConf};
use twill_cni::env::{validate_container_id, validate_ifname, validate_netns};
use twill_cni::request::{CniOutcome, CniRequest};
use twill_cni::result::{CniResult, Interface, IpConfig, Route};
use twill_cni::spec::{CniError, code};

use super::traits::{AllocateRequest, Endpoint, EndpointKey, Endpoints, Ipam, IpamError};
use crate::dataplane::{DataplaneError, GATEWAY_V4, GATEWAY_V6, PodNetwork, PodSpec};

/// The MTU when neither the configuration nor felix's own setting gives one.
pub const DEFAULT_MTU: u32 = 1500;

/// How long one datastore step of a CNI request (read or write an endpoint, allocate or
/// release addresses) may take. A datastore that does not answer makes the request fail
/// with code 11 within seconds instead of holding the runtime until its own deadline.
pub const DATASTORE_STEP: Duration = Duration::from_secs(5);

/// Runs one datastore step, failing with code 11 when it takes longer than `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    step: impl std::future::Future<Output = Result<T, CniError>>,
) -> Result<T, CniError> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result,
        Err(_) => Err(CniError::new(
            code::TRY_AGAIN_LATER,
            format!("the datastore did not answer within {limit:?}"),
        )
        .with_details(format!("while trying to {what}"))),
    }
}

/// The CNI service: owns nothing but references to IPAM, the endpoint store and the
/// dataplane.
pub struct CniService {
    ipam: Arc<dyn Ipam>,
    endpoints: Arc<dyn Endpoints>,
    pods: Arc<PodNetwork>,
    default_mtu: u32,
    /// Held shared by every ADD, DEL and GC for its whole run, and exclusively by whoever
    /// diffs felix's host routes against the endpoints: a pod whose route is in the kernel
    /// but whose record is not yet stored must never look stale.
    lock: Arc<RwLock<()>>,
    /// Host interfaces whose policy is programmed, and how long ADD waits for its own.
    policy_wait: Option<(watch::Receiver<BTreeSet<String>>, Duration)>,
    /// The bound of each datastore step ([`DATASTORE_STEP`]).
    step: Duration,
}

impl std::fmt::Debug for CniService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CniService")
            .field("default_mtu", &self.default_mtu)
            .finish_non_exhaustive()
    }
}

fn ipam_error(e: IpamError) -> CniError {
    match e {
        IpamError::Exhausted(m) | IpamError::Unavailable(m) => {
            CniError::new(code::TRY_AGAIN_LATER, "cannot allocate an address now").with_details(m)
        }
        IpamError::Invalid(m) => {
            CniError::new(code::INVALID_CONFIG, "cannot allocate an address").with_details(m)
        }
    }
}

fn dataplane_error(what: &str, e: DataplaneError) -> CniError {
    let code = match &e {
        DataplaneError::Netns { .. } | DataplaneError::Setns { .. } => code::UNKNOWN_CONTAINER,
        DataplaneError::LinkExists(_) => code::INVALID_CONFIG,
        _ => code::INTERNAL,
    };
    CniError::new(code, what).with_details(e.to_string())
}

fn store_error(e: impl std::fmt::Display) -> CniError {
    CniError::new(code::TRY_AGAIN_LATER, "endpoint store unavailable").with_details(e.to_string())
}

fn parse_config(req: &CniRequest) -> Result<(NetConf, Value), CniError> {
    let conf = config::parse(&req.config)?;
    let raw: Value = serde_json::from_slice(&req.config).map_err(|e| {
        CniError::new(code::DECODE, "cannot decode the network configuration")
            .with_details(e.to_string())
    })?;
    Ok((conf, raw))
}

/// The labels passed in CNI_ARGS ([`super::LABELS_ARG`]): `k=v` pairs separated by `,`.
fn labels_of(req: &CniRequest) -> Result<BTreeMap<String, String>, CniError> {
    let mut labels = BTreeMap::new();
    for (key, value) in &req.args.other {
        if key != super::LABELS_ARG {
            continue;
        }
        for pair in value.split(',').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_ARGS {}: {pair:?} is not key=value", super::LABELS_ARG),
                ));
            };
            labels.insert(k.to_string(), v.to_string());
        }
    }
    Ok(labels)
}

fn key_of(conf: &NetConf, req: &CniRequest) -> EndpointKey {
    EndpointKey {
        network: conf.name.clone(),
        container_id: req.container_id.clone(),
        ifname: req.ifname.clone(),
    }
}

/// The result for an endpoint: host veth and pod interface, one address per family with its
/// link-local gateway, and the default routes.
pub fn result_for(ep: &Endpoint) -> CniResult {
    let mut routes = Vec::new();
    let ips = ep
        .ips
        .iter()
        .map(|a| {
            let gw = match a {
                IpAddr::V4(_) => IpAddr::V4(GATEWAY_V4),
                IpAddr::V6(_) => IpAddr::V6(GATEWAY_V6),
            };
            let dst: IpNet = match a {
                IpAddr::V4(_) => IpNet::V4(ipnet::Ipv4Net::default()),
                IpAddr::V6(_) => IpNet::V6(ipnet::Ipv6Net::default()),
            };
            if !routes.iter().any(|r: &Route| r.dst == dst) {
                routes.push(Route { dst, gw: Some(gw) });
            }
            IpConfig {
                address: IpNet::from(*a),
                gateway: Some(gw),
                interface: Some(1),
            }
        })
        .collect();
    CniResult {
        interfaces: vec![
            Interface {
                name: ep.host_ifname.clone(),
                mac: crate::dataplane::pod::host_mac_string(),
                sandbox: None,
            },
            Interface {
                name: ep.key.ifname.clone(),
                mac: ep.pod_mac.clone(),
                sandbox: Some(ep.netns.clone()),
            },
        ],
        ips,
        routes,
    }
}

impl CniService {
    pub fn new(
        ipam: Arc<dyn Ipam>,
        endpoints: Arc<dyn Endpoints>,
        pods: Arc<PodNetwork>,
        default_mtu: u32,
    ) -> CniService {
        CniService {
            ipam,
            endpoints,
            pods,
            default_mtu,
            lock: Arc::new(RwLock::new(())),
            policy_wait: None,
            step: DATASTORE_STEP,
        }
    }

    /// Bounds each datastore step by `limit` instead of [`DATASTORE_STEP`].
    pub fn with_datastore_step(mut self, limit: Duration) -> Self {
        self.step = limit;
        self
    }

    /// Makes ADD wait (up to `limit`) until the new pod's host interface appears in
    /// `programmed`, i.e. its policy is in the kernel. Without this, ADD answers at once.
    pub fn with_policy_wait(
        mut self,
        programmed: watch::Receiver<BTreeSet<String>>,
        limit: Duration,
    ) -> Self {
        self.policy_wait = Some((programmed, limit));
        self
    }

    async fn wait_for_policy(&self, host_ifname: &str) {
        let Some((rx, limit)) = &self.policy_wait else {
            return;
        };
        let mut rx = rx.clone();
        let waited = tokio::time::timeout(*limit, rx.wait_for(|set| set.contains(host_ifname)));
        match waited.await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {}
            Err(_) => tracing::warn!(
                interface = host_ifname,
                "policy not programmed within {limit:?}; answering ADD anyway"
            ),
        }
    }

    /// The lock that keeps route sync out of in-flight ADD, DEL and GC (take it for
    /// writing around a sync of pod routes).
    pub fn dataplane_lock(&self) -> Arc<RwLock<()>> {
        self.lock.clone()
    }

    fn validate_attachment(req: &CniRequest, netns_required: bool) -> Result<(), CniError> {
        validate_container_id(&req.container_id)?;
        validate_ifname(&req.ifname)?;
        validate_netns(&req.netns, netns_required)
    }

    /// CNI ADD.
    pub async fn add(&self, req: &CniRequest) -> CniOutcome {
        Self::validate_attachment(req, true)?;
        let _guard = self.lock.read().await;
        let (conf, _) = parse_config(req)?;
        let key = key_of(&conf, req);
        let labels = labels_of(req)?;
        // A repeated ADD (the runtime never saw our answer) starts from a clean slate.
        if self.get_endpoint(&key).await?.is_some() {
            self.teardown(&key).await?;
        }
        let handle = key.ipam_handle();
        let request = AllocateRequest {
            handle: handle.clone(),
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
            pod_namespace: req.args.k8s_pod_namespace.clone(),
            pod_name: req.args.k8s_pod_name.clone(),
        };
        let allocated = bounded(self.step, "allocate addresses", async {
            self.ipam.allocate(&request).await.map_err(ipam_error)
        })
        .await;
        let ips = match allocated {
            Ok(ips) => ips,
            Err(e) => {
                // A timed-out allocation may still land: undo it (bounded too).
                if e.code == code::TRY_AGAIN_LATER {
                    self.release_quietly(&handle).await;
                }
                return Err(e);
            }
        };
        let mtu = conf.mtu.unwrap_or(self.default_mtu);
        let spec = PodSpec {
            workload_id: key.workload_id(),
            netns: req.netns.clone().into(),
            ifname: req.ifname.clone(),
            mtu,
            addresses: ips.clone(),
        };
        let plumbed = match self.pods.plumb(&spec).await {
            Ok(p) => p,
            Err(e) => {
                self.release_quietly(&handle).await;
                return Err(dataplane_error("cannot set up the pod's interface", e));
            }
        };
        let ep = Endpoint {
            key: key.clone(),
            netns: req.netns.clone(),
            pod_namespace: req.args.k8s_pod_namespace.clone(),
            pod_name: req.args.k8s_pod_name.clone(),
            labels,
            host_ifname: plumbed.host_ifname,
            pod_mac: plumbed.pod_mac,
            ips,
            mtu,
        };
        let stored = bounded(self.step, "record the endpoint", async {
            self.endpoints.put(&ep).await.map_err(store_error)
        })
        .await;
        if let Err(e) = stored {
            if let Err(undo) = self.pods.unplumb(&spec.workload_id).await {
                tracing::warn!(%undo, "cannot undo plumbing after a store failure");
            }
            self.release_quietly(&handle).await;
            return Err(e);
        }
        drop(_guard);
        self.wait_for_policy(&ep.host_ifname).await;
        tracing::info!(container = %key.container_id, ifname = %key.ifname, ips = ?ep.ips, "pod added");
        Ok(Some(result_for(&ep).to_json(conf.cni_version)))
    }

    async fn release_quietly(&self, handle: &str) {
        if let Err(e) = self.release(handle).await {
            tracing::warn!(error = %e.msg, handle, "cannot release addresses while undoing an ADD");
        }
    }

    async fn release(&self, handle: &str) -> Result<(), CniError> {
        bounded(self.step, "release addresses", async {
            self.ipam.release(handle).await.map_err(ipam_error)
        })
        .await
    }

    async fn get_endpoint(&self, key: &EndpointKey) -> Result<Option<Endpoint>, CniError> {
        bounded(self.step, "read the endpoint", async {
            self.endpoints.get(key).await.map_err(store_error)
        })
        .await
    }

    /// Removes the attachment's plumbing, addresses and record; each part may already be gone.
    async fn teardown(&self, key: &EndpointKey) -> Result<(), CniError> {
        self.pods
            .unplumb(&key.workload_id())
            .await
            .map_err(|e| dataplane_error("cannot remove the pod's interface", e))?;
        self.release(&key.ipam_handle()).await?;
        bounded(self.step, "delete the endpoint", async {
            self.endpoints.delete(key).await.map_err(store_error)
        })
        .await
    }

    /// CNI DEL: succeeds when the netns, the interface or the allocation is already gone.
    pub async fn del(&self, req: &CniRequest) -> CniOutcome {
        Self::validate_attachment(req, false)?;
        let _guard = self.lock.read().await;
        let (conf, _) = parse_config(req)?;
        self.teardown(&key_of(&conf, req)).await?;
        tracing::info!(container = %req.container_id, ifname = %req.ifname, "pod deleted");
        Ok(None)
    }

    /// CNI CHECK: the recorded endpoint exists, matches `prevResult`, and the interface,
    /// addresses and routes are in place.
    pub async fn check(&self, req: &CniRequest) -> CniOutcome {
        Self::validate_attachment(req, true)?;
        let (conf, raw) = parse_config(req)?;
        let key = key_of(&conf, req);
        let ep = self.get_endpoint(&key).await?.ok_or_else(|| {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!("no endpoint for {} {}", key.container_id, key.ifname),
            )
        })?;
        if let Some(prev) = raw.get("prevResult") {
            let prev = CniResult::from_value(prev).map_err(|e| {
                CniError::new(code::DECODE, "cannot decode prevResult").with_details(e.to_string())
            })?;
            for ip in &ep.ips {
                if !prev.ips.iter().any(|p| p.address.addr() == *ip) {
                    return Err(CniError::new(
                        code::INTERNAL,
                        format!("prevResult lacks this endpoint's address {ip}"),
                    ));
                }
            }
        }
        let spec = PodSpec {
            workload_id: key.workload_id(),
            netns: req.netns.clone().into(),
            ifname: req.ifname.clone(),
            mtu: ep.mtu,
            addresses: ep.ips.clone(),
        };
        self.pods
            .check(&spec)
            .await
            .map_err(|e| dataplane_error("pod network check failed", e))?;
        Ok(None)
    }

    /// CNI GC: removes every attachment of this network not in `cni.dev/valid-attachments`,
    /// and releases IPAM handles of the network that no valid attachment owns. A GC without
    /// the list is an invalid configuration (code 7) and removes nothing.
    pub async fn gc(&self, req: &CniRequest) -> CniOutcome {
        let (conf, raw) = parse_config(req)?;
        let _guard = self.lock.read().await;
        // Without the list, "not named" would mean every pod of the node: a GC must name
        // what is valid, or it removes nothing.
        let valid: Vec<(String, String)> = match raw.get("cni.dev/valid-attachments") {
            None => {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    "GC without cni.dev/valid-attachments: refusing to remove anything",
                )
                .with_details(
                    "the runtime must list every attachment that is still valid (CNI 1.1)",
                ));
            }
            Some(v) => v
                .as_array()
                .ok_or_else(|| {
                    CniError::new(
                        code::INVALID_CONFIG,
                        "cni.dev/valid-attachments is not a list",
                    )
                })?
                .iter()
                .map(|a| {
                    let id = a.get("containerID").and_then(Value::as_str);
                    let ifname = a.get("ifname").and_then(Value::as_str);
                    match (id, ifname) {
                        (Some(id), Some(ifname)) => Ok((id.to_string(), ifname.to_string())),
                        _ => Err(CniError::new(
                            code::INVALID_CONFIG,
                            "a valid attachment lacks containerID or ifname",
                        )),
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let endpoints = bounded(self.step, "list endpoints", async {
            self.endpoints.list(&conf.name).await.map_err(store_error)
        })
        .await?;
        for ep in endpoints {
            let k = &ep.key;
            if !valid.contains(&(k.container_id.clone(), k.ifname.clone())) {
                tracing::info!(container = %k.container_id, ifname = %k.ifname, "GC removes a stale attachment");
                self.teardown(k).await?;
            }
        }
        let prefix = format!("{}.", conf.name);
        let handles = bounded(self.step, "list address handles", async {
            self.ipam.handles(&prefix).await.map_err(ipam_error)
        })
        .await?;
        for h in handles {
            let container = &h[prefix.len()..];
            if !valid.iter().any(|(id, _)| id == container) {
                self.release(&h).await?;
            }
        }
        Ok(None)
    }

    /// CNI STATUS: ready when IPAM could serve an ADD.
    pub async fn status(&self, req: &CniRequest) -> CniOutcome {
        parse_config(req)?;
        bounded(self.step, "check that addresses can be allocated", async {
            self.ipam.ready().await.map_err(|e| {
                CniError::new(code::NOT_AVAILABLE, "twill cannot allocate addresses now")
                    .with_details(e.to_string())
            })
        })
        .await?;
        Ok(None)
    }
}
