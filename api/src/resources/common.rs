//! Small value types shared by several resources: AS numbers (asplain or asdot), port
//! specifications and the `conditions` list of a status.
//!
//! Nothing here talks to a datastore; these are plain data with their serde shape.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
pub use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A BGP AS number. Accepts asplain (`64512`) and asdot (`"1.10"`), always written back as
/// asplain, so stored objects are normalised. Zero is refused by validation, not here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsNumber(pub u32);

impl AsNumber {
    /// Parses asplain (`65000`) or asdot (`1.10` = 1 * 65536 + 10).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some((high, low)) = text.split_once('.') {
            let high: u16 = high
                .parse()
                .map_err(|_| format!("{text:?} is not an asdot AS number (high part 0-65535)"))?;
            let low: u16 = low
                .parse()
                .map_err(|_| format!("{text:?} is not an asdot AS number (low part 0-65535)"))?;
            Ok(AsNumber((u32::from(high) << 16) | u32::from(low)))
        } else {
            text.parse::<u32>()
                .map(AsNumber)
                .map_err(|_| format!("{text:?} is not an AS number (1-4294967295 or asdot X.Y)"))
        }
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => u32::try_from(n)
                .map(AsNumber)
                .map_err(|_| serde::de::Error::custom(format!("AS number {n} exceeds 4294967295"))),
            Raw::Text(text) => AsNumber::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for AsNumber {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AsNumber".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "AS number, asplain (64512) or asdot (\"1.10\")",
            "x-kubernetes-int-or-string": true,
        })
    }
}

/// The status block shared by resources a controller reports on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// Standard Kubernetes conditions (`type`, `status`, `reason`, `message`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asdot_is_normalised_to_asplain() {
        let asn: AsNumber = serde_json::from_str("\"1.10\"").unwrap();
        assert_eq!(asn, AsNumber(65546));
        assert_eq!(serde_json::to_string(&asn).unwrap(), "65546");
    }

    #[test]
    fn asplain_number_and_string_are_accepted() {
        assert_eq!(
            serde_json::from_str::<AsNumber>("64512").unwrap(),
            AsNumber(64512)
        );
        assert_eq!(
            serde_json::from_str::<AsNumber>("\"4294967295\"").unwrap(),
            AsNumber(u32::MAX)
        );
    }

    #[test]
    fn too_large_as_number_is_refused() {
        assert!(serde_json::from_str::<AsNumber>("4294967296").is_err());
        assert!(serde_json::from_str::<AsNumber>("\"70000.1\"").is_err());
    }
}
