//! The workspace's dependency graph keeps the layering docs/ARCHITECTURE.md describes:
//! felix uses the CNI spec crate, not the plugin's; nothing below felix depends on felix;
//! the libraries at the bottom depend on none of the binaries' crates above them.
//! Read from `cargo metadata` (normal and build dependencies; dev-dependencies may reach up).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Workspace crate → the workspace crates it depends on (normal and build dependencies).
fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let packages = metadata();
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|n| members.contains(n))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

/// Workspace crate → the names of its binary targets.
fn binaries() -> BTreeMap<String, BTreeSet<String>> {
    metadata()
        .iter()
        .map(|p| {
            let bins = p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), bins)
        })
        .collect()
}

fn metadata() -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"].as_array().unwrap().clone()
}

/// Everything `krate` reaches through normal and build dependencies.
fn reach(graph: &BTreeMap<String, BTreeSet<String>>, krate: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![krate.to_string()];
    while let Some(k) = todo.pop() {
        for d in graph.get(&k).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn felix_uses_the_cni_spec_crate_not_the_plugin() {
    let graph = workspace_graph();
    assert!(
        graph.contains_key("twill-cni"),
        "no twill-cni crate: {graph:?}"
    );
    let felix = reach(&graph, "twill-felix");
    assert!(felix.contains("twill-cni"), "felix reaches {felix:?}");
    // Whatever the plugin's crate is called, it is the one that builds the `twill` binary.
    let bins = binaries();
    let plugin: Vec<&String> = bins
        .iter()
        .filter(|(_, b)| b.contains("twill"))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(plugin.len(), 1, "one crate builds `twill`: {bins:?}");
    assert!(
        !felix.contains(plugin[0]),
        "felix depends on the plugin's crate {}: {felix:?}",
        plugin[0]
    );
}

#[test]
fn nothing_below_felix_depends_on_felix_or_the_plugin() {
    let graph = workspace_graph();
    for lower in [
        "twill-utils",
        "twill-proto",
        "twill-api",
        "twill-cni",
        "twill-ipam",
        "twill-bgpd",
        "twill-harness",
    ] {
        let reached = reach(&graph, lower);
        for upper in ["twill-felix", "twill-cni-plugin", "twillctl", "twill-tests"] {
            assert!(
                !reached.contains(upper),
                "{lower} depends on {upper} (reaches {reached:?})"
            );
        }
    }
    // The shared runtime pieces sit below every binary, not inside the BGP crate.
    for binary_crate in ["twill-felix", "twill-ipam", "twill-bgpd"] {
        assert!(
            graph[binary_crate].contains("twill-utils"),
            "{binary_crate} does not use twill-utils"
        );
    }
    assert!(
        reach(&graph, "twill-utils").is_empty(),
        "twill-utils depends on other crates of ours"
    );
    let cni = reach(&graph, "twill-cni");
    for heavy in ["twill-api", "twill-bgpd", "twill-ipam"] {
        assert!(!cni.contains(heavy), "the CNI spec crate pulls in {heavy}");
    }
}
