//! The lab's contact with the system: `ip` for namespaces and links, processes started
//! detached (they outlive `twillctl lab up`) and stopped by PID, bounded waits.
//!
//! Processes are started through `setsid -f`, so init adopts them: no zombie is left in a
//! long-running caller (the end-to-end tests), and a later `twillctl lab down` can stop
//! them. A PID is only ever signalled after checking that it still runs the program the
//! lab started (PIDs get reused).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::LabError;
use super::state::Proc;

/// Runs a command to completion; its stdout, or an error with its stderr.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String, LabError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command(format!("{program}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        Err(LabError::Command(format!(
            "{program} {}: {}",
            shown.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<String, LabError> {
    run("ip", args)
}

/// `ip -n NS ARGS`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    ip(&all)
}

/// `ip netns exec NS PROGRAM ARGS`.
pub fn exec_in(ns: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    ip(&all)
}

pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Creates a namespace with `lo` up.
pub fn netns_add(name: &str) -> Result<(), LabError> {
    ip(&["netns", "add", name])?;
    ip_in(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes a namespace; fine when it is already gone.
pub fn netns_del(name: &str) -> Result<(), LabError> {
    if netns_exists(name) {
        ip(&["netns", "del", name])?;
    }
    Ok(())
}

pub fn sysctl_in(ns: &str, key: &str, value: &str) -> Result<(), LabError> {
    exec_in(ns, "sysctl", &["-qw", &format!("{key}={value}")]).map(|_| ())
}

/// Starts `program args` detached (in `ns` when given), output appended to `log`, and
/// returns its PID.
pub fn spawn(
    ns: Option<&str>,
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    log: &Path,
) -> Result<Proc, LabError> {
    let pidfile = log.with_extension("pid");
    let _ = std::fs::remove_file(&pidfile);
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| LabError::io(log, e))?;
    let errf = logf.try_clone().map_err(|e| LabError::io(log, e))?;
    let mut cmd = Command::new("setsid");
    cmd.arg("-f")
        .arg("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$0"; exec "$@""#)
        .arg(&pidfile);
    if let Some(ns) = ns {
        cmd.args(["ip", "netns", "exec", ns]);
    }
    cmd.arg(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(errf);
    let status = cmd
        .status()
        .map_err(|e| LabError::Command(format!("setsid {}: {e}", program.display())))?;
    if !status.success() {
        return Err(LabError::Command(format!(
            "starting {name} failed ({status})"
        )));
    }
    let pid = wait_for(&format!("{name} to start"), Duration::from_secs(5), || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
    })?;
    Ok(Proc {
        name: name.to_string(),
        program: program
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pid,
        log: log.to_path_buf(),
        launch: Some(super::state::Launch {
            netns: ns.map(str::to_string),
            program: program.to_path_buf(),
            args: args.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }),
        restarts: 0,
    })
}

/// Whether `p` still runs (and is still the program the lab started).
pub fn alive(p: &Proc) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", p.pid)) else {
        return false;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)) else {
        return false;
    };
    // A zombie has exited already.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if state == Some("Z") {
        return false;
    }
    String::from_utf8_lossy(&cmdline).contains(&p.program)
}

/// Stops `p`: SIGTERM, then SIGKILL after `grace`. Never signals a PID that no longer
/// runs the lab's program.
pub fn stop(p: &Proc, grace: Duration) {
    if !alive(p) {
        return;
    }
    let pid = Pid::from_raw(p.pid);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(p) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(p) {
        let _ = kill(pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive(p) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Polls `f` every 50 ms until it gives a value or `limit` passes.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, LabError> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() >= limit {
            return Err(LabError::Timeout(format!(
                "waited {:.1} s for {what}",
                limit.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `n` lines of a log file (for error messages).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
