//! `lab down`: stops every process the lab started (by PID, felix first so it does not
//! see its world disappear under it), deletes every namespace it made (pods first), and
//! removes its directory. Safe to run twice, and on the remains of a lab that crashed
//! half-way through `up`.

use std::time::Duration;

use super::state::{State, lab_dir};
use super::{Lab, LabError, check_name, sys};

impl Lab {
    /// Removes lab `name` entirely; fine when there is none.
    pub fn down(name: &str) -> Result<(), LabError> {
        check_name("lab name", name)?;
        let dir = lab_dir(name);
        let state = match State::load(name) {
            Ok(s) => Some(s),
            Err(LabError::NoLab(_)) => None,
            Err(e) => return Err(e),
        };
        let mut namespaces = Vec::new();
        if let Some(st) = &state {
            // The supervisor first, or it would restart what is being stopped.
            for p in st
                .processes
                .iter()
                .filter(|p| p.name == super::supervise::NAME)
            {
                sys::stop(p, Duration::from_secs(5));
            }
            for node in &st.nodes {
                if let Some(p) = &node.felix {
                    sys::stop(p, Duration::from_secs(5));
                }
            }
            for p in st.processes.iter().rev() {
                sys::stop(p, Duration::from_secs(5));
            }
            namespaces.extend(st.pods.iter().map(|p| p.netns.clone()));
            namespaces.extend(st.namespaces.iter().rev().cloned());
        }
        // Without a record (a crash before the first save), the fixed names still go.
        namespaces.push(format!("{name}-tor"));
        let mut first_error = None;
        for ns in namespaces {
            if let Err(e) = sys::netns_del(&ns)
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        for entry in std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            let file = entry.file_name().to_string_lossy().into_owned();
            let is_node = file
                .strip_prefix(&format!("{name}-node"))
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if is_node
                && let Err(e) = sys::netns_del(&file)
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        }
        Ok(())
    }
}
