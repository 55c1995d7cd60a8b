//! The kernel-sync worker: one OS thread that owns the netlink socket, coalesces the queued
//! changes (last change per prefix wins) and applies them in pipelined batches.
//!
//! ```text
//!  KernelSync::submit ──Command::Submit──▶ ┐
//!  KernelSync::flush  ──Command::Flush───▶ ├─ mpsc (unbounded) ─▶ worker thread ─▶ RouteSocket
//!  KernelSync::reconcile / routes ───────▶ ┘        replies on oneshot channels ◀─┘
//! ```
//!
//! A thread, not a task: the kernel does the route work inside our `sendmsg`, so applying a
//! batch is CPU time that must not stall an async executor. The thread ends when the last
//! `KernelSync` handle is dropped; it never touches routes that are not ours.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

use super::diff::diff;
use super::socket::RouteSocket;
use super::{KernelError, KernelRoute, ReconcileReport, RouteChange, RouteFailure, Stats};

/// Per-route failures kept for the next `flush` (older ones are counted, not kept).
const MAX_KEPT_FAILURES: usize = 10_000;

pub(crate) enum Command {
    Submit(Vec<RouteChange>),
    Flush(oneshot::Sender<Result<(), KernelError>>),
    Reconcile(
        Vec<KernelRoute>,
        oneshot::Sender<Result<ReconcileReport, KernelError>>,
    ),
    Routes(oneshot::Sender<Result<Vec<KernelRoute>, KernelError>>),
    Oif(
        std::net::IpAddr,
        oneshot::Sender<Result<Option<u32>, KernelError>>,
    ),
}

pub(crate) struct Worker {
    sock: RouteSocket,
    stats: Arc<Stats>,
    pending: HashMap<IpNet, RouteChange>,
    failures: Vec<RouteFailure>,
    dropped_failures: usize,
    socket_error: Option<io::Error>,
    /// Changes received this round (taken off the backlog once the round starts).
    received: usize,
}

impl Worker {
    pub(crate) fn new(sock: RouteSocket, stats: Arc<Stats>) -> Self {
        Self {
            sock,
            stats,
            pending: HashMap::new(),
            failures: Vec::new(),
            dropped_failures: 0,
            socket_error: None,
            received: 0,
        }
    }

    pub(crate) fn dump(&mut self) -> Result<Vec<KernelRoute>, KernelError> {
        self.sock.dump().map_err(|source| KernelError::Netlink {
            op: "dump routes",
            source,
        })
    }

    /// Serves commands until every handle is gone.
    pub(crate) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        while let Some(cmd) = rx.blocking_recv() {
            self.handle(cmd);
            // Everything queued meanwhile joins this round: that is the coalescing.
            while let Ok(cmd) = rx.try_recv() {
                self.handle(cmd);
            }
            // Taken up: the submitter may queue the next batch while this one is applied,
            // so the socket never waits for it.
            let taken = std::mem::take(&mut self.received);
            self.stats.backlog.fetch_sub(taken, Ordering::Relaxed);
            self.stats.applied.notify_one();
            self.apply_pending();
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(changes) => {
                self.received += changes.len();
                for change in changes {
                    let change = change.normalised();
                    self.pending.insert(change.prefix(), change);
                }
            }
            Command::Flush(reply) => {
                self.apply_pending();
                let _ = reply.send(self.take_outcome());
            }
            Command::Reconcile(desired, reply) => {
                self.apply_pending();
                let _ = reply.send(self.reconcile(desired));
            }
            Command::Routes(reply) => {
                self.apply_pending();
                let _ = reply.send(self.dump());
            }
            Command::Oif(addr, reply) => {
                let r = self
                    .sock
                    .oif_for(addr)
                    .map_err(|source| KernelError::Netlink {
                        op: "route lookup",
                        source,
                    });
                let _ = reply.send(r);
            }
        }
    }

    fn apply_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let changes: Vec<RouteChange> = self.pending.drain().map(|(_, c)| c).collect();
        match self.apply(&changes) {
            Ok(failures) => {
                let room = MAX_KEPT_FAILURES.saturating_sub(self.failures.len());
                self.dropped_failures += failures.len().saturating_sub(room);
                self.failures.extend(failures.into_iter().take(room));
            }
            Err(e) => {
                tracing::error!(error = %e, routes = changes.len(), "kernel route batch failed");
                self.socket_error = Some(e);
            }
        }
    }

    /// Applies changes, counts them, logs failures.
    fn apply(&mut self, changes: &[RouteChange]) -> io::Result<Vec<RouteFailure>> {
        let failures = self.sock.apply(changes)?;
        let deletes = changes
            .iter()
            .filter(|c| matches!(c, RouteChange::Delete(_)))
            .count();
        let failed_deletes = failures
            .iter()
            .filter(|f| f.kind == super::ChangeKind::Delete)
            .count();
        let s = &self.stats;
        s.batches.fetch_add(1, Ordering::Relaxed);
        s.deleted
            .fetch_add((deletes - failed_deletes) as u64, Ordering::Relaxed);
        s.replaced.fetch_add(
            (changes.len() - deletes - (failures.len() - failed_deletes)) as u64,
            Ordering::Relaxed,
        );
        s.failed.fetch_add(failures.len() as u64, Ordering::Relaxed);
        for f in failures.iter().take(20) {
            tracing::warn!(prefix = %f.prefix, kind = ?f.kind, error = %f.message, "kernel refused route");
        }
        if failures.len() > 20 {
            tracing::warn!(more = failures.len() - 20, "kernel refused more routes");
        }
        Ok(failures)
    }

    /// The result a `flush` reports: a socket failure first, else the routes refused since
    /// the previous flush.
    fn take_outcome(&mut self) -> Result<(), KernelError> {
        if let Some(source) = self.socket_error.take() {
            return Err(KernelError::Netlink {
                op: "apply routes",
                source,
            });
        }
        if self.failures.is_empty() {
            return Ok(());
        }
        let failures = std::mem::take(&mut self.failures);
        let more = std::mem::take(&mut self.dropped_failures);
        Err(KernelError::Rejected { failures, more })
    }

    fn reconcile(&mut self, desired: Vec<KernelRoute>) -> Result<ReconcileReport, KernelError> {
        let actual = self.dump()?;
        let d = diff(&actual, &desired);
        let failures = self
            .apply(&d.changes)
            .map_err(|source| KernelError::Netlink {
                op: "apply reconcile",
                source,
            })?;
        let failed_replaces = failures
            .iter()
            .filter(|f| f.kind == super::ChangeKind::Replace)
            .count();
        Ok(ReconcileReport {
            found: actual.len(),
            kept: d.kept,
            replaced: d.replaces - failed_replaces,
            deleted: d.changes.len() - d.replaces - (failures.len() - failed_replaces),
            failures,
        })
    }
}
