//! Twill's BGP speaker: wire codec, session FSM, RIBs, best path and ECMP, filters, route
//! reflection and kernel route sync. Embedded in felix; also runs standalone.
//!
//! The embeddable API is [`speaker::Speaker`]: start it with a [`speaker::SpeakerConfig`],
//! change peers live, originate and withdraw prefixes, subscribe to events.

pub mod bfd;
pub mod config;
pub mod control;
pub mod fsm;
pub mod kernel;
pub mod metrics;
pub mod packet;
pub mod policy;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod task;
pub mod unnumbered;

pub use speaker::{Speaker, SpeakerConfig};
