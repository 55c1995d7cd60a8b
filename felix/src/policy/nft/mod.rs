//! The nftables dataplane (placeholder).
pub mod apply;
pub mod encode;
pub mod model;
pub mod netlink;
pub mod render;
