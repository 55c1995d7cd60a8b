//! `lab up`: the rack (ToR namespace with a bridge), etcd and its relay, the seed
//! resources (BGP configuration, the pod pool, the ToR as a `BGPPeer`), the IPAM
//! controller, the ToR router, one felix per node, then the first pods.
//!
//! Addresses: the ToR is 192.0.2.1/24 on the bridge, node `i` is 192.0.2.(10+i); pods come
//! from 10.244.0.0/16 in /26 blocks. Nodes speak AS 64512 (full iBGP mesh), the ToR
//! AS 65000 (eBGP to every node).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use twill_api::resources::native::Namespace;
use twill_api::resources::{
    AsNumber, BFDProfile, BFDProfileSpec, BGPConfiguration, BGPConfigurationSpec, BGPPeer,
    BGPPeerSpec, IPPool, IPPoolSpec,
};
use twill_api::{Datastore, DatastoreError, Resource};

use super::state::{NodeState, Proc, State, StateLock, lab_dir};
use super::tor::{self, Neighbor, TorKind};
use super::{Lab, LabError, NODE_ASN, POOL_CIDR, PodSpec, TOR_ADDRESS, TOR_ASN, check_name, sys};

/// What to build.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub name: String,
    pub nodes: usize,
    pub tor: TorKind,
    pub pods_per_node: usize,
    /// Where `twill-felix`, `twill`, `twillctl` and `twill-ipam-controller` are.
    pub bin_dir: PathBuf,
    /// felix's `--dataplane`.
    pub dataplane: String,
    /// felix's `--log`.
    pub felix_log: String,
    /// BFD on every session (the mesh and the ToR's) at 100 ms × 3: the `BFDProfile`
    /// [`LAB_BFD_PROFILE`] and BFD on the ToR.
    pub bfd: bool,
}

/// The `BFDProfile` a lab with BFD creates.
pub const LAB_BFD_PROFILE: &str = "lab-bfd";

impl LabSpec {
    /// A lab named `name` with `nodes` nodes, a BIRD ToR, no pods, binaries found by
    /// [`super::default_bin_dir`].
    pub fn new(name: &str, nodes: usize) -> Result<LabSpec, LabError> {
        Ok(LabSpec {
            name: name.to_string(),
            nodes,
            tor: TorKind::Bird,
            pods_per_node: 0,
            bin_dir: super::default_bin_dir()?,
            dataplane: "nftables".into(),
            felix_log: "info".into(),
            bfd: false,
        })
    }
}

const ETCD_PORT: u16 = 2379;
const BINARIES: [&str; 4] = ["twill-felix", "twill", "twillctl", "twill-ipam-controller"];

/// Node `i`'s (1-based) address.
pub fn node_address(i: usize) -> String {
    format!("192.0.2.{}", 10 + i)
}

fn record(name: &str, f: impl FnOnce(&mut State)) -> Result<(), LabError> {
    super::state::update(name, f)
}

fn s(v: &str) -> String {
    v.to_string()
}

