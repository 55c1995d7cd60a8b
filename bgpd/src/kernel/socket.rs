//! The pipelined rtnetlink writer: one `NETLINK_ROUTE` socket, many route messages per
//! `sendmsg`, and only the last of each batch asks for an ACK.
//!
//! Why this is correct: the kernel handles every message of a `sendmsg` in order, inside the
//! call, and always answers a failed request with an `NLMSG_ERROR` even without `NLM_F_ACK`.
//! So when `sendmsg` returns, the replies of the whole batch are already queued on our socket:
//! the errors of failed routes (in order), then the ACK (or error) of the last one. Reading
//! with `MSG_DONTWAIT` can therefore never wait. If the receive queue overflowed (`ENOBUFS`)
//! or the last reply is missing, the batch is sent again in halves: replace and delete are
//! idempotent (a delete of a route already gone is success).
//!
//! This file must never block anywhere but on a dump, and is used from one thread only.

use std::io;

use netlink_packet_route::AddressFamily;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::message::{
    self, NLMSG_DONE, NLMSG_ERROR, RTM_NEWROUTE, append, flags, parse_error, route_message,
};
use super::{ChangeKind, KernelConfig, KernelRoute, RouteChange, RouteFailure};

/// Receive buffer asked for (capped by `net.core.rmem_max`); error replies must fit in it.
const RCVBUF_WANTED: usize = 4 << 20;
/// Room for one datagram: dump parts are at most 32 KiB, so this never truncates.
const RX_DATAGRAM: usize = 256 << 10;
/// Bytes per `sendmsg`, well under the default socket send buffer (208 KiB).
const MAX_BATCH_BYTES: usize = 64 << 10;
/// What one queued error reply costs in the receive buffer (its truesize), with margin.
const ERROR_TRUESIZE: usize = 2048;
/// `NLM_F_DUMP_INTR`: the table changed while dumping; the dump is retried.
const NLM_F_DUMP_INTR: u16 = 0x10;

/// One netlink socket, in the network namespace of the thread that opened it.
pub(crate) struct RouteSocket {
    sock: Socket,
    cfg: KernelConfig,
    seq: u32,
    tx: Vec<u8>,
    rx: Vec<u8>,
    max_batch: usize,
}

/// A batch attempt lost replies: resend it in smaller parts.
struct Lost;

impl RouteSocket {
    pub(crate) fn open(cfg: KernelConfig) -> io::Result<Self> {
        Self::open_sized(cfg, RCVBUF_WANTED, None)
    }

