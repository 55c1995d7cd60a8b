//! The CNI environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_ARGS`, `CNI_PATH`), read through a lookup function and validated.
//!
//! Every error is code 4 and names the variable at fault. Never reads the process
//! environment itself: the caller passes `std::env::var` (or a map, in tests).

use crate::spec::{CniError, Command, code};

/// `CNI_ARGS`, parsed (`K=V;K=V`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub k8s_pod_namespace: String,
    pub k8s_pod_name: String,
    pub k8s_pod_infra_container_id: String,
    /// Every other pair, in order.
    pub other: Vec<(String, String)>,
}

/// The validated CNI environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    /// Empty for VERSION, GC and STATUS.
    pub container_id: String,
    /// Empty when the runtime gave none (allowed for DEL, GC, STATUS, VERSION).
    pub netns: String,
    /// Empty for VERSION, GC and STATUS.
    pub ifname: String,
    pub args: CniArgs,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_ENV, msg)
}

/// `CNI_CONTAINERID` must match `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let Some(first) = chars.next() else {
        return Err(invalid("CNI_CONTAINERID is missing"));
    };
    let ok = first.is_ascii_alphanumeric()
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "CNI_CONTAINERID {id:?} is invalid: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
        )))
    }
}

/// `CNI_IFNAME`: a Linux interface name (1-15 bytes, no `/`, no whitespace or `:`, not
/// `.` or `..`).
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(invalid("CNI_IFNAME is missing"));
    }
    let why = if name.len() > 15 {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not interface names")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name
        .chars()
        .any(|c| c.is_whitespace() || c == ':' || c.is_control())
    {
        Some("contains whitespace, ':' or a control character")
    } else {
        None
    };
    match why {
        Some(why) => Err(invalid(format!("CNI_IFNAME {name:?} is invalid: {why}"))),
        None => Ok(()),
    }
}

/// `CNI_NETNS`: an absolute path when given.
pub fn validate_netns(netns: &str, required: bool) -> Result<(), CniError> {
    if netns.is_empty() {
        return if required {
            Err(invalid("CNI_NETNS is missing"))
        } else {
            Ok(())
        };
    }
    if !netns.starts_with('/') {
        return Err(invalid(format!(
            "CNI_NETNS {netns:?} is not an absolute path"
        )));
    }
    Ok(())
}

/// Parses `CNI_ARGS` (`K=V;K=V`); a pair without `=` is malformed.
pub fn parse_args(raw: &str) -> Result<CniArgs, CniError> {
    let mut args = CniArgs::default();
    for pair in raw.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(invalid(format!("CNI_ARGS pair {pair:?} has no '='")));
        };
        match k {
            "K8S_POD_NAMESPACE" => args.k8s_pod_namespace = v.to_string(),
            "K8S_POD_NAME" => args.k8s_pod_name = v.to_string(),
            "K8S_POD_INFRA_CONTAINER_ID" => args.k8s_pod_infra_container_id = v.to_string(),
            _ => args.other.push((k.to_string(), v.to_string())),
        }
    }
    Ok(args)
}

/// Reads and validates the environment for one invocation.
pub fn read_env(get: impl Fn(&str) -> Option<String>) -> Result<CniEnv, CniError> {
    let raw_cmd = get("CNI_COMMAND").unwrap_or_default();
    if raw_cmd.is_empty() {
        return Err(invalid("CNI_COMMAND is missing"));
    }
    let command = Command::parse(&raw_cmd)
        .ok_or_else(|| invalid(format!("CNI_COMMAND {raw_cmd:?} is not a CNI command")))?;
    let container_id = get("CNI_CONTAINERID").unwrap_or_default();
    let netns = get("CNI_NETNS").unwrap_or_default();
    let ifname = get("CNI_IFNAME").unwrap_or_default();
    let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
    match command {
        Command::Add | Command::Check | Command::Del => {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
            validate_netns(&netns, command != Command::Del)?;
        }
        Command::Version | Command::Status | Command::Gc => {}
    }
    Ok(CniEnv {
        command,
        container_id,
        netns,
        ifname,
        args,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        read_env(|k| map.get(k).cloned())
    }

    const GOOD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123",
        ),
    ];

    fn with(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = GOOD
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .copied()
            .collect();
        v.extend(overrides.iter().filter(|(_, val)| !val.is_empty()));
        v
    }

    #[test]
    fn good_add_environment_parses_k8s_args() {
        let e = env(&GOOD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.args.k8s_pod_namespace, "default");
        assert_eq!(e.args.k8s_pod_name, "web-0");
        assert_eq!(e.args.k8s_pod_infra_container_id, "abc123");
        assert_eq!(e.args.other, vec![("IgnoreUnknown".into(), "1".into())]);
    }

    #[test]
    fn each_bad_variable_is_code_4_and_named() {
        let cases: [(&[(&str, &str)], &str); 9] = [
            (&[("CNI_COMMAND", "")], "CNI_COMMAND"),
            (&[("CNI_COMMAND", "FROB")], "CNI_COMMAND"),
            (&[("CNI_CONTAINERID", "")], "CNI_CONTAINERID"),
            (&[("CNI_CONTAINERID", "-abc")], "CNI_CONTAINERID"),
            (&[("CNI_CONTAINERID", "a/b")], "CNI_CONTAINERID"),
            (&[("CNI_IFNAME", "a-very-long-ifname")], "CNI_IFNAME"),
            (&[("CNI_IFNAME", "..")], "CNI_IFNAME"),
            (&[("CNI_NETNS", "")], "CNI_NETNS"),
            (&[("CNI_ARGS", "K8S_POD_NAME")], "CNI_ARGS"),
        ];
        for (overrides, var) in cases {
            let err = env(&with(overrides)).unwrap_err();
            assert_eq!(err.code, 4, "{overrides:?}");
            assert!(err.msg.contains(var), "{overrides:?}: {}", err.msg);
        }
    }

    #[test]
    fn del_tolerates_missing_netns() {
        let e = env(&with(&[("CNI_COMMAND", "DEL"), ("CNI_NETNS", "")])).unwrap();
        assert_eq!(e.netns, "");
    }

    #[test]
    fn version_and_gc_need_no_container() {
        for cmd in ["VERSION", "GC", "STATUS"] {
            assert!(env(&[("CNI_COMMAND", cmd)]).is_ok(), "{cmd}");
        }
    }

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("123456789012345").is_ok());
        assert!(validate_ifname("1234567890123456").is_err());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname(".").is_err());
        assert!(validate_ifname("a b").is_err());
    }
}
