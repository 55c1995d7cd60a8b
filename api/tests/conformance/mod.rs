//! Shared conformance suite (see `suite.rs`) and the fake API server the Kubernetes
//! backend's run talks to.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fake_apiserver;
pub mod suite;
