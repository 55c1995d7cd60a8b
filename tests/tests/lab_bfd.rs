//! Sub-second failover with BFD (issue 14): on a lab built with `--bfd` (100 ms × 3 on the
//! mesh and the ToR's sessions), a node whose uplink goes down inside its namespace loses
//! its pod routes in the ToR's kernel and in the other nodes' kernels within 1 s; with
//! the link back, they return. Without BFD, the same failure leaves the routes in place
//! (the hold timer, 90 s, decides). Edits of the profile apply live.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::time::{Duration, Instant};

use twill_api::resources::{BFDProfile, IPAMBlock};
use twill_proto::bgp as pb;
use twill_tests::{LabGuard, eventually, unique_name};
use twillctl::lab::{LAB_BFD_PROFILE, LabSpec, State, TorKind, sys};

/// Whether the kernel of namespace `ns` routes `cidr` (through anything but a blackhole).
fn routed(ns: &str, cidr: &str) -> Result<bool, String> {
    let out = sys::ip_in(ns, &["-4", "route", "show", "exact", cidr]).map_err(|e| e.to_string())?;
    Ok(out
        .lines()
        .any(|l| !l.trim().is_empty() && !l.contains("blackhole")))
}

async fn block_of(g: &LabGuard, node: &str) -> String {
    let ds = g.lab.datastore().await.unwrap();
    ds.list::<IPAMBlock>(None)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|b| b.spec.affinity.as_deref() == Some(&format!("host:{node}")))
        .unwrap_or_else(|| panic!("{node}'s block"))
        .spec
        .cidr
}

/// The namespaces that must learn node 2's block: the ToR and every other node.
fn observers(st: &State) -> Vec<(String, String)> {
    let mut v = vec![("tor".to_string(), st.tor_netns.clone())];
    for (i, n) in st.nodes.iter().enumerate() {
        if i != 1 {
            v.push((n.name.clone(), n.netns.clone()));
        }
    }
    v
}

fn wait_all_routed(st: &State, cidr: &str, limit: Duration) {
    eventually(&format!("every kernel routes {cidr}"), limit, || {
        for (who, ns) in observers(st) {
            if !routed(&ns, cidr)? {
                return Err(format!("{who} has no route to {cidr}"));
            }
        }
        Ok(())
    });
}

async fn peers(socket: &std::path::Path) -> Vec<pb::Peer> {
    let mut c = twillctl::bgp::connect(socket).await.unwrap();
    c.list_peers(pb::ListPeersRequest {})
        .await
        .unwrap()
        .into_inner()
        .peers
}

fn link(st: &State, up: bool) {
    let ns = &st.nodes[1].netns;
    sys::ip_in(ns, &["link", "set", "eth0", if up { "up" } else { "down" }]).unwrap();
    if up {
        // Taking the link down flushed the routes through it.
        sys::ip_in(ns, &["route", "replace", "default", "via", &st.tor_address]).unwrap();
    }
}

/// Waits until every session of node 1 has BFD Up.
async fn lab_wait_bfd_up(st: &State) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ps = peers(&st.nodes[0].socket).await;
        if ps.len() == 3
            && ps.iter().all(|p| {
                p.state == "Established" && p.bfd.as_ref().is_some_and(|b| b.state == "Up")
            })
        {
            return;
        }
        assert!(Instant::now() < deadline, "BFD not Up on node1: {ps:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn lab(prefix: &str, bfd: bool) -> LabGuard {
    let mut spec = LabSpec::new(&unique_name(prefix), 3).unwrap();
    spec.tor = TorKind::Bird;
    spec.pods_per_node = 1;
    spec.bfd = bfd;
    LabGuard::up_with(spec).await
}

