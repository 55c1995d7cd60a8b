//! Shared conformance suite (see `suite.rs`), and Twill's kinds for the fake API server
//! (`twill_harness::kube_fake`) the Kubernetes backend's run talks to.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod suite;

use twill_api::resources::kinds::ALL_KINDS;
use twill_harness::kube_fake::FakeKind;

/// Every kind of the registry, as the fake API server serves it (CRDs with a status
/// subresource keep their status on a main PUT).
pub fn twill_kinds() -> Vec<FakeKind> {
    ALL_KINDS
        .iter()
        .map(|k| {
            let kind = FakeKind::new(k.api_version, k.kind, k.plural, k.namespaced);
            let status = k
                .crd
                .map(|crd| crd())
                .and_then(|crd| crd.spec.versions.first().cloned())
                .and_then(|v| v.subresources)
                .is_some_and(|s| s.status.is_some());
            if status { kind.with_status() } else { kind }
        })
        .collect()
}
