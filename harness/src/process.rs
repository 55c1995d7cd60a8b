//! Child processes as guards: stdout and stderr go to a log file in a temporary directory,
//! and `Drop` stops the process by its PID (SIGTERM, then SIGKILL after a grace period) and
//! reaps it.
//!
//! This module must never signal anything but the PID it spawned, and never by name.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::Netns;

/// How long a process gets to exit after SIGTERM before it is killed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);

/// Failures to start or stop a child.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot create the log of {name}: {source}")]
    Log {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot start {name} (`{command}`): {source}")]
    Spawn {
        name: String,
        command: String,
        source: std::io::Error,
    },
    #[error("waiting for {name}: {source}")]
    Wait {
        name: String,
        source: std::io::Error,
    },
}

/// A running child process that is stopped and reaped when the guard drops.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    log_path: PathBuf,
    grace: Duration,
    // Keeps the log directory alive as long as the guard (kept on disk after a panic).
    log_dir: Option<tempfile::TempDir>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout+stderr appended to `<tmp>/<name>.log`.
    /// `name` is only for messages and the log file's name.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Self, ProcessError> {
        let log_err = |source| ProcessError::Log {
            name: name.to_owned(),
            source,
        };
        let log_dir = tempfile::Builder::new()
            .prefix(&format!("twill-{name}-"))
            .tempdir()
            .map_err(log_err)?;
        let log_path = log_dir.path().join(format!("{name}.log"));
        let out = File::create(&log_path).map_err(log_err)?;
        let err = out.try_clone().map_err(log_err)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                name: name.to_owned(),
                command: format!("{cmd:?}"),
                source,
            })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            status: None,
            log_path,
            grace: DEFAULT_GRACE,
            log_dir: Some(log_dir),
        })
    }

    /// Spawns `program args...` inside `ns` (through `ip netns exec`, which execs the
    /// program, so the guarded PID is the program's own).
    pub fn spawn_in(
        ns: &Netns,
        name: &str,
        program: &str,
        args: &[&str],
    ) -> Result<Self, ProcessError> {
        let mut cmd = ns.command(program);
        cmd.args(args);
        Self::spawn(name, cmd)
    }

    /// Changes how long `stop` waits after SIGTERM before SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log so far (empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `n` lines of the log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Sends a signal to the child's PID (e.g. SIGHUP to reload); no-op once reaped.
    pub fn signal(&mut self, signal: Signal) -> Result<(), nix::Error> {
        if self.try_status().is_some() {
            return Ok(());
        }
        kill(self.nix_pid(), signal)
    }

    /// Waits for the child to exit on its own, at most `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, wait up to the grace period, then SIGKILL; reaps and returns the status.
    pub fn stop(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.try_status() {
            return Ok(status);
        }
        let _ = kill(self.nix_pid(), Signal::SIGTERM);
        if let Some(status) = self.wait_timeout(self.grace) {
            return Ok(status);
        }
        self.kill()
    }

    /// SIGKILL now; reaps and returns the status.
    pub fn kill(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.try_status() {
            return Ok(status);
        }
        let _ = self.child.kill();
        let status = self.child.wait().map_err(|source| ProcessError::Wait {
            name: self.name.clone(),
            source,
        })?;
        self.status = Some(status);
        Ok(status)
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.stop();
        if std::thread::panicking() {
            // Keep the log for the post-mortem and point at it.
            if let Some(dir) = self.log_dir.take() {
                let _ = dir.keep();
            }
            eprintln!(
                "--- {} (pid {}) log kept at {}; tail:\n{}",
                self.name,
                self.child.id(),
                self.log_path.display(),
                self.log_tail(20)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::wait_until;

    fn alive(pid: u32) -> bool {
        // Signal 0 probes existence; a reaped PID is gone (zombies were reaped by the guard).
        kill(Pid::from_raw(pid as i32), None).is_ok()
    }

    #[test]
    fn output_goes_to_the_log() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo to-stdout; echo to-stderr >&2"]);
        let mut child = ChildGuard::spawn("echo", cmd).unwrap();
        let status = child.wait_timeout(Duration::from_secs(10)).unwrap();
        assert!(status.success());
        let log = child.log();
        assert!(
            log.contains("to-stdout") && log.contains("to-stderr"),
            "{log}"
        );
        assert_eq!(child.log_tail(1), "to-stderr");
    }

    #[test]
    fn drop_terminates_and_reaps_the_child() {
        let mut cmd = Command::new("sleep");
        cmd.arg("300");
        let child = ChildGuard::spawn("sleep", cmd).unwrap();
        let pid = child.pid();
        assert!(alive(pid));
        drop(child);
        assert!(!alive(pid));
    }

    #[test]
    fn stop_kills_a_child_that_ignores_sigterm() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ]);
        let child = ChildGuard::spawn("stubborn", cmd).unwrap();
        let mut child = child.with_grace(Duration::from_millis(300));
        wait_until(
            "the shell to install its trap",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || child.log().contains("ready"),
        )
        .unwrap();
        let status = child.stop().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    }

    #[test]
    fn spawn_in_runs_inside_the_namespace() {
        let ns = Netns::new("tw-c").unwrap();
        let mut child = ChildGuard::spawn_in(&ns, "ip", "ip", &["-o", "link"]).unwrap();
        assert!(
            child
                .wait_timeout(Duration::from_secs(10))
                .unwrap()
                .success()
        );
        let log = child.log();
        // A fresh namespace holds only `lo`.
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains("lo:"), "{log}");
    }

    #[test]
    fn spawn_of_a_missing_program_names_it() {
        let err = ChildGuard::spawn("nope", Command::new("/nonexistent/twill-x")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
