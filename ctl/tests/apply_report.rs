//! `apply -f` when the datastore refuses a write after the checks passed (another writer,
//! a failing API server): the report says what was applied, what was refused and what was
//! not attempted, and the command fails. In process, over the fake Kubernetes API server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::sync::Arc;

use twill_api::datastore::Datastore;
use twill_api::datastore::kubernetes::KubernetesBackend;
use twill_api::resources::kinds::ALL_KINDS;
use twill_harness::kube_fake::{FakeApiServer, FakeKind};
use twillctl::resources::write::{FileArgs, WriteMode};

fn datastore() -> (Datastore, FakeApiServer) {
    let kinds = ALL_KINDS
        .iter()
        .filter(|k| k.crd.is_some())
        .map(|k| FakeKind::new(k.api_version, k.kind, k.plural, k.namespaced));
    let (client, server) = FakeApiServer::start(kinds);
    let backend = KubernetesBackend::from_client(client, "https://fake-apiserver");
    (Datastore::new(Arc::new(backend)), server)
}

#[tokio::test]
async fn a_write_refused_midway_is_reported_with_what_was_applied_and_not_attempted() {
    let (ds, server) = datastore();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: two}\nspec: {cidr: 10.244.0.0/24}\n---\n\
         apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: three}\nspec: {cidr: 10.245.0.0/24}\n",
    )
    .unwrap();
    // The checks pass; then the API server refuses the pool's create.
    server.fail_next("POST", "ippools", 500, 1).await;
    let args = FileArgs {
        filename: file.to_str().unwrap().into(),
        namespace: None,
    };
    let mut out = Vec::new();
    let error = args
        .run(WriteMode::Apply, &ds, &mut out)
        .await
        .unwrap_err()
        .to_string();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("namespace/shop applied"), "{out}");
    assert!(out.contains("ippool/two refused:"), "{out}");
    assert!(out.contains("ippool/three not attempted"), "{out}");
    assert!(error.contains("document 2"), "{error}");
    assert!(
        error.contains("1 applied, 1 refused, 1 not attempted"),
        "{error}"
    );
    let posts: Vec<String> = server
        .exchanges()
        .await
        .into_iter()
        .filter(|e| e.method == "POST")
        .map(|e| e.path)
        .collect();
    assert_eq!(
        posts,
        [
            "/api/v1/namespaces",
            "/apis/networking.twill.dev/v1/ippools"
        ],
        "the third document was not attempted"
    );
}
