//! `twill-ipam-controller`: carves per-node blocks, releases the blocks of deleted nodes,
//! collects leaked addresses.

use clap::Parser;

/// Twill's cluster-wide IPAM controller.
#[derive(Parser, Debug)]
#[command(name = "twill-ipam-controller", version)]
struct Args {
    /// Datastore: kubernetes or etcd.
    #[arg(long, env = "TWILL_DATASTORE", default_value = "kubernetes")]
    datastore: String,
    /// etcd endpoints (comma-separated URLs).
    #[arg(long, env = "TWILL_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
}

fn main() {
    let _args = Args::parse();
    eprintln!("twill-ipam-controller: not built yet");
    std::process::exit(64);
}
