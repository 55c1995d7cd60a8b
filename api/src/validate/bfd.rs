//! `BFDProfile` rules: intervals 10-60000 ms (RFC 5880 counts in microseconds; sub-10 ms
//! is beyond what a userspace speaker keeps), a detection multiplier of 1-255 (§6.8.6
//! discards 0) and a minimum TTL of 1-255; and the names that refer to a profile.

use super::meta::{check_name, check_object_name};
use super::{Validate, ValidationError};
use crate::resources::BFDProfile;

impl Validate for BFDProfile {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        let spec = &self.spec;
        for (field, value) in [
            ("spec.receiveInterval", spec.receive_interval),
            ("spec.transmitInterval", spec.transmit_interval),
        ] {
            if let Some(v) = value
                && !(10..=60_000).contains(&v)
            {
                return Err(ValidationError::new(
                    field,
                    format!("{v} must be 10 to 60000 milliseconds"),
                ));
            }
        }
        if let Some(m) = spec.detect_multiplier
            && !(1..=255).contains(&m)
        {
            return Err(ValidationError::new(
                "spec.detectMultiplier",
                format!("{m} must be 1 to 255"),
            ));
        }
        if let Some(t) = spec.minimum_ttl
            && !(1..=255).contains(&t)
        {
            return Err(ValidationError::new(
                "spec.minimumTtl",
                format!("{t} must be 1 to 255"),
            ));
        }
        Ok(())
    }
}

/// A reference to a `BFDProfile` (at `field`) is a valid object name when set. Whether
/// the profile exists is decided where it is used: a dangling one holds the peering.
pub(super) fn check_profile_ref(field: &str, name: Option<&str>) -> Result<(), ValidationError> {
    match name {
        Some(n) => check_object_name(field, n),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::BFDProfileSpec;

    fn profile(spec: BFDProfileSpec) -> Result<(), ValidationError> {
        BFDProfile::new("fast", spec).validate()
    }

    #[test]
    fn bfd_profile_in_range_is_valid() {
        profile(BFDProfileSpec::default()).unwrap();
        profile(BFDProfileSpec {
            receive_interval: Some(100),
            transmit_interval: Some(100),
            detect_multiplier: Some(3),
            passive_mode: Some(true),
            minimum_ttl: Some(254),
        })
        .unwrap();
    }

    #[test]
    fn bfd_profile_out_of_range_names_the_field() {
        let cases: [(BFDProfileSpec, &str); 6] = [
            (
                BFDProfileSpec {
                    receive_interval: Some(9),
                    ..Default::default()
                },
                "spec.receiveInterval",
            ),
            (
                BFDProfileSpec {
                    transmit_interval: Some(60_001),
                    ..Default::default()
                },
                "spec.transmitInterval",
            ),
            (
                BFDProfileSpec {
                    detect_multiplier: Some(0),
                    ..Default::default()
                },
                "spec.detectMultiplier",
            ),
            (
                BFDProfileSpec {
                    detect_multiplier: Some(256),
                    ..Default::default()
                },
                "spec.detectMultiplier",
            ),
            (
                BFDProfileSpec {
                    minimum_ttl: Some(0),
                    ..Default::default()
                },
                "spec.minimumTtl",
            ),
            (
                BFDProfileSpec {
                    minimum_ttl: Some(256),
                    ..Default::default()
                },
                "spec.minimumTtl",
            ),
        ];
        for (spec, field) in cases {
            let e = profile(spec).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }
}
