//! Bidirectional Forwarding Detection (RFC 5880, single-hop RFC 5881, multi-hop RFC 5883)
//! for the speaker's peers, built like its BGP: a pure codec (`packet`), a sans-IO state
//! machine per session (`session`) and a thin driver that owns the sockets and timers
//! (`driver`).
//!
//! ```text
//!   speaker owner ──BfdCmd (peer set, status)──▶ bfd task ──UDP 3784/4784──▶ peers
//!                 ◀──BfdEvent (state changes)───  │ ▲
//!                                                 ▼ │ one receive socket per port and
//!                                          Session ×N  family; one send socket per session
//! ```

pub mod driver;
pub mod net;
pub mod packet;
pub mod session;

pub use driver::{Bfd, BfdEvent, PeerBfd};
pub use packet::{ControlPacket, DecodeError, Diag, State};
pub use session::{Discard, Output, Session, SessionConfig, SessionStatus};

#[cfg(test)]
mod tests;
