//! The node agent, wired together. `run` starts, in order: the health endpoints, the
//! datastore connection (retried until it answers), this node's `Node` resource, the
//! watches, the embedded BGP speaker (once the first full snapshot says how it should be
//! configured), the agent socket (CNI and BGP control), the drift monitor and the
//! reconciler.
//!
//! ```text
//!  datastore watches ──Change (mpsc)──▶ ┌────────────┐ ──set_peers/originate──▶ Speaker (bgpd)
//!  netlink monitor ───Drift (mpsc)────▶ │ Reconciler │ ──sync_routes─────────▶ kernel (proto 81)
//!  resync interval ───tick────────────▶ └────────────┘        ▲ write lock
//!                                                              │ read lock
//!  twill (CNI shim) ──gRPC on agent.sock──▶ CniService ───────┘──▶ IPAM, WorkloadEndpoints
//!  twillctl ─────────gRPC on agent.sock──▶ CurrentSpeakerApi ─▶ Speaker
//! ```
//! Shutdown (SIGTERM) stops serving and drops the speaker without a NOTIFICATION, so peers
//! that negotiated graceful restart keep this node's routes; felix's own kernel routes
//! stay, and pods keep their connectivity until felix is back.

pub mod audit;
pub mod bgp;
pub mod bgp_api;
pub mod cache;
pub mod drift;
pub mod endpoints;
pub mod health;
pub mod ipam;
pub mod kubernetes;
pub mod local;
pub mod node;
pub mod reconcile;
pub mod unknown_ifaces;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{RwLock, mpsc, watch};
use tokio_stream::wrappers::UnixListenerStream;
use twill_api::Datastore;
use twill_bgpd::Speaker;

use crate::cni::{AgentService, CniService};
use crate::config::Config;
use crate::dataplane::PodNetwork;
use cache::{Change, Snapshot};

