//! The command line: global datastore flags and one subcommand enum. New command groups
//! (`bgp`, `node`, `ipam`, `lab`) are added as variants of [`Command`] and arms of
//! [`Command::run`]; commands that need no datastore say so in [`Command::needs_datastore`].

use std::io::Write;

use clap::{Parser, Subcommand};
use twill_api::datastore::{Datastore, DatastoreArgs, DatastoreType};

use crate::bgp::{BgpCommand, NodeStatusArgs};
use crate::error::{CtlError, Result};
use crate::ipam::IpamArgs;
use crate::resources::delete::DeleteArgs;
use crate::resources::get::GetArgs;
use crate::resources::patch::{LabelArgs, PatchArgs};
use crate::resources::write::{FileArgs, WriteMode};

/// Twill's command-line tool: resources, IPAM, BGP status and the lab.
#[derive(Debug, Parser)]
#[command(name = "twillctl", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub datastore: DatastoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Every twillctl command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show resources (table, or -o wide|yaml|json).
    Get(GetArgs),
    /// Create resources from a file; fails if one exists.
    Create(FileArgs),
    /// Create or update resources from a file.
    Apply(FileArgs),
    /// Replace existing resources from a file.
    Replace(FileArgs),
    /// Delete resources by name or file.
    Delete(DeleteArgs),
    /// Change a resource with a JSON merge patch.
    Patch(PatchArgs),
    /// Set or remove labels of a resource.
    Label(LabelArgs),
    /// IPAM: usage per pool and block, consistency check, release an address.
    Ipam(IpamArgs),
    /// BGP status of this node's speaker: peers and routes.
    #[command(subcommand)]
    Bgp(BgpCommand),
    /// This node's status (BGP sessions).
    #[command(subcommand)]
    Node(NodeCommand),
    /// The lab: Twill on one machine (nodes, a ToR and pods in network namespaces).
    Lab(crate::lab::LabArgs),
    /// Print the CRDs generated from the resource types.
    Crds,
    /// Print the version.
    Version,
}

/// `twillctl node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// This node's BGP sessions (peer, AS, type, state, since, prefixes).
    Status(NodeStatusArgs),
}

impl Command {
    /// Whether the command talks to the datastore (connect first) or not.
    pub fn needs_datastore(&self) -> bool {
        !matches!(
            self,
            Command::Crds | Command::Version | Command::Bgp(_) | Command::Node(_) | Command::Lab(_)
        )
    }

    /// Runs the command and returns its exit status (0, or what the command reports, such
    /// as `ipam check` finding problems). `ds` is `Some` when
    /// [`needs_datastore`](Self::needs_datastore); `mode` is the datastore type.
    pub async fn run(
        &self,
        ds: Option<&Datastore>,
        mode: DatastoreType,
        out: &mut dyn Write,
    ) -> Result<i32> {
        let need = || ds.ok_or_else(|| CtlError::Usage("no datastore connected".into()));
        let mut out = out;
        match self {
            Command::Ipam(args) => return args.run(need()?, mode, out).await,
            Command::Lab(args) => return Ok(args.run(out).await?),
            Command::Bgp(cmd) => crate::bgp::run_bgp(cmd.clone(), &mut out).await?,
            Command::Node(NodeCommand::Status(args)) => {
                crate::bgp::run_node_status(args.clone(), &mut out).await?
            }
            other => other.run_resources(ds, out).await?,
        }
        Ok(0)
    }

    async fn run_resources(&self, ds: Option<&Datastore>, out: &mut dyn Write) -> Result<()> {
        let need = || ds.ok_or_else(|| CtlError::Usage("no datastore connected".into()));
        match self {
            Command::Get(args) => args.run(need()?, out).await,
            Command::Create(args) => args.run(WriteMode::Create, need()?, out).await,
            Command::Apply(args) => args.run(WriteMode::Apply, need()?, out).await,
            Command::Replace(args) => args.run(WriteMode::Replace, need()?, out).await,
            Command::Delete(args) => args.run(need()?, out).await,
            Command::Patch(args) => args.run(need()?, out).await,
            Command::Label(args) => args.run(need()?, out).await,
            Command::Crds => {
                let yaml = crate::resources::crds::crds_yaml()?;
                out.write_all(yaml.as_bytes())
                    .map_err(|e| CtlError::Output(e.to_string()))
            }
            Command::Version => writeln!(out, "twillctl {}", env!("CARGO_PKG_VERSION"))
                .map_err(|e| CtlError::Output(e.to_string())),
            Command::Ipam(_) | Command::Bgp(_) | Command::Node(_) | Command::Lab(_) => Ok(()),
        }
    }
}

impl Cli {
    /// Connects when needed, runs the command and returns its exit status.
    pub async fn run(&self, out: &mut dyn Write) -> Result<i32> {
        let ds = if self.command.needs_datastore() {
            Some(self.datastore.connect().await?)
        } else {
            None
        };
        self.command
            .run(ds.as_ref(), self.datastore.datastore, out)
            .await
    }
}
