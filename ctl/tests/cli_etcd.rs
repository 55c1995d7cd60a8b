//! End to end: the real `twillctl` binary against a real etcd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use twill_harness::etcd::EtcdServer;

const EVERY_KIND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/every-kind.yaml");

fn twillctl(etcd: &EtcdServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twillctl"))
        .args(["--datastore", "etcd", "--etcd-endpoints", &etcd.endpoint()])
        .args(args)
        .env_remove("TWILL_DATASTORE")
        .env_remove("TWILL_ETCD_ENDPOINTS")
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "twillctl failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn get_json(etcd: &EtcdServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(twillctl(etcd, &all))).unwrap()
}

/// Every field of `expected` is present with the same value in `actual`.
fn assert_contains(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (key, value) in e {
                let got = a.get(key).unwrap_or(&Value::Null);
                assert_contains(got, value, &format!("{path}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}");
            for (i, (x, y)) in a.iter().zip(e).enumerate() {
                assert_contains(x, y, &format!("{path}[{i}]"));
            }
        }
        // `order: 10` comes back as 10.0 (a float field): compare numbers as numbers.
        (Value::Number(a), Value::Number(e)) => assert_eq!(a.as_f64(), e.as_f64(), "{path}"),
        (a, e) => assert_eq!(a, e, "{path}"),
    }
}

#[test]
fn apply_round_trips_every_kind_then_delete_removes() {
    let etcd = EtcdServer::start().unwrap();
    let out = ok(twillctl(&etcd, &["apply", "-f", EVERY_KIND]));
    assert!(out.contains("Successfully applied 19 resource(s)"), "{out}");

    let text = std::fs::read_to_string(EVERY_KIND).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut expected: Value = serde::Deserialize::deserialize(doc).unwrap();
        let kind = expected["kind"].as_str().unwrap().to_string();
        let api_version = expected["apiVersion"].as_str().unwrap().to_string();
        let name = expected["metadata"]["name"].as_str().unwrap().to_string();
        let kind_arg = match (api_version.as_str(), kind.as_str()) {
            ("v1", "Node") => "kubenode".to_string(),
            _ => kind.to_lowercase(),
        };
        let mut args = vec![kind_arg.as_str(), name.as_str()];
        if let Some(ns) = expected["metadata"]["namespace"].as_str() {
            args.extend(["-n", ns]);
        }
        let mut get = vec!["get", "--show-secrets"];
        get.extend(&args);
        let actual = get_json(&etcd, &get);
        // asdot is stored normalised.
        if kind == "BGPConfiguration" {
            expected["spec"]["asNumber"] = 65546.into();
        }
        assert_contains(&actual, &expected, &format!("{kind}/{name}"));
        assert!(
            actual["metadata"]["resourceVersion"].is_string(),
            "{kind} has a revision"
        );
    }

    // Apply again: an update of every object, which keeps each object's identity.
    let before = get_json(&etcd, &["get", "ippool", "pool-v4"]);
    ok(twillctl(&etcd, &["apply", "-f", EVERY_KIND]));
    let after = get_json(&etcd, &["get", "ippool", "pool-v4"]);
    assert_eq!(before["metadata"]["uid"], after["metadata"]["uid"]);
    assert!(before["metadata"]["uid"].is_string());
    assert_ne!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );

    let table = ok(twillctl(&etcd, &["get", "ippools"]));
    assert!(table.lines().next().unwrap().contains("CIDR"), "{table}");
    assert!(
        table.contains("pool-v4") && table.contains("10.244.0.0/16"),
        "{table}"
    );
    assert!(
        table.contains("pool-v6") && table.contains("fd00:10:244::/48"),
        "{table}"
    );

    // -o wide adds the priority columns; -o yaml prints the object.
    let wide = ok(twillctl(&etcd, &["get", "ippools", "-o", "wide"]));
    assert!(wide.lines().next().unwrap().contains("SELECTOR"), "{wide}");
    assert!(
        !table.lines().next().unwrap().contains("SELECTOR"),
        "{table}"
    );
    let yaml = ok(twillctl(&etcd, &["get", "ippool", "pool-v4", "-o", "yaml"]));
    let parsed: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(parsed["spec"]["cidr"], "10.244.0.0/16", "{yaml}");
    assert_eq!(parsed["kind"], "IPPool", "{yaml}");

    let namespace = get_json(&etcd, &["get", "namespace", "shop"]);
    assert_eq!(
        namespace["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "shop"
    );

    ok(twillctl(&etcd, &["delete", "ippool", "pool-v6"]));
    let pools = get_json(&etcd, &["get", "ippools"]);
    let names: Vec<&str> = pools["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pool-v4"]);

    let profiles = ok(twillctl(&etcd, &["get", "bfdprofiles"]));
    let header = profiles.lines().next().unwrap();
    assert!(
        header.contains("RX") && header.contains("MULTIPLIER"),
        "{profiles}"
    );
    assert!(
        profiles.contains("fast") && profiles.contains("100"),
        "{profiles}"
    );
    ok(twillctl(&etcd, &["delete", "bfd", "fast"]));
    let profiles = get_json(&etcd, &["get", "bfdprofiles"]);
    assert_eq!(profiles["items"].as_array().unwrap().len(), 0, "{profiles}");

    ok(twillctl(
        &etcd,
        &["delete", "-f", EVERY_KIND, "--ignore-not-found"],
    ));
    let weps = get_json(&etcd, &["get", "wep", "-A"]);
    assert_eq!(weps["items"].as_array().unwrap().len(), 0);
}

