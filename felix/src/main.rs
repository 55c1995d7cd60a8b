//! `twill-felix`, the per-node agent.

use clap::Parser;

/// Twill's per-node agent.
#[derive(Parser, Debug)]
#[command(name = "twill-felix", version)]
struct Args {
    /// Datastore: kubernetes or etcd.
    #[arg(long, env = "TWILL_DATASTORE", default_value = "kubernetes")]
    datastore: String,
    /// etcd endpoints (comma-separated URLs).
    #[arg(long, env = "TWILL_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// This node's name (default: hostname).
    #[arg(long, env = "TWILL_NODE_NAME")]
    node_name: Option<String>,
    /// Unix socket for the CNI shim and the BGP control API.
    #[arg(
        long,
        env = "TWILL_AGENT_SOCKET",
        default_value = "/var/run/twill/agent.sock"
    )]
    agent_socket: std::path::PathBuf,
}

fn main() {
    let _args = Args::parse();
    eprintln!("twill-felix: the node agent is not built yet");
    std::process::exit(64);
}
