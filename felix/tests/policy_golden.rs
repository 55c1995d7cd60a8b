//! Golden tests of the policy engine's pure parts: the IR computed from a scenario, and
//! what each renderer makes of it. `TWILL_UPDATE_GOLDENS=1` rewrites the goldens.

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
