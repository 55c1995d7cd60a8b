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
        "Node",
        "WorkloadEndpoint",
        "GlobalNetworkPolicy",
        "FelixConfiguration",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no CRD for {kind}");
    }
}
