//! `create`, `apply` and `replace` from `-f FILE`. Every document is parsed and validated,
//! then checked against the datastore (exists or not, pools overlapping stored pools or
//! each other) before the first write, so a document that would be refused changes
//! nothing. Then the documents are written in order; if one is still refused (another
//! writer got in between), the ones before it stay written, the ones after it are not
//! attempted, and the report says which is which, with a non-zero exit. There is no
//! transaction across objects (there is none in Kubernetes either), so checking first and
//! reporting exactly is the promise.

use std::io::Write;

use serde_json::Value;
use twill_api::datastore::DatastoreError;
use twill_api::resources::IPPool;
use twill_api::resources::kinds::IPPOOL;
use twill_api::validate::pools_overlap;

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

    /// Checks every document against the datastore, then writes them in order, and
    /// reports what happened to each: nothing is written when one is refused up front; a
    /// write refused later (a race with another writer, the datastore failing) stops there,
    /// and the documents after it are reported as not attempted. Exits non-zero then.
    pub async fn run(&self, mode: WriteMode, ds: &Ds, out: &mut dyn Write) -> Result<()> {
        let documents = self.documents()?;
        let mut outcomes = preflight(ds, mode, &documents).await?;
        if outcomes.iter().all(|o| matches!(o, Outcome::NotAttempted)) {
            for (document, outcome) in documents.iter().zip(outcomes.iter_mut()) {
                match write_one(ds, mode, document).await {
                    Ok(_) => *outcome = Outcome::Done,
                    Err(error) => {
                        *outcome = Outcome::Refused(error.to_string());
                        break;
                    }
                }
            }
        }
        self.report(mode, &documents, &outcomes, out)
    }

    /// One line per document; an error summing up when not all were written.
    fn report(
        &self,
        mode: WriteMode,
        documents: &[Document],
        outcomes: &[Outcome],
        out: &mut dyn Write,
    ) -> Result<()> {
        let output = |e: std::io::Error| CtlError::Output(e.to_string());
        for (document, outcome) in documents.iter().zip(outcomes) {
            let what = format!(
                "{}/{}",
                document.kind.kind.to_ascii_lowercase(),
                document.name()
            );
            match outcome {
                Outcome::Done => writeln!(out, "{what} {}", mode.past()),
                Outcome::Refused(reason) => writeln!(out, "{what} refused: {reason}"),
                Outcome::NotAttempted => writeln!(out, "{what} not attempted"),
            }
            .map_err(output)?;
        }
        let done = outcomes.iter().filter(|o| **o == Outcome::Done).count();
        let Some((document, reason)) =
            documents
                .iter()
                .zip(outcomes)
                .find_map(|(document, outcome)| match outcome {
                    Outcome::Refused(reason) => Some((document, reason)),
                    _ => None,
                })
        else {
            writeln!(out, "Successfully {} {done} resource(s)", mode.past()).map_err(output)?;
            return Ok(());
        };
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Refused(_)))
            .count();
        Err(CtlError::Manifest(format!(
            "{}: document {} ({} {:?}): {reason} ({done} {}, {refused} refused, {} not attempted)",
            self.filename,
            document.index,
            document.kind.kind,
            document.name(),
            mode.past(),
            outcomes.len() - done - refused,
        )))
    }
}

/// What became of one document.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Refused(String),
    NotAttempted,
}

/// Checks every document against the datastore as it is (exists or not as `mode` needs,
/// the rules that span objects) and against the manifest's other documents (pools may not
/// overlap each other), writing nothing. A datastore that cannot be reached fails the
/// whole command.
async fn preflight(ds: &Ds, mode: WriteMode, documents: &[Document]) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::with_capacity(documents.len());
    let mut pools: Vec<IPPool> = Vec::new();
    for document in documents {
        let kind = document.kind;
        let exists = match ds
            .backend()
            .get(kind, document.namespace(), document.name())
            .await
        {
            Ok(_) => true,
            Err(DatastoreError::NotFound { .. }) => false,
            Err(error) if error.is_transient() => return Err(error.into()),
            Err(error) => {
                outcomes.push(Outcome::Refused(error.to_string()));
                continue;
            }
        };
        let refusal = match (mode, exists) {
            (WriteMode::Create, true) => Some(
                DatastoreError::AlreadyExists {
                    kind: kind.kind.into(),
                    name: document.name().into(),
                }
                .to_string(),
            ),
            (WriteMode::Replace, false) => Some(
                DatastoreError::NotFound {
                    kind: kind.kind.into(),
                    name: document.name().into(),
                }
                .to_string(),
            ),
            _ => match ds.dry_run(kind, document.object.clone(), exists).await {
                Ok(_) => None,
                Err(error) if error.is_transient() => return Err(error.into()),
                Err(error) => Some(error.to_string()),
            },
        };
        let refusal = refusal.or_else(|| overlaps_earlier_pool(document, &mut pools));
        outcomes.push(refusal.map_or(Outcome::NotAttempted, Outcome::Refused));
    }
    Ok(outcomes)
}

/// Whether a pool of the manifest overlaps one before it in the same manifest (then the
/// second write would be refused after the first was made).
fn overlaps_earlier_pool(document: &Document, pools: &mut Vec<IPPool>) -> Option<String> {
    if *document.kind != IPPOOL {
        return None;
    }
    let pool: IPPool = serde_json::from_value(document.object.clone()).ok()?;
    let refusal = pools_overlap(&pool, pools)
        .err()
        .map(|e| format!("invalid IPPool {:?}: {e}", document.name()));
    pools.push(pool);
    refusal
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
