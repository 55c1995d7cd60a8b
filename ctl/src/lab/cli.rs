//! `twillctl lab ...`: the command line of the lab (docs/ARCHITECTURE.md "The lab").

use std::collections::BTreeMap;
use std::io::Write;

use super::cni::PortMapping;
use super::relay::RelayArgs;
use super::tor::TorKind;
use super::{Lab, LabError, LabSpec, PodSpec};

/// `twillctl lab ...`.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// The lab's name (prefix of its namespaces); several labs can coexist.
    #[arg(long, global = true, default_value = "twill")]
    pub name: String,
    #[command(subcommand)]
    pub command: LabCommand,
}

/// The lab's subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Build the lab (etcd, N nodes running twill-felix, a ToR router, pods) and leave it running.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// The top-of-rack router.
        #[arg(long, value_enum, default_value_t)]
        tor: TorKind,
        /// Pods to add on every node.
        #[arg(long, default_value_t = 2)]
        pods_per_node: usize,
        /// felix's policy dataplane.
        #[arg(long, default_value = "nftables")]
        dataplane: String,
        /// Skip the ping matrix.
        #[arg(long)]
        no_ping: bool,
        /// BFD at 100 ms × 3 on every BGP session (mesh and ToR): a dead link is seen
        /// in about 300 ms instead of the 90 s hold time.
        #[arg(long)]
        bfd: bool,
    },
    /// Remove everything the lab made.
    Down,
    /// Print nodes, blocks, sessions, routes, pods and the ping matrix.
    Status {
        /// Skip the ping matrix.
        #[arg(long)]
        no_ping: bool,
    },
    /// Print the environment that points twillctl at the lab (`eval "$(twillctl lab env)"`).
    Env {
        /// Whose agent socket `TWILL_SOCKET` names.
        #[arg(long, default_value_t = 1)]
        node: usize,
    },
    /// Add or delete pods.
    #[command(subcommand)]
    Pod(PodCommand),
    /// Run a command in a pod's network namespace: `lab exec POD -- CMD...`.
    Exec {
        pod: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// (internal) The datastore relay process.
    #[command(hide = true)]
    Relay(RelayArgs),
    /// (internal) Restarts the lab's processes when they die, with back-off.
    #[command(hide = true)]
    Supervise,
}

/// `lab pod ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PodCommand {
    /// Add a pod through the CNI plugin and print its addresses.
    Add {
        pod: String,
        /// The node (1-based).
        #[arg(long)]
        node: usize,
        /// Kubernetes namespace of the pod.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Labels, `k=v,k2=v2`.
        #[arg(long, default_value = "")]
        labels: String,
        /// Publish a port on the node: `HOST:CONTAINER[/tcp|udp]` (portmap plugin).
        #[arg(long = "port")]
        ports: Vec<String>,
    },
    /// Delete a pod through the CNI plugin.
    Del { pod: String },
}

/// Parses `k=v,k2=v2`.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, LabError> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| LabError::Usage(format!("--labels: {pair:?} is not key=value")))?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(labels)
}

/// Parses `HOST:CONTAINER[/proto]`.
pub fn parse_port(text: &str) -> Result<PortMapping, LabError> {
    let bad = || LabError::Usage(format!("--port {text:?}: use HOST:CONTAINER[/tcp|udp]"));
    let (ports, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let (h, c) = ports.split_once(':').ok_or_else(bad)?;
    if proto != "tcp" && proto != "udp" {
        return Err(bad());
    }
    Ok(PortMapping {
        host_port: h.parse().map_err(|_| bad())?,
        container_port: c.parse().map_err(|_| bad())?,
        protocol: proto.to_string(),
    })
}

fn w(e: std::io::Error) -> LabError {
    LabError::Command(format!("writing output: {e}"))
}

impl LabArgs {
    /// Runs the subcommand; returns the exit status.
    pub async fn run(&self, out: &mut dyn Write) -> Result<i32, LabError> {
        let name = &self.name;
        match &self.command {
            LabCommand::Up {
                nodes,
                tor,
                pods_per_node,
                dataplane,
                no_ping,
                bfd,
            } => {
                let mut spec = LabSpec::new(name, *nodes)?;
                spec.tor = *tor;
                spec.pods_per_node = *pods_per_node;
                spec.dataplane = dataplane.clone();
                spec.bfd = *bfd;
                let lab = Lab::up(&spec).await?;
                lab.picture(out, !no_ping).await?;
                writeln!(
                    out,
                    "\nThe lab is running. Try:\n  eval \"$(twillctl lab env --name {name})\"; \
                     twillctl get ippools; twillctl node status\n  twillctl lab pod add web \
                     --node 1 --name {name}\n  twillctl lab down --name {name}"
                )
                .map_err(w)?;
                Ok(0)
            }
            LabCommand::Down => {
                Lab::down(name)?;
                writeln!(out, "lab {name} removed").map_err(w)?;
                Ok(0)
            }
            LabCommand::Status { no_ping } => {
                Lab::attach(name)?.picture(out, !no_ping).await?;
                Ok(0)
            }
            LabCommand::Env { node } => {
                for (k, v) in Lab::attach(name)?.env(*node)? {
                    writeln!(out, "export {k}={v}").map_err(w)?;
                }
                Ok(0)
            }
            LabCommand::Pod(PodCommand::Add {
                pod,
                node,
                namespace,
                labels,
                ports,
            }) => {
                let spec = PodSpec {
                    name: pod.clone(),
                    node: *node,
                    namespace: namespace.clone(),
                    labels: parse_labels(labels)?,
                    ports: ports
                        .iter()
                        .map(|p| parse_port(p))
                        .collect::<Result<_, _>>()?,
                };
                let p = Lab::attach(name)?.add_pod(&spec).await?;
                writeln!(out, "{} {}", p.name, p.ips.join(" ")).map_err(w)?;
                Ok(0)
            }
            LabCommand::Pod(PodCommand::Del { pod }) => {
                Lab::attach(name)?.del_pod(pod).await?;
                writeln!(out, "pod {pod} deleted").map_err(w)?;
                Ok(0)
            }
            LabCommand::Exec { pod, command } => {
                let o = Lab::attach(name)?.exec(pod, command)?;
                out.write_all(&o.stdout).map_err(w)?;
                std::io::stderr().write_all(&o.stderr).map_err(w)?;
                Ok(o.status.code().unwrap_or(1))
            }
            LabCommand::Relay(args) => {
                super::relay::run(args)?;
                Ok(0)
            }
            LabCommand::Supervise => {
                super::supervise::run(name)?;
                Ok(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_ports_parse_or_name_the_flag() {
        assert_eq!(
            parse_labels("app=web, tier=front").unwrap(),
            BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "front".to_string())
            ])
        );
        assert!(parse_labels("").unwrap().is_empty());
        assert!(
            parse_labels("app")
                .unwrap_err()
                .to_string()
                .contains("--labels")
        );
        let p = parse_port("8080:80").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol.as_str()),
            (8080, 80, "tcp")
        );
        assert_eq!(parse_port("53:53/udp").unwrap().protocol, "udp");
        assert!(parse_port("80").unwrap_err().to_string().contains("--port"));
        assert!(parse_port("1:2/sctp").is_err());
    }
}
