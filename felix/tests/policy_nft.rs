//! The nftables dataplane against the real kernel, in network namespaces: the netlink
//! encoding lists exactly like `nft -f` of the rendered text, incremental updates end in
//! the same table as a full build, and drift is seen and repaired.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod policy_support;

use std::sync::Arc;

use policy_support::{case, inputs_from_yaml};
use twill_felix::policy::calc::{Calculator, compute};
use twill_felix::policy::nft::apply::NftDataplane;
use twill_felix::policy::nft::render::render;
use twill_harness::netns::Netns;

fn list_table(ns: &Netns) -> String {
    ns.exec("nft", &["list", "table", "inet", "twill"]).unwrap()
}

/// The listing with its blocks (sets, maps, chains) sorted by name and each set's elements
/// sorted: `nft` lists chains in creation order and hash sets in hash order, neither of
/// which is part of the ruleset's meaning.
fn canonical(listing: &str) -> String {
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut elements: Option<String> = None;
    for line in listing.lines() {
        if let Some(e) = elements.as_mut() {
            e.push_str(line.trim());
            if line.trim_end().ends_with('}') {
                let inner = e.trim_start_matches("elements = {").trim_end_matches('}');
                let mut items: Vec<&str> = inner.split(',').map(str::trim).collect();
                items.sort();
                if let Some(b) = current.as_mut() {
                    b.push(format!("elements = {{ {} }}", items.join(", ")));
                }
                elements = None;
            }
            continue;
        }
        let t = line.trim();
        if line.starts_with("\t") && !line.starts_with("\t\t") && t.ends_with('{') {
            current = Some(vec![t.to_owned()]);
        } else if line == "\t}" {
            if let Some(mut b) = current.take() {
                b.push("}".to_owned());
                blocks.push(b.join("\n"));
            }
        } else if t.starts_with("elements = {") {
            elements = Some(String::new());
            if let Some(e) = elements.as_mut() {
                e.push_str(t);
            }
            if t.ends_with('}') {
                let inner = t.trim_start_matches("elements = {").trim_end_matches('}');
                let mut items: Vec<&str> = inner.split(',').map(str::trim).collect();
                items.sort();
                if let Some(b) = current.as_mut() {
                    b.push(format!("elements = {{ {} }}", items.join(", ")));
                }
                elements = None;
            }
        } else if let Some(b) = current.as_mut()
            && !t.is_empty()
        {
            b.push(t.to_owned());
        }
    }
    blocks.sort();
    blocks.join("\n")
}

#[test]
fn netlink_build_lists_exactly_like_nft_text() {
    let (ir, _) = compute(&case("mixed", "node1"));
    let by_text = Netns::new("tw-pnt").unwrap();
    let path = std::env::temp_dir().join(format!("twill-policy-{}.nft", std::process::id()));
    std::fs::write(&path, render(&ir).text()).unwrap();
    by_text
        .exec("nft", &["-f", path.to_str().unwrap()])
        .unwrap();
    let _ = std::fs::remove_file(&path);

    let by_netlink = Netns::new("tw-pnn").unwrap();
    let ir2 = ir.clone();
    by_netlink
        .run(move || {
            let mut dp = NftDataplane::new().unwrap();
            dp.replace_all(&ir2).unwrap();
        })
        .unwrap();
    let a = list_table(&by_text);
    let b = list_table(&by_netlink);
    assert_eq!(
        canonical(&a),
        canonical(&b),
        "netlink-built table lists differently from nft -f"
    );
    assert!(canonical(&a).lines().count() > 100);
    assert!(a.contains("chain ing-tw00000000001"), "{a}");
}

