//! TCP-MD5 passwords of `BGPPeer`s from Kubernetes Secrets (`password.secretKeyRef`), as
//! Calico reads them: Secrets in felix's own namespace (the pod's, in a cluster), read
//! with `get` only — the chart grants `get` on exactly the Secrets its peers name. Read
//! whenever the BGP configuration is recomputed (a peer changed, and every resync, so a
//! rotated password is picked up). A Secret that cannot be read means no session with
//! that peer (never one without its password).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// `(secret name, key)`.
pub type SecretRef = (String, String);

/// Reads the Secrets BGP peers name.
#[derive(Clone)]
pub struct SecretReader {
    api: Api<Secret>,
    namespace: String,
}

impl std::fmt::Debug for SecretReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretReader({})", self.namespace)
    }
}

impl SecretReader {
    /// Secrets of the client's namespace (in a pod: the pod's own).
    pub fn new(client: kube::Client) -> SecretReader {
        let namespace = client.default_namespace().to_string();
        SecretReader {
            api: Api::namespaced(client, &namespace),
            namespace,
        }
    }

    /// The values of `refs` that could be read; each failure is logged once per call.
    pub async fn read(&self, refs: &BTreeSet<SecretRef>) -> BTreeMap<SecretRef, String> {
        let mut out = BTreeMap::new();
        let names: BTreeSet<&String> = refs.iter().map(|(n, _)| n).collect();
        for name in names {
            let secret = match self.api.get(name).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(namespace = %self.namespace, secret = %name, error = %e, "cannot read a BGP password Secret");
                    continue;
                }
            };
            for (n, key) in refs.iter().filter(|(n, _)| n == name) {
                let value = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .or_else(|| {
                        secret
                            .string_data
                            .as_ref()
                            .and_then(|d| d.get(key))
                            .cloned()
                    });
                match value {
                    Some(v) => {
                        out.insert(
                            (n.clone(), key.clone()),
                            v.trim_end_matches('\n').to_string(),
                        );
                    }
                    None => {
                        tracing::warn!(secret = %name, %key, "the BGP password Secret has no such key")
                    }
                }
            }
        }
        out
    }
}
