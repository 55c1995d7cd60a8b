//! The lab: Twill on one machine. Network namespaces stand in for hosts: a ToR namespace
//! (a bridge for the rack's L2 segment 192.0.2.0/24, the lab's etcd, the IPAM controller
//! and a BIRD or FRR router), `N` node namespaces each running the real `twill-felix`,
//! and one namespace per pod, plumbed by the real `twill` CNI plugin.
//!
//! - [`Lab::up`] builds it (tearing down a previous lab of the same name first) and
//!   leaves it running; [`Lab::down`] removes every namespace, process and file it made.
//! - [`Lab::add_pod`] / [`Lab::del_pod`] run the node's CNI configuration list as a
//!   container runtime does; [`Lab::exec`] runs a command in a pod.
//! - [`Lab::picture`] prints nodes, blocks, sessions, routes and a ping matrix.
//!
//! The end-to-end tests in `tests/` are built on this library, so the demo and the tests
//! exercise the same code. What a lab made is recorded in `/run/twill-lab/NAME/state.json`
//! ([`state`]); every later command (and `down` after a crash) works from that record.

mod cli;
pub mod cni;
mod down;
pub mod picture;
mod pods;
pub mod relay;
pub mod state;
pub mod supervise;
pub mod sys;
pub mod tor;
mod up;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use cli::{LabArgs, LabCommand};
pub use cni::PortMapping;
pub use state::{NodeState, PodState, State};
pub use tor::TorKind;
pub use up::{LAB_BFD_PROFILE, LabSpec};

use twill_api::Datastore;
use twill_api::datastore::DatastoreArgs;

/// The lab's addressing: the ToR's address on the lab's link network, the ASNs of the ToR
/// and of the nodes, and the pod pool.
pub const TOR_ADDRESS: &str = "192.0.2.1";
pub const TOR_ASN: u32 = 65000;
pub const NODE_ASN: u32 = 64512;
pub const POOL_CIDR: &str = "10.244.0.0/16";

/// What went wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("no lab named {0:?} (start one with `twillctl lab up --name {0}`)")]
    NoLab(String),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("lab state: {0}")]
    State(String),
    #[error("{0}")]
    Command(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("CNI {command} failed in plugin {plugin}: {output}")]
    Cni {
        plugin: String,
        command: String,
        output: String,
    },
    #[error(transparent)]
    Datastore(#[from] twill_api::DatastoreError),
    #[error("{what}: {message}\n--- last lines of {log} ---\n{tail}")]
    Process {
        what: String,
        message: String,
        log: String,
        tail: String,
    },
}

impl LabError {
    pub fn io(path: &Path, source: std::io::Error) -> LabError {
        LabError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// A pod to add.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    pub name: String,
    /// 1-based node number.
    pub node: usize,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortMapping>,
}

/// A lab that exists (made by `up`, or found by name).
#[derive(Debug, Clone)]
pub struct Lab {
    pub name: String,
}

/// Lab names become parts of namespace and file names.
pub fn check_name(what: &str, name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 24
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(LabError::Usage(format!(
            "{what} {name:?}: use 1-24 lowercase letters, digits and '-', starting with a letter"
        )))
    }
}

/// Where the Twill binaries are: `TWILL_BIN_DIR`, else next to the running executable
/// (`target/<profile>/`, also when running from `target/<profile>/deps/`).
pub fn default_bin_dir() -> Result<PathBuf, LabError> {
    if let Ok(dir) = std::env::var("TWILL_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe =
        std::env::current_exe().map_err(|e| LabError::Command(format!("current exe: {e}")))?;
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| LabError::Command("the executable has no directory".into()))?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

impl Lab {
    /// The lab called `name`, if it exists.
    pub fn attach(name: &str) -> Result<Lab, LabError> {
        check_name("lab name", name)?;
        State::load(name)?;
        Ok(Lab {
            name: name.to_string(),
        })
    }

    /// The lab's current record.
    pub fn state(&self) -> Result<State, LabError> {
        State::load(&self.name)
    }

    /// The lab's datastore, from the root namespace (through the relay).
    pub async fn datastore(&self) -> Result<Datastore, LabError> {
        let st = self.state()?;
        Ok(DatastoreArgs::etcd(vec![st.etcd_local_url])
            .connect()
            .await?)
    }

    /// The environment that points `twillctl` at this lab (node `node`'s agent socket).
    pub fn env(&self, node: usize) -> Result<Vec<(String, String)>, LabError> {
        let st = self.state()?;
        let n = st
            .nodes
            .get(node.wrapping_sub(1))
            .ok_or_else(|| LabError::Usage(format!("no node {node} in lab {}", self.name)))?;
        Ok(vec![
            ("TWILL_DATASTORE".into(), "etcd".into()),
            ("TWILL_ETCD_ENDPOINTS".into(), st.etcd_local_url.clone()),
            ("TWILL_SOCKET".into(), n.socket.display().to_string()),
        ])
    }

    /// Runs `cmd` in a pod's namespace; its output (status, stdout, stderr).
    pub fn exec(&self, pod: &str, cmd: &[String]) -> Result<std::process::Output, LabError> {
        let st = self.state()?;
        let p = st
            .pod(pod)
            .ok_or_else(|| LabError::Usage(format!("no pod {pod:?} in lab {}", self.name)))?;
        let (program, args) = cmd
            .split_first()
            .ok_or_else(|| LabError::Usage("exec needs a command".into()))?;
        std::process::Command::new("ip")
            .args(["netns", "exec", &p.netns, program])
            .args(args)
            .output()
            .map_err(|e| LabError::Command(format!("{program}: {e}")))
    }
}
