//! values.schema.json and the chart's own checks refuse bad values; the namespace rule;
//! NOTES.txt.

use super::*;

/// A values document that helm must refuse, the part of the error that says why, and a
/// close variant that renders (so the refusal is about the bad value, not the document).
struct Refusal {
    bad: &'static str,
    error: &'static str,
    good: &'static str,
}

const REFUSALS: &[Refusal] = &[
    Refusal {
        bad: "pools: [{name: p, cidr: 10.244.0.0/16, blockSize: 40}]",
        error: "blockSize",
        good: "pools: [{name: p, cidr: 10.244.0.0/16, blockSize: 32}]",
    },
    Refusal {
        bad: "pools: [{name: p, cidr: 10.244.0.0/16, blockSize: 19}]",
        error: "blockSize",
        good: "pools: [{name: p, cidr: 10.244.0.0/16, blockSize: 20}]",
    },
    Refusal {
        bad: "pools: [{name: p, cidr: 'fd00::/48', blockSize: 26}]",
        error: "blockSize",
        good: "pools: [{name: p, cidr: 'fd00::/48', blockSize: 116}]",
    },
    Refusal {
        bad: "pools: [{name: p, cidr: 10.244.0.0/33}]",
        error: "cidr",
        good: "pools: [{name: p, cidr: 10.244.0.0/32}]",
    },
    Refusal {
        bad: "pools: [{name: p}]",
        error: "cidr is required",
        good: "pools: [{name: p, cidr: 10.0.0.0/8}]",
    },
    Refusal {
        bad: "pools: [{name: p, cidr: 10.1.0.0/16}, {name: p, cidr: 10.2.0.0/16}]",
        error: "used twice",
        good: "pools: [{name: p, cidr: 10.1.0.0/16}, {name: q, cidr: 10.2.0.0/16}]",
    },
    Refusal {
        bad: "pools: [{name: p, cidr: 10.1.0.0/16, ipipMode: Always}]",
        error: "ipipMode",
        good: "pools: [{name: p, cidr: 10.1.0.0/16, natOutgoing: false}]",
    },
    Refusal {
        bad: "dataplane: ebpf",
        error: "dataplane",
        good: "dataplane: iptables",
    },
    Refusal {
        bad: "mtu: 100",
        error: "mtu",
        good: "mtu: 576",
    },
    Refusal {
        bad: "mtu: 9217",
        error: "mtu",
        good: "mtu: 9216",
    },
    Refusal {
        bad: "logLevel: verbose",
        error: "logLevel",
        good: "logLevel: trace",
    },
    Refusal {
        bad: "dataPlane: nftables",
        error: "dataPlane",
        good: "dataplane: nftables",
    },
    Refusal {
        bad: "bgp: {asNumber: 0}",
        error: "asNumber",
        good: "bgp: {asNumber: 1}",
    },
    Refusal {
        bad: "bgp: {asNumber: 4294967296}",
        error: "asNumber",
        good: "bgp: {asNumber: 4294967295}",
    },
    Refusal {
        bad: "bgp: {peers: [{name: t, asNumber: 65000}]}",
        error: "peerIP is required",
        good: "bgp: {peers: [{name: t, asNumber: 65000, peerIP: 192.0.2.1}]}",
    },
    Refusal {
        bad: "bgp: {peers: [{name: t, asNumber: 65000, peerIP: 192.0.2.300}]}",
        error: "peerIP",
        good: "bgp: {peers: [{name: t, asNumber: 65000, peerIP: 192.0.2.30}]}",
    },
    Refusal {
        bad: "bgp: {peers: [{name: t, asNumber: 65000, peerIP: 192.0.2.1, node: a, nodeSelector: all()}]}",
        error: "bgp.peers.0",
        good: "bgp: {peers: [{name: t, asNumber: 65000, peerIP: 192.0.2.1, node: a}]}",
    },
    Refusal {
        bad: "bgp: {peers: [{name: t, asNumber: 65000, peerIP: 192.0.2.1, password: {value: hunter2}}]}",
        error: "password",
        good: "bgp: {peers: [{name: t, asNumber: 65000, peerIP: 192.0.2.1, password: {secretKeyRef: {name: s, key: k}}}]}",
    },
    Refusal {
        bad: "bgp: {communities: [{name: c, value: 'no-export'}]}",
        error: "communities.0.value",
        good: "bgp: {communities: [{name: c, value: '65000:1'}]}",
    },
    Refusal {
        bad: "ipamController: {replicas: 2, leaderElection: {enabled: false}}",
        error: "leaderElection",
        good: "ipamController: {replicas: 1, leaderElection: {enabled: false}}",
    },
    Refusal {
        bad: "cni: {extraPlugins: [{type: twill}]}",
        error: "extraPlugins",
        good: "cni: {extraPlugins: [{type: tuning}]}",
    },
    Refusal {
        bad: "cni: {cniVersion: 2.0.0}",
        error: "cniVersion",
        good: "cni: {cniVersion: 0.4.0}",
    },
    Refusal {
        bad: "image: {pullPolicy: Sometimes}",
        error: "pullPolicy",
        good: "image: {pullPolicy: Never}",
    },
    Refusal {
        bad: "node: {healthPort: 0}",
        error: "healthPort",
        good: "node: {healthPort: 1}",
    },
];

