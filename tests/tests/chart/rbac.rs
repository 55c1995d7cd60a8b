//! RBAC: one ServiceAccount per component, exact least-privilege rules, no wildcards.

use super::*;

type Grant = (String, String, String, String);

/// (apiGroup, resource, verb, resourceName or "") for every combination a rule allows.
fn grants(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(
            rule.non_resource_urls.as_ref().is_none_or(Vec::is_empty),
            "non-resource URLs: {rule:?}"
        );
        let names: Vec<String> = match rule.resource_names.as_deref() {
            None | Some([]) => vec![String::new()],
            Some(names) => names.to_vec(),
        };
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for name in &names {
                        out.insert((group.clone(), resource.clone(), verb.clone(), name.clone()));
                    }
                }
            }
        }
    }
    out
}

fn expect(table: &[(&str, &[&str], &[&str])]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in table {
        for resource in *resources {
            for verb in *verbs {
                out.insert((
                    group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                    String::new(),
                ));
            }
        }
    }
    out
}

const READ: &[&str] = &["get", "list", "watch"];

// These tables are what the code calls: tests/tests/kube_mode.rs runs the real binaries
// against a recording API server and holds every call against the rendered roles.

#[test]
fn felix_cluster_role_lists_exactly_what_the_node_agent_needs() {
    let objects = defaults().render();
    let role: ClusterRole = objects.typed("ClusterRole", NODE);
    let want = expect(&[
        ("", &["nodes", "pods"], READ),
        ("", &["namespaces", "services"], &["list", "watch"]),
        ("discovery.k8s.io", &["endpointslices"], &["list", "watch"]),
        (
            "networking.k8s.io",
            &["networkpolicies"],
            &["list", "watch"],
        ),
        (
            GROUP,
            &[
                "ippools",
                "bgpconfigurations",
                "bgppeers",
                "bgpfilters",
                "bfdprofiles",
                "globalnetworkpolicies",
                "felixconfigurations",
            ],
            &["list", "watch"],
        ),
        (GROUP, &["bgppeers/status"], &["update"]),
        (GROUP, &["ipamconfigs"], &["get"]),
        (GROUP, &["ipreservations"], &["list"]),
        (
            GROUP,
            &["nodes"],
            &["get", "list", "watch", "create", "update"],
        ),
        (
            GROUP,
            &["workloadendpoints"],
            &["get", "list", "watch", "create", "update", "delete"],
        ),
        (
            GROUP,
            &["ipamblocks"],
            &["get", "list", "watch", "create", "update"],
        ),
        (GROUP, &["blockaffinities"], &["create"]),
        (
            GROUP,
            &["ipamhandles"],
            &["get", "create", "update", "delete"],
        ),
    ]);
    assert_eq!(grants(role.rules.as_deref().unwrap_or_default()), want);
}

#[test]
fn ipam_controller_cluster_role_lists_exactly_what_the_controller_needs() {
    let objects = defaults().render();
    let role: ClusterRole = objects.typed("ClusterRole", IPAM);
    let want = expect(&[
        ("", &["pods"], &["list"]),
        ("", &["nodes"], &["list", "watch"]),
        // LoadBalancer IPAM: Services' addresses in their status, Events on failures.
        ("", &["services"], &["list", "watch"]),
        ("", &["services/status"], &["update"]),
        ("", &["events"], &["create"]),
        // get and update: the controller holds a finalizer on pools in use.
        (GROUP, &["ippools"], &["get", "list", "watch", "update"]),
        (GROUP, &["ippools/status"], &["update"]),
        (GROUP, &["ipamconfigs"], &["get"]),
        (GROUP, &["ipreservations"], &["list"]),
        (GROUP, &["nodes"], &["get", "list", "watch", "delete"]),
        (
            GROUP,
            &["ipamblocks"],
            &["get", "list", "create", "update", "delete"],
        ),
        (
            GROUP,
            &["blockaffinities"],
            &["get", "list", "create", "delete"],
        ),
        (GROUP, &["ipamhandles"], &["get", "list", "delete"]),
    ]);
    assert_eq!(grants(role.rules.as_deref().unwrap_or_default()), want);

    let lease: Role = objects.typed("Role", &format!("{IPAM}-leader-election"));
    let mut want = expect(&[("coordination.k8s.io", &["leases"], &["create"])]);
    for verb in ["get", "update"] {
        want.insert((
            "coordination.k8s.io".into(),
            "leases".into(),
            verb.into(),
            IPAM.into(),
        ));
    }
    assert_eq!(grants(lease.rules.as_deref().unwrap_or_default()), want);
}

