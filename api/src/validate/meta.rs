//! Object metadata rules shared by every kind: names and labels.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ValidationError;

/// Names are DNS subdomains: lowercase alphanumerics, `-` and `.`, at most 253 chars,
/// starting and ending alphanumeric.
pub(super) fn check_name(meta: &ObjectMeta) -> Result<(), ValidationError> {
    let Some(name) = meta.name.as_deref() else {
        return Err(ValidationError::new("metadata.name", "is required"));
    };
    check_object_name("metadata.name", name)?;
    if let Some(labels) = &meta.labels {
        for (key, value) in labels {
            check_label(key, value)?;
        }
    }
    Ok(())
}

/// `name` (at `field`, e.g. a reference to another object) is a valid object name.
pub(super) fn check_object_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty()
        || name.len() > 253
        || !name.chars().all(ok_char)
        || !ends_ok(name.chars().next())
        || !ends_ok(name.chars().last())
    {
        return Err(ValidationError::new(
            field,
            format!(
                "{name:?} is not a valid name (lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit, at most 253 characters)"
            ),
        ));
    }
    Ok(())
}

fn check_label(key: &str, value: &str) -> Result<(), ValidationError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let label_chars = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    let prefix_ok = prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253);
    if !prefix_ok || name.is_empty() || name.len() > 63 || !label_chars(name) {
        return Err(ValidationError::new(
            format!("metadata.labels.{key}"),
            "label keys are [prefix/]name, name up to 63 alphanumerics, '-', '_' or '.'",
        ));
    }
    if value.len() > 63 || (!value.is_empty() && !label_chars(value)) {
        return Err(ValidationError::new(
            format!("metadata.labels.{key}"),
            format!("label value {value:?} must be up to 63 alphanumerics, '-', '_' or '.'"),
        ));
    }
    Ok(())
}
