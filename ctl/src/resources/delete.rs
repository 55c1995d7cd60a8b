//! `twillctl delete KIND NAME...` or `delete -f FILE`.

use std::io::Write;

use super::{Ds, kind_arg, namespace_for};
use crate::error::{CtlError, Result};
use crate::manifest::{parse, read_file};

/// Delete resources by name or by manifest.
#[derive(Clone, Debug, clap::Args)]
pub struct DeleteArgs {
    /// Kind and names (`ippool p1 p2`); or use `-f`.
    pub args: Vec<String>,
    /// Delete what this manifest names.
    #[arg(short, long, conflicts_with = "args")]
    pub filename: Option<String>,
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Succeed when an object is already gone.
    #[arg(long)]
    pub ignore_not_found: bool,
}

impl DeleteArgs {
    pub async fn run(&self, ds: &Ds, out: &mut dyn Write) -> Result<()> {
        let mut targets = Vec::new();
        if let Some(file) = &self.filename {
            let text = read_file(file)?;
            for doc in parse(file, &text, self.namespace.as_deref().unwrap_or("default"))? {
                targets.push((
                    doc.kind,
                    doc.namespace().map(str::to_string),
                    doc.name().to_string(),
                ));
            }
        } else {
            let Some((kind, names)) = self.args.split_first() else {
                return Err(CtlError::Usage(
                    "delete needs KIND NAME... or -f FILE".into(),
                ));
            };
            if names.is_empty() {
                return Err(CtlError::Usage(format!("delete {kind}: which names?")));
            }
            let kind = kind_arg(kind)?;
            let namespace = namespace_for(kind, self.namespace.as_deref()).map(str::to_string);
            for name in names {
                targets.push((kind, namespace.clone(), name.clone()));
            }
        }
        for (kind, namespace, name) in targets {
            if kind.kind == "IPPool" {
                crate::ipam::refuse_pool_delete_in_use(ds, &name).await?;
            }
            let last = match ds
                .backend()
                .delete(kind, namespace.as_deref(), &name, None)
                .await
            {
                Ok(last) => last,
                Err(twill_api::DatastoreError::NotFound { .. }) if self.ignore_not_found => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let what = format!("{}/{name}", kind.kind.to_ascii_lowercase());
            match held_by(&last) {
                // Finalizers hold it: it goes when its controller lets it (a pool once its
                // last address is released).
                Some(finalizers) => writeln!(
                    out,
                    "{what} marked for deletion (held by finalizers: {finalizers})"
                ),
                None => writeln!(out, "{what} deleted"),
            }
            .map_err(|e| CtlError::Output(e.to_string()))?;
        }
        Ok(())
    }
}

/// The finalizers of an object a delete only marked, if any.
fn held_by(object: &serde_json::Value) -> Option<String> {
    object.pointer("/metadata/deletionTimestamp")?;
    let finalizers: Vec<&str> = object
        .pointer("/metadata/finalizers")?
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    (!finalizers.is_empty()).then(|| finalizers.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_held_by_finalizers_names_them() {
        let held = serde_json::json!({"metadata": {"deletionTimestamp": "2026-12-05T08:00:00Z",
            "finalizers": ["networking.twill.dev/ipam"]}});
        assert_eq!(held_by(&held).as_deref(), Some("networking.twill.dev/ipam"));
        let gone = serde_json::json!({"metadata": {"finalizers": ["networking.twill.dev/ipam"]}});
        assert_eq!(held_by(&gone), None, "not marked: deleted");
    }
}
