//! The CRDs (from `crds/`, rendered with `--include-crds`) and the custom resources the
//! chart renders from values (IPPool, BGPConfiguration, BGPPeer).

use super::*;

#[test]
fn crds_are_rendered_only_with_include_crds() {
    assert!(
        defaults()
            .render()
            .of_kind("CustomResourceDefinition")
            .is_empty()
    );
    let objects = defaults().with_crds().render();
    let rendered: BTreeMap<String, CustomResourceDefinition> = objects
        .of_kind("CustomResourceDefinition")
        .into_iter()
        .map(|o| {
            (
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                support::typed(o),
            )
        })
        .collect();
    let want: BTreeSet<String> = CRDS
        .iter()
        .map(|(_, plural, _)| format!("{plural}.{GROUP}"))
        .collect();
    assert_eq!(rendered.keys().cloned().collect::<BTreeSet<_>>(), want);
    for (kind, plural, namespaced) in CRDS {
        let crd = &rendered[&format!("{plural}.{GROUP}")];
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.names.kind, *kind);
        assert_eq!(
            crd.spec.scope,
            if *namespaced { "Namespaced" } else { "Cluster" },
            "{kind} scope"
        );
        let v1 = crd
            .spec
            .versions
            .iter()
            .find(|v| v.name == "v1")
            .unwrap_or_else(|| panic!("{kind} has no v1"));
        assert!(v1.served && v1.storage, "{kind} v1 is served and stored");
        assert!(
            v1.schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .is_some(),
            "{kind} has a schema"
        );
    }
}

#[test]
fn default_values_create_one_pool_and_the_default_bgp_configuration() {
    let objects = defaults().render();
    let pools = objects.of_kind("IPPool");
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0]["metadata"]["name"], "default-ipv4");
    assert_eq!(
        pools[0]["spec"],
        json!({ "cidr": "10.244.0.0/16", "blockSize": 26, "natOutgoing": true, "nodeSelector": "all()" })
    );
    let bgp = objects.get("BGPConfiguration", "default");
    assert_eq!(
        bgp["spec"],
        json!({ "asNumber": 64512, "nodeToNodeMeshEnabled": true, "listenPort": 179 })
    );
    assert!(objects.of_kind("BGPPeer").is_empty());
    assert!(minimal().render().of_kind("IPPool").is_empty());
}

#[test]
fn pools_and_bgp_peers_from_values_become_custom_resources() {
    let objects = full().render();
    let pool = |name: &str| objects.get("IPPool", name)["spec"].clone();
    assert_eq!(
        pool("pods-v4"),
        json!({ "cidr": "10.244.0.0/16", "blockSize": 27, "natOutgoing": true, "nodeSelector": "!has(edge)" })
    );
    assert_eq!(
        pool("pods-v6"),
        json!({ "cidr": "fd00:10:244::/48", "blockSize": 122, "natOutgoing": false, "nodeSelector": "all()" })
    );
    assert_eq!(
        pool("retired"),
        json!({ "cidr": "10.245.0.0/16", "disabled": true })
    );

    let bgp = objects.get("BGPConfiguration", "default");
    assert_eq!(
        bgp["spec"],
        json!({
            "asNumber": 65010,
            "nodeToNodeMeshEnabled": false,
            "listenPort": 1179,
            "communities": [
                { "name": "pods", "value": "65010:100" },
                { "name": "large-pods", "value": "65010:100:1" }
            ],
            "prefixAdvertisements": [{ "cidr": "10.244.0.0/16", "communities": ["pods", "65010:200"] }]
        })
    );
    let peer = |name: &str| objects.get("BGPPeer", name)["spec"].clone();
    assert_eq!(
        peer("tor-rack-a"),
        json!({
            "peerIP": "192.0.2.1",
            "asNumber": 65000,
            "nodeSelector": "rack == 'a'",
            "password": { "secretKeyRef": { "name": "bgp-passwords", "key": "tor-rack-a" } },
            "keepOriginalNextHop": true,
            "maxRestartTime": "120s"
        })
    );
    assert_eq!(
        peer("tor-rack-b")["asNumber"],
        "1.10",
        "asdot stays a string"
    );
    assert_eq!(peer("tor-rack-b")["peerIP"], "198.51.100.1:1179");
    assert_eq!(
        peer("rr-node1"),
        json!({ "peerIP": "fd00::1", "asNumber": 65010, "node": "node1", "sourceAddress": "None" })
    );
}
