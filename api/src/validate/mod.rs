//! Validation of every kind before it is stored. An error names the field (a JSON path
//! such as `spec.blockSize`) and the rule it breaks, so an operator can fix the manifest.
//!
//! Only rules that look at one object live here; the rule that needs other objects (pools
//! may not overlap each other) is enforced by the datastore's write path.

mod bfd;
mod bgp;
pub mod felix;
mod ippool;
mod meta;
mod net;
mod netpol;
mod other;

use std::fmt;

pub use ippool::{overlaps, pool_unchanged_shape, pools_overlap};
pub use net::{parse_cidr_masked, parse_peer_ip};
pub use netpol::{LABEL_SELECTOR_OPERATORS, check_label_selector};

/// A broken rule: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// JSON path of the field (`spec.blockSize`), empty when the whole object is at fault.
    pub field: String,
    /// The rule it breaks.
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Turns a serde_yaml error (`spec.blockSize: invalid type ... at line 3`) into a
    /// field-naming error.
    pub fn from_serde_yaml(error: &serde_yaml::Error) -> Self {
        let text = error.to_string();
        match text.split_once(": ") {
            Some((path, rest)) if !path.is_empty() && !path.contains(char::is_whitespace) => {
                ValidationError::new(path, rest)
            }
            _ => ValidationError::new("", text),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ValidationError {}

/// Rules one object must satisfy to be stored.
pub trait Validate {
    fn validate(&self) -> Result<(), ValidationError>;
}
