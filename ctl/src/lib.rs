//! twillctl as a library: resource commands, IPAM, BGP status and the lab.
//!
//! `main.rs` only parses [`cli::Cli`] and runs it; everything else lives here so tests and
//! other crates (the lab, the end-to-end tests) reuse the same code.

pub mod bgp;
pub mod cli;
pub mod error;
pub mod ipam;
pub mod lab;
pub mod manifest;
pub mod output;
pub mod resources;

pub use cli::{Cli, Command};
pub use error::CtlError;
