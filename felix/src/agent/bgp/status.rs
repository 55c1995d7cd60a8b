//! `BGPPeer` status: the `ReferencesResolved` condition says whether everything a peer
//! names (its `BGPFilter`s, its `BFDProfile`, its password Secret) resolves, and, when not, what is missing
//! — the reason the peer is held (no session, nothing imported or exported).
//!
//! The verdict is a pure function of the peer and what felix sees; every node computes
//! the same one, so the write is a compare-and-swap made only when the condition changed,
//! and a lost race is left to the next pass. It never changes a peer's spec.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use twill_api::Datastore;
use twill_api::datastore::DatastoreError;
use twill_api::resources::{BFDProfile, BGPPeer, Condition, ResourceStatus};
use twill_bgpd::policy::Filter;

/// The condition type `BGPPeer`s carry.
pub const REFERENCES_RESOLVED: &str = "ReferencesResolved";

/// What a peer's references resolve against.
#[derive(Clone, Copy, Debug)]
pub struct Known<'a> {
    pub filters: &'a BTreeMap<String, Filter>,
    pub bfd_profiles: &'a BTreeMap<String, BFDProfile>,
    pub secrets: &'a BTreeMap<(String, String), String>,
}

/// What a peer names that does not resolve (empty: all resolve).
pub fn unresolved(peer: &BGPPeer, known: Known<'_>) -> Vec<String> {
    let Known {
        filters,
        bfd_profiles,
        secrets,
    } = known;
    let mut missing: Vec<String> = peer
        .spec
        .filters
        .iter()
        .filter(|f| !filters.contains_key(*f))
        .map(|f| format!("BGPFilter {f} not found"))
        .collect();
    if let Some(name) = peer.spec.bfd_profile.as_deref().filter(|n| !n.is_empty())
        && !bfd_profiles.contains_key(name)
    {
        missing.push(format!("BFDProfile {name} not found"));
    }
    if let Some(pw) = &peer.spec.password
        && pw.value.is_none()
        && let Some(r) = &pw.secret_key_ref
        && !secrets.contains_key(&(r.name.clone(), r.key.clone()))
    {
        missing.push(format!(
            "password Secret {}/{} cannot be read",
            r.name, r.key
        ));
    }
    missing
}

/// `(status, reason, message)` of the condition for `missing`.
pub fn verdict(missing: &[String]) -> (&'static str, &'static str, String) {
    if missing.is_empty() {
        ("True", "Resolved", "every reference resolves".to_owned())
    } else {
        (
            "False",
            "Unresolved",
            format!("held (no session, no routes): {}", missing.join("; ")),
        )
    }
}

/// Writes the condition of every peer whose condition changed; returns how many.
pub async fn report(
    ds: &Datastore,
    peers: &BTreeMap<String, BGPPeer>,
    known: Known<'_>,
) -> Result<usize, DatastoreError> {
    let mut updated = 0;
    for peer in peers.values() {
        let (status, reason, message) = verdict(&unresolved(peer, known));
        let mut conditions = peer.status.clone().unwrap_or_default().conditions;
        let current = conditions.iter().find(|c| c.type_ == REFERENCES_RESOLVED);
        if current.is_some_and(|c| c.status == status && c.reason == reason && c.message == message)
        {
            continue;
        }
        let transition = match current {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Time(k8s_openapi::jiff::Timestamp::now()),
        };
        conditions.retain(|c| c.type_ != REFERENCES_RESOLVED);
        conditions.push(Condition {
            type_: REFERENCES_RESOLVED.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: transition,
            observed_generation: peer.metadata.generation,
        });
        let mut changed = peer.clone();
        changed.status = Some(ResourceStatus { conditions });
        match ds.update_status(&changed).await {
            Ok(_) => updated += 1,
            Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_api::resources::BGPPeerSpec;
    use twill_api::resources::bgp::{SecretKeyRef, SecretKeySelector};

    #[test]
    fn missing_filters_and_unreadable_secrets_are_named() {
        let peer = BGPPeer::new(
            "tor",
            BGPPeerSpec {
                filters: vec!["known".into(), "gone".into()],
                bfd_profile: Some("fast".into()),
                password: Some(SecretKeyRef {
                    value: None,
                    secret_key_ref: Some(SecretKeySelector {
                        name: "pw".into(),
                        key: "tor".into(),
                    }),
                }),
                ..Default::default()
            },
        );
        let filters: BTreeMap<String, Filter> = [("known".to_string(), Filter::default())].into();
        let none = BTreeMap::new();
        let missing = unresolved(
            &peer,
            Known {
                filters: &filters,
                bfd_profiles: &none,
                secrets: &BTreeMap::new(),
            },
        );
        assert_eq!(
            missing,
            [
                "BGPFilter gone not found",
                "BFDProfile fast not found",
                "password Secret pw/tor cannot be read"
            ]
        );
        let (status, reason, message) = verdict(&missing);
        assert_eq!((status, reason), ("False", "Unresolved"));
        assert!(
            message.contains("gone") && message.contains("pw/tor"),
            "{message}"
        );
        let secrets = [(("pw".to_string(), "tor".to_string()), "x".to_string())].into();
        let mut all = filters.clone();
        all.insert("gone".into(), Filter::default());
        let profiles = [(
            "fast".to_string(),
            BFDProfile::new("fast", Default::default()),
        )]
        .into();
        let known = Known {
            filters: &all,
            bfd_profiles: &profiles,
            secrets: &secrets,
        };
        assert!(unresolved(&peer, known).is_empty());
        assert_eq!(verdict(&[]).0, "True");
    }
}
