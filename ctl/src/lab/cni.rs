//! Pods in the lab, made exactly as a container runtime makes them: a network namespace,
//! then the node's CNI configuration list executed plugin by plugin (`twill` first, then
//! the chained reference plugins such as `portmap`), each plugin a real executable run in
//! the node's namespace with the CNI environment and the previous plugin's result; DEL
//! runs the list in reverse with the ADD result as `prevResult`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::LabError;

/// A port published on the node (`portMappings` capability, served by `portmap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// What a runtime knows about one pod attachment.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns_path: &'a str,
    pub ifname: &'a str,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub ports: &'a [PortMapping],
}

/// One plugin run: what it printed and how long it took.
#[derive(Debug, Clone)]
pub struct PluginRun {
    pub plugin: String,
    pub stdout: String,
    pub status: i32,
    pub elapsed: Duration,
}

fn cni_args(a: &Attachment<'_>) -> String {
    let mut args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
        a.namespace, a.pod, a.container_id
    );
    if !a.labels.is_empty() {
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        args += &format!(";TWILL_POD_LABELS={}", labels.join(","));
    }
    args
}

/// The configuration one plugin of the list receives.
fn plugin_conf(list: &Value, plugin: &Value, a: &Attachment<'_>, prev: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    let wants_ports = plugin
        .pointer("/capabilities/portMappings")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if wants_ports && !a.ports.is_empty() {
        let mappings: Vec<Value> = a
            .ports
            .iter()
            .map(|p| {
                json!({"hostPort": p.host_port, "containerPort": p.container_port, "protocol": p.protocol})
            })
            .collect();
        conf["runtimeConfig"] = json!({ "portMappings": mappings });
    }
    if let Some(obj) = conf.as_object_mut() {
        obj.remove("capabilities");
    }
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    conf
}

/// Executes one plugin in the node's namespace.
async fn exec(
    node_ns: &str,
    cni_bin: &Path,
    command: &str,
    plugin_type: &str,
    a: &Attachment<'_>,
    conf: &Value,
) -> Result<PluginRun, LabError> {
    let program = cni_bin.join(plugin_type);
    let start = Instant::now();
    let mut child = tokio::process::Command::new("ip")
        .args(["netns", "exec", node_ns])
        .arg(&program)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", a.container_id)
        .env("CNI_NETNS", a.netns_path)
        .env("CNI_IFNAME", a.ifname)
        .env("CNI_PATH", cni_bin)
        .env("CNI_ARGS", cni_args(a))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Command(format!("{}: {e}", program.display())))?;
    let input = serde_json::to_vec(conf).map_err(|e| LabError::State(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .await
            .map_err(|e| LabError::Command(format!("{plugin_type} stdin: {e}")))?;
    }
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .map_err(|_| LabError::Timeout(format!("{plugin_type} {command} took over 120 s")))?
        .map_err(|e| LabError::Command(format!("{plugin_type}: {e}")))?;
    Ok(PluginRun {
        plugin: plugin_type.to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        status: out.status.code().unwrap_or(-1),
        elapsed: start.elapsed(),
    })
}

fn plugins(list: &Value) -> Result<Vec<Value>, LabError> {
    list["plugins"]
        .as_array()
        .cloned()
        .ok_or_else(|| LabError::State("the conflist has no plugins".into()))
}

fn plugin_type(p: &Value) -> Result<String, LabError> {
    p["type"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| LabError::State("a plugin has no type".into()))
}

fn failed(run: &PluginRun, command: &str) -> LabError {
    LabError::Cni {
        plugin: run.plugin.clone(),
        command: command.to_string(),
        output: run.stdout.trim().to_string(),
    }
}

/// ADD through the whole list; the final result.
pub async fn add(
    node_ns: &str,
    cni_bin: &Path,
    list: &Value,
    a: &Attachment<'_>,
) -> Result<Value, LabError> {
    let mut prev: Option<Value> = None;
    for plugin in plugins(list)? {
        let ty = plugin_type(&plugin)?;
        let conf = plugin_conf(list, &plugin, a, prev.as_ref());
        let run = exec(node_ns, cni_bin, "ADD", &ty, a, &conf).await?;
        if run.status != 0 {
            return Err(failed(&run, "ADD"));
        }
        prev = Some(
            serde_json::from_str(&run.stdout)
                .map_err(|e| LabError::State(format!("{ty} printed no JSON result: {e}")))?,
        );
    }
    prev.ok_or_else(|| LabError::State("the conflist has no plugins".into()))
}

/// DEL through the list in reverse, every plugin run even when one fails (the first
/// failure is reported).
pub async fn del(
    node_ns: &str,
    cni_bin: &Path,
    list: &Value,
    a: &Attachment<'_>,
    prev: Option<&Value>,
) -> Result<(), LabError> {
    let mut first_error = None;
    for plugin in plugins(list)?.iter().rev() {
        let ty = plugin_type(plugin)?;
        let conf = plugin_conf(list, plugin, a, prev);
        let run = exec(node_ns, cni_bin, "DEL", &ty, a, &conf).await?;
        if run.status != 0 && first_error.is_none() {
            first_error = Some(failed(&run, "DEL"));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The addresses in a CNI result.
pub fn result_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The CNI configuration list of a lab node.
pub fn conflist(agent_socket: &Path, mtu: u32) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "twill",
        "plugins": [
            { "type": "twill", "agent_socket": agent_socket, "mtu": mtu },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att<'a>(labels: &'a BTreeMap<String, String>, ports: &'a [PortMapping]) -> Attachment<'a> {
        Attachment {
            container_id: "lab-web",
            netns_path: "/run/netns/lab-web",
            ifname: "eth0",
            namespace: "shop",
            pod: "web",
            labels,
            ports,
        }
    }

    #[test]
    fn chained_plugins_get_name_version_prev_result_and_ports() {
        let list = conflist(Path::new("/run/a.sock"), 1500);
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let ports = [PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
        }];
        let a = att(&labels, &ports);
        let plugins = plugins(&list).unwrap();
        let first = plugin_conf(&list, &plugins[0], &a, None);
        assert_eq!(first["name"], "twill");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert!(first.get("prevResult").is_none());
        assert!(first.get("runtimeConfig").is_none());
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.244.0.5/32"}]});
        let second = plugin_conf(&list, &plugins[1], &a, Some(&prev));
        assert_eq!(second["prevResult"], prev);
        assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(second.get("capabilities").is_none());
        assert_eq!(result_ips(&prev), ["10.244.0.5"]);
        assert_eq!(
            cni_args(&a),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=lab-web;TWILL_POD_LABELS=app=web"
        );
    }
}
