//! Query strings and the API server's selectors: percent-decoding, `fieldSelector`
//! (`a.b=v`, `a.b==v`, `a.b!=v`, comma = and) and `labelSelector` (`k=v`, `k==v`, `k!=v`,
//! `k`, `!k`, `k in (a,b)`, `k notin (a,b)`).

use std::collections::BTreeMap;

use serde_json::Value;

/// Decodes `%XX` escapes and `+` (a space in form encoding).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query's parameters, decoded.
pub fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

/// A parsed field selector: (dotted path, wanted value, equal?).
#[derive(Clone, Debug, Default)]
pub struct FieldSelector(Vec<(String, String, bool)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, value, eq) = if let Some((p, v)) = term.split_once("!=") {
                (p, v, false)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, v, true)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, v, true)
            } else {
                return Err(format!("field selector term {term:?} has no operator"));
            };
            terms.push((path.trim().to_string(), value.trim().to_string(), eq));
        }
        Ok(FieldSelector(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, want, eq)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let got = match object.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[derive(Clone, Debug)]
enum LabelTerm {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector.
#[derive(Clone, Debug, Default)]
pub struct LabelSelector(Vec<LabelTerm>);

fn split_terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn set_of(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("{text:?} is not a (set)"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut terms = Vec::new();
        for term in split_terms(text) {
            let parsed = if let Some((k, rest)) = term.split_once(" notin ") {
                LabelTerm::NotIn(k.trim().into(), set_of(rest)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                LabelTerm::In(k.trim().into(), set_of(rest)?)
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelTerm::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                LabelTerm::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                LabelTerm::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                LabelTerm::Absent(k.trim().into())
            } else {
                LabelTerm::Exists(term.clone())
            };
            terms.push(parsed);
        }
        Ok(LabelSelector(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|term| match term {
            LabelTerm::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelTerm::Ne(k, v) => get(k) != Some(v.as_str()),
            LabelTerm::Exists(k) => get(k).is_some(),
            LabelTerm::Absent(k) => get(k).is_none(),
            LabelTerm::In(k, set) => get(k).is_some_and(|v| set.iter().any(|s| s == v)),
            LabelTerm::NotIn(k, set) => get(k).is_none_or(|v| !set.iter().any(|s| s == v)),
        })
    }
}

/// Both selectors of a list or watch request.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    pub fields: FieldSelector,
    pub labels: LabelSelector,
}

impl Selectors {
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Selectors, String> {
        Ok(Selectors {
            fields: FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))?,
            labels: LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))?,
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.fields.matches(object) && self.labels.matches(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_queries() {
        let q = parse_query(
            "fieldSelector=spec.nodeName%3Dnode-1&watch=true&labelSelector=a+in+%28x%2Cy%29",
        );
        assert_eq!(q["fieldSelector"], "spec.nodeName=node-1");
        assert_eq!(q["labelSelector"], "a in (x,y)");
        assert_eq!(q["watch"], "true");
    }

    #[test]
    fn selectors_match() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "a"}},
                         "spec": {"nodeName": "n1"}});
        let f = |s| FieldSelector::parse(s).unwrap().matches(&pod);
        assert!(f("spec.nodeName=n1"));
        assert!(f("spec.nodeName==n1,metadata.name=p"));
        assert!(!f("spec.nodeName=n2"));
        assert!(f("spec.nodeName!=n2"));
        let l = |s| LabelSelector::parse(s).unwrap().matches(&pod);
        assert!(l("app=web"));
        assert!(l("app in (web,db),tier"));
        assert!(!l("app notin (web)"));
        assert!(l("!canary,tier!=b"));
        assert!(!l("canary"));
    }
}
