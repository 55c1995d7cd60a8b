//! The standalone BGP speaker (route reflector, lab peer).

use clap::Parser;

/// Twill's BGP speaker, standalone.
#[derive(Parser, Debug)]
#[command(name = "twill-bgpd", version)]
struct Args {
    /// The YAML configuration file.
    #[arg(long, env = "TWILL_BGPD_CONFIG")]
    config: std::path::PathBuf,
    /// Unix socket for the gRPC control API.
    #[arg(long, env = "TWILL_BGPD_API_SOCKET")]
    api_socket: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    eprintln!(
        "twill-bgpd: not built yet (config {})",
        args.config.display()
    );
    std::process::exit(64);
}
