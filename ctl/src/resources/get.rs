//! `twillctl get KIND [NAME...]`: one, several or all objects of a kind. Secrets stored
//! inline (BGP passwords) print as `<redacted>` unless `--show-secrets`.

use std::io::Write;

use serde_json::Value;

use super::{Ds, kind_arg, namespace_for};
use crate::error::Result;
use crate::output::{OutputFormat, print, redact_secrets};

/// Show resources.
#[derive(Clone, Debug, clap::Args)]
pub struct GetArgs {
    /// Kind: ippool(s), bgppeer(s), node(s), workloadendpoint(s)/wep, ...
    pub kind: String,
    /// Names (all when none).
    pub names: Vec<String>,
    /// Namespace for namespaced kinds (default: `default`).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Print secrets (inline BGP passwords) instead of `<redacted>`.
    #[arg(long)]
    pub show_secrets: bool,
}

impl GetArgs {
    pub async fn run(&self, ds: &Ds, out: &mut dyn Write) -> Result<()> {
        let kind = kind_arg(&self.kind)?;
        let namespace = if self.all_namespaces {
            None
        } else {
            namespace_for(kind, self.namespace.as_deref())
        };
        let backend = ds.backend();
        let mut objects: Vec<Value> = if self.names.is_empty() {
            backend.list(kind, namespace).await?.items
        } else {
            let mut objects = Vec::new();
            for name in &self.names {
                objects.push(backend.get(kind, namespace, name).await?);
            }
            objects
        };
        if !self.show_secrets {
            objects.iter_mut().for_each(|o| redact_secrets(kind, o));
        }
        print(out, kind, &objects, self.names.len() == 1, self.output)
    }
}