/// Why felix could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("health endpoint {addr}: {source}")]
    Health {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("netlink: {0}")]
    Dataplane(#[from] crate::dataplane::DataplaneError),
    #[error(transparent)]
    Node(#[from] node::NodeError),
    #[error("loading workload endpoints: {0}")]
    Endpoints(crate::cni::StoreError),
    #[error("starting the BGP speaker: {0}")]
    Speaker(#[from] twill_bgpd::speaker::SpeakerError),
    #[error("agent socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("drift monitor: {0}")]
    Monitor(std::io::Error),
    #[error("agent socket server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("stopped before the datastore answered")]
    Stopped,
    #[error("policy dataplane: {0}")]
    Policy(#[from] crate::policy::PolicyError),
}

/// How long a CNI ADD waits for felix to program its pod's policy before answering (the
/// runtime starts the pod's processes only after the answer, so none of them runs before
/// its policy is in force).
pub const POLICY_WAIT: Duration = Duration::from_secs(5);

/// Connects to the datastore, retrying with backoff (felix must come up before it, as a
/// DaemonSet does), until it answers or `shutdown` fires.
async fn connect(
    cfg: &Config,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Datastore, AgentError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match cfg.datastore.connect().await {
            Ok(ds) => return Ok(ds),
            Err(e) => tracing::warn!(error = %e, "datastore not reachable yet"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return Err(AgentError::Stopped),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Applies changes until every kind has been listed once (or `limit` passes: then felix
/// goes on with what it has and the reconciler waits for the rest).
async fn first_snapshot(node: &str, rx: &mut mpsc::Receiver<Change>, limit: Duration) -> Snapshot {
    let mut snapshot = Snapshot {
        policy: crate::policy::PolicyInputs::new(node),
        ..Snapshot::default()
    };
    let deadline = tokio::time::Instant::now() + limit;
    while !snapshot.is_complete() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(c)) => (c.apply)(&mut snapshot),
            Ok(None) | Err(_) => break,
        }
    }
    snapshot
}

/// Runs the agent until `shutdown` turns true.
pub async fn run(cfg: Config, mut shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
    let health = Arc::new(health::Health::new(
        cfg.resync * 3 + Duration::from_secs(10),
    ));
    let listener = health::bind(cfg.health_listen)
        .await
        .map_err(|source| AgentError::Health {
            addr: cfg.health_listen,
            source,
        })?;
    let _health_server = health::serve(listener, health.clone());

    crate::dataplane::sysctl::set_root(cfg.proc_sys_net.clone());
    let ds = connect(&cfg, &mut shutdown).await?;
    tracing::info!(datastore = %ds.endpoint(), node = %cfg.node_name, "connected");
    let pods = Arc::new(PodNetwork::new()?);
    let kube = kubernetes::KubeMode::new(&ds, &cfg);
    let (want_v4, want_v6) = match &kube {
        Some(kube) => kube.addresses().await,
        None => (cfg.bgp_address, cfg.bgp_address_v6),
    };
    let uplink = node::detect(pods.handle(), want_v4, want_v6).await?;
    tracing::info!(?uplink, "uplink");
    node::register(&ds, &cfg.node_name, &uplink).await?;

    let store = Arc::new(
        endpoints::EndpointStore::load(ds.clone(), cfg.node_name.clone())
            .await
            .map_err(AgentError::Endpoints)?
            .with_decorator(kube.as_ref().map(kubernetes::KubeMode::decorator)),
    );
    let _kube_tasks = match &kube {
        Some(kube) => kube.start(pods.handle(), store.clone()).await,
        None => Vec::new(),
    };
    let allocator = Arc::new(twill_ipam::allocator::Ipam::new(ds.clone()));
    let (families_tx, families_rx) = watch::channel(None);
    let node_ipam = Arc::new(ipam::NodeIpam::new(
        cfg.node_name.clone(),
        allocator,
        families_rx,
    ));
    let mtu = cfg
        .mtu
        .or(uplink.mtu)
        .unwrap_or(crate::cni::service::DEFAULT_MTU);
    let (programmed_tx, programmed_rx) = watch::channel(Default::default());
    let cni = Arc::new(
        CniService::new(node_ipam.clone(), store.clone(), pods.clone(), mtu)
            .with_policy_wait(programmed_rx, POLICY_WAIT),
    );
    let policy = crate::policy::PolicyEngine::new(cfg.dataplane)?;

    let (tx, mut rx) = mpsc::channel::<Change>(4096);
    let _watches = cache::watch_all(&ds, &tx);
    drop(tx);
    let mut snapshot = first_snapshot(&cfg.node_name, &mut rx, Duration::from_secs(30)).await;
    snapshot.policy.host = cfg.host_policy.clone();

    let secrets = kube.as_ref().map(kubernetes::KubeMode::secrets);
    let passwords = reconcile::read_secrets(secrets.as_ref(), &snapshot).await;
    let plan = reconcile::plan_for(&cfg.node_name, &snapshot, &passwords);
    let announce = local::originated(&local::owned(&cfg.node_name, snapshot.blocks.values()))
        .into_iter()
        .map(|p| (p, Default::default()))
        .collect();
    let speaker = Speaker::start_with_metrics(
        reconcile::speaker_config(&plan, &announce),
        health.bgp_metrics(),
    )
    .await?;
    tracing::info!(asn = plan.asn, router_id = %plan.router_id, peers = plan.peers.len(), "BGP speaker started");
    let slot: bgp_api::SpeakerSlot = Arc::new(RwLock::new(Arc::new(speaker)));
    let reconciler = reconcile::Reconciler {
        node: cfg.node_name.clone(),
        snapshot,
        speaker: slot.clone(),
        applied: plan,
        announced: announce,
        pods: pods.clone(),
        store: store.clone(),
        lock: cni.dataplane_lock(),
        health: health.clone(),
        resync: cfg.resync,
        families: families_tx,
        policy,
        programmed: programmed_tx,
        logged_warnings: Default::default(),
        policy_applied: false,
        secrets,
        passwords,
        audit: audit::Audit {
            store: store.clone(),
            ipam: node_ipam,
            pods: pods.clone(),
            lock: cni.dataplane_lock(),
        },
        reported: Default::default(),
        unknown_ifaces: Default::default(),
        ds: ds.clone(),
    };
    // IPAM knows the families before the agent socket takes the first ADD.
    reconciler.publish_families();

    let socket = crate::cni::bind(&cfg.agent_socket).map_err(|source| AgentError::Socket {
        path: cfg.agent_socket.display().to_string(),
        source,
    })?;
    let mut server_shutdown = shutdown.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentService::new(cni).into_server())
            .add_service(bgp_api::CurrentSpeakerApi::new(slot.clone()).into_server())
            .serve_with_incoming_shutdown(UnixListenerStream::new(socket), async move {
                let _ = server_shutdown.changed().await;
            }),
    );
    tracing::info!(socket = %cfg.agent_socket.display(), "serving CNI and BGP control");

    let (drift_tx, drift_rx) = mpsc::unbounded_channel();
    let _monitor = drift::monitor(drift_tx).map_err(AgentError::Monitor)?;
    reconciler.run(rx, drift_rx, shutdown).await;

    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "agent socket server"),
        Ok(_) => {}
        Err(_) => tracing::warn!("agent socket server did not stop within 5 s"),
    }
    // Dropping the speaker closes its sessions without a NOTIFICATION: peers keep our
    // routes for the graceful-restart time.
    drop(slot);
    tracing::info!("stopped; pod routes stay in place");
    Ok(())
}