#[test]
fn incremental_updates_end_in_the_full_build() {
    let base = case("mixed", "node1");
    // A sequence of changes: label change, new pod, policy edit, pod removal, policy
    // removal, namespace relabel, pool change.
    let mut steps = vec![base.clone()];
    let mut s = base.clone();
    let mut client = s.endpoints[&("dev".into(), "client".into())]
        .as_ref()
        .clone();
    client
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app".into(), "api".into());
    s.upsert_endpoint(client);
    steps.push(s.clone());
    let extra = inputs_from_yaml(
        r#"
apiVersion: networking.twill.dev/v1
kind: WorkloadEndpoint
metadata: { name: new, namespace: prod, labels: { app: api } }
spec: { node: node1, interfaceName: tw0000000000a, ipNetworks: [10.244.0.50/32] }
"#,
        "node1",
    );
    for (k, v) in &extra.endpoints {
        s.endpoints.insert(k.clone(), Arc::clone(v));
    }
    steps.push(s.clone());
    let mut np = s.network_policies[&("prod".into(), "web-in".into())]
        .as_ref()
        .clone();
    np.spec.as_mut().unwrap().ingress.as_mut().unwrap()[0].ports = None;
    s.upsert_network_policy(np);
    steps.push(s.clone());
    s.endpoints.remove(&("prod".into(), "db".into()));
    steps.push(s.clone());
    s.global_policies.remove("deny-dev-to-db");
    steps.push(s.clone());
    let mut dev = s.namespaces["dev"].as_ref().clone();
    dev.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("team".into(), "a".into());
    s.upsert_namespace(dev);
    steps.push(s.clone());
    s.pools.remove("v6");
    steps.push(s.clone());

    // The netlink socket stays in the namespace it was opened in, whichever thread
    // uses it afterwards.
    let incremental = Netns::new("tw-pni").unwrap();
    let mut dp = incremental.run(NftDataplane::new).unwrap().unwrap();
    let mut calc = Calculator::new("");
    for (i, step) in steps.iter().enumerate() {
        let delta = calc.update(step);
        let stats = dp.apply(calc.ir(), &delta).unwrap();
        assert_eq!(stats.full, i == 0, "step {i}: {stats:?}");
        assert!(dp.in_sync().unwrap(), "step {i}");

        let full = Netns::new("tw-pnf").unwrap();
        let (ir, _) = compute(step);
        assert_eq!(
            &ir,
            calc.ir(),
            "step {i}: incremental IR differs from a fresh one"
        );
        let mut fresh = full.run(NftDataplane::new).unwrap().unwrap();
        fresh.replace_all(&ir).unwrap();
        assert_eq!(
            canonical(&list_table(&incremental)),
            canonical(&list_table(&full)),
            "step {i}: incremental table differs from a full build"
        );
    }
}

#[test]
fn drift_is_detected_and_repaired() {
    let ns = Netns::new("tw-pnd").unwrap();
    let mut dp = ns.run(NftDataplane::new).unwrap().unwrap();
    let mut calc = Calculator::new("");
    let delta = calc.update(&case("mixed", "node1"));
    dp.apply(calc.ir(), &delta).unwrap();
    let good = list_table(&ns);
    assert!(dp.in_sync().unwrap());

    // Someone else's table changes the generation but not ours.
    ns.exec("nft", &["add", "table", "ip", "other"]).unwrap();
    assert!(dp.in_sync().unwrap(), "an unrelated table is not drift");

    ns.exec(
        "nft",
        &["delete", "chain", "inet", "twill", "ingk-tw00000000002"],
    )
    .unwrap_err(); // still referenced: the kernel refuses
    ns.exec(
        "nft",
        &["flush", "chain", "inet", "twill", "pi-cfaf8495d8fc"],
    )
    .unwrap();
    assert!(!dp.in_sync().unwrap(), "a flushed chain is drift");
    dp.replace_all(calc.ir()).unwrap();
    assert_eq!(canonical(&list_table(&ns)), canonical(&good));

    ns.exec("nft", &["delete", "table", "inet", "twill"])
        .unwrap();
    assert!(!dp.in_sync().unwrap(), "a deleted table is drift");
    dp.replace_all(calc.ir()).unwrap();
    assert_eq!(canonical(&list_table(&ns)), canonical(&good));
    assert!(dp.in_sync().unwrap());
}
