//! Test support for the policy engine: scenario files (multi-document YAML of the objects a
//! node sees) turned into `PolicyInputs`, and golden files that `TWILL_UPDATE_GOLDENS=1`
//! rewrites.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)] // test support: panics are the failure report

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use twill_felix::policy::inputs::PolicyInputs;

/// `felix/tests/policy/...`
pub fn policy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/policy")
}

/// Parses a multi-document YAML of objects into inputs for `node`.
pub fn inputs_from_yaml(text: &str, node: &str) -> PolicyInputs {
    let mut inputs = PolicyInputs::new(node);
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).expect("YAML document");
        if value.is_null() {
            continue;
        }
        add_object(&mut inputs, value);
    }
    inputs
}

/// Adds one object (by its `kind`) to the inputs.
pub fn add_object(inputs: &mut PolicyInputs, value: Value) {
    let kind = value["kind"].as_str().expect("kind").to_owned();
    match kind.as_str() {
        "Namespace" => inputs.upsert_namespace(serde_json::from_value(value).unwrap()),
        "NetworkPolicy" => inputs.upsert_network_policy(serde_json::from_value(value).unwrap()),
        "GlobalNetworkPolicy" => {
            inputs.upsert_global_policy(serde_json::from_value(value).unwrap())
        }
        "WorkloadEndpoint" => inputs.upsert_endpoint(serde_json::from_value(value).unwrap()),
        "IPPool" => inputs.upsert_pool(serde_json::from_value(value).unwrap()),
        other => panic!("unexpected kind {other}"),
    }
}

/// Reads a scenario from `tests/policy/cases/NAME.yaml`.
pub fn case(name: &str, node: &str) -> PolicyInputs {
    let path = policy_dir().join("cases").join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    inputs_from_yaml(&text, node)
}

/// Compares `actual` with `tests/policy/golden/FILE`, or rewrites it when
/// `TWILL_UPDATE_GOLDENS=1`.
pub fn golden(file: &str, actual: &str) {
    let path = policy_dir().join("golden").join(file);
    if std::env::var("TWILL_UPDATE_GOLDENS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nrun with TWILL_UPDATE_GOLDENS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  golden: {a}\n  actual: {b}", i + 1))
            .collect();
        panic!(
            "{} differs from the golden ({} vs {} lines); rerun with TWILL_UPDATE_GOLDENS=1 \
             if the change is intended\n{}",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}
pub mod topo;
