//! The iptables dataplane (`--dataplane iptables`): the same IR as nftables, rendered as
//! `iptables-restore`/`ip6tables-restore` input for chains prefixed `twill-` and
//! `ipset restore` input for memberships.

pub mod apply;
pub mod render;
