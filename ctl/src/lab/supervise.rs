//! The lab's supervisor (`twillctl lab supervise`, started by `lab up`): what a kubelet
//! does for its pods, for the lab's processes. Every half second it looks at the
//! processes the lab's record names (etcd, the relay, the IPAM controller, the ToR, each
//! felix) and starts again any that died, with back-off (1 s, doubling, at most 30 s),
//! counting restarts in the record (`lab status` shows them).
//!
//! A process stopped on purpose (`lab` removes it from the record first, as
//! `stop_felix` does) is not restarted; everything happens under the record's lock, so
//! a stop and a restart never cross. It exits when the lab is gone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::state::{Proc, State, lab_dir, update};
use super::{LabError, sys};

/// The supervisor's own process name in the record (it never restarts itself).
pub const NAME: &str = "supervisor";

/// The pause before restart number `n` (1-based).
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// Restarts `p` if it died and its back-off has passed; whether it did.
fn revive(p: &mut Proc, due: &mut BTreeMap<String, Instant>) -> bool {
    if p.name == NAME || sys::alive(p) {
        return false;
    }
    let Some(launch) = p.launch.clone() else {
        return false;
    };
    let now = Instant::now();
    match due.get(&p.name) {
        Some(t) if *t > now => return false,
        Some(_) => {}
        None => {
            // First seen dead: wait one back-off step (a crash loop must not spin).
            due.insert(p.name.clone(), now + backoff(p.restarts + 1));
            return false;
        }
    }
    let env: Vec<(&str, String)> = launch
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    match sys::spawn(
        launch.netns.as_deref(),
        &p.name,
        &launch.program,
        &launch.args,
        &env,
        &p.log,
    ) {
        Ok(new) => {
            p.pid = new.pid;
            p.restarts += 1;
            due.remove(&p.name);
            eprintln!(
                "restarted {} (pid {}, restart {})",
                p.name, p.pid, p.restarts
            );
            true
        }
        Err(e) => {
            due.insert(p.name.clone(), now + backoff(p.restarts + 1));
            eprintln!("cannot restart {}: {e}", p.name);
            false
        }
    }
}

/// One look at every process of the record.
fn pass(st: &mut State, due: &mut BTreeMap<String, Instant>) {
    for p in &mut st.processes {
        revive(p, due);
    }
    for n in &mut st.nodes {
        if let Some(p) = &mut n.felix {
            revive(p, due);
        }
    }
}

/// Supervises lab `name` until it is gone.
pub fn run(name: &str) -> Result<(), LabError> {
    let mut due = BTreeMap::new();
    while State::path(name).exists() && lab_dir(name).exists() {
        match update(name, |st| pass(st, &mut due)) {
            Ok(()) => {}
            Err(LabError::NoLab(_)) => return Ok(()),
            Err(e) => eprintln!("supervisor: {e}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(30));
    }
}