/// The ToR's own view: its BFD sessions that are Up.
fn tor_bfd_up(st: &State, tor: TorKind) -> (usize, String) {
    let dir = twillctl::lab::state::lab_dir(&st.name).join("tor");
    match tor {
        TorKind::Bird => {
            let sock = dir.join("bird.ctl");
            let out = sys::run(
                "birdc",
                &["-s", &sock.to_string_lossy(), "show", "bfd", "sessions"],
            )
            .unwrap();
            (out.matches(" Up ").count(), out)
        }
        _ => {
            let out = sys::run(
                "vtysh",
                &[
                    "--vty_socket",
                    &dir.to_string_lossy(),
                    "-c",
                    "show bfd peers",
                ],
            )
            .unwrap();
            (out.matches("Status: up").count(), out)
        }
    }
}

/// Stops (SIGSTOP) or resumes the ToR's routing daemons: a ToR that falls silent.
fn freeze_tor(st: &State, frozen: bool) {
    use nix::sys::signal::{Signal, kill};
    let signal = if frozen {
        Signal::SIGSTOP
    } else {
        Signal::SIGCONT
    };
    let daemons = ["bird", "zebra", "frr-bgpd", "frr-bfdd"];
    let procs: Vec<_> = st
        .processes
        .iter()
        .filter(|p| daemons.contains(&p.name.as_str()))
        .collect();
    assert!(!procs.is_empty(), "no ToR daemon in {:?}", st.processes);
    for p in procs {
        kill(nix::unistd::Pid::from_raw(p.pid), signal).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_bfd_a_dead_uplink_withdraws_the_nodes_routes_everywhere_within_1s() {
    failover("bfdbird", TorKind::Bird).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_bfd_and_an_frr_tor_a_dead_uplink_withdraws_within_1s() {
    failover("bfdfrr", TorKind::Frr).await;
}

async fn failover(prefix: &str, tor: TorKind) {
    let mut spec = LabSpec::new(&unique_name(prefix), 3).unwrap();
    spec.tor = tor;
    spec.pods_per_node = 1;
    spec.bfd = true;
    let g = LabGuard::up_with(spec).await;
    let st = g.state();
    let node2 = st.nodes[1].name.clone();
    let block = block_of(&g, &node2).await;
    wait_all_routed(&st, &block, Duration::from_secs(30));

    // BFD is Up on node 1's sessions at the profile's 100 ms, and BIRD agrees.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ps = peers(&st.nodes[0].socket).await;
        let all_up = ps.len() == 3
            && ps.iter().all(|p| {
                p.bfd
                    .as_ref()
                    .is_some_and(|b| b.state == "Up" && b.tx_interval_ms == 100)
            });
        if all_up {
            let table = twillctl::bgp::render_peers(&ps);
            assert!(table.contains("Up 100ms/300ms"), "{table}");
            break;
        }
        assert!(Instant::now() < deadline, "BFD not Up on node1: {ps:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually(
        "the ToR's three BFD sessions Up",
        Duration::from_secs(20),
        || match tor_bfd_up(&st, tor) {
            (3, _) => Ok(()),
            (_, out) => Err(out),
        },
    );

    // node 2's uplink dies.
    link(&st, false);
    let start = Instant::now();
    let mut gone: Vec<(String, Duration)> = Vec::new();
    let watchers = observers(&st);
    while gone.len() < watchers.len() && start.elapsed() < Duration::from_secs(5) {
        for (who, ns) in &watchers {
            if !gone.iter().any(|(w, _)| w == who) && !routed(ns, &block).unwrap() {
                gone.push((who.clone(), start.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("BFD 100 ms x 3: {block} withdrawn after {gone:?}");
    assert_eq!(
        gone.len(),
        watchers.len(),
        "not withdrawn everywhere: {gone:?}"
    );
    for (who, after) in &gone {
        assert!(
            *after < Duration::from_secs(1),
            "{who} kept {block} for {after:?} (BFD 100 ms x 3)"
        );
    }

    // The link returns: so do the routes.
    link(&st, true);
    let back = Instant::now();
    wait_all_routed(&st, &block, Duration::from_secs(30));
    eprintln!(
        "link up: {block} back everywhere after {:?}",
        back.elapsed()
    );

    // The ToR falls silent: node 1 takes its session down within 1 s.
    lab_wait_bfd_up(&st).await;
    freeze_tor(&st, true);
    let frozen = Instant::now();
    let seen = loop {
        let ps = peers(&st.nodes[0].socket).await;
        let tor_peer = ps.iter().find(|p| p.address == st.tor_address).unwrap();
        if tor_peer.state != "Established" {
            break frozen.elapsed();
        }
        if frozen.elapsed() > Duration::from_secs(5) {
            freeze_tor(&st, false);
            panic!("the ToR's session outlived its silence: {tor_peer:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    freeze_tor(&st, false);
    eprintln!("ToR frozen: node1's session down after {seen:?}");
    assert!(
        seen < Duration::from_secs(1),
        "ToR silence seen after {seen:?}"
    );
    g.lab.wait_bgp(Duration::from_secs(60)).await.unwrap();

    // Editing the profile applies live: the negotiated interval follows.
    let ds = g.lab.datastore().await.unwrap();
    let mut profile: BFDProfile = ds.get(None, LAB_BFD_PROFILE).await.unwrap();
    profile.spec.transmit_interval = Some(200);
    profile.spec.receive_interval = Some(200);
    ds.update(&profile).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ps = peers(&st.nodes[0].socket).await;
        let tor = ps.iter().find(|p| p.address == st.tor_address).unwrap();
        if tor
            .bfd
            .as_ref()
            .is_some_and(|b| b.state == "Up" && b.tx_interval_ms == 200)
        {
            assert_eq!(tor.state, "Established", "{tor:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "profile edit not applied: {tor:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Deleting it holds the sessions that name it, with the reason shown.
    ds.delete::<BFDProfile>(None, LAB_BFD_PROFILE, None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ps = peers(&st.nodes[0].socket).await;
        let tor = ps.iter().find(|p| p.address == st.tor_address).unwrap();
        if tor.held.contains(LAB_BFD_PROFILE) {
            let table = twillctl::bgp::render_peers(&ps);
            assert!(
                table.contains("Held (BFDProfile lab-bfd not found)"),
                "{table}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not held: {tor:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bfd_a_dead_uplink_leaves_the_routes_to_the_hold_timer() {
    let g = lab("bfdoff", false).await;
    let st = g.state();
    let node2 = st.nodes[1].name.clone();
    let block = block_of(&g, &node2).await;
    wait_all_routed(&st, &block, Duration::from_secs(30));
    let ps = peers(&st.nodes[0].socket).await;
    assert!(ps.iter().all(|p| p.bfd.is_none()), "{ps:?}");

    link(&st, false);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        for (who, ns) in observers(&st) {
            assert!(
                routed(&ns, &block).unwrap(),
                "{who} dropped {block} after {:?} without BFD",
                start.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("without BFD: {block} still routed everywhere 3 s after the link died");
    link(&st, true);
}

/// The contrast in full (minutes, so not in the normal run): without BFD, how long the
/// ToR and the other nodes keep a dead node's routes: the ToR until its hold timer
/// (90 s after the last keepalive), the other nodes until the hold timer and then the
/// graceful-restart time (120 s) they keep a silent peer's routes as stale. `cargo test -p twill-tests --test
/// lab_bfd -- --ignored --nocapture` prints the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "waits for the hold timer and the graceful-restart time"]
async fn without_bfd_the_hold_timer_decides_measured() {
    let g = lab("bfdhold", false).await;
    let st = g.state();
    let block = block_of(&g, &st.nodes[1].name.clone()).await;
    wait_all_routed(&st, &block, Duration::from_secs(30));
    link(&st, false);
    let start = Instant::now();
    let watchers = observers(&st);
    let mut gone: Vec<(String, Duration)> = Vec::new();
    while gone.len() < watchers.len() && start.elapsed() < Duration::from_secs(300) {
        for (who, ns) in &watchers {
            if !gone.iter().any(|(w, _)| w == who) && !routed(ns, &block).unwrap() {
                gone.push((who.clone(), start.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("without BFD: {block} withdrawn after {gone:?}");
    assert_eq!(gone.len(), watchers.len(), "{gone:?}");
    for (who, after) in &gone {
        assert!(*after > Duration::from_secs(30), "{who}: {after:?}");
    }
    link(&st, true);
}
