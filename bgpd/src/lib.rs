//! Twill's BGP speaker: wire codec, session FSM, RIBs, best path and ECMP, filters, route
//! reflection and kernel route sync. Embedded in felix; also runs standalone.

pub mod packet;
