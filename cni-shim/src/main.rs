//! `twill`, the CNI plugin: reads the CNI environment and configuration, forwards the
//! request to felix over its unix socket, prints the CNI result or error object.

use std::io::{Read, Write};

fn main() {
    let mut stdin = Vec::new();
    // A runtime always writes the configuration; a read error leaves it empty, which the
    // configuration check then reports as undecodable. One byte past the limit is enough
    // to refuse an oversized one without reading it all.
    let limit = twill_cni::config::MAX_CONFIG_BYTES as u64 + 1;
    let _ = std::io::stdin().take(limit).read_to_end(&mut stdin);
    let out = twill_cni_plugin::run::run(|k| std::env::var(k).ok(), &stdin);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.stdout.as_bytes());
    let _ = stdout.flush();
    std::process::exit(out.status);
}
