//! Real TCP and UDP probes between pods, from threads that entered the pods' network
//! namespaces (a socket belongs to the namespace its thread was in when it was created):
//! a tiny server per pod that answers every TCP connection and UDP datagram with "ok",
//! and a client that says whether it got that answer within a timeout.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

/// TCP or UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

fn enter(netns: &Path) -> std::io::Result<()> {
    let f = File::open(netns)?;
    setns(&f, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// `/var/run/netns/NAME`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/var/run/netns").join(name)
}

/// Starts servers in `netns` on every `(proto, port)`; they run until the process ends.
pub fn serve(netns: &Path, ports: &[(Proto, u16)]) -> std::io::Result<()> {
    for &(proto, port) in ports {
        let path = netns.to_path_buf();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Err(e) = enter(&path) {
                let _ = ready_tx.send(Err(e));
                return;
            }
            let addr = SocketAddr::from(([0, 0, 0, 0], port));
            match proto {
                Proto::Tcp => {
                    let l = match TcpListener::bind(addr) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    for s in l.incoming().flatten() {
                        let mut s = s;
                        let _ = s.write_all(b"ok");
                    }
                }
                Proto::Udp => {
                    let sock = match UdpSocket::bind(addr) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let mut buf = [0u8; 64];
                    while let Ok((_, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(b"ok", from);
                    }
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("server thread died"))??;
    }
    Ok(())
}

/// Starts a TCP server in `netns` on `port` that answers each connection with the
/// address it came from (to see source NAT).
pub fn serve_peer_address(netns: &Path, port: u16) -> std::io::Result<()> {
    let path = netns.to_path_buf();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let listener =
            enter(&path).and_then(|()| TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))));
        let l = match listener {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        for mut s in l.incoming().flatten() {
            if let Ok(peer) = s.peer_addr() {
                let _ = s.write_all(peer.ip().to_string().as_bytes());
            }
        }
    });
    ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("server thread died"))?
}

/// What a server in another namespace says back to a client in `netns` (its whole
/// answer), or `None` when nothing came within `timeout`.
pub fn ask(netns: &Path, to: SocketAddr, timeout: Duration) -> Option<String> {
    let path = netns.to_path_buf();
    std::thread::spawn(move || {
        enter(&path).ok()?;
        let mut s = TcpStream::connect_timeout(&to, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        Some(answer)
    })
    .join()
    .ok()
    .flatten()
}

/// Whether a TCP connection from `netns` to `ip:port` is accepted within `timeout`; it is
/// closed at once without a byte sent (a bare poke at a port).
pub fn connects(netns: &Path, ip: IpAddr, port: u16, timeout: Duration) -> bool {
    let path = netns.to_path_buf();
    std::thread::spawn(move || -> bool {
        enter(&path).is_ok()
            && TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout).is_ok()
    })
    .join()
    .unwrap_or(false)
}

/// Whether a client in `netns` gets "ok" back from `ip:port` within `timeout`.
pub fn probe(netns: &Path, ip: IpAddr, port: u16, proto: Proto, timeout: Duration) -> bool {
    let path = netns.to_path_buf();
    std::thread::spawn(move || -> bool {
        if enter(&path).is_err() {
            return false;
        }
        let to = SocketAddr::new(ip, port);
        let mut buf = [0u8; 2];
        match proto {
            Proto::Tcp => {
                let Ok(mut s) = TcpStream::connect_timeout(&to, timeout) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(timeout));
                s.read_exact(&mut buf).is_ok() && &buf == b"ok"
            }
            Proto::Udp => {
                let Ok(s) = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(timeout));
                s.send_to(b"hi", to).is_ok()
                    && s.recv_from(&mut buf)
                        .is_ok_and(|(n, from)| n == 2 && from == to)
                    && &buf == b"ok"
            }
        }
    })
    .join()
    .unwrap_or(false)
}
