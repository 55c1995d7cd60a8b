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

#[test]
fn felix_cluster_role_lists_exactly_what_the_node_agent_needs() {
    let objects = defaults().render();
    let role: ClusterRole = objects.typed("ClusterRole", NODE);
    let want = expect(&[
        ("", &["nodes", "pods", "namespaces"], READ),
        ("networking.k8s.io", &["networkpolicies"], READ),
        (
            GROUP,
            &[
                "ippools",
                "ipamconfigs",
                "ipreservations",
                "bgpconfigurations",
                "bgppeers",
                "bgpfilters",
                "globalnetworkpolicies",
                "felixconfigurations",
            ],
            READ,
        ),
        (
            GROUP,
            &["nodes"],
            &["get", "list", "watch", "create", "update", "patch"],
        ),
        (
            GROUP,
            &["workloadendpoints"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        (
            GROUP,
            &["ipamblocks"],
            &["get", "list", "watch", "create", "update"],
        ),
        (
            GROUP,
            &["blockaffinities", "ipamhandles"],
            &["get", "list", "watch", "create", "update", "delete"],
        ),
    ]);
    assert_eq!(grants(role.rules.as_deref().unwrap_or_default()), want);
    // No Secret access unless a BGPPeer password names one.
    assert!(
        objects
            .of_kind("Role")
            .iter()
            .all(|r| !r.to_string().contains("secrets"))
    );
}

#[test]
fn ipam_controller_cluster_role_lists_exactly_what_the_controller_needs() {
    let objects = defaults().render();
    let role: ClusterRole = objects.typed("ClusterRole", IPAM);
    let want = expect(&[
        ("", &["nodes", "pods"], READ),
        (GROUP, &["ippools", "ipamconfigs", "ipreservations"], READ),
        (
            GROUP,
            &["ipamblocks", "blockaffinities"],
            &["get", "list", "watch", "create", "update", "delete"],
        ),
        (
            GROUP,
            &["ipamhandles", "workloadendpoints", "nodes"],
            &["get", "list", "watch", "update", "delete"],
        ),
    ]);
    assert_eq!(grants(role.rules.as_deref().unwrap_or_default()), want);

    let lease: Role = objects.typed("Role", &format!("{IPAM}-leader-election"));
    let mut want = expect(&[("coordination.k8s.io", &["leases"], &["create"])]);
    for verb in ["get", "update", "patch"] {
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
fn bgp_passwords_grant_get_on_the_named_secrets_only() {
    let objects = full().render();
    let role: Role = objects.typed("Role", &format!("{NODE}-bgp-passwords"));
    let want = BTreeSet::from([(
        "".into(),
        "secrets".into(),
        "get".into(),
        "bgp-passwords".into(),
    )]);
    assert_eq!(grants(role.rules.as_deref().unwrap_or_default()), want);
    let binding: RoleBinding = objects.typed("RoleBinding", &format!("{NODE}-bgp-passwords"));
    let subjects = binding.subjects.expect("subjects");
    assert_eq!(
        (subjects[0].kind.as_str(), subjects[0].name.as_str()),
        ("ServiceAccount", NODE)
    );
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
                assert!(crds.contains(&resource), "{resource}.{GROUP} is no CRD");
                used.insert(resource);
            }
        }
    }
    assert_eq!(used, crds, "a CRD nobody may read is dead weight");
}
