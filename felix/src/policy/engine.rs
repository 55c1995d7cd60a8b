//! The policy engine: the incremental calculator plus one dataplane, behind a blocking
//! API ([`BlockingPolicyEngine`]) and an async handle ([`PolicyEngine`]) whose work runs
//! on a dedicated thread started in the caller's network namespace.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::calc::{Calculator, Delta};
use super::inputs::PolicyInputs;
use super::ipt::apply::{IptDataplane, IptError};
use super::ir::Ir;
use super::nft::apply::{NftDataplane, PushStats};
use super::nft::netlink::NetlinkError;

/// Which dataplane renders the policy (felix's `--dataplane`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DataplaneKind {
    /// One `inet twill` table over netlink (the default).
    #[default]
    Nftables,
    /// `iptables-restore`/`ip6tables-restore` and `ipset`.
    Iptables,
}

/// Why an apply, resync or check failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("nftables: {0}")]
    Nftables(#[from] NetlinkError),
    #[error("iptables: {0}")]
    Iptables(#[from] IptError),
    #[error("the policy engine's thread is gone")]
    Stopped,
    #[error("could not start the policy engine's thread: {0}")]
    Thread(std::io::Error),
}

/// What one apply or resync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// The whole ruleset was rebuilt (first apply, resync, or recovery from drift).
    pub full: bool,
    /// Set elements added plus removed (incremental applies).
    pub element_changes: usize,
    /// Policies and local endpoints whose chains were recomputed.
    pub chains_changed: usize,
    /// nf_tables messages in the transaction, or processes run (iptables).
    pub messages: usize,
    /// Bytes handed to the kernel or to the restore tools.
    pub bytes: usize,
    /// Time to compute the new IR and its delta.
    pub compute: Duration,
    /// Time to push it.
    pub push: Duration,
    /// Policies that did not compile cleanly (each failed closed), naming the field.
    pub warnings: Vec<String>,
    /// Local endpoints now in the IR.
    pub endpoints: usize,
}

enum Dataplane {
    Nft(Box<NftDataplane>),
    Ipt(IptDataplane),
}

/// The engine on the calling thread (which must stay in the network namespace it was
/// created in, for iptables: the restore tools inherit the thread's namespace).
pub struct BlockingPolicyEngine {
    calc: Calculator,
    dataplane: Dataplane,
}

impl BlockingPolicyEngine {
    pub fn new(kind: DataplaneKind) -> Result<Self, PolicyError> {
        let dataplane = match kind {
            DataplaneKind::Nftables => Dataplane::Nft(Box::new(NftDataplane::new()?)),
            DataplaneKind::Iptables => Dataplane::Ipt(IptDataplane::new()),
        };
        Ok(BlockingPolicyEngine {
            calc: Calculator::new(""),
            dataplane,
        })
    }

    fn push(&mut self, delta: &Delta) -> Result<PushStats, PolicyError> {
        Ok(match &mut self.dataplane {
            Dataplane::Nft(d) => d.apply(self.calc.ir(), delta)?,
            Dataplane::Ipt(d) => d.apply(self.calc.ir(), delta)?,
        })
    }

    /// Computes the policy for `inputs`, diffs it with what was applied and pushes the
    /// difference (one transaction).
    pub fn apply(&mut self, inputs: &PolicyInputs) -> Result<ApplyStats, PolicyError> {
        let start = Instant::now();
        let delta = self.calc.update(inputs);
        let compute = start.elapsed();
        let pushed = self.push(&delta)?;
        Ok(ApplyStats {
            full: pushed.full,
            element_changes: delta.element_changes(),
            chains_changed: delta.policies.len() + delta.endpoints.len(),
            messages: pushed.messages,
            bytes: pushed.bytes,
            compute,
            push: start.elapsed() - compute,
            warnings: self.calc.warnings(),
            endpoints: self.calc.ir().endpoints.len(),
        })
    }

    /// Rebuilds the whole ruleset from the last inputs, atomically: repairs any drift.
    pub fn resync(&mut self) -> Result<ApplyStats, PolicyError> {
        let start = Instant::now();
        let pushed = match &mut self.dataplane {
            Dataplane::Nft(d) => d.replace_all(self.calc.ir())?,
            Dataplane::Ipt(d) => d.replace_all(self.calc.ir())?,
        };
        Ok(ApplyStats {
            full: true,
            messages: pushed.messages,
            bytes: pushed.bytes,
            push: start.elapsed(),
            warnings: self.calc.warnings(),
            endpoints: self.calc.ir().endpoints.len(),
            ..ApplyStats::default()
        })
    }

    /// Whether the kernel still holds what was applied. For nftables this is one netlink
    /// round trip when nothing changed in the namespace since (the ruleset generation),
    /// and a read-back of felix's table otherwise; for iptables, `iptables-save` and
    /// `ipset list -n`.
    pub fn in_sync(&mut self) -> Result<bool, PolicyError> {
        Ok(match &mut self.dataplane {
            Dataplane::Nft(d) => d.in_sync()?,
            Dataplane::Ipt(d) => d.in_sync()?,
        })
    }

    /// The current IR.
    pub fn ir(&self) -> &Ir {
        self.calc.ir()
    }
}

type Job = Box<dyn FnOnce(&mut BlockingPolicyEngine) + Send>;

/// Async handle to an engine running on its own thread, in the network namespace of the
/// thread that called [`PolicyEngine::new`]. Dropping the handle stops the thread.
pub struct PolicyEngine {
    jobs: mpsc::Sender<Job>,
}

impl PolicyEngine {
    /// Starts the engine's thread (in the current thread's network namespace) and opens
    /// the dataplane there.
    pub fn new(kind: DataplaneKind) -> Result<Self, PolicyError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("twill-policy".to_owned())
            .spawn(move || {
                let mut engine = match BlockingPolicyEngine::new(kind) {
                    Ok(e) => {
                        let _ = ready_tx.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&mut engine);
                }
            })
            .map_err(PolicyError::Thread)?;
        ready_rx.recv().map_err(|_| PolicyError::Stopped)??;
        Ok(PolicyEngine { jobs })
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut BlockingPolicyEngine) -> T + Send + 'static,
    ) -> Result<T, PolicyError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |engine| {
                let _ = tx.send(f(engine));
            }))
            .map_err(|_| PolicyError::Stopped)?;
        rx.await.map_err(|_| PolicyError::Stopped)
    }

    /// [`BlockingPolicyEngine::apply`] on the engine's thread. The snapshot is shared,
    /// not copied.
    pub async fn apply(&self, inputs: Arc<PolicyInputs>) -> Result<ApplyStats, PolicyError> {
        self.call(move |e| e.apply(&inputs)).await?
    }

    /// [`BlockingPolicyEngine::resync`] on the engine's thread.
    pub async fn resync(&self) -> Result<ApplyStats, PolicyError> {
        self.call(|e| e.resync()).await?
    }

    /// [`BlockingPolicyEngine::in_sync`] on the engine's thread.
    pub async fn in_sync(&self) -> Result<bool, PolicyError> {
        self.call(|e| e.in_sync()).await?
    }

    /// A copy of the current IR (for status pages and debugging).
    pub async fn ir(&self) -> Result<Ir, PolicyError> {
        self.call(|e| e.ir().clone()).await
    }
}
