//! `create`, `apply` and `replace` from `-f FILE`. Every document is parsed and validated
//! before the first write, so a bad document changes nothing.

use std::io::Write;

use serde_json::Value;
use twill_api::datastore::DatastoreError;

use super::{DEFAULT_NAMESPACE, Ds, with_cas_retries};
use crate::error::{CtlError, Result};
use crate::manifest::{Document, parse, read_file};

/// A manifest to write.
#[derive(Clone, Debug, clap::Args)]
pub struct FileArgs {
    /// YAML or JSON file, multi-document (`-` for stdin).
    #[arg(short, long)]
    pub filename: String,
    /// Namespace for namespaced objects that name none (default: `default`).
    #[arg(short, long)]
    pub namespace: Option<String>,
}

/// How a document is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    Create,
    Apply,
    Replace,
}

impl WriteMode {
    fn past(self) -> &'static str {
        match self {
            WriteMode::Create => "created",
            WriteMode::Apply => "applied",
            WriteMode::Replace => "replaced",
        }
    }
}

impl FileArgs {
    /// Reads and validates every document.
    pub fn documents(&self) -> Result<Vec<Document>> {
        let text = read_file(&self.filename)?;
        parse(
            &self.filename,
            &text,
            self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        )
    }

    pub async fn run(&self, mode: WriteMode, ds: &Ds, out: &mut dyn Write) -> Result<()> {
        let documents = self.documents()?;
        let count = documents.len();
        for document in documents {
            write_one(ds, mode, &document).await.map_err(|e| {
                CtlError::Manifest(format!(
                    "{}: document {} ({} {:?}): {e}",
                    self.filename,
                    document.index,
                    document.kind.kind,
                    document.name()
                ))
            })?;
            writeln!(
                out,
                "{}/{} {}",
                document.kind.kind.to_ascii_lowercase(),
                document.name(),
                mode.past()
            )
            .map_err(|e| CtlError::Output(e.to_string()))?;
        }
        writeln!(out, "Successfully {} {count} resource(s)", mode.past())
            .map_err(|e| CtlError::Output(e.to_string()))?;
        Ok(())
    }
}

fn set_revision(object: &mut Value, revision: Option<&Value>) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        match revision {
            Some(rv) => meta.insert("resourceVersion".into(), rv.clone()),
            None => meta.remove("resourceVersion"),
        };
    }
}

/// A manifest has no `uid` or `creationTimestamp`: keep the stored object's, as the API
/// server does on update.
fn keep_identity(object: &mut Value, current: &Value) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["uid", "creationTimestamp", "generation"] {
        if let Some(value) = current.pointer(&format!("/metadata/{field}"))
            && !meta.contains_key(field)
        {
            meta.insert(field.into(), value.clone());
        }
    }
}

async fn write_one(ds: &Ds, mode: WriteMode, document: &Document) -> Result<Value, DatastoreError> {
    let kind = document.kind;
    match mode {
        WriteMode::Create => ds.create_dynamic(kind, document.object.clone()).await,
        WriteMode::Replace
            if document
                .object
                .pointer("/metadata/resourceVersion")
                .is_some() =>
        {
            ds.update_dynamic(kind, document.object.clone()).await
        }
        WriteMode::Replace | WriteMode::Apply => {
            let result = with_cas_retries(|| async {
                let current = ds
                    .backend()
                    .get(kind, document.namespace(), document.name())
                    .await;
                match current {
                    Ok(current) => {
                        let mut object = document.object.clone();
                        set_revision(&mut object, current.pointer("/metadata/resourceVersion"));
                        keep_identity(&mut object, &current);
                        ds.update_dynamic(kind, object).await
                    }
                    Err(DatastoreError::NotFound { .. }) if mode == WriteMode::Apply => {
                        let mut object = document.object.clone();
                        set_revision(&mut object, None);
                        match ds.create_dynamic(kind, object).await {
                            // Someone created it meanwhile: go round and update it.
                            Err(DatastoreError::AlreadyExists { kind, name }) => {
                                Err(DatastoreError::Conflict {
                                    kind,
                                    name,
                                    expected: "absent".into(),
                                })
                            }
                            other => other,
                        }
                    }
                    Err(error) => Err(error),
                }
            })
            .await;
            result.map_err(|e| match e {
                CtlError::Datastore(e) => e,
                other => DatastoreError::Backend {
                    endpoint: ds.endpoint().into(),
                    reason: other.to_string(),
                },
            })
        }
    }
}
