//! `twillctl` as a kubectl plugin: installed (here: linked) as `kubectl-twill`, kubectl runs
//! it for `kubectl twill ...`; it names itself that way in help and errors, and finds the
//! cluster as kubectl does (`KUBECONFIG`, which may list several files). Talks to the fake
//! API server (`twill_harness::kube_fake`) over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use twill_api::resources::kinds::ALL_KINDS;
use twill_harness::kube_fake::{FakeApiServer, FakeKind, kubeconfig_yaml};

fn plugin(dir: &Path) -> PathBuf {
    let link = dir.join("kubectl-twill");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_twillctl"), &link).unwrap();
    link
}

fn twill_kinds() -> Vec<FakeKind> {
    ALL_KINDS
        .iter()
        .map(|k| FakeKind::new(k.api_version, k.kind, k.plural, k.namespaced))
        .collect()
}

async fn run(cmd: Command) -> Output {
    let mut cmd = cmd;
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[test]
fn as_kubectl_twill_it_names_itself_kubectl_twill() {
    let dir = tempfile::tempdir().unwrap();
    let bin = plugin(dir.path());
    let help = Command::new(&bin).arg("--help").output().unwrap();
    assert!(help.status.success(), "{help:?}");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Usage: kubectl twill [OPTIONS] <COMMAND>"),
        "{text}"
    );
    let sub = Command::new(&bin).args(["get", "--help"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&sub.stdout).contains("Usage: kubectl twill get"),
        "{sub:?}"
    );
    let bad = Command::new(&bin).arg("frobnicate").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Usage: kubectl twill [OPTIONS]"),
        "{bad:?}"
    );
    let version = Command::new(&bin).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("twillctl "));
    // Under its own name it is twillctl.
    let own = Command::new(env!("CARGO_BIN_EXE_twillctl"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&own.stdout).contains("Usage: twillctl [OPTIONS] <COMMAND>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_twill_finds_the_cluster_through_kubeconfig() {
    let server = FakeApiServer::new(twill_kinds());
    let http = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = plugin(dir.path());
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        kubeconfig_yaml(&http.url(), "operator", "default"),
    )
    .unwrap();
    let manifest = dir.path().join("pool.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: pods}\nspec: {cidr: 10.244.0.0/16, blockSize: 26}\n",
    )
    .unwrap();
    // KUBECONFIG lists files as kubectl reads them: a missing one is skipped.
    let list = format!(
        "{}:{}",
        dir.path().join("absent").display(),
        kubeconfig.display()
    );
    let mut apply = Command::new(&bin);
    apply
        .args(["apply", "-f", manifest.to_str().unwrap()])
        .env("KUBECONFIG", &list)
        .env_remove("TWILL_DATASTORE");
    let out = run(apply).await;
    assert!(out.status.success(), "{out:?}");
    let mut get = Command::new(&bin);
    get.args(["get", "ippools", "-o", "json"])
        .env("KUBECONFIG", &list)
        .env_remove("TWILL_DATASTORE");
    let out = run(get).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10.244.0.0/16"),
        "{out:?}"
    );
    let exchanges = server.exchanges().await;
    let pool_calls: Vec<_> = exchanges
        .iter()
        .filter(|e| e.resource == "ippools")
        .collect();
    assert!(!pool_calls.is_empty());
    assert!(
        pool_calls
            .iter()
            .all(|e| e.user.as_deref() == Some("operator")),
        "authenticated with the kubeconfig's token: {pool_calls:#?}"
    );
    assert!(server.violations().await.is_empty());
}

#[test]
fn without_any_kubeconfig_or_cluster_it_says_so() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_twillctl"))
        .args(["get", "ippools"])
        .env_remove("KUBECONFIG")
        .env_remove("TWILL_DATASTORE")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unavailable"), "{stderr}");
}
