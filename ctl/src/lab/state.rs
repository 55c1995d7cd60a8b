//! What a lab is made of, on disk: `/run/twill-lab/<NAME>/state.json` records the
//! namespaces, processes (by PID) and pods it created, so `down`, `status` and `pod`
//! commands work from any later `twillctl` and `down` removes exactly what `up` made.
//! Writers take an exclusive lock on `state.lock`, so concurrent `pod add`s never lose
//! each other's records.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LabError;

/// Where labs live (tmpfs: a reboot clears them, as it clears namespaces).
pub const LAB_ROOT: &str = "/run/twill-lab";

/// The directory of lab `name`.
pub fn lab_dir(name: &str) -> PathBuf {
    Path::new(LAB_ROOT).join(name)
}

/// A process the lab started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proc {
    pub name: String,
    /// The executable's file name: a PID is only signalled while it still runs this.
    pub program: String,
    pub pid: i32,
    pub log: PathBuf,
    /// How to start it again (the supervisor restarts it when it dies).
    #[serde(default)]
    pub launch: Option<Launch>,
    /// How often the supervisor restarted it.
    #[serde(default)]
    pub restarts: u32,
}

/// A process's command line, namespace and environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Launch {
    pub netns: Option<String>,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// One node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    /// `node1`.
    pub name: String,
    /// `NAME-node1`.
    pub netns: String,
    pub address: String,
    pub socket: PathBuf,
    pub conflist: PathBuf,
    pub felix: Option<Proc>,
}

/// One pod.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    pub namespace: String,
    /// Index into `nodes`.
    pub node: usize,
    pub netns: String,
    pub container_id: String,
    pub ips: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Published ports: (host port, container port, protocol).
    #[serde(default)]
    pub ports: Vec<(u16, u16, String)>,
    /// The CNI result of ADD (for DEL's prevResult).
    pub result: serde_json::Value,
}

/// The whole lab.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct State {
    pub name: String,
    pub tor_kind: String,
    pub tor_netns: String,
    pub tor_address: String,
    pub tor_asn: u32,
    pub node_asn: u32,
    /// The etcd URL inside the lab network.
    pub etcd_url: String,
    /// The etcd URL from the root namespace (through the relay).
    pub etcd_local_url: String,
    pub bin_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub processes: Vec<Proc>,
    pub nodes: Vec<NodeState>,
    pub pods: Vec<PodState>,
    /// Every namespace created, in creation order (pods' too).
    pub namespaces: Vec<String>,
}

impl State {
    pub fn path(name: &str) -> PathBuf {
        lab_dir(name).join("state.json")
    }

    /// Reads the state of lab `name`.
    pub fn load(name: &str) -> Result<State, LabError> {
        let path = State::path(name);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LabError::NoLab(name.to_string())
            } else {
                LabError::io(&path, e)
            }
        })?;
        serde_json::from_str(&text).map_err(|e| LabError::State(format!("{}: {e}", path.display())))
    }

    /// Writes atomically (temp file + rename).
    pub fn save(&self) -> Result<(), LabError> {
        let path = State::path(&self.name);
        let tmp = path.with_extension("json.tmp");
        let text =
            serde_json::to_string_pretty(self).map_err(|e| LabError::State(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| LabError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| LabError::io(&path, e))
    }

    pub fn pod(&self, name: &str) -> Option<&PodState> {
        self.pods.iter().find(|p| p.name == name)
    }
}

/// An exclusive lock on a lab's state, released on drop.
#[derive(Debug)]
pub struct StateLock {
    file: File,
}

impl StateLock {
    pub fn take(name: &str) -> Result<StateLock, LabError> {
        let dir = lab_dir(name);
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        let path = dir.join("state.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| LabError::io(&path, e))?;
        file.lock().map_err(|e| LabError::io(&path, e))?;
        Ok(StateLock { file })
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Updates the state under the lock: load, change, save.
pub fn update<R>(name: &str, f: impl FnOnce(&mut State) -> R) -> Result<R, LabError> {
    let _lock = StateLock::take(name)?;
    let mut state = State::load(name)?;
    let r = f(&mut state);
    state.save()?;
    Ok(r)
}