#[test]
fn only_felix_may_get_exactly_the_password_secrets_the_peers_name() {
    // Default values name no password Secret: nobody may read Secrets.
    let objects = defaults().render();
    for role in objects
        .of_kind("ClusterRole")
        .into_iter()
        .chain(objects.of_kind("Role"))
    {
        assert!(
            !role["rules"].to_string().contains("secrets"),
            "{} grants Secrets",
            role["metadata"]["name"]
        );
    }
    // A peer with a password: felix may `get` that one Secret, in the release namespace.
    let objects = defaults()
        .set("bgp.peers[0].name=tor")
        .set("bgp.peers[0].peerIP=192.0.2.1")
        .set("bgp.peers[0].asNumber=65000")
        .set("bgp.peers[0].password.secretKeyRef.name=bgp-passwords")
        .set("bgp.peers[0].password.secretKeyRef.key=tor")
        .render();
    for role in objects.of_kind("ClusterRole") {
        assert!(
            !role["rules"].to_string().contains("secrets"),
            "{} grants Secrets cluster-wide",
            role["metadata"]["name"]
        );
    }
    let name = format!("{NODE}-bgp-passwords");
    let role: Role = objects.typed("Role", &name);
    let mut want = BTreeSet::new();
    want.insert((
        String::new(),
        "secrets".to_string(),
        "get".to_string(),
        "bgp-passwords".to_string(),
    ));
    assert_eq!(grants(role.rules.as_deref().unwrap_or_default()), want);
    let binding = objects.get("RoleBinding", &name);
    assert_eq!(binding["subjects"][0]["name"], NODE);
    assert_eq!(binding["roleRef"]["name"], name.as_str());
}

#[test]
fn each_component_has_its_own_service_account_bound_to_its_own_role() {
    for render in [defaults(), full()] {
        let objects = render.render();
        let accounts: BTreeSet<String> = objects
            .of_kind("ServiceAccount")
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap_or_default().into())
            .collect();
        assert_eq!(
            accounts,
            BTreeSet::from([NODE.to_string(), IPAM.to_string()])
        );
        for binding in objects
            .of_kind("ClusterRoleBinding")
            .into_iter()
            .chain(objects.of_kind("RoleBinding"))
        {
            let binding_kind = binding["kind"].as_str().unwrap_or_default();
            let role_kind = &binding["roleRef"]["kind"];
            let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
            assert!(
                objects
                    .find(role_kind.as_str().unwrap_or_default(), role_name)
                    .is_some(),
                "{binding_kind} {} refers to a missing {role_kind} {role_name}",
                binding["metadata"]["name"]
            );
            let subjects = binding["subjects"].as_array().expect("subjects");
            assert_eq!(subjects.len(), 1, "one component per binding");
            assert_eq!(subjects[0]["kind"], "ServiceAccount");
            assert_eq!(subjects[0]["namespace"], NAMESPACE);
            let account = subjects[0]["name"].as_str().unwrap_or_default();
            assert!(
                role_name.starts_with(account),
                "{account} bound to {role_name}, another component's role"
            );
        }
    }
}

#[test]
fn no_role_uses_a_wildcard() {
    for render in [defaults(), full(), minimal()] {
        let objects = render.render();
        let roles: Vec<&Value> = objects
            .of_kind("ClusterRole")
            .into_iter()
            .chain(objects.of_kind("Role"))
            .collect();
        assert!(roles.len() >= 2, "both components' roles");
        for role in roles {
            assert!(
                !role["rules"].to_string().contains('*'),
                "wildcard in {}",
                role["metadata"]["name"]
            );
            assert!(role.get("aggregationRule").is_none());
        }
    }
}

#[test]
fn every_twill_resource_in_a_role_is_a_crd_and_every_crd_is_used() {
    let objects = defaults().with_crds().render();
    let crds: BTreeSet<String> = CRDS
        .iter()
        .map(|(_, plural, _)| plural.to_string())
        .collect();
    let mut used = BTreeSet::new();
    for role in objects.of_kind("ClusterRole") {
        let role: ClusterRole = support::typed(role);
        for (group, resource, _, _) in grants(role.rules.as_deref().unwrap_or_default()) {
            if group == GROUP {
                // A subresource (`ippools/status`) belongs to its CRD.
                let resource = resource.split('/').next().unwrap_or_default().to_string();
                assert!(crds.contains(&resource), "{resource}.{GROUP} is no CRD");
                used.insert(resource);
            }
        }
    }
    assert_eq!(used, crds, "a CRD nobody may read is dead weight");
}
