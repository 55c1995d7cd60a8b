//! Fields an object carries that its type does not know (`natOutgoin: true`, a typo of
//! `natOutgoing`). serde drops them silently; here they are found while decoding (one
//! pass, [`serde_ignored`]) and named by their path (`spec.natOutgoin`), so twillctl can
//! refuse them and the components that read objects can count and log them.
//!
//! Never decides what to do about them: that is the caller's (twillctl's `--validate`,
//! the typed datastore's counter and log).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes `value` as `T` and returns the paths of the fields `T` ignored, sorted.
pub fn decode_noting_unknown<T: DeserializeOwned>(
    value: &Value,
) -> Result<(T, Vec<String>), serde_json::Error> {
    let mut unknown = Vec::new();
    let object = serde_ignored::deserialize(value, |path| unknown.push(path_text(&path)))?;
    // Custom resources take `apiVersion` and `kind` from their type, not from the fields.
    unknown.retain(|path| path != "apiVersion" && path != "kind");
    unknown.sort();
    unknown.dedup();
    Ok((object, unknown))
}

/// `spec.natOutgoin`, `spec.rules[0].actoin`: field names joined by dots, list positions
/// in brackets, without serde's markers for `Option` and newtypes.
fn path_text(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", path_text(parent)),
        Path::Map { parent, key } => {
            let parent = path_text(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_text(parent),
    }
}

/// How many unknown fields one kind's objects were seen with, process-wide (an object
/// read again counts again), and which of them was logged last, so that re-reading the
/// same object (a watch's re-list) does not log it again and again.
#[derive(Debug, Default)]
pub struct UnknownFieldCounter {
    seen: AtomicU64,
    last_logged: AtomicU64,
}

impl UnknownFieldCounter {
    /// An empty counter (for statics).
    pub const fn new() -> Self {
        UnknownFieldCounter {
            seen: AtomicU64::new(0),
            last_logged: AtomicU64::new(0),
        }
    }

    /// Counts `fields` met on the object called `name`; true when this object and these
    /// fields are not the ones logged last (then log them).
    pub fn note(&self, name: &str, fields: &[String]) -> bool {
        use std::hash::{Hash, Hasher};
        self.seen.fetch_add(fields.len() as u64, Ordering::Relaxed);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (name, fields).hash(&mut hasher);
        let key = hasher.finish() | 1;
        self.last_logged.swap(key, Ordering::Relaxed) != key
    }

    /// Unknown fields met so far.
    pub fn get(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

/// Unknown fields met so far in this process, per kind (labelled by the kind's key
/// segment: `ippool`, `node`, `kubenode`), for a `*_unknown_fields_total{kind}` counter.
pub fn unknown_fields_seen() -> Vec<(String, u64)> {
    super::kinds::ALL_KINDS
        .iter()
        .map(|kind| (kind.key_segment(), kind.unknown_fields_seen.get()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{GlobalNetworkPolicy, IPPool, native::Pod};
    use serde_json::json;

    #[test]
    fn typos_are_named_by_path() {
        let pool = json!({"apiVersion": "networking.twill.dev/v1", "kind": "IPPool",
            "metadata": {"name": "typo", "labelz": {}},
            "spec": {"cidr": "10.244.0.0/16", "natOutgoin": true}});
        let (decoded, unknown) = decode_noting_unknown::<IPPool>(&pool).unwrap();
        assert_eq!(decoded.spec.cidr, "10.244.0.0/16");
        assert_eq!(unknown, ["metadata.labelz", "spec.natOutgoin"]);
    }

    #[test]
    fn nested_and_listed_fields_are_found() {
        let gnp = json!({"apiVersion": "networking.twill.dev/v1", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "p"},
            "spec": {"selector": "all()", "ingress": [{"action": "Allow", "sourc": {}}]}});
        let (_, unknown) = decode_noting_unknown::<GlobalNetworkPolicy>(&gnp).unwrap();
        assert_eq!(unknown, ["spec.ingress[0].sourc"]);
    }

    #[test]
    fn the_counter_counts_every_time_and_asks_to_log_once() {
        let counter = UnknownFieldCounter::new();
        let fields = vec!["spec.natOutgoin".to_string()];
        assert!(counter.note("typo", &fields));
        assert!(!counter.note("typo", &fields), "the same object again");
        assert!(counter.note("other", &fields));
        assert_eq!(counter.get(), 3);
    }

    #[test]
    fn a_known_object_has_none() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n1"}});
        let (_, unknown) = decode_noting_unknown::<Pod>(&pod).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
    }
}
