//! Notifications of nf_tables changes (the `NFNLGRP_NFTABLES` multicast group, what
//! `nft monitor` reads), so that felix notices at once when someone flushes or deletes its
//! table, or edits a chain in it, instead of at the next periodic resync.
//!
//! Only which table changed matters: the reconciler then asks the engine whether the
//! kernel still holds what it applied (cheap when nothing of ours changed) and rebuilds
//! when it does not. felix's own changes come back as notifications too; they cost one
//! such check, never a write, so they cannot loop.

use std::os::fd::AsFd;

use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use super::netlink::{NFNL_SUBSYS_NFTABLES, attr_str, attrs};

/// The nf_tables multicast group (`NFNLGRP_NFTABLES` in `linux/netfilter/nfnetlink.h`).
pub const NFNLGRP_NFTABLES: u32 = 7;

/// Which tables a notification is about: `None` for messages without one (a new
/// generation) or that are not nf_tables messages.
pub fn table_of(ty: u16, payload: &[u8]) -> Option<String> {
    if ty >> 8 != NFNL_SUBSYS_NFTABLES {
        return None;
    }
    // After the 4-byte nfgenmsg, the first attribute of every table-scoped message
    // (table, chain, rule, set, element list, object, flowtable) is the table's name.
    let body = payload.get(4..)?;
    attrs(body)
        .into_iter()
        .find(|(t, _)| *t == 1)
        .map(|(_, v)| attr_str(v))
}

/// Each nf_tables notification's table, from one datagram.
fn tables(buf: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        out.push(table_of(ty, &buf[off + 16..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// Watches nf_tables in the current network namespace on a thread of its own and sends
/// `msg` on `tx` for each datagram that touches a table `wanted` accepts (a receive queue
/// overflow counts as a touch: something was missed). Stops when `tx` closes.
pub fn watch<T: Clone + Send + 'static>(
    wanted: impl Fn(&str) -> bool + Send + 'static,
    tx: tokio::sync::mpsc::UnboundedSender<T>,
    msg: T,
) -> std::io::Result<()> {
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    sock.add_membership(NFNLGRP_NFTABLES)?;
    // Wake up once a second to notice that nobody listens any more.
    setsockopt(&sock.as_fd(), sockopt::ReceiveTimeout, &TimeVal::new(1, 0))
        .map_err(std::io::Error::from)?;
    std::thread::Builder::new()
        .name("twill-nft-monitor".to_owned())
        .spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while !tx.is_closed() {
                let touched = match sock.recv(&mut &mut buf[..], 0) {
                    Ok(n) => tables(&buf[..n])
                        .iter()
                        .any(|t| t.as_deref().is_some_and(&wanted)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => false,
                    // ENOBUFS: notifications were dropped; assume ours were among them.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "nftables monitor stopped");
                        return;
                    }
                };
                if touched && tx.send(msg.clone()).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ty: u16, table: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        let name = format!("{table}\0");
        let len = 4 + name.len();
        attr.extend_from_slice(&(len as u16).to_ne_bytes());
        attr.extend_from_slice(&1u16.to_ne_bytes());
        attr.extend_from_slice(name.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = Vec::new();
        let total = 16 + 4 + attr.len();
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&[1, 0, 0, 0]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn notifications_name_their_table() {
        let del_rule = (NFNL_SUBSYS_NFTABLES << 8) | 8;
        let mut buf = message(del_rule, "twill");
        buf.extend(message((NFNL_SUBSYS_NFTABLES << 8) | 2, "filter"));
        assert_eq!(
            tables(&buf),
            vec![Some("twill".to_string()), Some("filter".to_string())]
        );
        // Another subsystem is not ours.
        assert_eq!(tables(&message(1 << 8, "twill")), vec![None]);
    }
}
