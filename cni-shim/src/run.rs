//! One execution of the plugin, from environment and stdin to stdout and exit status.
//!
//! Kept apart from `main` so it can be tested without a process; it never exits the
//! process itself.

use twill_cni::config::{self, CONNECT_TIMEOUT};
use twill_cni::env::read_env;
use twill_cni::request::CniRequest;
use twill_cni::spec::{CniError, CniVersion, Command, code, version_json};

/// What to print on stdout and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub status: i32,
}

impl Output {
    fn ok(stdout: String) -> Output {
        Output { stdout, status: 0 }
    }

    fn error(err: &CniError, version: &str) -> Output {
        Output {
            stdout: err.to_json(version),
            status: 1,
        }
    }
}

/// Runs the plugin: `get` reads the environment, `stdin` is the configuration.
pub fn run(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Output {
    if let Err(e) = config::check_size(stdin) {
        return Output::error(&e, CniVersion::LATEST.as_str());
    }
    // Errors are written in the version the configuration asked for when we know it.
    let sniffed = config::sniff_version(stdin);
    let err_version = sniffed
        .as_deref()
        .and_then(CniVersion::parse)
        .unwrap_or(CniVersion::LATEST)
        .as_str();
    let env = match read_env(get) {
        Ok(env) => env,
        Err(e) => return Output::error(&e, err_version),
    };
    if env.command == Command::Version {
        return Output::ok(version_json(sniffed.as_deref().and_then(CniVersion::parse)));
    }
    let conf = match config::parse(stdin) {
        Ok(c) => c,
        Err(e) => return Output::error(&e, err_version),
    };
    let version = conf.cni_version;
    let gate = match env.command {
        Command::Check if !version.allows_check() => Some("CHECK"),
        Command::Gc | Command::Status if !version.allows_gc_and_status() => {
            Some(env.command.as_str())
        }
        _ => None,
    };
    if let Some(cmd) = gate {
        let e = CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("cniVersion {version} does not allow {cmd}"),
        );
        return Output::error(&e, version.as_str());
    }
    let request = CniRequest::new(&env, stdin.to_vec(), version);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = CniError::new(code::IO_FAILURE, "cannot start the I/O runtime")
                .with_details(e.to_string());
            return Output::error(&e, version.as_str());
        }
    };
    let outcome = runtime.block_on(crate::client::call(
        &conf.agent_socket,
        env.command,
        request,
        CONNECT_TIMEOUT,
        conf.timeout,
    ));
    match outcome {
        Ok(Some(json)) => Output::ok(json),
        Ok(None) => Output::ok(String::new()),
        Err(mut e) => {
            // STATUS has its own code for "cannot serve ADD".
            if env.command == Command::Status && e.code == code::TRY_AGAIN_LATER {
                e.code = code::NOT_AVAILABLE;
            }
            Output::error(&e, version.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn run_with(pairs: &[(&str, &str)], stdin: &str) -> Output {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        run(|k| map.get(k).cloned(), stdin.as_bytes())
    }

    fn code_of(o: &Output) -> u64 {
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        v["code"].as_u64().unwrap()
    }

    #[test]
    fn version_answers_without_agent_and_echoes_request() {
        let o = run_with(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(o.status, 0);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn check_on_031_is_incompatible() {
        let env = [
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/proc/1/ns/net"),
            ("CNI_IFNAME", "eth0"),
        ];
        let o = run_with(&env, r#"{"cniVersion":"0.3.1","name":"n","type":"twill"}"#);
        assert_eq!((o.status, code_of(&o)), (1, 1));
    }

    #[test]
    fn gc_on_100_is_incompatible() {
        let o = run_with(
            &[("CNI_COMMAND", "GC")],
            r#"{"cniVersion":"1.0.0","name":"n","type":"twill"}"#,
        );
        assert_eq!((o.status, code_of(&o)), (1, 1));
    }

    #[test]
    fn status_with_agent_missing_is_code_50() {
        let dir = std::env::temp_dir().join(format!("twill-cni-none-{}", std::process::id()));
        let conf = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","type":"twill","agent_socket":"{}/x.sock"}}"#,
            dir.display()
        );
        let o = run_with(&[("CNI_COMMAND", "STATUS")], &conf);
        assert_eq!((o.status, code_of(&o)), (1, 50));
    }
}
