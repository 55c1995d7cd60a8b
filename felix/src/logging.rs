//! The log filter, reloadable at run time (FelixConfiguration's `logSeverityScreen`):
//! `main` installs the subscriber and registers how to swap its filter; the agent asks
//! for a new filter by its text. Without a registered reloader (tests, embedding) a
//! reload is a no-op.

use std::sync::OnceLock;

type Reloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static RELOADER: OnceLock<Reloader> = OnceLock::new();

/// Registers the function that swaps the filter (once; later calls are ignored).
pub fn set_reloader(f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = RELOADER.set(Box::new(f));
}

/// Replaces the log filter with `directives` (tracing `EnvFilter` syntax).
pub fn reload(directives: &str) -> Result<(), String> {
    match RELOADER.get() {
        Some(f) => f(directives),
        None => Ok(()),
    }
}
