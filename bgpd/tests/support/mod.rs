//! Shared pieces of the interop tests: namespaces joined by a veth, the real
//! `twill-bgpd` binary, and real BIRD 2 / FRR / GoBGP processes, each with its own files
//! in a temp dir, all stopped and removed on drop (by PID, through the harness guards).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod peers;
pub mod wire;

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use twill_harness::netns::Netns;
use twill_harness::process::ChildGuard;
use twill_harness::wait::wait_until;

/// Twill's kernel route protocol number (bgpd's KernelConfig default).
pub const PROTO: &str = "82";

/// Generous: this is a loaded 2-core machine.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(100);

/// Two namespaces joined by one veth: `a` holds `a_addr`, `b` holds `b_addr`.
pub fn linked(tag: &str, a_addrs: &[&str], b_addrs: &[&str]) -> (Netns, Netns) {
    let a = Netns::new(&format!("tw{tag}a")).unwrap();
    let b = Netns::new(&format!("tw{tag}b")).unwrap();
    a.veth(a_addrs, &b, b_addrs).unwrap();
    (a, b)
}

/// A namespace joined to `hub` by a new veth.
pub fn spoke(tag: &str, hub: &Netns, hub_addrs: &[&str], addrs: &[&str]) -> Netns {
    let n = Netns::new(&format!("tw{tag}")).unwrap();
    hub.veth(hub_addrs, &n, addrs).unwrap();
    n
}

/// The standalone twill-bgpd binary in a namespace.
pub struct Twill {
    pub guard: ChildGuard,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub api: PathBuf,
}

impl Twill {
    pub fn start(ns: &Netns, yaml: &str) -> Self {
        Self::start_with(ns, yaml, &[])
    }

    /// `start` with extra command-line arguments.
    pub fn start_with(ns: &Netns, yaml: &str, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("twill-bgpd-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("bgpd.yaml");
        let api = dir.path().join("api.sock");
        std::fs::write(&config, yaml).unwrap();
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_twill-bgpd"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--api-socket")
            .arg(&api)
            .args(args);
        cmd.env("RUST_LOG", "twill_bgpd=debug,info");
        let guard = ChildGuard::spawn("twill-bgpd", cmd).unwrap();
        Self {
            guard,
            dir,
            config,
            api,
        }
    }

    /// Rewrites the configuration and sends SIGHUP.
    pub fn reload(&self, yaml: &str) {
        std::fs::write(&self.config, yaml).unwrap();
        let pid = nix::unistd::Pid::from_raw(self.guard.pid() as i32);
        nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    }

    pub fn log(&self) -> String {
        self.guard.log()
    }
}

/// A gRPC client of the control API on `path`, retried while the daemon starts.
pub async fn api_client(
    path: PathBuf,
) -> twill_proto::bgp::bgp_client::BgpClient<tonic::transport::Channel> {
    use hyper_util::rt::TokioIo;
    use tonic::transport::{Endpoint, Uri};
    for _ in 0..300 {
        let p = path.clone();
        let ch = Endpoint::from_static("http://twill.invalid")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let p = p.clone();
                async move { tokio::net::UnixStream::connect(p).await.map(TokioIo::new) }
            }))
            .await;
        if let Ok(ch) = ch {
            return twill_proto::bgp::bgp_client::BgpClient::new(ch);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("API socket {} never answered", path.display());
}

impl Twill {
    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// The Loc-RIB paths under `prefix`, through the control API.
    pub fn loc_rib(&self, prefix: &str) -> Vec<twill_proto::bgp::Route> {
        use twill_proto::bgp as pb;
        self.block_on(async {
            let mut c = api_client(self.api.clone()).await;
            c.list_routes(pb::ListRoutesRequest {
                table: pb::Table::LocRib as i32,
                peer: String::new(),
                prefix: prefix.to_owned(),
            })
            .await
            .map(|r| r.into_inner().routes)
            .unwrap_or_default()
        })
    }

    /// The peers, through the control API.
    pub fn peers(&self) -> Vec<twill_proto::bgp::Peer> {
        self.block_on(async {
            let mut c = api_client(self.api.clone()).await;
            c.list_peers(twill_proto::bgp::ListPeersRequest {})
                .await
                .map(|r| r.into_inner().peers)
                .unwrap_or_default()
        })
    }

    /// Whether the control API shows the session with `peer` Established.
    pub fn established(&self, peer: &str) -> bool {
        self.peers()
            .iter()
            .any(|p| p.address == peer && p.state == "Established")
    }
}

/// Our routes in `ns`'s kernel (`ip route show proto 82`, both families).
pub fn twill_routes(ns: &Netns) -> String {
    let v4 = ns
        .ip(&["route", "show", "proto", PROTO])
        .unwrap_or_default();
    let v6 = ns
        .ip(&["-6", "route", "show", "proto", PROTO])
        .unwrap_or_default();
    v4 + &v6
}

/// The kernel's route for `prefix` in `ns` (any protocol), one line per next hop block.
pub fn route_of(ns: &Netns, prefix: &str) -> String {
    let fam = if prefix.contains(':') { "-6" } else { "-4" };
    ns.ip(&[fam, "route", "show", prefix]).unwrap_or_default()
}

/// Waits until `probe` holds, panicking with `what` and `context()` if it never does.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    if let Err(e) = wait_until(what, timeout, POLL, &mut probe) {
        panic!("{e}\n--- context ---\n{}", context());
    }
}

/// Checks that `probe` stays true for `dur` (polling), panicking otherwise.
pub fn holds_for(
    what: &str,
    dur: Duration,
    mut probe: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let start = std::time::Instant::now();
    while start.elapsed() < dur {
        assert!(
            probe(),
            "{what} stopped holding\n--- context ---\n{}",
            context()
        );
        std::thread::sleep(POLL);
    }
}
