//! Twill's IPAM: pools, per-node blocks, addresses, handles, GC rules.
