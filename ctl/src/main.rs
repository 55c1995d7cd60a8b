//! `twillctl`, the calicoctl-like CLI.

use clap::Parser;

/// Twill's command-line tool.
#[derive(Parser, Debug)]
#[command(name = "twillctl", version)]
struct Args {}

fn main() {
    let _args = Args::parse();
}
