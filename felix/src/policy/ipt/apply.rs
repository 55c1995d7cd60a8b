//! Pushes the IR with `ipset restore` and `iptables-restore`/`ip6tables-restore
//! --noflush`, touching only `twill-` chains and sets (plus the three hook jumps).
//! A full build swaps every set's content atomically (`swap` with a temporary set) and
//! rewrites every chain in one restore per family; an update sends only the changed set
//! elements and chains. Processes inherit the calling thread's network namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};

use super::render::{
    Chains, EGR_DISPATCH, HOOKS, ING_DISPATCH, Ipset, IptRuleset, chain_name, dispatch_chains,
    entry, ipset_name, pool_ipsets, render, render_endpoint_chains, render_ipset,
    render_policy_chain,
};
use crate::policy::calc::Delta;
use crate::policy::ir::{Direction, Family, Ir};
use crate::policy::names::{IPT_PREFIX, endpoint_chain, endpoint_pass_chain, policy_chain};
use crate::policy::nft::apply::PushStats;

/// A command that failed, with what it said.
#[derive(Debug, thiserror::Error)]
pub enum IptError {
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
}

fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, IptError> {
    let spawn_err = |source| IptError::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(IptError::Failed {
            program: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn restore_cmd(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables-restore",
        Family::V6 => "ip6tables-restore",
    }
}

fn save_cmd(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables-save",
        Family::V6 => "ip6tables-save",
    }
}

/// What `iptables-save` shows of felix's chains: per table, chain → rule count, and the
/// hook jumps present.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SavedState {
    pub chains: BTreeMap<(String, String), usize>,
    pub hooks: BTreeSet<(String, String)>,
}

/// Reads felix's chains of one family.
pub fn saved_state(family: Family) -> Result<SavedState, IptError> {
    let mut s = SavedState::default();
    for table in ["filter", "nat"] {
        let text = run(save_cmd(family), &["-t", table], None)?;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(':') {
                let name = rest.split_whitespace().next().unwrap_or_default();
                if name.starts_with(IPT_PREFIX) {
                    s.chains.insert((table.to_owned(), name.to_owned()), 0);
                }
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let mut parts = rest.split_whitespace();
                let chain = parts.next().unwrap_or_default();
                if chain.starts_with(IPT_PREFIX) {
                    *s.chains
                        .entry((table.to_owned(), chain.to_owned()))
                        .or_default() += 1;
                } else if let (Some("-j"), Some(target), None) =
                    (parts.next(), parts.next(), parts.next())
                    && target.starts_with(IPT_PREFIX)
                {
                    s.hooks.insert((chain.to_owned(), target.to_owned()));
                }
            }
        }
    }
    Ok(s)
}

fn existing_ipsets() -> Result<BTreeSet<String>, IptError> {
    Ok(run("ipset", &["list", "-n"], None)?
        .lines()
        .filter(|l| l.starts_with(IPT_PREFIX))
        .map(str::to_owned)
        .collect())
}

/// The iptables dataplane.
#[derive(Default)]
pub struct IptDataplane {
    /// What was applied (ipset entries not mirrored); `None` forces a full build.
    applied: Option<IptRuleset>,
}

