//! Task handles that cancel their task when dropped, so a stopped session, speaker or
//! server never leaves orphan tasks behind.

use std::future::Future;

use tokio::task::JoinHandle;

/// Aborts the task on drop.
#[derive(Debug)]
pub struct TaskGuard(JoinHandle<()>);

impl TaskGuard {
    pub fn spawn<F>(fut: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Self(tokio::spawn(fut))
    }

    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}
