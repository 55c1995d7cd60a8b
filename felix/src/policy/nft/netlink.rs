//! A minimal nfnetlink client for nf_tables: message and attribute writing, batches
//! (`NFNL_MSG_BATCH_BEGIN` … `END`, committed atomically by the kernel), error/ack
//! collection, and dumps. No read-back of the ruleset is ever needed to change it, which
//! is what makes a one-element update cost one small `sendmsg`.
//!
//! The socket is bound to the network namespace of the thread that opens it.

use std::os::fd::AsFd;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use nix::sys::socket::{setsockopt, sockopt};

pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_UNSPEC: u8 = 0;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// nf_tables message types.
pub mod msg {
    pub const NEWTABLE: u8 = 0;
    pub const DELTABLE: u8 = 2;
    pub const NEWCHAIN: u8 = 3;
    pub const GETCHAIN: u8 = 4;
    pub const DELCHAIN: u8 = 5;
    pub const NEWRULE: u8 = 6;
    pub const GETRULE: u8 = 7;
    pub const DELRULE: u8 = 8;
    pub const NEWSET: u8 = 9;
    pub const GETSET: u8 = 10;
    pub const DELSET: u8 = 11;
    pub const NEWSETELEM: u8 = 12;
    pub const DELSETELEM: u8 = 14;
    pub const NEWGEN: u8 = 15;
    pub const GETGEN: u8 = 16;
}

