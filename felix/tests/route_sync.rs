//! Host route sync in a node namespace: blackholes for local blocks and pod routes are
//! created, a route deleted behind felix's back comes back, stray felix routes go, and
//! routes of other protocols are never touched.

mod common;

use common::Node;
use twill_felix::dataplane::{HostRoute, RouteOp, RouteTarget};

#[tokio::test]
async fn sync_converges_felix_routes_and_leaves_others_alone() {
    let node = Node::start(&["10.244.8.0/26"]).await;
    let uplink = node
        .ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .find(|n| n != "lo")
        .unwrap();
    // Someone else's route (protocol static) in felix's range: must survive every sync.
    node.ip(&[
        "route",
        "add",
        "10.244.8.60/32",
        "dev",
        &uplink,
        "proto",
        "static",
    ]);
    // A stale felix route.
    node.ip(&[
        "route",
        "add",
        "10.244.9.0/26",
        "dev",
        &uplink,
        "proto",
        "81",
    ]);

    let desired = vec![
        HostRoute {
            dst: "10.244.8.0/26".parse().unwrap(),
            target: RouteTarget::Blackhole,
        },
        HostRoute {
            dst: "10.244.8.5/32".parse().unwrap(),
            target: RouteTarget::Dev(uplink.clone()),
        },
        HostRoute {
            dst: "fd00:10:244:8::/122".parse().unwrap(),
            target: RouteTarget::Blackhole,
        },
    ];
    let pods = node.pods.clone();
    let d = desired.clone();
    let ops = node
        .rt
        .run(async move { pods.sync_routes(&d).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ops.iter().filter(|o| matches!(o, RouteOp::Add(_))).count(),
        3
    );
    assert_eq!(
        ops.iter()
            .filter(|o| matches!(o, RouteOp::Delete(_)))
            .count(),
        1
    );
    let routes = node.felix_routes();
    // (`ip route show proto 81` lists only protocol-81 routes and omits the protocol.)
    assert!(routes.contains("blackhole 10.244.8.0/26"), "{routes}");
    assert!(
        routes.contains(&format!("10.244.8.5 dev {uplink} scope link")),
        "{routes}"
    );
    assert!(routes.contains("blackhole fd00:10:244:8::/122"), "{routes}");
    assert!(!routes.contains("10.244.9.0/26"), "{routes}");

    // Drift: the pod route is deleted behind felix's back; the next sync restores only it.
    node.ip(&["route", "del", "10.244.8.5/32"]);
    let pods = node.pods.clone();
    let d = desired.clone();
    let ops = node
        .rt
        .run(async move { pods.sync_routes(&d).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ops, vec![RouteOp::Add(desired[1].clone())]);
    // In sync: nothing to do.
    let pods = node.pods.clone();
    let ops = node
        .rt
        .run(async move { pods.sync_routes(&desired).await })
        .await
        .unwrap()
        .unwrap();
    assert!(ops.is_empty(), "{ops:?}");
    let all = node.ip(&["route", "show"]);
    assert!(
        all.contains("10.244.8.60 dev"),
        "someone else's route was removed: {all}"
    );
}
