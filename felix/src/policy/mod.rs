//! Network policy for felix (placeholder doc, rewritten below).

pub mod calc;
pub mod compile;
pub mod inputs;
pub mod ir;
pub mod labels;
pub mod names;
pub mod nft;
