//! The standalone binary's start-up contract: a bad configuration file is refused before
//! anything starts, with exit status 64 and the field at fault named on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run_with(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bgpd.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_twill-bgpd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_config_file_is_refused_with_exit_64_and_the_field_named() {
    let cases = [
        (
            "asn: 65001\nrouter_id: 192.0.2.1\npeers: [{ address: 192.0.2.2, asn: 65002, hold_time: 2 }]\n",
            "peers[0].hold_time",
        ),
        (
            "asn: 65001\nrouter_id: 192.0.2.1\npeers: [{ address: 192.0.2.2, asn: 65002, colour: red }]\n",
            "colour",
        ),
        ("asn: 65001\nrouter_id: not-an-ip\n", "router_id"),
        (
            "asn: 65001\nrouter_id: 192.0.2.1\npeers:\n  - { address: 192.0.2.2, asn: 65001, route_reflector_client: true }\n",
            "peers[0].route_reflector_client",
        ),
        ("asn: 0\nrouter_id: 192.0.2.1\n", "asn"),
    ];
    for (yaml, field) in cases {
        let (code, stderr) = run_with(yaml);
        assert_eq!(code, Some(64), "{yaml}\n{stderr}");
        assert!(stderr.contains(field), "{field} not named:\n{stderr}");
    }
}

#[test]
fn a_missing_config_file_is_refused_with_exit_64() {
    let out = Command::new(env!("CARGO_BIN_EXE_twill-bgpd"))
        .args(["--config", "/nonexistent/twill-bgpd.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/twill-bgpd.yaml"));
}
