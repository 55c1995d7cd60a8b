//! The nftables dataplane: [`model`] (the table as data, with its `nft` text), [`render`]
//! (IR → model), [`encode`] and [`netlink`] (model → nf_tables messages over netlink, no
//! `nft` process and no ruleset read-back), [`apply`] (full and incremental transactions,
//! drift check).

pub mod apply;
pub mod encode;
pub mod model;
pub mod monitor;
pub mod netlink;
pub mod render;
