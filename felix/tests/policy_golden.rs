//! Golden tests of the policy engine's pure parts: the IR computed from a scenario, and
//! what each renderer makes of it. `TWILL_UPDATE_GOLDENS=1` rewrites the goldens.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod policy_support;

use policy_support::{case, golden};
use twill_felix::policy::calc::compute;
use twill_felix::policy::nft::render::render;

const CASES: &[&str] = &["mixed"];

#[test]
fn ir_matches_golden() {
    for name in CASES {
        let (ir, warnings) = compute(&case(name, "node1"));
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        let json = serde_json::to_string_pretty(&ir).unwrap() + "\n";
        golden(&format!("{name}.ir.json"), &json);
    }
}

#[test]
fn nftables_rendering_matches_golden() {
    for name in CASES {
        let (ir, _) = compute(&case(name, "node1"));
        golden(&format!("{name}.nft"), &render(&ir).text());
    }
}

#[test]
fn iptables_rendering_matches_golden() {
    use twill_felix::policy::ipt::render::render as ipt_render;
    use twill_felix::policy::ir::Family;
    for name in CASES {
        let (ir, _) = compute(&case(name, "node1"));
        let rs = ipt_render(&ir);
        let text = format!(
            "# ipset restore\n{}# iptables-restore\n{}# ip6tables-restore\n{}",
            rs.ipset_text(),
            rs.restore_text(Family::V4),
            rs.restore_text(Family::V6)
        );
        golden(&format!("{name}.iptables"), &text);
    }
}

#[test]
fn incremental_ir_equals_a_fresh_computation_after_every_change() {
    use std::sync::Arc;
    use twill_felix::policy::calc::Calculator;
    let base = case("mixed", "node1");
    let keys: Vec<_> = base.endpoints.keys().cloned().collect();
    let mut calc = Calculator::new("");
    let mut inputs = base.clone();
    calc.update(&inputs);
    // A fixed pseudo-random walk over label, address, namespace and policy changes.
    let mut seed = 0x2545_f491_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for step in 0..200 {
        match next() % 6 {
            0 | 1 => {
                let key = &keys[(next() % keys.len() as u64) as usize];
                if let Some(wep) = inputs.endpoints.get(key) {
                    let mut wep = wep.as_ref().clone();
                    let labels = wep.metadata.labels.get_or_insert_with(Default::default);
                    let apps = ["web", "db", "api", "client"];
                    labels.insert("app".into(), apps[(next() % 4) as usize].into());
                    if next() % 3 == 0 {
                        labels.insert("role".into(), "fe".into());
                    } else {
                        labels.remove("role");
                    }
                    inputs.upsert_endpoint(wep);
                }
            }
            2 => {
                let key = &keys[(next() % keys.len() as u64) as usize];
                match inputs.endpoints.remove(key) {
                    Some(_) => {}
                    None => {
                        inputs
                            .endpoints
                            .insert(key.clone(), Arc::clone(&base.endpoints[key]));
                    }
                }
            }
            3 => {
                let mut ns = inputs.namespaces["dev"].as_ref().clone();
                let team = if next() % 2 == 0 { "a" } else { "b" };
                ns.metadata
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert("team".into(), team.into());
                inputs.upsert_namespace(ns);
            }
            4 => {
                if inputs.global_policies.remove("deny-dev-to-db").is_none() {
                    inputs.global_policies.insert(
                        "deny-dev-to-db".into(),
                        Arc::clone(&base.global_policies["deny-dev-to-db"]),
                    );
                }
            }
            _ => {
                let key = ("prod".to_owned(), "web-in".to_owned());
                let mut np = base.network_policies[&key].as_ref().clone();
                if next() % 2 == 0 {
                    np.spec.as_mut().unwrap().ingress.as_mut().unwrap()[0].ports = None;
                }
                inputs.upsert_network_policy(np);
            }
        }
        let before = calc.ir().clone();
        let delta = calc.update(&inputs);
        let (fresh, _) = compute(&inputs);
        assert_eq!(calc.ir(), &fresh, "step {step}: incremental IR differs");
        // The delta describes exactly the element changes of surviving sets.
        for (name, set) in &fresh.sets {
            if delta.sets_added.contains(name) {
                continue;
            }
            let mut expect = before.sets[name].elements.clone();
            for e in delta.elements_removed.get(name).into_iter().flatten() {
                assert!(expect.remove(e), "step {step}: removed {e} was not there");
            }
            for e in delta.elements_added.get(name).into_iter().flatten() {
                assert!(expect.insert(*e), "step {step}: added {e} was there");
            }
            assert_eq!(expect, set.elements, "step {step}: delta of {name}");
        }
    }
}
