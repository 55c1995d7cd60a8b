//! Printing objects: a table (the CRD's printer columns; `wide` adds the priority ones),
//! YAML or JSON. A list prints as a `List` document in YAML and JSON.

use std::io::Write;

use serde_json::Value;
use twill_api::resources::KindInfo;

use crate::error::{CtlError, Result};

/// Output format of `get`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Wide,
    Yaml,
    Json,
}

/// What a redacted secret prints as.
pub const REDACTED: &str = "<redacted>";

/// Where each kind keeps secrets inline (JSON pointers).
fn secret_fields(kind: &KindInfo) -> &'static [&'static str] {
    match kind.kind {
        "BGPPeer" => &["/spec/password/value"],
        _ => &[],
    }
}

/// Replaces the secrets an object of `kind` carries inline with [`REDACTED`]; references
/// to secrets (a Secret's name and key) stay.
pub fn redact_secrets(kind: &KindInfo, object: &mut Value) {
    for pointer in secret_fields(kind) {
        if let Some(value) = object.pointer_mut(pointer)
            && !value.is_null()
        {
            *value = REDACTED.into();
        }
    }
}

fn write_err(e: impl std::fmt::Display) -> CtlError {
    CtlError::Output(e.to_string())
}

/// Prints one object (`single`) or a list.
pub fn print(
    out: &mut dyn Write,
    kind: &KindInfo,
    objects: &[Value],
    single: bool,
    format: OutputFormat,
) -> Result<()> {
    match format {
        OutputFormat::Yaml | OutputFormat::Json => {
            let value = if single && objects.len() == 1 {
                objects[0].clone()
            } else {
                serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": objects })
            };
            let text = if format == OutputFormat::Yaml {
                serde_yaml::to_string(&value).map_err(write_err)?
            } else {
                serde_json::to_string_pretty(&value).map_err(write_err)? + "\n"
            };
            out.write_all(text.as_bytes()).map_err(write_err)
        }
        OutputFormat::Table | OutputFormat::Wide => {
            table(out, kind, objects, format == OutputFormat::Wide)
        }
    }
}

struct Column {
    name: String,
    path: String,
}

fn columns(kind: &KindInfo, wide: bool) -> Vec<Column> {
    let Some(crd) = kind.crd.map(|crd| crd()) else {
        return Vec::new();
    };
    crd.spec
        .versions
        .first()
        .and_then(|v| v.additional_printer_columns.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| wide || c.priority.unwrap_or(0) == 0)
        .map(|c| Column {
            name: c.name.to_uppercase(),
            path: c.json_path,
        })
        .collect()
}

/// Evaluates a simple JSONPath (`.spec.bgp.ipv4Address`).
fn lookup(object: &Value, path: &str) -> String {
    let pointer = path.replace('.', "/");
    match object.pointer(&pointer) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

fn table(out: &mut dyn Write, kind: &KindInfo, objects: &[Value], wide: bool) -> Result<()> {
    let columns = columns(kind, wide);
    let mut header = Vec::new();
    if kind.namespaced {
        header.push("NAMESPACE".to_string());
    }
    header.push("NAME".to_string());
    header.extend(columns.iter().map(|c| c.name.clone()));
    let mut rows = vec![header];
    for object in objects {
        let mut row = Vec::new();
        if kind.namespaced {
            row.push(lookup(object, ".metadata.namespace"));
        }
        row.push(lookup(object, ".metadata.name"));
        row.extend(columns.iter().map(|c| lookup(object, &c.path)));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end()).map_err(write_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_api::resources::kinds::IPPOOL;

    #[test]
    fn inline_passwords_are_redacted_and_references_kept() {
        use twill_api::resources::kinds::BGPPEER;
        let mut peer = serde_json::json!({"spec": {"password": {"value": "s3cret"}}});
        redact_secrets(&BGPPEER, &mut peer);
        assert_eq!(peer["spec"]["password"]["value"], REDACTED);
        let mut by_ref =
            serde_json::json!({"spec": {"password": {"secretKeyRef": {"name": "n", "key": "k"}}}});
        let before = by_ref.clone();
        redact_secrets(&BGPPEER, &mut by_ref);
        assert_eq!(by_ref, before);
    }

    #[test]
    fn table_shows_printer_columns() {
        let pool = serde_json::json!({"metadata": {"name": "p1"}, "spec": {"cidr": "10.244.0.0/16", "blockSize": 26}});
        let mut out = Vec::new();
        print(&mut out, &IPPOOL, &[pool], false, OutputFormat::Table).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(
            header.starts_with("NAME") && header.contains("CIDR") && header.contains("BLOCKSIZE"),
            "{text}"
        );
        assert!(
            !header.contains("SELECTOR"),
            "priority columns only in wide: {text}"
        );
        let row = lines.next().unwrap();
        assert!(
            row.contains("p1") && row.contains("10.244.0.0/16") && row.contains("26"),
            "{text}"
        );
    }
}
