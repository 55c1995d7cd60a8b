//! One TCP connection of a session: connecting (with MD5 and GTSM set before the SYN), a
//! reader task that decodes messages, and a writer task that drains a queue of encoded
//! bytes so a slow peer never blocks the session.
//!
//! A read error or EOF ends the connection once (`ConnEvent::Closed`); it is never retried.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::sockopt;
use crate::fsm::ConnId;
use crate::packet::{Capability, DecodeCxt, DecodeError, Message, decode_message};
use crate::task::TaskGuard;

/// What a connection's tasks report to the session.
// Messages (UPDATEs) dominate; boxing them would allocate per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ConnEvent {
    Connected(ConnId, TcpStream),
    ConnectFailed(ConnId),
    Message(ConnId, Message),
    Error(ConnId, DecodeError),
    Closed(ConnId),
}

/// How to reach the peer.
#[derive(Clone, Debug)]
pub struct ConnectParams {
    pub peer: SocketAddr,
    pub source: Option<IpAddr>,
    pub password: Option<String>,
    pub ttl_security: Option<u8>,
    pub timeout: Duration,
}

/// Connects in a task; reports `Connected` or `ConnectFailed`.
pub fn spawn_connect(id: ConnId, p: ConnectParams, tx: mpsc::Sender<ConnEvent>) -> TaskGuard {
    TaskGuard::spawn(async move {
        let ev = match tokio::time::timeout(p.timeout, connect(&p)).await {
            Ok(Ok(s)) => ConnEvent::Connected(id, s),
            Ok(Err(e)) => {
                tracing::debug!(peer = %p.peer, error = %e, "connect failed");
                ConnEvent::ConnectFailed(id)
            }
            Err(_) => ConnEvent::ConnectFailed(id),
        };
        let _ = tx.send(ev).await;
    })
}

async fn connect(p: &ConnectParams) -> std::io::Result<TcpStream> {
    let v6 = p.peer.is_ipv6();
    let sock = if v6 {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    if let Some(pw) = &p.password {
        sockopt::set_md5_key(&sock, v6, p.peer.ip(), Some(pw.as_bytes()))?;
    }
    if let Some(hops) = p.ttl_security {
        sockopt::set_ttl_security(&sock, v6, hops)?;
    }
    if let Some(src) = p.source {
        sock.bind(SocketAddr::new(src, 0))?;
    }
    let s = sock.connect(p.peer).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The session's side of a live connection.
#[derive(Debug)]
pub struct Conn {
    pub local: SocketAddr,
    writer: Option<mpsc::UnboundedSender<Bytes>>,
    four_octet: Arc<AtomicBool>,
    _reader: TaskGuard,
    _writer: Option<tokio::task::JoinHandle<()>>,
}

impl Conn {
    /// Starts the reader and writer tasks of an established TCP connection.
    pub fn start(
        id: ConnId,
        stream: TcpStream,
        tx: mpsc::Sender<ConnEvent>,
    ) -> std::io::Result<Self> {
        let local = stream.local_addr()?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let four_octet = Arc::new(AtomicBool::new(false));
        let fo = four_octet.clone();
        let reader = TaskGuard::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                loop {
                    let cxt = DecodeCxt {
                        four_octet_as: fo.load(Ordering::Acquire),
                    };
                    match decode_message(&mut buf, &cxt) {
                        Ok(Some(m)) => {
                            // We always offer 4-octet AS, so the peer's OPEN alone decides
                            // it; setting it here covers UPDATEs already in this buffer.
                            if let Message::Open(o) = &m {
                                let four = o
                                    .capabilities
                                    .iter()
                                    .any(|c| matches!(c, Capability::FourOctetAs(_)));
                                fo.store(four, Ordering::Release);
                            }
                            if tx.send(ConnEvent::Message(id, m)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let fatal = e.notification().is_some();
                            if tx.send(ConnEvent::Error(id, e)).await.is_err() || fatal {
                                return;
                            }
                        }
                    }
                }
                if buf.capacity() - buf.len() < 8192 {
                    buf.reserve(64 * 1024);
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(ConnEvent::Closed(id)).await;
                        return;
                    }
                    Ok(_) => {}
                }
            }
        });
        let (wtx, mut wrx) = mpsc::unbounded_channel::<Bytes>();
        // The writer is not aborted on drop: it flushes what was queued (a NOTIFICATION
        // before a close) and ends when its queue is closed.
        let writer = tokio::spawn(async move {
            while let Some(b) = wrx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        Ok(Self {
            local,
            writer: Some(wtx),
            four_octet,
            _reader: reader,
            _writer: Some(writer),
        })
    }

    pub fn send(&self, bytes: Bytes) {
        if let Some(w) = &self.writer {
            let _ = w.send(bytes);
        }
    }

    pub fn set_four_octet(&self, on: bool) {
        self.four_octet.store(on, Ordering::Release);
    }

    pub fn four_octet(&self) -> bool {
        self.four_octet.load(Ordering::Acquire)
    }

    /// Stops reading now; the writer flushes its queue, then closes the socket.
    pub fn close(mut self) {
        self.writer.take();
        if let Some(w) = self._writer.take() {
            // Bounded: a peer that does not read never holds the socket open for long.
            let abort = w.abort_handle();
            tokio::spawn(async move {
                if tokio::time::timeout(Duration::from_secs(5), w)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            });
        }
    }
}
