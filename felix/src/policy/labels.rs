//! Label plumbing: Kubernetes `LabelSelector`s as Twill [`Selector`]s, and the labels of
//! a namespace (its own plus the automatic `kubernetes.io/metadata.name`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use twill_api::resources::native::Namespace;
use twill_api::selector::Selector;

/// Label key every namespace carries, whose value is the namespace's name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub type Labels = BTreeMap<String, String>;

/// Converts a Kubernetes label selector (`matchLabels` AND `matchExpressions`) into a
/// selector. An empty selector matches everything. `field` names the selector in errors.
pub fn from_label_selector(sel: &LabelSelector, field: &str) -> Result<Selector, String> {
    let mut terms = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        terms.push(Selector::Eq(k.clone(), v.clone()));
    }
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let values = expr.values.clone().unwrap_or_default();
        let term = match expr.operator.as_str() {
            "In" => Selector::In(expr.key.clone(), values),
            "NotIn" => Selector::NotIn(expr.key.clone(), values),
            "Exists" => Selector::Has(expr.key.clone()),
            "DoesNotExist" => Selector::Not(Box::new(Selector::Has(expr.key.clone()))),
            other => {
                return Err(format!(
                    "{field}.matchExpressions[{i}].operator: {other:?} is not In, NotIn, Exists \
                     or DoesNotExist"
                ));
            }
        };
        terms.push(term);
    }
    Ok(terms
        .into_iter()
        .reduce(|a, b| Selector::And(Box::new(a), Box::new(b)))
        .unwrap_or(Selector::All))
}

/// A namespace's labels, including `kubernetes.io/metadata.name`.
pub fn namespace_labels(name: &str, ns: Option<&Namespace>) -> Labels {
    let mut labels = ns
        .and_then(|ns| ns.metadata.labels.clone())
        .unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        let s = from_label_selector(&sel, "spec.podSelector").unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a"), ("canary", "")])));
        assert!(!s.matches(&labels(&[("tier", "a")])));
    }

    #[test]
    fn empty_selector_matches_all_and_bad_operator_names_the_field() {
        let all = from_label_selector(&LabelSelector::default(), "x").unwrap();
        assert_eq!(all, Selector::All);
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: "Gt".into(),
                values: None,
            }]),
            ..Default::default()
        };
        let err = from_label_selector(&bad, "spec.podSelector").unwrap_err();
        assert!(
            err.starts_with("spec.podSelector.matchExpressions[0].operator"),
            "{err}"
        );
    }

    #[test]
    fn namespaces_carry_their_name_label() {
        let l = namespace_labels("prod", None);
        assert_eq!(
            l.get(NAMESPACE_NAME_LABEL).map(String::as_str),
            Some("prod")
        );
    }
}
