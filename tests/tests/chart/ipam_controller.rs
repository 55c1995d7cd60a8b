//! The ipam-controller Deployment: replicas, leader election, metrics and probes, no
//! privilege.

use super::*;

#[test]
fn ipam_controller_runs_two_replicas_with_lease_leader_election() {
    let objects = defaults().render();
    let deploy: Deployment = objects.typed("Deployment", IPAM);
    let spec = deploy.spec;
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod spec");
    assert_ne!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some(IPAM));
    let ctl = container(&pod.containers, "ipam-controller");
    assert_eq!(
        ctl.command.as_deref(),
        Some(&["twill-ipam-controller".to_string()][..])
    );
    assert_eq!(env(ctl, "TWILL_DATASTORE").as_deref(), Some("kubernetes"));
    assert_eq!(env(ctl, "TWILL_LEADER_ELECT").as_deref(), Some("true"));
    assert_eq!(
        env_field_ref(ctl, "TWILL_LEADER_ELECTION_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    assert_eq!(
        env_field_ref(ctl, "TWILL_LEADER_ID").as_deref(),
        Some("metadata.name")
    );
    let lease = env(ctl, "TWILL_LEADER_ELECTION_LEASE").expect("lease name");
    // The Lease it uses is the one its Role lets it hold.
    let role: Role = objects.typed("Role", &format!("{IPAM}-leader-election"));
    let named: Vec<&String> = role
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.resource_names.iter().flatten())
        .collect();
    assert_eq!(named, vec![&lease]);
    // Metrics on a named port, where the controller listens.
    let metrics = ctl
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("metrics port");
    assert_eq!(metrics.container_port, 9094);
    assert_eq!(
        env(ctl, "TWILL_METRICS_LISTEN").as_deref(),
        Some("0.0.0.0:9094")
    );
    // The kubelet probes the controller's own /livez and /readyz on that port.
    for (probe, path) in [
        (ctl.liveness_probe.as_ref(), "/livez"),
        (ctl.readiness_probe.as_ref(), "/readyz"),
    ] {
        let get = probe
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("an httpGet probe on {path}"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("metrics".into()));
    }
    // Unprivileged.
    let pod_security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    let security = ctl.security_context.as_ref().expect("securityContext");
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    assert!(
        security
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_none()
    );
    // A voluntary disruption never takes both replicas.
    let pdb: PodDisruptionBudget = objects.typed("PodDisruptionBudget", IPAM);
    let pdb_spec = pdb.spec.expect("pdb spec");
    assert_eq!(pdb_spec.min_available, Some(IntOrString::Int(1)));
    assert_eq!(pdb_spec.selector, Some(spec.selector.clone()));
    let labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");
    for (k, v) in spec.selector.match_labels.iter().flatten() {
        assert_eq!(labels.get(k), Some(v), "the selector matches the pods");
    }
}

#[test]
fn a_single_ipam_controller_needs_no_lease() {
    let objects = minimal().in_namespace("kube-system").render();
    let deploy: Deployment = objects.typed("Deployment", IPAM);
    let pod = deploy.spec.template.spec.expect("pod");
    let ctl = container(&pod.containers, "ipam-controller");
    assert_eq!(env(ctl, "TWILL_LEADER_ELECT").as_deref(), Some("false"));
    assert!(
        objects
            .find("Role", &format!("{IPAM}-leader-election"))
            .is_none()
    );
    assert!(objects.find("PodDisruptionBudget", IPAM).is_none());

    let objects = full().render();
    let deploy: Deployment = objects.typed("Deployment", IPAM);
    let spec = deploy.spec;
    assert_eq!(spec.replicas, Some(3));
    let ctl = container(
        &spec.template.spec.as_ref().expect("pod").containers,
        "ipam-controller",
    )
    .clone();
    assert_eq!(
        ctl.image.as_deref(),
        Some("registry.example.com/net/twill-ipam:1.2.3")
    );
    assert_eq!(
        env(&ctl, "TWILL_METRICS_LISTEN").as_deref(),
        Some("0.0.0.0:19094")
    );
}