    /// `open` with a chosen receive buffer and batch size (tests use a tiny buffer to make
    /// replies overflow and exercise the resend path).
    fn open_sized(cfg: KernelConfig, rcvbuf: usize, batch: Option<usize>) -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // All optional: without them we get plainer error texts and bigger replies.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_netlink_get_strict_chk(true);
        let _ = sock.set_rx_buf_sz(rcvbuf);
        let rcvbuf = sock.get_rx_buf_sz().unwrap_or(212_992);
        // Worst case every route of a batch fails: all of its error replies must fit.
        let max_batch = batch.unwrap_or((rcvbuf / ERROR_TRUESIZE).clamp(16, 2048));
        Ok(Self {
            sock,
            cfg,
            seq: 0,
            tx: Vec::with_capacity(MAX_BATCH_BYTES + 4096),
            rx: Vec::with_capacity(RX_DATAGRAM),
            max_batch,
        })
    }

    /// Applies `changes` in pipelined batches. Per-route failures are returned, never
    /// stop the batch; an `Err` means the socket itself failed.
    pub(crate) fn apply(&mut self, changes: &[RouteChange]) -> io::Result<Vec<RouteFailure>> {
        let mut failures = Vec::new();
        let mut valid: Vec<&RouteChange> = Vec::with_capacity(changes.len());
        for change in changes {
            match message::validate(change) {
                Ok(()) => valid.push(change),
                Err(reason) => failures.push(RouteFailure::new(change, libc::EINVAL, reason)),
            }
        }
        let mut start = 0;
        while start < valid.len() {
            let end = (start + self.max_batch).min(valid.len());
            self.apply_split(&valid[start..end], &mut failures, 0)?;
            start = end;
        }
        Ok(failures)
    }

    fn apply_split(
        &mut self,
        batch: &[&RouteChange],
        failures: &mut Vec<RouteFailure>,
        depth: u32,
    ) -> io::Result<()> {
        match self.send_batch(batch)? {
            Ok(found) => {
                failures.extend(found);
                Ok(())
            }
            Err(Lost) if batch.len() > 1 && depth < 16 => {
                let (a, b) = batch.split_at(batch.len() / 2);
                self.apply_split(a, failures, depth + 1)?;
                self.apply_split(b, failures, depth + 1)
            }
            Err(Lost) => Err(io::Error::other(
                "netlink replies lost even for a single route",
            )),
        }
    }

    /// Sends as many of `batch` per `sendmsg` as fit in `MAX_BATCH_BYTES`, then collects
    /// the replies of each send.
    fn send_batch(
        &mut self,
        batch: &[&RouteChange],
    ) -> io::Result<Result<Vec<RouteFailure>, Lost>> {
        let mut failures = Vec::new();
        let mut i = 0;
        while i < batch.len() {
            self.tx.clear();
            let first_seq = self.seq.wrapping_add(1);
            let first = i;
            loop {
                let change = batch[i];
                let at = self.tx.len();
                self.seq = self.seq.wrapping_add(1);
                append(
                    &mut self.tx,
                    route_message(&self.cfg, change),
                    flags(change, false),
                    self.seq,
                );
                i += 1;
                if i == batch.len() || self.tx.len() >= MAX_BATCH_BYTES {
                    // The last message of the send asks for the ACK that ends the batch.
                    set_ack_flag(&mut self.tx[at..]);
                    break;
                }
            }
            let part = &batch[first..i];
            self.drain_stale();
            if let Err(e) = self.sock.send(&self.tx, 0) {
                if e.raw_os_error() == Some(libc::ENOBUFS)
                    || e.raw_os_error() == Some(libc::EMSGSIZE)
                {
                    return Ok(Err(Lost));
                }
                return Err(e);
            }
            match self.collect(first_seq, part)? {
                Ok(found) => failures.extend(found),
                Err(Lost) => return Ok(Err(Lost)),
            }
        }
        Ok(Ok(failures))
    }

    /// Reads the replies of one send: errors for any of `part`, up to the reply of its
    /// last message. Never waits (see the module doc).
    fn collect(
        &mut self,
        first_seq: u32,
        part: &[&RouteChange],
    ) -> io::Result<Result<Vec<RouteFailure>, Lost>> {
        let last_seq = first_seq.wrapping_add(part.len() as u32 - 1);
        let mut failures = Vec::new();
        loop {
            self.rx.clear();
            match self.sock.recv(&mut self.rx, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Err(Lost)),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.drain_stale();
                    return Ok(Err(Lost));
                }
                Err(e) => return Err(e),
            }
            let mut done = false;
            for msg in message::messages(&self.rx) {
                if msg.kind != NLMSG_ERROR {
                    continue;
                }
                let idx = msg.seq.wrapping_sub(first_seq) as usize;
                let Some(change) = part.get(idx) else {
                    continue; // a reply to an earlier, abandoned attempt
                };
                let (errno, text) = parse_error(&msg);
                let gone = errno == libc::ESRCH && matches!(change, RouteChange::Delete(_));
                if errno != 0 && !gone {
                    let reason = text.unwrap_or_default();
                    failures.push(RouteFailure::new(change, errno, reason));
                }
                if msg.seq == last_seq {
                    done = true;
                }
            }
            if done {
                return Ok(Ok(failures));
            }
        }
    }

    /// Discards whatever is queued (replies to an abandoned attempt).
    fn drain_stale(&mut self) {
        loop {
            self.rx.clear();
            match self.sock.recv(&mut self.rx, libc::MSG_DONTWAIT) {
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(_) => return,
            }
        }
    }

    /// The outgoing interface of the kernel's route to `addr` (`ip route get`), `None` when
    /// there is no route.
    pub(crate) fn oif_for(&mut self, addr: std::net::IpAddr) -> io::Result<Option<u32>> {
        self.drain_stale();
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.sock.send(&message::route_get_request(addr, seq), 0)?;
        loop {
            self.rx.clear();
            self.sock.recv(&mut self.rx, 0)?;
            for msg in message::messages(&self.rx) {
                if msg.seq != seq {
                    continue;
                }
                match msg.kind {
                    RTM_NEWROUTE => return Ok(message::parse_oif(msg.payload)),
                    NLMSG_ERROR => match parse_error(&msg).0 {
                        0 => {}
                        libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENOENT => return Ok(None),
                        e => return Err(io::Error::from_raw_os_error(e)),
                    },
                    _ => {}
                }
            }
        }
    }

    /// All routes of ours (table, protocol, metric; unicast) in both families.
    pub(crate) fn dump(&mut self) -> io::Result<Vec<KernelRoute>> {
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match self.dump_family(family, &mut routes)? {
                    true => break,
                    false if attempts < 5 => continue,
                    false => return Err(io::Error::other("route dump kept being interrupted")),
                }
            }
        }
        Ok(routes)
    }

    /// One family's dump, appended to `out`; `false` if the kernel flagged it interrupted
    /// (then `out` is restored and the caller retries).
    fn dump_family(
        &mut self,
        family: AddressFamily,
        out: &mut Vec<KernelRoute>,
    ) -> io::Result<bool> {
        let before = out.len();
        self.drain_stale();
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = message::dump_request(&self.cfg, family, seq);
        self.sock.send(&req, 0)?;
        let mut interrupted = false;
        loop {
            self.rx.clear();
            self.sock.recv(&mut self.rx, 0)?;
            for msg in message::messages(&self.rx) {
                if msg.seq != seq {
                    continue;
                }
                interrupted |= msg.flags & NLM_F_DUMP_INTR != 0;
                match msg.kind {
                    RTM_NEWROUTE => out.extend(message::parse_route(&self.cfg, msg.payload)),
                    NLMSG_DONE => {
                        if interrupted {
                            out.truncate(before);
                        }
                        return Ok(!interrupted);
                    }
                    NLMSG_ERROR => {
                        let (errno, text) = parse_error(&msg);
                        // A table that does not exist yet holds no routes of ours.
                        if errno == libc::ENOENT {
                            return Ok(true);
                        }
                        let e = io::Error::from_raw_os_error(errno);
                        return Err(match text {
                            Some(t) => io::Error::new(e.kind(), format!("{e}: {t}")),
                            None => e,
                        });
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Sets `NLM_F_ACK` in the header of the framed message at the start of `msg`.
fn set_ack_flag(msg: &mut [u8]) {
    let flags = u16::from_ne_bytes([msg[6], msg[7]]) | rtnetlink::packet_core::NLM_F_ACK;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
}

impl RouteFailure {
    fn new(change: &RouteChange, errno: i32, message: String) -> Self {
        let os = io::Error::from_raw_os_error(errno).to_string();
        Self {
            kind: match change {
                RouteChange::Replace(_) => ChangeKind::Replace,
                RouteChange::Delete(_) => ChangeKind::Delete,
            },
            prefix: change.prefix(),
            errno,
            message: if message.is_empty() {
                os
            } else {
                format!("{os}: {message}")
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_harness::netns::Netns;

    fn bad_routes(n: u32) -> Vec<RouteChange> {
        (0..n)
            .map(|i| {
                let prefix = format!("10.244.{}.{}/32", i / 256, i % 256)
                    .parse()
                    .unwrap();
                RouteChange::Replace(KernelRoute::new(
                    prefix,
                    vec!["203.0.113.1".parse::<std::net::IpAddr>().unwrap()],
                ))
            })
            .collect()
    }

    #[test]
    fn overflowing_replies_are_recovered_by_resending_in_halves() {
        let ns = Netns::new("tw-k-ovf").unwrap();
        ns.veth(&["192.0.2.1/24"], &ns, &[]).unwrap();
        let (failures, routes) = ns
            .run(|| {
                // A minimal receive buffer with a batch far too big for it: the error replies
                // of one send overflow it (ENOBUFS), so batches are lost and resent.
                let mut sock =
                    RouteSocket::open_sized(KernelConfig::default(), 0, Some(2000)).unwrap();
                let mut changes = bad_routes(1500);
                let good = KernelRoute::new(
                    "10.244.100.0/24".parse().unwrap(),
                    vec!["192.0.2.2".parse::<std::net::IpAddr>().unwrap()],
                );
                changes.push(RouteChange::Replace(good));
                let failures = sock.apply(&changes).unwrap();
                (failures, sock.dump().unwrap())
            })
            .unwrap();
        assert_eq!(failures.len(), 1500);
        let mut prefixes: Vec<_> = failures.iter().map(|f| f.prefix).collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(prefixes.len(), 1500, "each refused route reported once");
        assert_eq!(routes.len(), 1);
    }
}
