//! Reading manifests: multi-document YAML or JSON (a JSON array or a `List` is expanded),
//! each document resolved to its kind and checked before anything is written, so a bad
//! document leaves the datastore untouched. Errors name the file, the document (1-based)
//! and the field.
//!
//! Fields a kind does not know (`natOutgoin`, a typo) are refused by default, naming
//! them, as kubectl's `--validate=strict` does; `--validate=warn` writes the object
//! without them and says so, `--validate=ignore` drops them silently.

use std::io::Read;

use serde::Deserialize;
use serde_json::Value;
use twill_api::resources::KindInfo;
use twill_api::resources::kinds::find_kind_by_type;

use crate::error::{CtlError, Result};

/// What to do with fields a kind does not know (kubectl's `--validate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FieldValidation {
    /// Refuse the manifest, naming each unknown field.
    #[default]
    #[value(alias = "true")]
    Strict,
    /// Write without them, with a warning naming each.
    Warn,
    /// Drop them silently.
    #[value(alias = "false")]
    Ignore,
}

/// One document of a manifest, resolved and normalised.
#[derive(Clone, Debug)]
pub struct Document {
    /// 1-based position in the file (after expanding lists).
    pub index: usize,
    pub kind: &'static KindInfo,
    pub object: Value,
    /// Fields the kind does not know, dropped from `object` (only with
    /// [`FieldValidation::Warn`] or [`FieldValidation::Ignore`]).
    pub unknown_fields: Vec<String>,
}

impl Document {
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }
}

/// Reads `path` (`-` is stdin).
pub fn read_file(path: &str) -> Result<String> {
    let io = |source| CtlError::Io {
        path: path.to_string(),
        source,
    };
    if path == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(io)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(io)
    }
}

/// Parses every document of `text`, fills in `namespace` for namespaced kinds without one,
/// and validates each; the first error names `source`, the document and the field.
/// Unknown fields are handled as `validation` says.
pub fn parse(
    source: &str,
    text: &str,
    namespace: &str,
    validation: FieldValidation,
) -> Result<Vec<Document>> {
    let mut raw = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document)
            .map_err(|e| CtlError::Manifest(format!("{source}: document {}: {e}", i + 1)))?;
        match value {
            Value::Null => {}
            Value::Array(items) => raw.extend(items),
            Value::Object(ref map)
                if map.get("kind").and_then(Value::as_str) == Some("List")
                    && map.get("items").is_some_and(Value::is_array) =>
            {
                if let Some(Value::Array(items)) = map.get("items") {
                    raw.extend(items.iter().cloned());
                }
            }
            other => raw.push(other),
        }
    }
    if raw.is_empty() {
        return Err(CtlError::Manifest(format!("{source}: no documents")));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, value)| resolve(source, i + 1, value, namespace, validation))
        .collect()
}

fn resolve(
    source: &str,
    index: usize,
    mut value: Value,
    namespace: &str,
    validation: FieldValidation,
) -> Result<Document> {
    let at = |what: String| CtlError::Manifest(format!("{source}: document {index}: {what}"));
    let Some(map) = value.as_object() else {
        return Err(at(
            "not a mapping (expected apiVersion, kind, metadata, spec)".into(),
        ));
    };
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind_name = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version.is_empty() {
        return Err(at("apiVersion: is required".into()));
    }
    if kind_name.is_empty() {
        return Err(at("kind: is required".into()));
    }
    let kind = find_kind_by_type(api_version, kind_name)
        .ok_or_else(|| at(format!("kind: unknown kind {kind_name} in {api_version}")))?;
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind.namespaced
        && value.pointer("/metadata/namespace").is_none()
        && let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), namespace.into());
    }
    let unknown_fields = match validation {
        FieldValidation::Ignore => Vec::new(),
        FieldValidation::Strict | FieldValidation::Warn => (kind.unknown_fields)(&value),
    };
    if validation == FieldValidation::Strict && !unknown_fields.is_empty() {
        return Err(at(format!(
            "{} {name:?}: unknown field{} {} (--validate=warn or ignore to write without)",
            kind.kind,
            if unknown_fields.len() == 1 { "" } else { "s" },
            unknown_fields
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let object =
        (kind.check)(value).map_err(|error| at(format!("{} {name:?}: {error}", kind.kind)))?;
    Ok(Document {
        index,
        kind,
        object,
        unknown_fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_resolves_each_kind() {
        let text = "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.244.0.0/16}\n---\napiVersion: networking.twill.dev/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {node: n1}\n";
        let docs = parse("f.yaml", text, "default", FieldValidation::Strict).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].kind.kind, "IPPool");
        assert_eq!(docs[1].namespace(), Some("default"));
    }

    #[test]
    fn bad_field_names_document_and_field() {
        let text = "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.244.0.0/16}\n---\napiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: 10.245.0.0/16, blockSize: big}\n";
        let err = parse("f.yaml", text, "default", FieldValidation::Strict)
            .unwrap_err()
            .to_string();
        assert!(err.contains("document 2"), "{err}");
        assert!(err.contains("spec.blockSize"), "{err}");
    }

    #[test]
    fn yaml_syntax_error_names_the_document() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: [unclosed\n";
        let err = parse("f.yaml", text, "default", FieldValidation::Strict)
            .unwrap_err()
            .to_string();
        assert!(err.contains("document 2"), "{err}");
    }

    #[test]
    fn json_list_is_expanded() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}]}"#;
        assert_eq!(
            parse("f.json", text, "default", FieldValidation::Strict).unwrap()[0].name(),
            "a"
        );
    }

    #[test]
    fn unknown_fields_are_refused_by_name_unless_asked_otherwise() {
        let text = "apiVersion: networking.twill.dev/v1\nkind: IPPool\nmetadata: {name: typo}\nspec: {cidr: 10.244.0.0/16, natOutgoin: true}\n";
        let err = parse("f.yaml", text, "default", FieldValidation::Strict)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field \"spec.natOutgoin\""), "{err}");
        let warned = parse("f.yaml", text, "default", FieldValidation::Warn).unwrap();
        assert_eq!(warned[0].unknown_fields, ["spec.natOutgoin"]);
        assert!(warned[0].object["spec"].get("natOutgoin").is_none());
        let ignored = parse("f.yaml", text, "default", FieldValidation::Ignore).unwrap();
        assert!(ignored[0].unknown_fields.is_empty());
    }

    #[test]
    fn unknown_kind_is_named() {
        let text = "apiVersion: networking.twill.dev/v1\nkind: Pool\nmetadata: {name: a}\n";
        let err = parse("f.yaml", text, "default", FieldValidation::Strict)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown kind Pool"), "{err}");
    }
}