#[test]
fn values_schema_refuses_bad_values() {
    for case in REFUSALS {
        let bad = values_file(case.bad);
        let err = match defaults().with_values(bad.path.clone()).try_render() {
            Ok(objects) => panic!("helm rendered {:?} ({} objects)", case.bad, objects.0.len()),
            Err(e) => e,
        };
        assert!(
            err.contains(case.error),
            "refusing {:?}, helm did not mention {:?}:\n{err}",
            case.bad,
            case.error
        );
        let good = values_file(case.good);
        if let Err(e) = defaults().with_values(good.path.clone()).try_render() {
            panic!(
                "the good twin {:?} of {:?} fails too:\n{e}",
                case.good, case.bad
            );
        }
    }
}

#[test]
fn namespace_comes_from_values_and_must_agree_with_the_release() {
    // `helm template` without --namespace (release namespace "default") uses twill-system.
    let objects = defaults().in_namespace("default").render();
    let ds = objects.get("DaemonSet", NODE);
    assert_eq!(ds["metadata"]["namespace"], "twill-system");

    let err = defaults()
        .in_namespace("kube-system")
        .try_render()
        .expect_err("a contradicting namespace");
    assert!(err.contains("--namespace twill-system"), "{err}");

    let objects = defaults()
        .in_namespace("kube-system")
        .set("namespace=kube-system")
        .render();
    let objects_namespaces: BTreeSet<&str> = objects
        .0
        .iter()
        .filter_map(|o| o["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(objects_namespaces, BTreeSet::from(["kube-system"]));
    let binding = objects.get("ClusterRoleBinding", NODE);
    assert_eq!(binding["subjects"][0]["namespace"], "kube-system");

    // An empty namespace follows the release.
    let objects = minimal().in_namespace("net").render();
    assert_eq!(
        objects.get("Deployment", IPAM)["metadata"]["namespace"],
        "net"
    );
}

#[test]
fn notes_name_the_namespace_and_the_components() {
    let notes = render_notes(&support::chart_dir().display().to_string());
    assert!(notes.contains("twill-system (the default)"), "{notes}");
    assert!(notes.contains("twill-node"), "{notes}");
    assert!(
        notes.contains("twill-ipam-controller: 2 replica(s), leader election on"),
        "{notes}"
    );
    assert!(
        notes.contains("default-ipv4: 10.244.0.0/16 (blocks /26, NAT outgoing)"),
        "{notes}"
    );
}

/// NOTES.txt renders only on install (`helm install --dry-run` needs a cluster), so render
/// it as a ConfigMap template in a scratch copy of the chart.
fn render_notes(chart: &str) -> String {
    let scratch = tempfile::tempdir().expect("tempdir");
    let copy = scratch.path().join("twill");
    copy_dir(std::path::Path::new(chart), &copy);
    let notes = std::fs::read_to_string(copy.join("templates/NOTES.txt")).expect("NOTES.txt");
    let as_manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n{}",
        indent(&notes)
    );
    std::fs::write(copy.join("templates/notes-as-configmap.yaml"), as_manifest).expect("write");
    let out = run_helm(&[
        "template",
        "twill",
        &copy.display().to_string(),
        "--namespace",
        NAMESPACE,
        "--show-only",
        "templates/notes-as-configmap.yaml",
    ])
    .unwrap_or_else(|e| panic!("NOTES.txt does not render:\n{e}"));
    let docs = support::parse_documents(&out);
    docs[0]["data"]["notes"]
        .as_str()
        .expect("notes")
        .to_string()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
