//! What the API server does to an object's metadata on every write, for the backends that
//! are not an API server (etcd): `metadata.generation` counts spec changes, the identity
//! fields (`uid`, `creationTimestamp`) and `deletionTimestamp` are the server's, not the
//! writer's, and a delete of an object with finalizers only marks it (`deletionTimestamp`)
//! until the last finalizer is removed.
//!
//! Pure functions over JSON objects: no I/O here, so both the rules and their tests stay
//! small. The backend reads the stored object, asks what to write, and writes it with a
//! compare-and-swap on the revision it read.

use serde_json::{Map, Value};

/// Metadata fields only the server sets: an update keeps the stored values.
const SERVER_FIELDS: [&str; 4] = [
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
];

/// What an update or a delete turns into.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Store this object.
    Put(Value),
    /// Remove the object (no finalizer holds it any more); the value is its last state.
    Remove(Value),
}

fn meta(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.as_object()
}

fn meta_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = object.as_object_mut()?;
    map.entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

/// The object's `metadata.generation` (1 when it has none).
pub fn generation(object: &Value) -> i64 {
    meta(object)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// Whether the object carries finalizers.
pub fn has_finalizers(object: &Value) -> bool {
    meta(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// Whether a delete has been asked for (and finalizers hold the object).
pub fn is_deleting(object: &Value) -> bool {
    meta(object).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|t| !t.is_null()))
}

/// Everything but `metadata` and `status`: what a generation counts changes of (the API
/// server's rule for custom resources with a status subresource).
fn spec_part(object: &Value) -> Map<String, Value> {
    let mut map = object.as_object().cloned().unwrap_or_default();
    for field in ["metadata", "status", "apiVersion", "kind"] {
        map.remove(field);
    }
    map
}

/// Prepares a new object: generation 1 and no deletionTimestamp (a client cannot create
/// an object that is being deleted). `uid` and `creationTimestamp` are the caller's.
pub fn on_create(mut object: Value) -> Value {
    if let Some(meta) = meta_mut(&mut object) {
        meta.insert("generation".into(), 1.into());
        meta.remove("deletionTimestamp");
    }
    object
}

/// An update of `stored` to `new`: the server fields are kept from `stored`, the generation
/// goes up by one when anything outside metadata and status changed, and an object being
/// deleted whose last finalizer the update removes goes away.
pub fn on_update(stored: &Value, mut new: Value) -> Write {
    let bump = spec_part(stored) != spec_part(&new);
    let stored_meta = meta(stored).cloned().unwrap_or_default();
    if let Some(meta) = meta_mut(&mut new) {
        for field in SERVER_FIELDS {
            match stored_meta.get(field) {
                Some(value) => meta.insert(field.into(), value.clone()),
                None => meta.remove(field),
            };
        }
        let generation = generation(stored) + i64::from(bump);
        meta.insert("generation".into(), generation.into());
    }
    if is_deleting(&new) && !has_finalizers(&new) {
        Write::Remove(new)
    } else {
        Write::Put(new)
    }
}

/// A delete of `stored`: removed at once without finalizers; otherwise marked with
/// `deletionTimestamp` (`now`, RFC 3339) and kept until its finalizers are gone. Asking
/// again while it is being deleted changes nothing.
pub fn on_delete(stored: &Value, now: &str) -> Write {
    if !has_finalizers(stored) {
        return Write::Remove(stored.clone());
    }
    let mut object = stored.clone();
    if !is_deleting(stored)
        && let Some(meta) = meta_mut(&mut object)
    {
        meta.insert("deletionTimestamp".into(), now.into());
        // The API server counts the start of a graceful deletion as a change.
        meta.insert("generation".into(), (generation(stored) + 1).into());
    }
    Write::Put(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(generation: i64, nat: bool) -> Value {
        json!({"apiVersion": "networking.twill.dev/v1", "kind": "IPPool",
               "metadata": {"name": "p", "uid": "u1", "generation": generation,
                            "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"cidr": "10.244.0.0/16", "natOutgoing": nat}})
    }

    fn put(write: Write) -> Value {
        match write {
            Write::Put(v) => v,
            Write::Remove(v) => panic!("expected a put, got a removal of {v}"),
        }
    }

    #[test]
    fn a_spec_change_bumps_the_generation() {
        let new = put(on_update(&pool(3, false), pool(1, true)));
        assert_eq!(generation(&new), 4);
    }

    #[test]
    fn status_and_metadata_changes_keep_the_generation() {
        let mut new = pool(1, false);
        new["status"] = json!({"conditions": []});
        new["metadata"]["labels"] = json!({"a": "b"});
        assert_eq!(generation(&put(on_update(&pool(2, false), new))), 2);
    }

    #[test]
    fn server_fields_are_the_stored_ones() {
        let mut new = pool(9, false);
        new["metadata"]["uid"] = "forged".into();
        new["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        let new = put(on_update(&pool(2, false), new));
        assert_eq!(new["metadata"]["uid"], "u1");
        assert_eq!(generation(&new), 2);
        assert!(!is_deleting(&new));
    }

    #[test]
    fn delete_without_finalizers_removes() {
        assert!(matches!(
            on_delete(&pool(1, false), "now"),
            Write::Remove(_)
        ));
    }

    #[test]
    fn delete_with_finalizers_marks_until_the_last_is_removed() {
        let mut stored = pool(1, false);
        stored["metadata"]["finalizers"] = json!(["networking.twill.dev/ipam"]);
        let marked = put(on_delete(&stored, "2026-12-05T08:00:00Z"));
        assert!(is_deleting(&marked));
        assert_eq!(put(on_delete(&marked, "later")), marked, "idempotent");
        let mut released = marked.clone();
        released["metadata"]["finalizers"] = json!([]);
        assert!(matches!(on_update(&marked, released), Write::Remove(_)));
    }
}
