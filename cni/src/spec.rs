//! The CNI specification's vocabulary: supported versions, commands and error objects.
//!
//! Pure data and formatting: no I/O here, so felix and the shim agree on every code.

use std::fmt;

use serde::Serialize;

/// The spec versions `twill` speaks, oldest first (docs/ARCHITECTURE.md, "CNI").
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A supported CNI spec version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    V030,
    V031,
    V040,
    V100,
    V110,
}

impl CniVersion {
    /// The newest version, used when the request does not say (or says something unknown).
    pub const LATEST: CniVersion = CniVersion::V110;

    /// Parses a `cniVersion` string; `None` when it is not one we support.
    pub fn parse(s: &str) -> Option<CniVersion> {
        match s {
            "0.3.0" => Some(CniVersion::V030),
            "0.3.1" => Some(CniVersion::V031),
            "0.4.0" => Some(CniVersion::V040),
            "1.0.0" => Some(CniVersion::V100),
            "1.1.0" => Some(CniVersion::V110),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V030 => "0.3.0",
            CniVersion::V031 => "0.3.1",
            CniVersion::V040 => "0.4.0",
            CniVersion::V100 => "1.0.0",
            CniVersion::V110 => "1.1.0",
        }
    }

    /// CHECK exists from 0.4.0 on.
    pub fn allows_check(self) -> bool {
        self >= CniVersion::V040
    }

    /// GC and STATUS exist from 1.1.0 on.
    pub fn allows_gc_and_status(self) -> bool {
        self >= CniVersion::V110
    }

    /// 1.x results drop the per-IP `version` field.
    pub fn is_1x(self) -> bool {
        self >= CniVersion::V100
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        match s {
            "ADD" => Some(Command::Add),
            "DEL" => Some(Command::Del),
            "CHECK" => Some(Command::Check),
            "VERSION" => Some(Command::Version),
            "STATUS" => Some(Command::Status),
            "GC" => Some(Command::Gc),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// The spec's well-known error codes (CNI spec, "Error").
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available (cannot serve ADD).
    pub const NOT_AVAILABLE: u32 = 50;
    /// Plugin-specific: felix failed for a reason of its own (100+ are ours).
    pub const INTERNAL: u32 = 100;
}

/// A CNI error object, as printed on stdout with exit status 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The JSON error object for `version`.
    pub fn to_json(&self, version: &str) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let wire = Wire {
            cni_version: version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_string(&wire).unwrap_or_else(|_| {
            format!(
                r#"{{"cniVersion":"{version}","code":{},"msg":"error"}}"#,
                self.code
            )
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// The `VERSION` answer: `cniVersion` echoes the request when supported.
pub fn version_json(requested: Option<CniVersion>) -> String {
    let v = requested.unwrap_or(CniVersion::LATEST);
    serde_json::json!({ "cniVersion": v.as_str(), "supportedVersions": SUPPORTED_VERSIONS })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_round_trips() {
        for s in SUPPORTED_VERSIONS {
            assert_eq!(CniVersion::parse(s).map(CniVersion::as_str), Some(s));
        }
        assert_eq!(CniVersion::parse("0.2.0"), None);
        assert_eq!(CniVersion::parse("9.9.9"), None);
    }

    #[test]
    fn check_needs_040_and_gc_needs_110() {
        assert!(!CniVersion::V031.allows_check());
        assert!(CniVersion::V040.allows_check());
        assert!(!CniVersion::V100.allows_gc_and_status());
        assert!(CniVersion::V110.allows_gc_and_status());
    }

    #[test]
    fn error_json_has_spec_fields() {
        let e = CniError::new(4, "CNI_IFNAME is missing").with_details("x");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 4);
        assert_eq!(v["msg"], "CNI_IFNAME is missing");
        assert_eq!(v["details"], "x");
    }
}
