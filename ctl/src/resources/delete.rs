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
            match ds
                .backend()
                .delete(kind, namespace.as_deref(), &name, None)
                .await
            {
                Ok(_) => {}
                Err(twill_api::DatastoreError::NotFound { .. }) if self.ignore_not_found => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            writeln!(out, "{}/{name} deleted", kind.kind.to_ascii_lowercase())
                .map_err(|e| CtlError::Output(e.to_string()))?;
        }
        Ok(())
    }
}
