//! `helm lint` for every values combination, and every rendered object parsed as its
//! Kubernetes type (or, for Twill's kinds, checked against its CRD's schema).

use super::*;

#[test]
fn helm_lint_passes_for_default_and_ci_values() {
    let chart = support::chart_dir().display().to_string();
    let mut runs = vec![vec![
        "lint",
        "--strict",
        chart.as_str(),
        "--namespace",
        NAMESPACE,
    ]];
    let files: Vec<String> = ["full-values.yaml", "minimal-values.yaml"]
        .iter()
        .map(|f| ci_values(f).display().to_string())
        .collect();
    for f in &files {
        runs.push(vec![
            "lint",
            "--strict",
            chart.as_str(),
            "--namespace",
            NAMESPACE,
            "--values",
            f.as_str(),
        ]);
    }
    for args in runs {
        let out = run_helm(&args).unwrap_or_else(|e| panic!("helm {args:?} failed:\n{e}"));
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "helm {args:?}:\n{out}"
        );
    }
}

#[test]
fn every_rendered_object_parses_as_its_kubernetes_type() {
    let crds = crd_schemas(&defaults().with_crds().render());
    for render in [defaults(), full(), minimal()] {
        let objects = render.clone().with_crds().render();
        assert_eq!(
            objects.of_kind("CustomResourceDefinition").len(),
            CRDS.len(),
            "{:?}",
            objects.names()
        );
        let mut seen = BTreeSet::new();
        for object in &objects.0 {
            let kind = object["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("no kind: {object}"));
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("no name: {object}"));
            assert!(
                seen.insert(format!("{kind}/{name}")),
                "{kind}/{name} rendered twice"
            );
            let namespaced = match kind {
                "ServiceAccount" => check_type::<ServiceAccount>(object, true),
                "ConfigMap" => check_type::<ConfigMap>(object, true),
                "DaemonSet" => check_type::<DaemonSet>(object, true),
                "Deployment" => check_type::<Deployment>(object, true),
                "PodDisruptionBudget" => check_type::<PodDisruptionBudget>(object, true),
                "Role" => check_type::<Role>(object, true),
                "RoleBinding" => check_type::<RoleBinding>(object, true),
                "ClusterRole" => check_type::<ClusterRole>(object, false),
                "ClusterRoleBinding" => check_type::<ClusterRoleBinding>(object, false),
                "CustomResourceDefinition" => check_type::<CustomResourceDefinition>(object, false),
                _ => check_custom_resource(object, &crds),
            };
            let ns = &object["metadata"]["namespace"];
            if namespaced {
                assert_eq!(ns, NAMESPACE, "{kind}/{name} is not in {NAMESPACE}");
            } else {
                assert!(ns.is_null(), "cluster-scoped {kind}/{name} has a namespace");
            }
            if kind != "CustomResourceDefinition" {
                assert_eq!(
                    object["metadata"]["labels"]["app.kubernetes.io/name"], "twill",
                    "{kind}/{name} labels"
                );
                assert_eq!(
                    object["metadata"]["labels"]["app.kubernetes.io/instance"], "twill",
                    "{kind}/{name} labels"
                );
            }
        }
    }
}

/// Round-trips `object` through `T`; returns whether the kind is namespaced.
fn check_type<T: serde::de::DeserializeOwned + serde::Serialize>(
    object: &Value,
    namespaced: bool,
) -> bool {
    if let Err(e) = round_trips_as::<T>(object) {
        panic!("{} {}: {e}", object["kind"], object["metadata"]["name"]);
    }
    namespaced
}

/// A Twill custom resource: its CRD exists and its spec fits the CRD's schema.
fn check_custom_resource(object: &Value, crds: &BTreeMap<String, (bool, Value)>) -> bool {
    let kind = object["kind"].as_str().unwrap_or_default();
    assert_eq!(
        object["apiVersion"],
        format!("{GROUP}/v1"),
        "{kind} is not a Twill kind"
    );
    let (namespaced, schema) = crds
        .get(kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let object_keys: BTreeSet<&str> = object
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        object_keys,
        BTreeSet::from(["apiVersion", "kind", "metadata", "spec"]),
        "{kind} top-level fields"
    );
    let errors = support::schema_violations(&object["spec"], &schema["properties"]["spec"], "spec");
    assert!(
        errors.is_empty(),
        "{kind} {}: {errors:#?}",
        object["metadata"]["name"]
    );
    *namespaced
}

/// kind -> (namespaced, openAPIV3Schema) of every rendered CRD.
fn crd_schemas(objects: &Objects) -> BTreeMap<String, (bool, Value)> {
    objects
        .of_kind("CustomResourceDefinition")
        .into_iter()
        .map(|o| {
            let crd: CustomResourceDefinition = support::typed(o);
            let version = crd
                .spec
                .versions
                .iter()
                .find(|v| v.storage)
                .expect("a storage version");
            let schema = serde_json::to_value(
                version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref()),
            )
            .expect("schema to JSON");
            (
                crd.spec.names.kind.clone(),
                (crd.spec.scope == "Namespaced", schema),
            )
        })
        .collect()
}