#[test]
fn block_size_40_is_refused_naming_block_size_and_not_stored() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pools.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: good}\nspec: {cidr: 10.244.0.0/16}\n---\n\
         apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: big-blocks}\nspec: {cidr: 10.245.0.0/16, blockSize: 40}\n",
    )
    .unwrap();
    let output = twillctl(&etcd, &["apply", "-f", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("blockSize"), "{stderr}");
    assert!(stderr.contains("document 2"), "{stderr}");
    // Nothing is half-written: the valid first document was not stored either.
    let pools = get_json(&etcd, &["get", "ippools"]);
    assert_eq!(pools["items"].as_array().unwrap().len(), 0, "{pools}");

    // A malformed document (a field of the wrong type, then broken YAML) names the document
    // and the field, exits non-zero, and stores nothing.
    std::fs::write(
        &file,
        "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: good}\nspec: {cidr: 10.244.0.0/16}\n---\n\
         apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: typo}\nspec: {cidr: 10.245.0.0/16, natOutgoing: [yes]}\n",
    )
    .unwrap();
    let output = twillctl(&etcd, &["apply", "-f", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("document 2") && stderr.contains("spec.natOutgoing"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: good}\nspec: {cidr: 10.244.0.0/16}\n---\n\
         apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: broken\nspec: {cidr: 10.245.0.0/16}\n",
    )
    .unwrap();
    let output = twillctl(&etcd, &["apply", "-f", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("document 2"), "{stderr}");
    let pools = get_json(&etcd, &["get", "ippools"]);
    assert_eq!(pools["items"].as_array().unwrap().len(), 0, "{pools}");
}

#[test]
fn patch_and_label_change_objects_with_validation() {
    let etcd = EtcdServer::start().unwrap();
    ok(twillctl(&etcd, &["apply", "-f", EVERY_KIND]));
    ok(twillctl(
        &etcd,
        &[
            "patch",
            "ippool",
            "pool-v4",
            "-p",
            r#"{"spec":{"disabled":true}}"#,
        ],
    ));
    assert_eq!(
        get_json(&etcd, &["get", "pool", "pool-v4"])["spec"]["disabled"],
        true
    );
    let refused = twillctl(
        &etcd,
        &[
            "patch",
            "ippool",
            "pool-v4",
            "-p",
            r#"{"spec":{"blockSize":40}}"#,
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("blockSize"));
    assert_eq!(
        get_json(&etcd, &["get", "pool", "pool-v4"])["spec"]["blockSize"],
        26
    );

    ok(twillctl(
        &etcd,
        &["label", "node", "node1", "zone=a", "rack-"],
    ));
    let labels = &get_json(&etcd, &["get", "nodes", "node1"])["metadata"]["labels"];
    assert_eq!(labels["zone"], "a");
    assert!(labels.get("rack").is_none());
    let clash = twillctl(&etcd, &["label", "node", "node1", "zone=b"]);
    assert!(!clash.status.success());
    ok(twillctl(
        &etcd,
        &["label", "node", "node1", "zone=b", "--overwrite"],
    ));
}

#[test]
fn create_refuses_existing_and_replace_refuses_missing() {
    let etcd = EtcdServer::start().unwrap();
    ok(twillctl(&etcd, &["create", "-f", EVERY_KIND]));
    let again = twillctl(&etcd, &["create", "-f", EVERY_KIND]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    ok(twillctl(&etcd, &["replace", "-f", EVERY_KIND]));
    ok(twillctl(&etcd, &["delete", "ippool", "pool-v4"]));
    let missing = twillctl(&etcd, &["replace", "-f", EVERY_KIND]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[test]
fn unreachable_datastore_names_the_endpoint_and_exits_non_zero_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_twillctl"))
        .args(["get", "ippools"])
        .env("TWILL_DATASTORE", "etcd")
        .env("TWILL_ETCD_ENDPOINTS", &endpoint)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&endpoint), "{stderr}");
}

#[test]
fn crds_and_version_need_no_datastore() {
    let crds = Command::new(env!("CARGO_BIN_EXE_twillctl"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(crds.status.success());
    assert!(String::from_utf8_lossy(&crds.stdout).contains("ippools.networking.twill.dev"));
    let version = Command::new(env!("CARGO_BIN_EXE_twillctl"))
        .arg("version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("twillctl "));
    let _ = Path::new(EVERY_KIND);
}

#[test]
fn get_bgppeer_redacts_inline_passwords_unless_show_secrets() {
    let etcd = EtcdServer::start().unwrap();
    ok(twillctl(&etcd, &["apply", "-f", EVERY_KIND]));
    let yaml = ok(twillctl(&etcd, &["get", "bgppeer", "tor", "-o", "yaml"]));
    assert!(!yaml.contains("secret\n"), "{yaml}");
    let parsed: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(parsed["spec"]["password"]["value"], "<redacted>", "{yaml}");
    let list = get_json(&etcd, &["get", "bgppeers"]);
    assert_eq!(list["items"][0]["spec"]["password"]["value"], "<redacted>");
    let json = ok(twillctl(&etcd, &["get", "bgppeer", "tor", "-o", "json"]));
    assert!(!json.contains("\"secret\""), "{json}");
    // The stored value is intact, and shown on request.
    let shown = get_json(&etcd, &["get", "bgppeer", "tor", "--show-secrets"]);
    assert_eq!(shown["spec"]["password"]["value"], "secret");
}

#[test]
fn apply_checks_every_document_against_the_datastore_first_and_reports_each() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let taken = dir.path().join("taken.yaml");
    std::fs::write(
        &taken,
        "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: taken}\nspec: {cidr: 10.244.0.0/16}\n",
    )
    .unwrap();
    ok(twillctl(&etcd, &["apply", "-f", taken.to_str().unwrap()]));
    // The second document overlaps the stored pool: only the datastore can tell.
    let file = dir.path().join("pools.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: one}\nspec: {cidr: 10.250.0.0/24}\n---\n\
         apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: two}\nspec: {cidr: 10.244.1.0/24}\n---\n\
         apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: three}\nspec: {cidr: 10.251.0.0/24}\n",
    )
    .unwrap();
    let output = twillctl(&etcd, &["apply", "-f", file.to_str().unwrap()]);
    assert!(!output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("ippool/one not attempted"), "{stdout}");
    assert!(stdout.contains("ippool/two refused:"), "{stdout}");
    assert!(stdout.contains("overlap"), "{stdout}");
    assert!(stdout.contains("ippool/three not attempted"), "{stdout}");
    assert!(stderr.contains("document 2"), "{stderr}");
    assert!(
        stderr.contains("0 applied, 1 refused, 2 not attempted"),
        "{stderr}"
    );
    let pools = get_json(&etcd, &["get", "ippools"]);
    let names: Vec<&str> = pools["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["taken"], "nothing of the manifest was written");

    // Two pools of one manifest overlapping each other are refused up front too.
    std::fs::write(
        &file,
        "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.252.0.0/16}\n---\n\
         apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: 10.252.1.0/24}\n",
    )
    .unwrap();
    let output = twillctl(&etcd, &["apply", "-f", file.to_str().unwrap()]);
    assert!(!output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ippool/b refused:"), "{stdout}");
    let pools = get_json(&etcd, &["get", "ippools"]);
    assert_eq!(pools["items"].as_array().unwrap().len(), 1, "{pools}");
}

#[test]
fn unknown_fields_are_refused_by_name_unless_validate_says_otherwise() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: typo}\nspec: {cidr: 10.244.0.0/16, natOutgoin: true}\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let refused = twillctl(&etcd, &["apply", "-f", path]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("unknown field"), "{stderr}");
    assert!(stderr.contains("spec.natOutgoin"), "{stderr}");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("applied"));
    let pools = get_json(&etcd, &["get", "ippools"]);
    assert_eq!(pools["items"].as_array().unwrap().len(), 0, "{pools}");
    // create and replace check the same way.
    assert_eq!(
        twillctl(&etcd, &["create", "-f", path]).status.code(),
        Some(2)
    );

    // --validate=warn writes without the field and names it on stderr.
    let warned = twillctl(&etcd, &["apply", "-f", path, "--validate=warn"]);
    let stderr = String::from_utf8_lossy(&warned.stderr).to_string();
    assert!(ok(warned).contains("ippool/typo applied"));
    assert!(
        stderr.contains("Warning") && stderr.contains("spec.natOutgoin"),
        "{stderr}"
    );
    let pool = get_json(&etcd, &["get", "ippool", "typo"]);
    assert!(pool["spec"].get("natOutgoin").is_none(), "{pool}");

    // --validate=ignore (or false, as kubectl spells it) drops it silently.
    let ignored = twillctl(&etcd, &["apply", "-f", path, "--validate=false"]);
    let stderr = String::from_utf8_lossy(&ignored.stderr).to_string();
    ok(ignored);
    assert!(!stderr.contains("natOutgoin"), "{stderr}");

    // A merge patch with an unknown field is refused too.
    let patched = twillctl(
        &etcd,
        &[
            "patch",
            "ippool",
            "typo",
            "-p",
            r#"{"spec":{"blockSiz":24}}"#,
        ],
    );
    assert!(!patched.status.success());
    assert!(String::from_utf8_lossy(&patched.stderr).contains("spec.blockSiz"));
}

#[test]
fn a_network_policy_with_an_unknown_selector_operator_is_refused() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("np.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: broken, namespace: prod}\n\
         spec:\n  podSelector: {matchExpressions: [{key: app, operator: Frob, values: [web]}]}\n  ingress: [{}]\n",
    )
    .unwrap();
    let output = twillctl(&etcd, &["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("spec.podSelector.matchExpressions[0].operator") && stderr.contains("Frob"),
        "{stderr}"
    );
    let policies = get_json(&etcd, &["get", "networkpolicies", "-n", "prod"]);
    assert_eq!(policies["items"].as_array().unwrap().len(), 0, "{policies}");
}