fn fi(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

impl IptDataplane {
    pub fn new() -> Self {
        IptDataplane { applied: None }
    }

    /// Rebuilds every felix set and chain from `ir`.
    pub fn replace_all(&mut self, ir: &Ir) -> Result<PushStats, IptError> {
        self.applied = None;
        let rs = render(ir);
        let existing = existing_ipsets()?;
        let mut script = String::new();
        for (i, set) in rs.ipsets.values().enumerate() {
            if existing.contains(&set.name) {
                // Fill a temporary set and swap it in: the live set is never empty.
                let tmp = format!("{IPT_PREFIX}tmp{i}");
                script.push_str(&set.create_line(&tmp));
                script.push('\n');
                script.push_str(&format!("flush {tmp}\n"));
                for e in &set.entries {
                    script.push_str(&format!("add {tmp} {e} -exist\n"));
                }
                script.push_str(&format!("swap {tmp} {}\ndestroy {tmp}\n", set.name));
            } else {
                script.push_str(&set.create_line(&set.name));
                script.push('\n');
                for e in &set.entries {
                    script.push_str(&format!("add {} {e} -exist\n", set.name));
                }
            }
        }
        run("ipset", &["restore"], Some(&script))?;
        let mut bytes = script.len();
        for family in Family::BOTH {
            let saved = saved_state(family)?;
            let mut text = String::new();
            for (t, (table, chains)) in [
                ("filter", &rs.filter[fi(family)]),
                ("nat", &rs.nat[fi(family)]),
            ]
            .into_iter()
            .enumerate()
            {
                let _ = t;
                let obsolete: Vec<&String> = saved
                    .chains
                    .keys()
                    .filter(|(tb, name)| tb == table && !chains.contains_key(name))
                    .map(|(_, name)| name)
                    .collect();
                text.push_str(&format!("*{table}\n"));
                for name in chains.keys() {
                    text.push_str(&format!(":{name} - [0:0]\n"));
                }
                for (name, rules) in chains {
                    for r in rules {
                        text.push_str(&format!("-A {name} {r}\n"));
                    }
                }
                for name in &obsolete {
                    text.push_str(&format!("-F {name}\n"));
                }
                for name in &obsolete {
                    text.push_str(&format!("-X {name}\n"));
                }
                for (builtin, hook_table, target) in HOOKS {
                    if hook_table == table
                        && !saved
                            .hooks
                            .contains(&(builtin.to_owned(), target.to_owned()))
                    {
                        text.push_str(&format!("-I {builtin} 1 -j {target}\n"));
                    }
                }
                text.push_str("COMMIT\n");
            }
            bytes += text.len();
            run(restore_cmd(family), &["-w", "5", "--noflush"], Some(&text))?;
        }
        let stale: Vec<&String> = existing
            .iter()
            .filter(|n| !rs.ipsets.contains_key(*n))
            .collect();
        if !stale.is_empty() {
            let script: String = stale.iter().map(|n| format!("destroy {n}\n")).collect();
            // A stale set something else still references stays; it is harmless.
            if let Err(e) = run("ipset", &["restore"], Some(&script)) {
                tracing::warn!(error = %e, "could not destroy stale ipsets");
            }
        }
        let mut mirror = rs;
        for set in mirror.ipsets.values_mut() {
            set.entries.clear();
        }
        self.applied = Some(mirror);
        Ok(PushStats {
            messages: 3,
            bytes,
            full: true,
        })
    }

    /// Applies what `delta` says changed (full build when nothing was applied yet, or
    /// when the update fails).
    pub fn apply(&mut self, ir: &Ir, delta: &Delta) -> Result<PushStats, IptError> {
        if delta.reset || self.applied.is_none() {
            return self.replace_all(ir);
        }
        if delta.is_empty() {
            return Ok(PushStats::default());
        }
        match self.apply_incremental(ir, delta) {
            Ok(s) => Ok(s),
            Err(e) => {
                tracing::warn!(error = %e, "incremental iptables update failed; rebuilding");
                self.replace_all(ir)
            }
        }
    }

    fn apply_incremental(&mut self, ir: &Ir, delta: &Delta) -> Result<PushStats, IptError> {
        let Some(mut applied) = self.applied.take() else {
            return self.replace_all(ir);
        };
        let mut stats = PushStats::default();

        // Sets: new ones, element changes, pools.
        let mut script = String::new();
        let mut new_sets: Vec<Ipset> = Vec::new();
        for name in &delta.sets_added {
            if let Some(set) = ir.sets.get(name) {
                let s = render_ipset(name, set);
                script.push_str(&s.create_line(&s.name));
                script.push('\n');
                for e in &s.entries {
                    script.push_str(&format!("add {} {e} -exist\n", s.name));
                }
                new_sets.push(s);
            }
        }
        for (name, elems) in &delta.elements_removed {
            for e in elems {
                script.push_str(&format!("del {} {} -exist\n", ipset_name(name), entry(e)));
            }
        }
        for (name, elems) in &delta.elements_added {
            for e in elems {
                script.push_str(&format!("add {} {} -exist\n", ipset_name(name), entry(e)));
            }
        }
        if delta.nat {
            for set in pool_ipsets(ir) {
                script.push_str(&format!("flush {}\n", set.name));
                for e in &set.entries {
                    script.push_str(&format!("add {} {e} -exist\n", set.name));
                }
            }
        }
        if !script.is_empty() {
            run("ipset", &["restore"], Some(&script))?;
            stats.messages += 1;
            stats.bytes += script.len();
        }
        for mut s in new_sets {
            s.entries.clear();
            applied.ipsets.insert(s.name.clone(), s);
        }

        // Chains.
        let mut names: BTreeSet<String> = BTreeSet::new();
        for key in &delta.policies {
            for dir in Direction::BOTH {
                names.insert(chain_name(&policy_chain(key, dir)));
            }
        }
        for iface in &delta.endpoints {
            for dir in Direction::BOTH {
                names.insert(chain_name(&endpoint_chain(iface, dir)));
                names.insert(chain_name(&endpoint_pass_chain(iface, dir)));
            }
        }
        if !delta.endpoints.is_empty() {
            names.insert(ING_DISPATCH.to_owned());
            names.insert(EGR_DISPATCH.to_owned());
        }
        for family in Family::BOTH {
            let mut wanted = Chains::new();
            for key in &delta.policies {
                for dir in Direction::BOTH {
                    if let Some((n, r)) = render_policy_chain(ir, key, dir, family) {
                        wanted.insert(n, r);
                    }
                }
            }
            for iface in &delta.endpoints {
                if let Some(ep) = ir.endpoints.get(iface) {
                    wanted.extend(render_endpoint_chains(ir, iface, ep));
                }
            }
            if !delta.endpoints.is_empty() {
                wanted.extend(dispatch_chains(ir));
            }
            let live = &mut applied.filter[fi(family)];
            let changed: Vec<(&String, &Vec<String>)> = wanted
                .iter()
                .filter(|(n, r)| live.get(*n) != Some(*r))
                .collect();
            let gone: Vec<&String> = names
                .iter()
                .filter(|n| !wanted.contains_key(*n) && live.contains_key(*n))
                .collect();
            if changed.is_empty() && gone.is_empty() {
                continue;
            }
            let mut text = String::from("*filter\n");
            for (n, _) in &changed {
                text.push_str(&format!(":{n} - [0:0]\n"));
            }
            for (n, rules) in &changed {
                for r in rules.iter() {
                    text.push_str(&format!("-A {n} {r}\n"));
                }
            }
            for n in &gone {
                text.push_str(&format!("-F {n}\n"));
            }
            for n in &gone {
                text.push_str(&format!("-X {n}\n"));
            }
            text.push_str("COMMIT\n");
            run(restore_cmd(family), &["-w", "5", "--noflush"], Some(&text))?;
            stats.messages += 1;
            stats.bytes += text.len();
            for n in gone.into_iter().cloned().collect::<Vec<_>>() {
                live.remove(&n);
            }
            for (n, r) in wanted {
                live.insert(n, r);
            }
        }

        // Sets no longer referenced.
        let removed: Vec<String> = delta
            .sets_removed
            .iter()
            .map(|n| ipset_name(n))
            .filter(|n| applied.ipsets.remove(n).is_some())
            .collect();
        if !removed.is_empty() {
            let script: String = removed.iter().map(|n| format!("destroy {n}\n")).collect();
            run("ipset", &["restore"], Some(&script))?;
            stats.messages += 1;
        }
        self.applied = Some(applied);
        Ok(stats)
    }

    /// Whether felix's chains (rule counts), hook jumps and sets are all still there.
    /// Costs an `iptables-save` per family and table plus an `ipset list -n`.
    pub fn in_sync(&mut self) -> Result<bool, IptError> {
        let Some(applied) = &self.applied else {
            return Ok(false);
        };
        for family in Family::BOTH {
            let saved = saved_state(family)?;
            let mut expected = BTreeMap::new();
            for (table, chains) in [
                ("filter", &applied.filter[fi(family)]),
                ("nat", &applied.nat[fi(family)]),
            ] {
                for (name, rules) in chains {
                    expected.insert((table.to_owned(), name.clone()), rules.len());
                }
            }
            if saved.chains != expected {
                return Ok(false);
            }
            for (builtin, _, target) in HOOKS {
                if !saved
                    .hooks
                    .contains(&(builtin.to_owned(), target.to_owned()))
                {
                    return Ok(false);
                }
            }
        }
        let sets = existing_ipsets()?;
        Ok(applied.ipsets.keys().all(|n| sets.contains(n)))
    }

    /// Forgets what was applied, so the next push rebuilds.
    pub fn invalidate(&mut self) {
        self.applied = None;
    }
}