async fn create_or_keep<T: Resource>(ds: &Datastore, object: &T) -> Result<(), LabError> {
    match ds.create(object).await {
        Ok(_) | Err(DatastoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The resources a lab starts with (the ToR as a `BGPPeer` only when there is one; with
/// `bfd`, a 100 ms × 3 `BFDProfile` named by the mesh and the ToR's peer).
async fn seed(ds: &Datastore, tor: TorKind, bfd: bool) -> Result<(), LabError> {
    let profile = bfd.then(|| LAB_BFD_PROFILE.to_string());
    if bfd {
        create_or_keep(
            ds,
            &BFDProfile::new(
                LAB_BFD_PROFILE,
                BFDProfileSpec {
                    receive_interval: Some(tor::BFD_INTERVAL_MS),
                    transmit_interval: Some(tor::BFD_INTERVAL_MS),
                    detect_multiplier: Some(tor::BFD_MULTIPLIER),
                    ..Default::default()
                },
            ),
        )
        .await?;
    }
    create_or_keep(
        ds,
        &BGPConfiguration::new(
            "default",
            BGPConfigurationSpec {
                as_number: Some(AsNumber(NODE_ASN)),
                node_to_node_mesh_enabled: Some(true),
                node_mesh_bfd_profile: profile.clone(),
                ..Default::default()
            },
        ),
    )
    .await?;
    create_or_keep(
        ds,
        &IPPool::new(
            "default-ipv4",
            IPPoolSpec {
                cidr: POOL_CIDR.into(),
                block_size: Some(26),
                nat_outgoing: Some(true),
                ..Default::default()
            },
        ),
    )
    .await?;
    if tor != TorKind::None {
        create_or_keep(
            ds,
            &BGPPeer::new(
                "tor",
                BGPPeerSpec {
                    peer_ip: Some(TOR_ADDRESS.into()),
                    as_number: Some(AsNumber(TOR_ASN)),
                    bfd_profile: profile,
                    ..Default::default()
                },
            ),
        )
        .await?;
    }
    ensure_namespace(ds, "default").await
}

/// Makes the Kubernetes `Namespace` exist in the lab's datastore (policy selects on it).
pub(super) async fn ensure_namespace(ds: &Datastore, name: &str) -> Result<(), LabError> {
    create_or_keep(
        ds,
        &Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
}

fn process_error(what: &str, p: &Proc, message: impl Into<String>) -> LabError {
    LabError::Process {
        what: what.to_string(),
        message: message.into(),
        log: p.log.display().to_string(),
        tail: sys::log_tail(&p.log, 25),
    }
}

/// Starts felix on node `i` (1-based) and records it.
pub fn start_felix(st: &State, i: usize, dataplane: &str, log: &str) -> Result<Proc, LabError> {
    let node = &st.nodes[i - 1];
    let dir = lab_dir(&st.name).join(&node.name);
    let args = vec![
        s("--node-name"),
        node.name.clone(),
        s("--agent-socket"),
        node.socket.display().to_string(),
        s("--bgp-address"),
        node.address.clone(),
        s("--health-listen"),
        s("127.0.0.1:9099"),
        s("--dataplane"),
        s(dataplane),
        s("--log"),
        s(log),
        s("--resync-seconds"),
        s("10"),
    ];
    let env = [
        ("TWILL_DATASTORE", s("etcd")),
        ("TWILL_ETCD_ENDPOINTS", st.etcd_url.clone()),
    ];
    sys::spawn(
        Some(&node.netns),
        &format!("felix-{}", node.name),
        &st.bin_dir.join("twill-felix"),
        &args,
        &env,
        &dir.join("felix.log"),
    )
}

impl Lab {
    /// Builds the lab and leaves it running. A lab of the same name is torn down first.
    pub async fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        check_name("lab name", &spec.name)?;
        if !(1..=50).contains(&spec.nodes) {
            return Err(LabError::Usage(format!(
                "--nodes {}: between 1 and 50",
                spec.nodes
            )));
        }
        for bin in BINARIES {
            let path = spec.bin_dir.join(bin);
            if !path.exists() {
                return Err(LabError::Usage(format!(
                    "{} is missing: build the workspace first (`cargo build --release`), \
                     or point TWILL_BIN_DIR at the binaries",
                    path.display()
                )));
            }
        }
        Lab::down(&spec.name)?;
        let name = &spec.name;
        let dir = lab_dir(name);
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        let tor_ns = format!("{name}-tor");
        let cni_bin = dir.join("cni-bin");
        {
            let _lock = StateLock::take(name)?;
            State {
                name: name.clone(),
                tor_kind: spec.tor.name().into(),
                tor_netns: tor_ns.clone(),
                tor_address: TOR_ADDRESS.into(),
                tor_asn: TOR_ASN,
                node_asn: NODE_ASN,
                etcd_url: format!("http://{TOR_ADDRESS}:{ETCD_PORT}"),
                bin_dir: spec.bin_dir.clone(),
                cni_bin_dir: cni_bin.clone(),
                ..Default::default()
            }
            .save()?;
        }
        let lab = Lab { name: name.clone() };
        lab.build_network(spec, &tor_ns)?;
        lab.install_cni(&cni_bin, &spec.bin_dir)?;
        lab.start_datastore(&tor_ns, &dir, &spec.bin_dir)?;
        let ds = lab.wait_datastore().await?;
        seed(&ds, spec.tor, spec.bfd).await?;
        lab.start_services(spec, &tor_ns, &dir)?;
        lab.wait_bgp(Duration::from_secs(90)).await?;
        let mut pods = Vec::new();
        for i in 1..=spec.nodes {
            for k in 1..=spec.pods_per_node {
                pods.push(PodSpec {
                    name: format!("pod{i}-{k}"),
                    node: i,
                    namespace: "default".into(),
                    ..Default::default()
                });
            }
        }
        let adds = pods.iter().map(|p| lab.add_pod(p));
        for r in futures::future::join_all(adds).await {
            r?;
        }
        Ok(lab)
    }

    fn build_network(&self, spec: &LabSpec, tor_ns: &str) -> Result<(), LabError> {
        let name = &self.name;
        sys::netns_add(tor_ns)?;
        record(name, |s| s.namespaces.push(tor_ns.to_string()))?;
        sys::ip_in(tor_ns, &["link", "add", "br0", "type", "bridge"])?;
        sys::ip_in(
            tor_ns,
            &["addr", "add", &format!("{TOR_ADDRESS}/24"), "dev", "br0"],
        )?;
        sys::ip_in(tor_ns, &["link", "set", "br0", "up"])?;
        sys::sysctl_in(tor_ns, "net.ipv4.ip_forward", "1")?;
        let dir = lab_dir(name);
        for i in 1..=spec.nodes {
            let node = format!("node{i}");
            let ns = format!("{name}-{node}");
            sys::netns_add(&ns)?;
            record(name, |s| s.namespaces.push(ns.clone()))?;
            let port = format!("n{i}");
            sys::ip_in(
                tor_ns,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            sys::ip_in(tor_ns, &["link", "set", &port, "master", "br0", "up"])?;
            let addr = node_address(i);
            sys::ip_in(&ns, &["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            sys::ip_in(&ns, &["link", "set", "eth0", "up"])?;
            sys::ip_in(&ns, &["route", "add", "default", "via", TOR_ADDRESS])?;
            sys::sysctl_in(&ns, "net.ipv4.ip_forward", "1")?;
            sys::sysctl_in(&ns, "net.ipv6.conf.all.forwarding", "1")?;
            let node_dir = dir.join(&node);
            std::fs::create_dir_all(&node_dir).map_err(|e| LabError::io(&node_dir, e))?;
            let socket = node_dir.join("agent.sock");
            let conflist = node_dir.join("10-twill.conflist");
            let text = serde_json::to_string_pretty(&super::cni::conflist(&socket, 1500))
                .map_err(|e| LabError::State(e.to_string()))?;
            std::fs::write(&conflist, text).map_err(|e| LabError::io(&conflist, e))?;
            record(name, |s| {
                s.nodes.push(NodeState {
                    name: node.clone(),
                    netns: ns.clone(),
                    address: addr.clone(),
                    socket: socket.clone(),
                    conflist: conflist.clone(),
                    felix: None,
                })
            })?;
        }
        Ok(())
    }

    /// The runtime's plugin directory: `twill` and the reference plugins.
    fn install_cni(&self, cni_bin: &Path, bin_dir: &Path) -> Result<(), LabError> {
        std::fs::create_dir_all(cni_bin).map_err(|e| LabError::io(cni_bin, e))?;
        let link = |from: &Path, to: &Path| -> Result<(), LabError> {
            let _ = std::fs::remove_file(to);
            std::os::unix::fs::symlink(from, to).map_err(|e| LabError::io(to, e))
        };
        link(&bin_dir.join("twill"), &cni_bin.join("twill"))?;
        let reference = Path::new("/usr/lib/cni");
        let entries = std::fs::read_dir(reference).map_err(|e| {
            LabError::Usage(format!(
                "{}: {e} (install Debian's containernetworking-plugins)",
                reference.display()
            ))
        })?;
        for entry in entries.flatten() {
            let file = entry.file_name();
            if file != "twill" {
                link(&entry.path(), &cni_bin.join(&file))?;
            }
        }
        Ok(())
    }

    fn start_datastore(&self, tor_ns: &str, dir: &Path, bin_dir: &Path) -> Result<(), LabError> {
        let client = format!("http://{TOR_ADDRESS}:{ETCD_PORT}");
        let peer = "http://127.0.0.1:2380".to_string();
        let etcd = sys::spawn(
            Some(tor_ns),
            "etcd",
            Path::new("/usr/bin/etcd"),
            &[
                s("--name=lab"),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=lab={peer}"),
                s("--initial-cluster-state=new"),
            ],
            &[],
            &dir.join("etcd.log"),
        )?;
        record(&self.name, |s| s.processes.push(etcd))?;
        let port_file = dir.join("relay.port");
        let relay = sys::spawn(
            None,
            "relay",
            &bin_dir.join("twillctl"),
            &[
                s("lab"),
                s("relay"),
                s("--netns"),
                tor_ns.to_string(),
                s("--target"),
                format!("{TOR_ADDRESS}:{ETCD_PORT}"),
                s("--port-file"),
                port_file.display().to_string(),
            ],
            &[],
            &dir.join("relay.log"),
        )?;
        let relay_for_error = relay.clone();
        record(&self.name, |s| s.processes.push(relay))?;
        let port = sys::wait_for("the datastore relay", Duration::from_secs(10), || {
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok())
        })
        .map_err(|e| process_error("datastore relay", &relay_for_error, e.to_string()))?;
        record(&self.name, |s| {
            s.etcd_local_url = format!("http://127.0.0.1:{port}");
        })
    }

    async fn wait_datastore(&self) -> Result<Datastore, LabError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.datastore().await {
                Ok(ds) => match ds.list::<Namespace>(None).await {
                    Ok(_) => return Ok(ds),
                    Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
                    Err(_) => {}
                },
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    let st = self.state()?;
                    let etcd = st.processes.iter().find(|p| p.name == "etcd");
                    return Err(match etcd {
                        Some(p) => process_error("etcd did not come up", p, e.to_string()),
                        None => e,
                    });
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn start_services(&self, spec: &LabSpec, tor_ns: &str, dir: &Path) -> Result<(), LabError> {
        let st = self.state()?;
        let ipam = sys::spawn(
            Some(tor_ns),
            "ipam-controller",
            &spec.bin_dir.join("twill-ipam-controller"),
            &[
                s("--datastore"),
                s("etcd"),
                s("--etcd-endpoints"),
                st.etcd_url.clone(),
                s("--metrics-listen"),
                format!("{TOR_ADDRESS}:9095"),
            ],
            &[],
            &dir.join("ipam-controller.log"),
        )?;
        record(&self.name, |s| s.processes.push(ipam))?;
        let neighbors: Vec<Neighbor> = st
            .nodes
            .iter()
            .map(|n| Neighbor {
                name: n.name.clone(),
                address: n.address.clone(),
                asn: NODE_ASN,
            })
            .collect();
        let routers = tor::start(
            spec.tor,
            tor_ns,
            &dir.join("tor"),
            TOR_ADDRESS,
            TOR_ASN,
            &neighbors,
            spec.bfd,
        )?;
        record(&self.name, |s| s.processes.extend(routers))?;
        for i in 1..=st.nodes.len() {
            let felix = start_felix(&st, i, &spec.dataplane, &spec.felix_log)?;
            record(&self.name, |s| s.nodes[i - 1].felix = Some(felix))?;
        }
        let supervisor = sys::spawn(
            None,
            super::supervise::NAME,
            &spec.bin_dir.join("twillctl"),
            &[s("lab"), s("--name"), self.name.clone(), s("supervise")],
            &[],
            &dir.join("supervisor.log"),
        )?;
        record(&self.name, |s| s.processes.push(supervisor))?;
        Ok(())
    }

    /// Waits until every node's speaker has its sessions Established: one per other node
    /// (the mesh) and one with the ToR when there is one.
    pub async fn wait_bgp(&self, limit: Duration) -> Result<(), LabError> {
        let st = self.state()?;
        let expected = st.nodes.len() - 1 + usize::from(st.tor_kind != TorKind::None.name());
        let deadline = tokio::time::Instant::now() + limit;
        for node in &st.nodes {
            loop {
                let status = super::picture::sessions_established(&node.socket).await;
                match status {
                    Ok((up, total)) if total == expected && up == total => break,
                    _ if tokio::time::Instant::now() >= deadline => {
                        let why = match status {
                            Ok((up, total)) => format!(
                                "{up}/{total} BGP sessions established, {expected} expected"
                            ),
                            Err(e) => e,
                        };
                        return Err(match &node.felix {
                            Some(p) => process_error(&format!("felix on {}", node.name), p, why),
                            None => LabError::Timeout(why),
                        });
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        Ok(())
    }

    /// Stops felix on node `i` (SIGTERM: pods keep their routes).
    pub fn stop_felix(&self, i: usize) -> Result<(), LabError> {
        let st = self.state()?;
        let node = st
            .nodes
            .get(i.wrapping_sub(1))
            .ok_or_else(|| LabError::Usage(format!("no node {i}")))?;
        // Forget it first: the supervisor restarts only what the record still names.
        record(&self.name, |s| s.nodes[i - 1].felix = None)?;
        if let Some(p) = &node.felix {
            sys::stop(p, Duration::from_secs(10));
        }
        Ok(())
    }

    /// Starts felix on node `i` again.
    pub fn start_felix(&self, i: usize, dataplane: &str) -> Result<(), LabError> {
        let st = self.state()?;
        if st.nodes.get(i.wrapping_sub(1)).is_none() {
            return Err(LabError::Usage(format!("no node {i}")));
        }
        let p = start_felix(&st, i, dataplane, "info")?;
        record(&self.name, |s| s.nodes[i - 1].felix = Some(p))
    }
}