/// Kernel replies that say a batch or request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("netlink socket option: {0}")]
    Sockopt(#[from] nix::Error),
    #[error("nf_tables refused {what}: {errno}")]
    Refused { what: String, errno: std::io::Error },
    #[error("nf_tables did not acknowledge the batch")]
    NoAck,
    #[error("malformed netlink reply: {0}")]
    Malformed(&'static str),
}

/// Writes netlink messages with nested attributes into one buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl Writer {
    fn align(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// Starts a message: header plus `nfgenmsg`.
    pub fn begin(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
        self.align();
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched on end
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
    }

    /// Ends the innermost open message or nested attribute.
    pub fn end(&mut self) {
        if let Some(start) = self.open.pop() {
            let len = self.buf.len() - start;
            if self.open.is_empty() {
                self.buf[start..start + 4].copy_from_slice(&(len as u32).to_ne_bytes());
            } else {
                self.buf[start..start + 2].copy_from_slice(&(len as u16).to_ne_bytes());
            }
        }
        self.align();
    }

    pub fn attr(&mut self, ty: u16, data: &[u8]) {
        self.align();
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.align();
    }

    /// A NUL-terminated string.
    pub fn str(&mut self, ty: u16, s: &str) {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(ty, &data);
    }

    pub fn u32_be(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// Opens a nested attribute; close it with [`Writer::end`].
    pub fn nest(&mut self, ty: u16) {
        self.align();
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// A transaction: every message between batch begin and end commits at once or not at
/// all. Each message remembers what it was for, to name it in errors.
pub struct Batch {
    pub w: Writer,
    what: Vec<String>,
    first_seq: u32,
    messages: usize,
}

impl Batch {
    pub fn new(first_seq: u32) -> Self {
        let mut w = Writer::default();
        w.begin(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first_seq,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end();
        Batch {
            w,
            what: Vec::new(),
            first_seq,
            messages: 0,
        }
    }

    /// Starts an nf_tables message (family inet); `what` names it in errors.
    pub fn begin(&mut self, ty: u8, flags: u16, what: impl FnOnce() -> String) {
        self.messages += 1;
        let seq = self.first_seq.wrapping_add(self.messages as u32);
        self.what.push(what());
        self.w.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | u16::from(ty),
            NLM_F_REQUEST | flags,
            seq,
            NFPROTO_INET,
            0,
        );
    }

    /// Number of nf_tables messages so far.
    pub fn messages(&self) -> usize {
        self.messages
    }

    fn describe(&self, seq: u32) -> String {
        let index = seq.wrapping_sub(self.first_seq).wrapping_sub(1) as usize;
        self.what
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("message {seq}"))
    }

    /// The sequence number the next batch should start from.
    pub fn next_seq(&self) -> u32 {
        self.first_seq.wrapping_add(self.messages as u32 + 2)
    }

    fn finish(mut self) -> (Vec<u8>, Batch) {
        let end_seq = self.first_seq.wrapping_add(self.messages as u32 + 1);
        self.w.begin(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end_seq,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        self.w.end();
        let bytes = std::mem::take(&mut self.w.buf);
        (bytes, self)
    }
}

/// One parsed netlink message.
pub struct Message {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// After the nfgenmsg header (for nf_tables messages) or the raw payload (errors).
    pub payload: Vec<u8>,
}

/// Parses the messages of one `recv`.
fn parse_messages(buf: &[u8]) -> Result<Vec<Message>, NetlinkError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(
            buf[off..off + 4]
                .try_into()
                .map_err(|_| NetlinkError::Malformed("header"))?,
        ) as usize;
        if len < 16 || off + len > buf.len() {
            return Err(NetlinkError::Malformed("message length"));
        }
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        let flags = u16::from_ne_bytes([buf[off + 6], buf[off + 7]]);
        let seq = u32::from_ne_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
        out.push(Message {
            ty,
            flags,
            seq,
            payload: buf[off + 16..off + len].to_vec(),
        });
        off += (len + 3) & !3;
    }
    Ok(out)
}

/// `(type, value)` of each attribute in `data` (nested flag cleared).
pub fn attrs(data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= data.len() {
        let len = u16::from_ne_bytes([data[off], data[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([data[off + 2], data[off + 3]]) & NLA_TYPE_MASK;
        if len < 4 || off + len > data.len() {
            break;
        }
        out.push((ty, &data[off + 4..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// A NUL-terminated string attribute value.
pub fn attr_str(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

fn error_code(payload: &[u8]) -> Result<i32, NetlinkError> {
    payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .ok_or(NetlinkError::Malformed("error message"))
}

/// A netfilter netlink socket in the current network namespace.
pub struct NfSocket {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl NfSocket {
    pub fn open() -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Large batches go in one sendmsg; errors must not overflow the receive queue.
        let size = 64usize << 20;
        if setsockopt(&sock.as_fd(), sockopt::SndBufForce, &size).is_err() {
            setsockopt(&sock.as_fd(), sockopt::SndBuf, &size)?;
        }
        if setsockopt(&sock.as_fd(), sockopt::RcvBufForce, &size).is_err() {
            setsockopt(&sock.as_fd(), sockopt::RcvBuf, &size)?;
        }
        sock.set_cap_ack(true)?;
        sock.set_ext_ack(true)?;
        Ok(NfSocket {
            sock,
            seq: (std::process::id() << 8) ^ 0x5a5a,
            buf: vec![0; 1 << 20],
        })
    }

    /// A fresh batch numbered after the previous ones.
    pub fn batch(&mut self) -> Batch {
        let b = Batch::new(self.seq);
        self.seq = self.seq.wrapping_add(1 << 20);
        b
    }

    fn drain(&mut self) -> Result<(), NetlinkError> {
        // Stale replies of an earlier request must not be mistaken for this one's.
        self.sock.set_non_blocking(true)?;
        loop {
            match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.sock.set_non_blocking(false)?;
                    return Err(e.into());
                }
            }
        }
        self.sock.set_non_blocking(false)?;
        Ok(())
    }

    /// Sends a batch and waits for the kernel's verdict on it. The last nf_tables message
    /// asks for an ack; errors come for any message regardless.
    pub fn commit(&mut self, mut batch: Batch) -> Result<(), NetlinkError> {
        if batch.messages() == 0 {
            return Ok(());
        }
        // Ask for an ack of the last message: patch its flags in place.
        let last_seq = batch.first_seq.wrapping_add(batch.messages as u32);
        set_ack_on_last(&mut batch.w.buf);
        let (bytes, batch) = batch.finish();
        self.drain()?;
        self.sock.send(&bytes, 0)?;
        let mut acked = false;
        let mut first_error: Option<NetlinkError> = None;
        // The kernel handles the batch inside sendmsg, so every reply is queued already;
        // read until the ack of the last message (or the queue is empty).
        self.sock.set_non_blocking(true)?;
        let result = loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(NetlinkError::Io(e)),
            };
            if n == 0 {
                break Ok(());
            }
            for m in parse_messages(&self.buf[..n])? {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let code = error_code(&m.payload)?;
                if code == 0 {
                    if m.seq == last_seq {
                        acked = true;
                    }
                } else if first_error.is_none() {
                    first_error = Some(NetlinkError::Refused {
                        what: batch.describe(m.seq),
                        errno: std::io::Error::from_raw_os_error(-code),
                    });
                }
            }
            if acked {
                break Ok(());
            }
        };
        self.sock.set_non_blocking(false)?;
        result?;
        if let Some(e) = first_error {
            return Err(e);
        }
        if !acked {
            return Err(NetlinkError::NoAck);
        }
        Ok(())
    }

    /// Sends one request (`GET…`, possibly a dump) and collects the replies.
    pub fn request(
        &mut self,
        ty: u8,
        flags: u16,
        family: u8,
        attrs: impl FnOnce(&mut Writer),
    ) -> Result<Vec<Message>, NetlinkError> {
        self.drain()?;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut w = Writer::default();
        w.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | u16::from(ty),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            family,
            0,
        );
        attrs(&mut w);
        w.end();
        self.sock.send(w.bytes(), 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        // Bounded: a dump of a table felix owns ends long before this many reads.
        for _ in 0..1_000_000 {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            for m in parse_messages(&self.buf[..n])? {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = error_code(&m.payload)?;
                        if code != 0 {
                            return Err(NetlinkError::Refused {
                                what: format!("request type {ty}"),
                                errno: std::io::Error::from_raw_os_error(-code),
                            });
                        }
                        if !dump {
                            return Ok(out);
                        }
                    }
                    _ => {
                        let mut m = m;
                        // Strip the nfgenmsg header.
                        m.payload = m.payload.get(4..).map(<[u8]>::to_vec).unwrap_or_default();
                        out.push(m);
                    }
                }
            }
        }
        Err(NetlinkError::Malformed("endless reply"))
    }

    /// The ruleset generation: it changes on every commit by anyone in this namespace.
    pub fn generation(&mut self) -> Result<u32, NetlinkError> {
        let replies = self.request(msg::GETGEN, 0, NFPROTO_UNSPEC, |_| {})?;
        for m in replies {
            if m.ty & 0xff == u16::from(msg::NEWGEN) {
                for (ty, v) in attrs(&m.payload) {
                    if ty == 1 && v.len() == 4 {
                        return Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
                    }
                }
            }
        }
        Err(NetlinkError::Malformed("no generation id"))
    }
}

/// Sets `NLM_F_ACK` on the last message in `buf`.
fn set_ack_on_last(buf: &mut [u8]) {
    let mut off = 0;
    let mut last = None;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 {
            break;
        }
        last = Some(off);
        off += (len + 3) & !3;
    }
    if let Some(off) = last {
        let flags = u16::from_ne_bytes([buf[off + 6], buf[off + 7]]) | NLM_F_ACK;
        buf[off + 6..off + 8].copy_from_slice(&flags.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_are_length_patched_and_aligned() {
        let mut w = Writer::default();
        w.begin(0x0a00, NLM_F_REQUEST, 7, NFPROTO_INET, 0);
        w.str(1, "t");
        w.nest(2);
        w.u32_be(1, 5);
        w.end();
        w.end();
        let b = w.bytes();
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        let parsed = parse_messages(b).unwrap();
        assert_eq!(parsed[0].seq, 7);
        let a = attrs(&parsed[0].payload[4..]);
        assert_eq!(a[0], (1, &b"t\0"[..]));
        assert_eq!(a[1].0, 2);
        assert_eq!(attrs(a[1].1), vec![(1, &5u32.to_be_bytes()[..])]);
    }
}
