//! Netlink connections bound to another network namespace.
//!
//! A netlink socket belongs to the namespace its creator was in at `socket()` time, so a
//! short-lived thread enters the target namespace (nix's safe `setns`), opens the socket,
//! and exits; the connection then runs on the caller's runtime. The thread is never reused,
//! so no pooled thread is ever left in a foreign namespace.

use std::fs::File;
use std::path::Path;

use nix::sched::{CloneFlags, setns};
use tokio::task::JoinHandle;

use super::DataplaneError;

/// An rtnetlink handle whose socket lives in some namespace; the connection task stops
/// when this is dropped.
#[derive(Debug)]
pub struct NsHandle {
    pub handle: rtnetlink::Handle,
    task: JoinHandle<()>,
}

impl Drop for NsHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection in the caller's current namespace.
pub fn connect_here() -> Result<NsHandle, DataplaneError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| {
        DataplaneError::Thread(format!("cannot open a netlink socket: {source}"))
    })?;
    Ok(NsHandle {
        handle,
        task: tokio::spawn(conn),
    })
}

/// A connection inside the namespace at `path` (e.g. `/var/run/netns/x`, `/proc/PID/ns/net`).
pub async fn connect_in(path: &Path) -> Result<NsHandle, DataplaneError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| DataplaneError::Netns {
        path: shown.clone(),
        source,
    })?;
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_path = shown.clone();
    std::thread::Builder::new()
        .name("twill-netns".into())
        .spawn(move || {
            let opened = setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|source| DataplaneError::Setns {
                    path: thread_path,
                    source,
                })
                .and_then(|()| {
                    // The socket registers with the caller's reactor but is created here.
                    let _entered = runtime.enter();
                    rtnetlink::new_connection().map_err(|source| {
                        DataplaneError::Thread(format!("cannot open a netlink socket: {source}"))
                    })
                });
            let _ = tx.send(opened);
        })
        .map_err(|e| DataplaneError::Thread(e.to_string()))?;
    let (conn, handle, _) = rx
        .await
        .map_err(|_| DataplaneError::Thread(format!("helper for {shown} died")))??;
    Ok(NsHandle {
        handle,
        task: tokio::spawn(conn),
    })
}
