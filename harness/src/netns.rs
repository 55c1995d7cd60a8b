//! Network namespaces as guards: a uniquely named namespace with `lo` up, helpers to run
//! commands and Rust code inside it, veth links between namespaces, and a `Drop` that kills
//! what still runs inside and deletes it.
//!
//! This module must never touch the root namespace's routes, addresses, links or sysctls:
//! every command it runs is scoped to a namespace it created (`ip -n NAME`,
//! `ip netns exec NAME`), and veth ends are created directly inside their namespaces.

use std::ffi::OsStr;
use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where iproute2 bind-mounts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Interface names are limited by the kernel to 15 bytes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

static NS_COUNTER: AtomicU32 = AtomicU32::new(0);
static LINK_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Failures of namespace and link operations, with the command that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot open namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setns into {name} failed: {source}")]
    Setns { name: String, source: nix::Error },
    #[error("thread running inside {name} failed: {reason}")]
    Thread { name: String, reason: String },
    #[error("interface name {0:?} is longer than 15 bytes")]
    IfName(String),
}

/// A network namespace created for one test; deleted (with whatever still runs in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `PREFIX-PID-N` (unique per process and call), and brings `lo` up.
    pub fn new(prefix: &str) -> Result<Self, NetnsError> {
        let n = NS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        if let Err(e) = run_checked(Command::new("ip").args(["netns", "add", &name])) {
            // A run killed before its guards dropped can leave this very name behind (same
            // PID, reused): no live process owns it but us, so replace it once.
            if !PathBuf::from(NETNS_DIR).join(&name).exists() {
                return Err(e);
            }
            let _ = run_checked(Command::new("ip").args(["netns", "del", &name]));
            run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        }
        // From here on the guard owns the namespace, so a failure below still deletes it.
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`: open it to `setns` into the namespace.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// A `Command` that runs `program` inside the namespace (`ip netns exec NAME program`).
    /// `ip` execs the program, so the child's PID is the program's own.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args...` inside the namespace; returns stdout, or an error with stderr.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, NetnsError> {
        let out = run_checked(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `ip -n NAME args...`; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        let out = run_checked(Command::new("ip").args(["-n", &self.name]).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets a sysctl inside the namespace, e.g. `("net.ipv4.ip_forward", "1")`.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Enables IPv4 and IPv6 forwarding inside the namespace.
    pub fn enable_forwarding(&self) -> Result<(), NetnsError> {
        self.sysctl("net.ipv4.ip_forward", "1")?;
        self.sysctl("net.ipv6.conf.all.forwarding", "1")
    }

    /// Adds an address (`"192.0.2.1/24"`, `"fd00::1/64"`; IPv6 with `nodad`) to `dev`.
    pub fn add_addr(&self, dev: &str, addr: &str) -> Result<(), NetnsError> {
        let mut args = vec!["addr", "add", addr, "dev", dev];
        if addr.contains(':') {
            args.push("nodad");
        }
        self.ip(&args)?;
        Ok(())
    }

    /// Runs `f` on a fresh OS thread that has joined this namespace, and returns its result.
    /// Sockets opened by `f` (netlink, TCP) belong to this namespace for their whole life.
    pub fn run<F, R>(&self, f: F) -> Result<R, NetnsError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let handle = self.spawn_thread(f)?;
        handle.join().map_err(|panic| NetnsError::Thread {
            name: self.name.clone(),
            reason: panic_message(&panic),
        })?
    }

    /// Like [`Netns::run`] for async code: the thread drives `f()` on a current-thread
    /// tokio runtime. Blocks the caller; from async code use [`NsRuntime`] instead.
    pub fn block_on<F, Fut>(&self, f: F) -> Result<Fut::Output, NetnsError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future,
        Fut::Output: Send + 'static,
    {
        let name = self.name.clone();
        self.run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| NetnsError::Thread {
                    name,
                    reason: format!("tokio runtime: {e}"),
                })?;
            Ok(rt.block_on(f()))
        })?
    }

    fn spawn_thread<F, R>(&self, f: F) -> Result<JoinHandle<Result<R, NetnsError>>, NetnsError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = self.open()?;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|source| NetnsError::Setns { name, source })?;
                drop(file);
                Ok(f())
            })
            .map_err(|e| NetnsError::Thread {
                name: self.name.clone(),
                reason: e.to_string(),
            })
    }

    fn open(&self) -> Result<File, NetnsError> {
        let path = self.path();
        File::open(&path).map_err(|source| NetnsError::Open { path, source })
    }

    /// PIDs of the processes whose main thread lives in this namespace.
    pub fn pids(&self) -> Vec<i32> {
        let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .stderr(Stdio::null())
            .output()
        else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Creates a veth pair between `self` and `peer` (which may be `self`), with automatic
    /// unique names; see [`Netns::veth_named`].
    pub fn veth(
        &self,
        self_addrs: &[&str],
        peer: &Netns,
        peer_addrs: &[&str],
    ) -> Result<Veth, NetnsError> {
        let (a, b) = unique_veth_names();
        self.veth_named(&a, self_addrs, peer, &b, peer_addrs)
    }

    /// Creates a veth pair: `name` inside `self`, `peer_name` inside `peer`, both created
    /// directly inside their namespaces (never in the root namespace), addresses added
    /// (IPv6 with `nodad`), both ends up.
    pub fn veth_named(
        &self,
        name: &str,
        self_addrs: &[&str],
        peer: &Netns,
        peer_name: &str,
        peer_addrs: &[&str],
    ) -> Result<Veth, NetnsError> {
        for n in [name, peer_name] {
            if n.len() > IFNAME_MAX {
                return Err(NetnsError::IfName(n.to_owned()));
            }
        }
        let peer_spec = ["peer", "name", peer_name, "netns", &peer.name];
        self.ip(&[&["link", "add", name, "type", "veth"][..], &peer_spec[..]].concat())?;
        for addr in self_addrs {
            self.add_addr(name, addr)?;
        }
        for addr in peer_addrs {
            peer.add_addr(peer_name, addr)?;
        }
        self.ip(&["link", "set", name, "up"])?;
        peer.ip(&["link", "set", peer_name, "up"])?;
        Ok(Veth {
            name: name.to_owned(),
            peer_name: peer_name.to_owned(),
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A process left inside keeps the namespace (and its links) alive after the
        // unmount, so end them first. Our own process is never in the list: only
        // dedicated threads ever join a namespace.
        let me = std::process::id() as i32;
        for pid in self.pids().into_iter().filter(|&p| p != me) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The two ends of a veth pair made by [`Netns::veth`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Veth {
    /// The end inside the namespace `veth` was called on.
    pub name: String,
    /// The end inside the peer namespace.
    pub peer_name: String,
}

/// `v<pid hex><counter hex>a` / `...b`: unique per process and call, at most 15 bytes.
fn unique_veth_names() -> (String, String) {
    let n = LINK_COUNTER.fetch_add(1, Ordering::Relaxed);
    // PIDs are < 2^22 (6 hex digits); the counter wraps at 16^6, far beyond any test run.
    let stem = format!("v{:x}x{:x}", std::process::id(), n & 0xff_ffff);
    (format!("{stem}a"), format!("{stem}b"))
}

/// A current-thread tokio runtime on a dedicated thread inside a namespace, for async tests:
/// tasks spawned on it (and the sockets they open) live in the namespace, while the test
/// awaits their results from its own runtime. Dropping it cancels its tasks and joins the
/// thread.
#[derive(Debug)]
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), NetnsError>>>,
}

impl NsRuntime {
    /// Starts the runtime thread inside `ns`.
    pub fn start(ns: &Netns) -> Result<Self, NetnsError> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let name = ns.name.clone();
        let thread = ns.spawn_thread(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = handle_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = handle_tx.send(Ok(rt.handle().clone()));
            // Tasks spawned through the handle run while this thread blocks here.
            let _ = rt.block_on(stop_rx);
        })?;
        let handle = match handle_rx.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(reason)) => return Err(NetnsError::Thread { name, reason }),
            Err(_) => {
                // The thread ended before sending: setns failed; report its error.
                let reason = match thread.join() {
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(())) => "runtime thread ended early".to_owned(),
                    Err(panic) => panic_message(&panic),
                };
                return Err(NetnsError::Thread { name, reason });
            }
        };
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The runtime's handle (e.g. to `spawn` long-lived tasks into the namespace).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Spawns `fut` inside the namespace.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }

    /// Runs `fut` inside the namespace and awaits its output from the caller's runtime.
    pub async fn run<F>(&self, fut: F) -> Result<F::Output, NetnsError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn(fut).await.map_err(|e| NetnsError::Thread {
            name: "ns-runtime".to_owned(),
            reason: e.to_string(),
        })
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_checked(cmd: &mut Command) -> Result<Output, NetnsError> {
    let command = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str) -> bool {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    }

    #[test]
    fn namespace_exists_with_lo_up_and_disappears_on_drop() {
        let ns = Netns::new("tw-h").unwrap();
        let name = ns.name().to_owned();
        assert!(ns.path().exists());
        assert!(listed(&name));
        let lo = ns.ip(&["-o", "link", "show", "lo"]).unwrap();
        assert!(lo.contains("UP"), "lo not up: {lo}");
        drop(ns);
        assert!(!PathBuf::from(NETNS_DIR).join(&name).exists());
        assert!(!listed(&name));
    }

    #[test]
    fn namespace_disappears_when_the_test_panics() {
        let name = std::sync::Arc::new(std::sync::OnceLock::new());
        let seen = name.clone();
        let result = std::panic::catch_unwind(move || {
            let ns = Netns::new("tw-p").unwrap();
            seen.set(ns.name().to_owned()).unwrap();
            panic!("test failure inside the namespace's scope");
        });
        assert!(result.is_err());
        let name = name.get().unwrap();
        assert!(!PathBuf::from(NETNS_DIR).join(name).exists());
        assert!(!listed(name));
    }

    #[test]
    fn names_are_unique_per_call() {
        let a = Netns::new("tw-u").unwrap();
        let b = Netns::new("tw-u").unwrap();
        assert_ne!(a.name(), b.name());
        let (x, y) = unique_veth_names();
        let (z, _) = unique_veth_names();
        assert_ne!(x, z);
        assert!(x.len() <= IFNAME_MAX && y.len() <= IFNAME_MAX);
    }

    #[test]
    fn drop_kills_processes_left_inside() {
        let ns = Netns::new("tw-k").unwrap();
        let mut child = ns.command("sleep").arg("300").spawn().unwrap();
        let pid = child.id() as i32;
        crate::wait::wait_until(
            "sleep to appear in the namespace",
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(20),
            || ns.pids().contains(&pid),
        )
        .unwrap();
        drop(ns);
        let status = child.wait().unwrap();
        assert!(!status.success(), "sleep should have been killed: {status}");
    }

    #[test]
    fn veth_connects_two_namespaces_over_ipv4_and_ipv6() {
        let a = Netns::new("tw-va").unwrap();
        let b = Netns::new("tw-vb").unwrap();
        let v = a
            .veth(
                &["192.0.2.1/24", "fd00:1::1/64"],
                &b,
                &["192.0.2.2/24", "fd00:1::2/64"],
            )
            .unwrap();
        assert!(a.ip(&["link", "show", &v.name]).is_ok());
        assert!(b.ip(&["link", "show", &v.peer_name]).is_ok());
        // Not in the root namespace.
        let root = Command::new("ip")
            .args(["link", "show", &v.name])
            .output()
            .unwrap();
        assert!(!root.status.success());
        a.exec("ping", &["-c1", "-W5", "192.0.2.2"]).unwrap();
        a.exec("ping", &["-6", "-c1", "-W5", "fd00:1::2"]).unwrap();
    }

    #[test]
    fn veth_refuses_names_longer_than_ifnamsiz() {
        let a = Netns::new("tw-vl").unwrap();
        let err = a
            .veth_named("abcdefghijklmnop", &[], &a, "x", &[])
            .unwrap_err();
        assert!(matches!(err, NetnsError::IfName(_)));
    }

    #[test]
    fn sysctl_is_set_inside_the_namespace_only() {
        let ns = Netns::new("tw-s").unwrap();
        ns.enable_forwarding().unwrap();
        let v = ns.exec("sysctl", &["-n", "net.ipv4.ip_forward"]).unwrap();
        assert_eq!(v.trim(), "1");
    }

    #[test]
    fn run_executes_code_inside_the_namespace() {
        let a = Netns::new("tw-r").unwrap();
        let b = Netns::new("tw-r").unwrap();
        let v = a
            .veth(&["198.51.100.1/24"], &b, &["198.51.100.2/24"])
            .unwrap();
        let name = v.name.clone();
        // /sys/class/net is per mount namespace, so look at the namespace via its links.
        let inside = a
            .run(move || {
                let out = Command::new("ip").args(["link", "show", &name]).output();
                out.map(|o| o.status.success()).unwrap_or(false)
            })
            .unwrap();
        // `ip` as a child process inherits the thread's network namespace.
        assert!(inside);
        let addr = a
            .run(|| std::net::UdpSocket::bind("198.51.100.1:0").is_ok())
            .unwrap();
        assert!(addr, "the thread should see the namespace's address");
        assert!(std::net::UdpSocket::bind("198.51.100.1:0").is_err());
    }

    #[tokio::test]
    async fn ns_runtime_runs_async_tasks_inside_the_namespace() {
        let a = Netns::new("tw-rt").unwrap();
        let b = Netns::new("tw-rt").unwrap();
        a.veth(&["203.0.113.1/24"], &b, &["203.0.113.2/24"])
            .unwrap();
        let rt_a = NsRuntime::start(&a).unwrap();
        let rt_b = NsRuntime::start(&b).unwrap();
        let listener = rt_b
            .run(async { tokio::net::TcpListener::bind("203.0.113.2:179").await })
            .await
            .unwrap()
            .unwrap();
        let accept = rt_b.spawn(async move { listener.accept().await.map(|(_, p)| p) });
        let connect = rt_a
            .run(async {
                tokio::net::TcpStream::connect("203.0.113.2:179")
                    .await
                    .is_ok()
            })
            .await
            .unwrap();
        assert!(connect);
        let peer = accept.await.unwrap().unwrap();
        assert_eq!(peer.ip().to_string(), "203.0.113.1");
    }

    #[test]
    fn block_on_runs_a_future_inside_the_namespace() {
        let a = Netns::new("tw-bo").unwrap();
        let b = Netns::new("tw-bo").unwrap();
        a.veth(&["192.0.2.9/24"], &b, &["192.0.2.10/24"]).unwrap();
        let ok = a
            .block_on(|| async { tokio::net::UdpSocket::bind("192.0.2.9:0").await.is_ok() })
            .unwrap();
        assert!(ok);
    }
}
