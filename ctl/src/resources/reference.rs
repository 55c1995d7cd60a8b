//! The per-kind reference pages under `docs/reference/`, generated from the same CRDs that
//! `twillctl crds` prints: one Markdown page per kind with every field of `spec` (and
//! `status`), its type, whether it is required, its allowed values and its description.
//! A test (`ctl/tests/crds.rs`) fails when the pages in the repository drift from this.

use serde_json::Value;
use twill_api::resources::kinds::all_crds;

use crate::error::{CtlError, Result};

/// One generated page: its file name (`ippool.md`) and its Markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub file: String,
    pub markdown: String,
}

/// Every page: `README.md` (the index) and one page per kind.
pub fn reference_pages() -> Result<Vec<Page>> {
    let mut pages = Vec::new();
    let mut index = String::from(
        "<!-- Generated from the CRD schemas (api/src/resources). Do not edit: run\n     \
         UPDATE_REFERENCE=1 cargo test -p twillctl --test crds -->\n\
         # Resource reference\n\n\
         Every Twill resource is in group `networking.twill.dev`, version `v1`, and works the \
         same with `twillctl` (both datastores) and `kubectl` (Kubernetes mode).\n\n\
         | kind | scope | short names | page |\n|---|---|---|---|\n",
    );
    for crd in all_crds() {
        let crd = serde_json::to_value(&crd).map_err(|e| CtlError::Output(e.to_string()))?;
        let page = kind_page(&crd)?;
        let names = &crd["spec"]["names"];
        let short: Vec<&str> = names["shortNames"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        index.push_str(&format!(
            "| `{}` | {} | {} | [{}]({}) |\n",
            text(&names["kind"]),
            text(&crd["spec"]["scope"]),
            short.join(", "),
            page.file,
            page.file
        ));
        pages.push(page);
    }
    pages.insert(
        0,
        Page {
            file: "README.md".into(),
            markdown: index,
        },
    );
    Ok(pages)
}

fn kind_page(crd: &Value) -> Result<Page> {
    let names = &crd["spec"]["names"];
    let kind = text(&names["kind"]);
    let version = &crd["spec"]["versions"][0];
    let schema = &version["schema"]["openAPIV3Schema"];
    let mut md = format!(
        "<!-- Generated from the CRD schemas (api/src/resources). Do not edit: run\n     \
         UPDATE_REFERENCE=1 cargo test -p twillctl --test crds -->\n\
         # {kind}\n\n\
         `apiVersion: {}/{}` · `kind: {kind}` · {} · plural `{}`\n\n",
        text(&crd["spec"]["group"]),
        text(&version["name"]),
        match text(&crd["spec"]["scope"]) {
            "Namespaced" => "namespaced",
            _ => "cluster-scoped",
        },
        text(&names["plural"]),
    );
    for part in ["spec", "status"] {
        let node = &schema["properties"][part];
        if node.is_null() {
            continue;
        }
        if let Some(d) = node["description"].as_str() {
            md.push_str(&format!("## `{part}`\n\n{}\n\n", one_line(d)));
        } else {
            md.push_str(&format!("## `{part}`\n\n"));
        }
        let mut rows = Vec::new();
        walk(node, part, &mut rows);
        if rows.is_empty() {
            md.push_str("No fields.\n\n");
            continue;
        }
        md.push_str("| field | type | required | description |\n|---|---|---|---|\n");
        for row in rows {
            md.push_str(&row);
        }
        md.push('\n');
    }
    if let Some(columns) = version["additionalPrinterColumns"].as_array() {
        let cols: Vec<&str> = columns.iter().map(|c| text(&c["name"])).collect();
        md.push_str(&format!(
            "`twillctl get` / `kubectl get` columns: {}.\n",
            cols.join(", ")
        ));
    }
    Ok(Page {
        file: format!("{}.md", kind.to_ascii_lowercase()),
        markdown: md,
    })
}

/// Appends one table row per property under `node` (depth first, in the schema's order).
fn walk(node: &Value, path: &str, rows: &mut Vec<String>) {
    let Some(props) = node["properties"].as_object() else {
        if let Some(items) = node.get("items") {
            walk(items, &format!("{path}[]"), rows);
        }
        return;
    };
    let required: Vec<&str> = node["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, child) in props {
        let field = format!("{path}.{name}");
        let mut description = child["description"]
            .as_str()
            .map(one_line)
            .unwrap_or_default();
        if let Some(values) = child["enum"].as_array() {
            let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
            description.push_str(&format!(" One of {}.", values.join(", ")));
        }
        rows.push(format!(
            "| `{field}` | {} | {} | {} |\n",
            type_of(child),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                ""
            },
            description.trim().replace('|', "\\|"),
        ));
        walk(child, &field, rows);
    }
}

fn type_of(node: &Value) -> String {
    let base = match node["type"].as_str() {
        Some("array") => format!("array of {}", type_of(&node["items"])),
        Some(t) => t.to_string(),
        None if node["x-kubernetes-int-or-string"].as_bool() == Some(true) => {
            "int or string".into()
        }
        None => "any".into(),
    };
    match node["format"].as_str() {
        Some(f) => format!("{base} ({f})"),
        None => base,
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
