//! The datastore relay: the lab's etcd listens inside the ToR namespace (where felix and
//! the IPAM controller reach it directly), and this relay makes it reachable from the
//! root namespace on `127.0.0.1:PORT`, so `twillctl` works against the lab without any
//! address or route added to the host.
//!
//! Each accepted connection is matched by one made from a thread that entered the lab's
//! namespace (a socket stays in the namespace it was created in), then bytes are copied
//! both ways. Runs as a detached process (`twillctl lab relay ...`).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

use super::LabError;

/// Arguments of the hidden `lab relay` command.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// The namespace to connect from.
    #[arg(long)]
    pub netns: String,
    /// The address to connect to, inside that namespace.
    #[arg(long)]
    pub target: SocketAddr,
    /// Where to write the local port.
    #[arg(long)]
    pub port_file: PathBuf,
}

fn connect_in(netns: &Path, target: SocketAddr) -> std::io::Result<TcpStream> {
    let file = File::open(netns)?;
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        TcpStream::connect_timeout(&target, Duration::from_secs(5))
    })
    .join()
    .map_err(|_| std::io::Error::other("relay connect thread panicked"))?
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// Runs the relay until killed.
pub fn run(args: &RelayArgs) -> Result<(), LabError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| LabError::Command(format!("relay bind: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| LabError::Command(format!("relay: {e}")))?
        .port();
    let tmp = args.port_file.with_extension("tmp");
    std::fs::write(&tmp, port.to_string()).map_err(|e| LabError::io(&tmp, e))?;
    std::fs::rename(&tmp, &args.port_file).map_err(|e| LabError::io(&args.port_file, e))?;
    let netns = Path::new("/run/netns").join(&args.netns);
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let upstream = match connect_in(&netns, args.target) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("relay: cannot reach {} in {}: {e}", args.target, args.netns);
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
            continue;
        };
        std::thread::spawn(move || pipe(client, upstream));
        std::thread::spawn(move || pipe(u2, c2));
    }
    Ok(())
}
