//! `twillctl patch` (JSON merge patch, RFC 7386) and `twillctl label`: read-modify-write
//! with compare-and-swap, retried on conflict, validated like any write.

use std::io::Write;

use serde_json::Value;
use twill_api::datastore::DatastoreError;
use twill_api::validate::ValidationError;

use super::{Ds, kind_arg, namespace_for, with_cas_retries};
use crate::error::{CtlError, Result};

/// Change fields of one object with a JSON merge patch.
#[derive(Clone, Debug, clap::Args)]
pub struct PatchArgs {
    pub kind: String,
    pub name: String,
    /// The merge patch, JSON or YAML (`{"spec":{"disabled":true}}`).
    #[arg(short, long)]
    pub patch: String,
    #[arg(short, long)]
    pub namespace: Option<String>,
}

impl PatchArgs {
    pub async fn run(&self, ds: &Ds, out: &mut dyn Write) -> Result<()> {
        let kind = kind_arg(&self.kind)?;
        let namespace = namespace_for(kind, self.namespace.as_deref());
        let patch: Value = serde_yaml::from_str(&self.patch)
            .map_err(|e| CtlError::Usage(format!("--patch is not JSON or YAML: {e}")))?;
        with_cas_retries(|| async {
            let mut object = ds.backend().get(kind, namespace, &self.name).await?;
            json_patch::merge(&mut object, &patch);
            let unknown = (kind.unknown_fields)(&object);
            if !unknown.is_empty() {
                return Err(DatastoreError::Invalid {
                    kind: kind.kind.into(),
                    name: self.name.clone(),
                    error: ValidationError::new(
                        unknown.join(", "),
                        "unknown field: this kind has no such field",
                    ),
                });
            }
            ds.update_dynamic(kind, object).await
        })
        .await?;
        writeln!(
            out,
            "{}/{} patched",
            kind.kind.to_ascii_lowercase(),
            self.name
        )
        .map_err(|e| CtlError::Output(e.to_string()))
    }
}

/// Set (`key=value`) or remove (`key-`) labels of one object.
#[derive(Clone, Debug, clap::Args)]
pub struct LabelArgs {
    pub kind: String,
    pub name: String,
    /// `key=value` to set, `key-` to remove.
    #[arg(required = true)]
    pub labels: Vec<String>,
    /// Allow changing the value of an existing label.
    #[arg(long)]
    pub overwrite: bool,
    #[arg(short, long)]
    pub namespace: Option<String>,
}

enum LabelChange {
    Set(String, String),
    Remove(String),
}

impl LabelArgs {
    fn changes(&self) -> Result<Vec<LabelChange>> {
        self.labels
            .iter()
            .map(|arg| {
                if let Some((key, value)) = arg.split_once('=') {
                    Ok(LabelChange::Set(key.into(), value.into()))
                } else if let Some(key) = arg.strip_suffix('-') {
                    Ok(LabelChange::Remove(key.into()))
                } else {
                    Err(CtlError::Usage(format!(
                        "label {arg:?}: use key=value or key-"
                    )))
                }
            })
            .collect()
    }

    pub async fn run(&self, ds: &Ds, out: &mut dyn Write) -> Result<()> {
        let kind = kind_arg(&self.kind)?;
        let namespace = namespace_for(kind, self.namespace.as_deref());
        let changes = self.changes()?;
        with_cas_retries(|| async {
            let mut object = ds.backend().get(kind, namespace, &self.name).await?;
            let labels = object
                .pointer_mut("/metadata")
                .and_then(Value::as_object_mut)
                .map(|meta| {
                    meta.entry("labels")
                        .or_insert_with(|| Value::Object(Default::default()))
                });
            if let Some(Value::Object(labels)) = labels {
                for change in &changes {
                    match change {
                        LabelChange::Set(key, value) => {
                            let existing = labels.get(key).and_then(Value::as_str);
                            if existing.is_some_and(|v| v != value) && !self.overwrite {
                                return Err(DatastoreError::Invalid {
                                    kind: kind.kind.into(),
                                    name: self.name.clone(),
                                    error: ValidationError::new(
                                        format!("metadata.labels.{key}"),
                                        "already has a value; use --overwrite to change it",
                                    ),
                                });
                            }
                            labels.insert(key.clone(), value.clone().into());
                        }
                        LabelChange::Remove(key) => {
                            labels.remove(key);
                        }
                    }
                }
            }
            ds.update_dynamic(kind, object).await
        })
        .await?;
        writeln!(
            out,
            "{}/{} labeled",
            kind.kind.to_ascii_lowercase(),
            self.name
        )
        .map_err(|e| CtlError::Output(e.to_string()))
    }
}
