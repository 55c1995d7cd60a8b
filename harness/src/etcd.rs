//! A real etcd server for one test (or one lab): Debian's `/usr/bin/etcd` with its own data
//! dir in a temp dir, on free client and peer ports of 127.0.0.1.
//!
//! `EtcdServer::start()` returns once `/health` answers (bounded); Drop kills the process by
//! its PID and removes the data dir. Tests in parallel each get their own server. It never
//! touches anything but its temp dir and the two ports it picked.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs etcd.
pub const ETCD_BINARY: &str = "/usr/bin/etcd";

/// How long a server may take to become healthy on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an etcd server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("cannot prepare etcd: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "etcd did not become healthy within {timeout:?} (after {attempts} attempts); log tail:\n{log}"
    )]
    NotHealthy {
        timeout: Duration,
        attempts: u32,
        log: String,
    },
}

/// A running etcd, stopped and removed on Drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    client_port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl EtcdServer {
    /// Starts a fresh single-member etcd and waits until it is healthy.
    pub fn start() -> Result<Self, EtcdError> {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with extra etcd flags (`--auto-compaction-retention=1`).
    pub fn start_with(extra_args: &[&str]) -> Result<Self, EtcdError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Ports picked by binding :0 can be taken by someone else before etcd binds them;
            // then etcd exits and we try again with new ones.
            let mut server = Self::spawn(extra_args)?;
            match server.wait_healthy(deadline) {
                Ok(()) => return Ok(server),
                Err(exited) if exited && attempts < 5 && Instant::now() < deadline => continue,
                Err(_) => {
                    return Err(EtcdError::NotHealthy {
                        timeout: START_TIMEOUT,
                        attempts,
                        log: server.log_tail(30),
                    });
                }
            }
        }
    }

    fn spawn(extra_args: &[&str]) -> Result<Self, EtcdError> {
        let dir = tempfile::Builder::new().prefix("twill-etcd-").tempdir()?;
        let client_port = free_port()?;
        let mut peer_port = free_port()?;
        while peer_port == client_port {
            peer_port = free_port()?;
        }
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(ETCD_BINARY)
            .arg("--name=twill-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=twill-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(EtcdServer {
            child,
            client_port,
            dir,
        })
    }

    /// Ok when healthy; Err(true) when etcd exited (retry with new ports), Err(false) on
    /// timeout.
    fn wait_healthy(&mut self, deadline: Instant) -> Result<(), bool> {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(true);
            }
            if self.healthy() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(false)
    }

    /// Whether `/health` answers `"health":"true"`.
    pub fn healthy(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.contains("\"health\":\"true\"")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The endpoint as a list, as etcd clients take it.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir holding the data dir and `etcd.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The last `lines` lines of etcd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The TempDir field removes the data dir after this.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_servers_start_side_by_side_and_stop_on_drop() {
        let a = EtcdServer::start().unwrap();
        let b = EtcdServer::start().unwrap();
        assert_ne!(a.client_port(), b.client_port());
        assert!(a.healthy() && b.healthy());
        let dir = a.dir().to_path_buf();
        let pid = a.pid();
        drop(a);
        assert!(!dir.exists(), "data dir left behind");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "etcd still running"
        );
        assert!(b.healthy());
    }
}
