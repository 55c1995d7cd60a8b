//! Cross-crate end-to-end tests live in `tests/`; this library holds their shared helpers:
//! a guard around a lab (a unique name per test, `down` on drop, even after a failure) and
//! small readers of what the kernel and the datastore hold.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the report

pub mod probe;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use twillctl::lab::{Lab, LabSpec, State, TorKind, sys};

/// A lab that is torn down when the guard drops.
#[derive(Debug)]
pub struct LabGuard {
    pub lab: Lab,
}

impl LabGuard {
    /// Builds a lab named `<prefix>-<pid><n>` (unique per test and run).
    pub async fn up(prefix: &str, nodes: usize, tor: TorKind) -> LabGuard {
        let mut spec = LabSpec::new(&unique_name(prefix), nodes).unwrap();
        spec.tor = tor;
        LabGuard::up_with(spec).await
    }

    pub async fn up_with(spec: LabSpec) -> LabGuard {
        // Take the name before building, so a failed `up` is cleaned up too.
        let name = spec.name.clone();
        let guard = LabGuard {
            lab: Lab { name: name.clone() },
        };
        Lab::up(&spec)
            .await
            .unwrap_or_else(|e| panic!("lab up {name}: {e}"));
        guard
    }

    pub fn state(&self) -> State {
        self.lab.state().unwrap()
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(e) = Lab::down(&self.lab.name) {
            eprintln!("lab down {}: {e}", self.lab.name);
        }
    }
}

/// `<prefix>-<4 hex of pid><counter>`, at most 24 characters.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}-{:x}{n}", std::process::id() & 0xffff);
    assert!(name.len() <= 24, "lab name {name} too long");
    name
}

/// Polls `f` until it is true (bounded in time); panics with `what` and the last value.
pub fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match f() {
            Ok(()) => return,
            Err(last) if start.elapsed() > limit => {
                panic!("timed out after {limit:?} waiting for {what}: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// What one CNI plugin run printed, how it exited and how long it took.
#[derive(Debug, Clone)]
pub struct PluginRun {
    pub status: i32,
    pub stdout: String,
    pub elapsed: Duration,
}

/// Executes a CNI plugin as a runtime in the node's namespace `ns` does: exactly this
/// environment (plus `PATH`), the configuration on stdin.
pub fn run_plugin(ns: &str, bin: &std::path::Path, env: &[(&str, &str)], stdin: &str) -> PluginRun {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    PluginRun {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Link kinds that would mean encapsulation (Twill never makes any).
pub const TUNNEL_KINDS: [&str; 8] = [
    "vxlan",
    "ipip",
    "gre",
    "gretap",
    "ip6tnl",
    "sit",
    "wireguard",
    "geneve",
];

/// Link kinds in a namespace (`ip -d -o link`), e.g. "veth", "bridge".
pub fn link_kinds(ns: &str) -> BTreeSet<String> {
    let out = sys::ip_in(ns, &["-d", "-o", "link", "show"]).unwrap();
    let mut kinds = BTreeSet::new();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // After "link/ether ... " the detail section names the kind as its first word on
        // the same line, e.g. "veth", "bridge", "vxlan id 42", "ipip remote any".
        for kind in ["veth", "bridge", "tun"].iter().chain(TUNNEL_KINDS.iter()) {
            if words.contains(kind) {
                kinds.insert(kind.to_string());
            }
        }
    }
    kinds
}

/// `(prefix, next hops)` of the routes of protocol `proto` in a namespace.
pub fn routes(ns: &str, proto: &str) -> Vec<(String, Vec<String>)> {
    let out = sys::ip_in(ns, &["route", "show", "proto", proto]).unwrap();
    let mut routes: Vec<(String, Vec<String>)> = Vec::new();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let via = words
            .iter()
            .position(|w| *w == "via")
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string());
        if line.starts_with(char::is_whitespace) {
            // A "nexthop via X dev Y" line of the route above.
            if let (Some(last), Some(v)) = (routes.last_mut(), via) {
                last.1.push(v);
            }
        } else {
            let prefix = if words.first() == Some(&"blackhole") {
                words.get(1)
            } else {
                words.first()
            };
            routes.push((
                prefix.map(|s| s.to_string()).unwrap_or_default(),
                via.into_iter().collect(),
            ));
        }
    }
    routes
}
