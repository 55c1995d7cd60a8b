//! `twillctl` in Kubernetes mode when the API server cannot be reached: a clean error
//! naming the endpoint, quickly (no panic in the TLS setup, no hang).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn unreachable_api_server_names_the_endpoint_and_exits_non_zero_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {{server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true}}\n  name: c\n\
             contexts:\n- context: {{cluster: c, user: u}}\n  name: x\ncurrent-context: x\nusers:\n- name: u\n  user: {{token: abc}}\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_twillctl"))
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "get",
            "ippools",
        ])
        .env_remove("TWILL_DATASTORE")
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("unavailable"), "{stderr}");
}
