//! The short, stable hash that names policy objects (sets, chains, rule ids): 12 hex
//! digits of SHA-256, short enough for ipset's 31 and iptables' 28 characters.

use sha2::{Digest, Sha256};

/// 12 hex digits of SHA-256 of `text`.
pub fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..6])
}
