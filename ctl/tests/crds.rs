//! The chart's CRDs must be exactly what `twillctl crds` prints, and every CRD must be a
//! structural schema the API server accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use twillctl::resources::crds::crds_yaml;

const CHART_CRDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/twill/crds/twill.yaml"
);

#[test]
fn chart_crds_equal_twillctl_crds_output() {
    let generated = crds_yaml().unwrap();
    let in_chart = std::fs::read_to_string(CHART_CRDS).unwrap_or_default();
    assert!(
        generated == in_chart,
        "charts/twill/crds/twill.yaml differs from `twillctl crds`. Regenerate it with:\n  \
         cargo run -p twillctl -- crds > charts/twill/crds/twill.yaml"
    );
}

#[test]
fn every_twill_kind_has_a_structural_crd_in_the_twill_group() {
    let yaml = crds_yaml().unwrap();
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let crd: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if crd.is_null() {
            continue;
        }
        assert_eq!(crd["spec"]["group"], "networking.twill.dev");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1");
        let schema = serde_json::to_string(&version["schema"]).unwrap();
        // Structural schemas may not use anyOf/oneOf without types at the top of a property.
        assert!(
            !schema.contains("\"oneOf\""),
            "{} has oneOf",
            crd["metadata"]["name"]
        );
        kinds.push(crd["spec"]["names"]["kind"].as_str().unwrap().to_string());
    }
    for kind in [
        "IPPool",
        "IPAMBlock",
        "BlockAffinity",
        "IPAMHandle",
        "IPAMConfig",
        "IPReservation",
        "BGPConfiguration",
        "BGPPeer",
        "BGPFilter",
        "BFDProfile",
        "Node",
        "WorkloadEndpoint",
        "GlobalNetworkPolicy",
        "FelixConfiguration",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no CRD for {kind}");
    }
}

const REFERENCE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/reference");

/// docs/reference/ must be exactly the pages generated from the CRDs: no page missing,
/// stale or extra. `UPDATE_REFERENCE=1` rewrites them (and then still checks).
#[test]
fn docs_reference_pages_equal_the_generated_ones() {
    let pages = twillctl::resources::reference::reference_pages().unwrap();
    let dir = std::path::Path::new(REFERENCE_DIR);
    if std::env::var_os("UPDATE_REFERENCE").is_some() {
        if dir.exists() {
            std::fs::remove_dir_all(dir).unwrap();
        }
        std::fs::create_dir_all(dir).unwrap();
        for page in &pages {
            std::fs::write(dir.join(&page.file), &page.markdown).unwrap();
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    on_disk.sort();
    let mut expected: Vec<String> = pages.iter().map(|p| p.file.clone()).collect();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "docs/reference/ has other pages than the CRDs give; regenerate with\n  \
         UPDATE_REFERENCE=1 cargo test -p twillctl --test crds"
    );
    for page in &pages {
        let current = std::fs::read_to_string(dir.join(&page.file)).unwrap_or_default();
        assert!(
            current == page.markdown,
            "docs/reference/{} differs from the CRD schemas; regenerate with\n  \
             UPDATE_REFERENCE=1 cargo test -p twillctl --test crds",
            page.file
        );
    }
    assert!(
        pages
            .iter()
            .any(|p| p.file == "ippool.md" && p.markdown.contains("spec.cidr")),
        "the IPPool page documents spec.cidr"
    );
}

/// Every object schema names its fields (or is a map): nothing preserves unknown fields,
/// so the API server prunes them, or refuses them under `fieldValidation=Strict`.
#[test]
fn no_crd_preserves_unknown_fields() {
    fn walk(schema: &serde_json::Value, path: &str, crd: &str) {
        let Some(map) = schema.as_object() else {
            return;
        };
        assert!(
            map.get("x-kubernetes-preserve-unknown-fields") != Some(&true.into()),
            "{crd}: {path} preserves unknown fields"
        );
        for (key, value) in map {
            match key.as_str() {
                "properties" => {
                    for (field, sub) in value.as_object().into_iter().flatten() {
                        walk(sub, &format!("{path}.{field}"), crd);
                    }
                }
                "items" | "additionalProperties" => walk(value, &format!("{path}[]"), crd),
                "anyOf" | "allOf" => {
                    for sub in value.as_array().into_iter().flatten() {
                        walk(sub, path, crd);
                    }
                }
                _ => {}
            }
        }
    }
    let yaml = crds_yaml().unwrap();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let crd: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if crd.is_null() {
            continue;
        }
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk(schema, "", &name);
    }
}

/// Fields with a closed set of values carry it as an `enum`, so the API server refuses
/// anything else (`matchOperator: Frob`) before it is stored.
#[test]
fn closed_value_sets_are_schema_enums() {
    let yaml = crds_yaml().unwrap();
    let mut seen = 0;
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let crd: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        match crd["spec"]["names"]["kind"].as_str() {
            Some("BGPFilter") => {
                let rule = &schema["spec"]["properties"]["exportV4"]["items"]["properties"];
                assert_eq!(
                    rule["matchOperator"]["enum"],
                    serde_json::json!(["Equal", "NotEqual", "In", "NotIn"]),
                    "{rule}"
                );
                assert_eq!(
                    rule["action"]["enum"],
                    serde_json::json!(["Accept", "Reject"])
                );
                seen += 1;
            }
            Some("GlobalNetworkPolicy") => {
                let rule = &schema["spec"]["properties"]["ingress"]["items"]["properties"];
                assert!(rule["action"]["enum"].is_array(), "{rule}");
                seen += 1;
            }
            _ => {}
        }
    }
    assert_eq!(seen, 2);
}
