//! The network configuration the runtime writes on stdin: the fields the shim itself needs
//! (version, name, agent socket, deadline) and the checks that map to codes 1, 6 and 7.
//!
//! Everything else (`prevResult`, `runtimeConfig`, `cni.dev/valid-attachments`) stays in
//! the raw bytes, which travel to felix unchanged.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::spec::{CniError, CniVersion, code};

/// Where felix listens unless the configuration says otherwise.
pub const DEFAULT_AGENT_SOCKET: &str = "/var/run/twill/agent.sock";
/// How long a request may take once connected (an ADD may wait on the datastore).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most configuration the plugin reads from stdin. Real configurations are a few KiB
/// (with `prevResult`, tens of KiB); more is a runtime's bug, not worth a retry.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// How long connecting to felix may take before the answer is "try again later".
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Deserialize)]
struct Wire {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    agent_socket: Option<PathBuf>,
    mtu: Option<u32>,
    timeout_seconds: Option<u64>,
}

/// The parts of the configuration the shim acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    pub cni_version: CniVersion,
    pub name: String,
    pub agent_socket: PathBuf,
    pub mtu: Option<u32>,
    pub timeout: Duration,
}

/// Best effort: the `cniVersion` a (possibly broken) configuration asks for, so that an
/// error object can be written in it.
pub fn sniff_version(raw: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct V {
        #[serde(rename = "cniVersion")]
        cni_version: Option<String>,
    }
    serde_json::from_slice::<V>(raw).ok()?.cni_version
}

/// Refuses a configuration longer than [`MAX_CONFIG_BYTES`] as invalid (code 7): it is
/// permanent, so the runtime must not be told to try again.
pub fn check_size(raw: &[u8]) -> Result<(), CniError> {
    if raw.len() > MAX_CONFIG_BYTES {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("network configuration is larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Parses and checks the configuration (not for VERSION, whose stdin may be minimal).
pub fn parse(raw: &[u8]) -> Result<NetConf, CniError> {
    let wire: Wire = serde_json::from_slice(raw).map_err(|e| {
        CniError::new(code::DECODE, "cannot decode the network configuration")
            .with_details(e.to_string())
    })?;
    let Some(version) = wire.cni_version else {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "network configuration has no cniVersion",
        ));
    };
    let cni_version = CniVersion::parse(&version).ok_or_else(|| {
        CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("cniVersion {version:?} is not supported"),
        )
        .with_details(format!(
            "supported: {}",
            crate::spec::SUPPORTED_VERSIONS.join(", ")
        ))
    })?;
    let name = wire.name.unwrap_or_default();
    if name.is_empty() {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "network configuration has no name",
        ));
    }
    if wire.plugin_type.as_deref().unwrap_or_default().is_empty() {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "network configuration has no type",
        ));
    }
    if let Some(mtu) = wire.mtu
        && !(576..=65535).contains(&mtu)
    {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("mtu {mtu} is outside 576..=65535"),
        ));
    }
    Ok(NetConf {
        cni_version,
        name,
        agent_socket: wire
            .agent_socket
            .unwrap_or_else(|| PathBuf::from(DEFAULT_AGENT_SOCKET)),
        mtu: wire.mtu,
        timeout: wire
            .timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(br#"{"cniVersion":"1.0.0","name":"twill","type":"twill"}"#).unwrap();
        assert_eq!(c.cni_version, CniVersion::V100);
        assert_eq!(c.agent_socket, PathBuf::from(DEFAULT_AGENT_SOCKET));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn oversized_config_is_code_7() {
        assert!(check_size(&vec![b' '; MAX_CONFIG_BYTES]).is_ok());
        let e = check_size(&vec![b' '; MAX_CONFIG_BYTES + 1]).unwrap_err();
        assert_eq!(e.code, 7);
    }

    #[test]
    fn malformed_json_is_code_6() {
        assert_eq!(parse(b"{not json").unwrap_err().code, 6);
    }

    #[test]
    fn unknown_version_is_code_1() {
        let e = parse(br#"{"cniVersion":"0.2.0","name":"n","type":"twill"}"#).unwrap_err();
        assert_eq!(e.code, 1);
    }

    #[test]
    fn missing_name_or_type_or_bad_mtu_is_code_7() {
        for raw in [
            r#"{"cniVersion":"1.0.0","type":"twill"}"#,
            r#"{"cniVersion":"1.0.0","name":"n"}"#,
            r#"{"cniVersion":"1.0.0","name":"n","type":"twill","mtu":10}"#,
            r#"{"name":"n","type":"twill"}"#,
        ] {
            assert_eq!(parse(raw.as_bytes()).unwrap_err().code, 7, "{raw}");
        }
    }

    #[test]
    fn wrongly_typed_field_is_code_6() {
        let raw = br#"{"cniVersion":"1.0.0","name":"n","type":"twill","mtu":"big"}"#;
        assert_eq!(parse(raw).unwrap_err().code, 6);
    }
}
