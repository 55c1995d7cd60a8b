//! BGP passwords from Kubernetes Secrets, against the fake API server: the reader gets
//! exactly the Secrets the peers name, in felix's namespace, decodes `data` (base64) and
//! reports nothing for a missing Secret or key — so the plan peers only with what it
//! could read.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod kube_support;

use std::collections::BTreeMap;

use kube_support::twill_kinds;
use serde_json::json;
use twill_felix::agent::kubernetes::secrets::SecretReader;
use twill_harness::kube_fake::FakeApiServer;

#[tokio::test]
async fn reads_named_secrets_in_its_namespace_only_with_get() {
    let server = FakeApiServer::new(twill_kinds());
    // "dG9yLXNlY3JldA==" is base64 of "tor-secret".
    server
        .put(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"namespace": "default", "name": "bgp-passwords"},
            "data": {"tor-a": "dG9yLXNlY3JldA==", "other": "eA=="}}))
        .await;
    server
        .put(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"namespace": "elsewhere", "name": "bgp-passwords"},
            "data": {"tor-b": "eA=="}}))
        .await;
    let reader = SecretReader::new(server.client());
    let refs = [
        ("bgp-passwords".to_string(), "tor-a".to_string()),
        ("bgp-passwords".to_string(), "tor-b".to_string()),
        ("missing".to_string(), "k".to_string()),
    ]
    .into();
    let got = reader.read(&refs).await;
    assert_eq!(
        got,
        BTreeMap::from([(
            ("bgp-passwords".to_string(), "tor-a".to_string()),
            "tor-secret".to_string()
        )]),
        "only the key that exists, in felix's own namespace"
    );
    let calls: Vec<(String, String, Option<String>)> = server
        .exchanges()
        .await
        .into_iter()
        .map(|e| (e.verb, e.resource, e.namespace))
        .collect();
    assert!(
        calls.iter().all(|(verb, resource, ns)| verb == "get"
            && resource == "secrets"
            && ns.as_deref() == Some("default")),
        "only gets of Secrets in its namespace: {calls:?}"
    );
    assert_eq!(calls.len(), 2, "one get per named Secret: {calls:?}");
}
