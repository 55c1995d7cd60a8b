//! A "node" for CNI tests: a network namespace running the agent server (with in-memory
//! IPAM and endpoints) on a unix socket in a temp dir, pods as namespaces, and the real
//! `twill` binary executed the way a container runtime does.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)] // test support: panics are the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twill_felix::cni::memory::{MemoryEndpoints, MemoryIpam};
use twill_felix::cni::{AgentService, CniService, bind, serve};
use twill_felix::dataplane::PodNetwork;
use twill_harness::netns::{Netns, NsRuntime};

/// The node's address on its link to the "client" namespace.
pub const NODE_IP: &str = "192.0.2.1";
pub const CLIENT_IP: &str = "192.0.2.2";

/// The `twill` binary next to this test binary (`target/debug/twill`); `cargo test -p
/// twill-cni -p twill-felix` builds it.
pub fn twill_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("twill");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p twill-cni` (or test both packages)",
        bin.display()
    );
    bin
}

/// What a plugin printed and returned.
#[derive(Debug)]
pub struct PluginRun {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
    pub elapsed: Duration,
}

impl PluginRun {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("plugin stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The CNI error code, asserting exit status 1.
    pub fn error_code(&self) -> u64 {
        assert_eq!(self.status, 1, "expected a CNI error: {self:?}");
        self.json()["code"].as_u64().expect("code")
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, 0, "plugin failed: {self:?}");
        self
    }
}

/// Executes a CNI plugin with exactly this environment and stdin, optionally inside `ns`.
pub fn exec_plugin(ns: Option<&Netns>, bin: &Path, env: &[(&str, &str)], stdin: &str) -> PluginRun {
    use std::io::Write;
    let mut cmd = match ns {
        Some(ns) => ns.command(bin),
        None => Command::new(bin),
    };
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_PATH", "/usr/lib/cni")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn plugin");
    // A plugin may stop reading an oversized configuration: what it answers is the report.
    match child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("write stdin"),
    }
    let out = child.wait_with_output().expect("plugin output");
    PluginRun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status.code().unwrap_or(-1),
        elapsed: start.elapsed(),
    }
}

/// A node: namespace, agent server, in-memory IPAM/endpoints, and a client namespace
/// linked to it (`CLIENT_IP` → `NODE_IP`).
pub struct Node {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub pods: Arc<PodNetwork>,
    pub ipam: Arc<MemoryIpam>,
    pub endpoints: Arc<MemoryEndpoints>,
    pub rt: NsRuntime,
    pub socket: PathBuf,
    pub client: Netns,
    pub ns: Netns,
    pub dir: tempfile::TempDir,
}

impl Node {
    pub async fn start(blocks: &[&str]) -> Node {
        let ns = Netns::new("twcni-node").expect("node netns");
        let client = Netns::new("twcni-cl").expect("client netns");
        ns.veth(
            &[&format!("{NODE_IP}/24")],
            &client,
            &[&format!("{CLIENT_IP}/24")],
        )
        .expect("uplink");
        ns.enable_forwarding().expect("forwarding");
        let rt = NsRuntime::start(&ns).expect("node runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("run/agent.sock");
        let ipam = Arc::new(MemoryIpam::new(
            blocks.iter().map(|b| b.parse().expect("block")).collect(),
        ));
        let endpoints = Arc::new(MemoryEndpoints::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (i, e, s) = (ipam.clone(), endpoints.clone(), socket.clone());
        let pods = rt
            .run(async move {
                let pods = Arc::new(PodNetwork::new().expect("netlink"));
                let service = CniService::new(i, e, pods.clone(), 1500);
                let listener = bind(&s).expect("bind agent socket");
                tokio::spawn(serve(
                    listener,
                    AgentService::new(Arc::new(service)),
                    async move {
                        let _ = stopped.await;
                    },
                ));
                pods
            })
            .await
            .expect("start agent");
        Node {
            stop: Some(stop),
            pods,
            ipam,
            endpoints,
            rt,
            socket,
            client,
            ns,
            dir,
        }
    }

    /// A network configuration for this node's agent.
    pub fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "twill",
            "type": "twill",
            "agent_socket": self.socket,
            "mtu": 1400,
        })
    }

    /// Runs the `twill` binary for `command` on `pod` (the runtime's view).
    pub fn cni(
        &self,
        command: &str,
        container: &str,
        pod: Option<&Netns>,
        conf: &Value,
    ) -> PluginRun {
        let netns = pod
            .map(|p| p.path().display().to_string())
            .unwrap_or_default();
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={container};K8S_POD_INFRA_CONTAINER_ID={container}"
        );
        let mut env = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args.as_str()),
        ];
        if !netns.is_empty() {
            env.push(("CNI_NETNS", netns.as_str()));
        }
        exec_plugin(None, &twill_bin(), &env, &conf.to_string())
    }

    /// `ip -n NODE args`.
    pub fn ip(&self, args: &[&str]) -> String {
        self.ns.ip(args).expect("ip")
    }

    /// Names of felix's host veths in the node.
    pub fn tw_links(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with("tw"))
            .collect()
    }

    /// felix's routes (protocol 81) in the node, as `ip` prints them.
    pub fn felix_routes(&self) -> String {
        let mut s = self.ip(&["route", "show", "proto", "81"]);
        s.push_str(&self.ip(&["-6", "route", "show", "proto", "81"]));
        s
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The pod address (without prefix) of family `v6` from an ADD result.
pub fn result_ip(result: &Value, v6: bool) -> String {
    result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|ip| ip["address"].as_str().expect("address"))
        .find(|a| a.contains(':') == v6)
        .expect("an address of the family")
        .split('/')
        .next()
        .expect("addr")
        .to_string()
}

/// Adds `prevResult` to a configuration.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}
