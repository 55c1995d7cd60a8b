//! The runtime pieces every Twill binary shares, so that each has them once:
//! [`telemetry`] (one HTTP server for `/livez`, `/readyz` and `/metrics` over one
//! registry per process), [`task`] (task handles that cancel on drop) and [`backoff`]
//! (bounded exponential back-off for retry loops).

pub mod backoff;
pub mod task;
pub mod telemetry;
