//! The command line: global datastore flags and one subcommand enum. New command groups
//! (`bgp`, `node`, `ipam`, `lab`) are added as variants of [`Command`] and arms of
//! [`Command::run`]; commands that need no datastore say so in [`Command::needs_datastore`].

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
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

/// The name to show in help and errors for a program started as `argv0`: kubectl runs a
/// plugin installed as `kubectl-twill` (anywhere on `PATH`) for `kubectl twill ...`, so that
/// name reads `kubectl twill`; any other name is shown as it is.
pub fn display_name(argv0: &std::ffi::OsStr) -> String {
    let file = Path::new(argv0)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("twillctl");
    match file.strip_prefix("kubectl-") {
        // kubectl maps `-` in a command to `_` in the file name (kubectl-foo_bar: foo-bar).
        Some(plugin) if !plugin.is_empty() => format!("kubectl {}", plugin.replace('_', "-")),
        _ => file.to_string(),
    }
}

impl Cli {
    /// Parses the command line, naming the program as it was invoked (`twillctl`, or
    /// `kubectl twill` when run as a kubectl plugin).
    pub fn parse_invocation(
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Result<Cli, clap::Error> {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let name = display_name(args.first().map_or("twillctl".as_ref(), |a| a.as_os_str()));
        let matches = Cli::command().bin_name(name).try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_plugin_names() {
        assert_eq!(
            display_name("/usr/local/bin/kubectl-twill".as_ref()),
            "kubectl twill"
        );
        assert_eq!(
            display_name("kubectl-twill_ctl".as_ref()),
            "kubectl twill-ctl"
        );
        assert_eq!(display_name("./target/debug/twillctl".as_ref()), "twillctl");
        assert_eq!(display_name("kubectl-".as_ref()), "kubectl-");
    }

    #[test]
    fn the_plugin_parses_like_twillctl() {
        let cli = Cli::parse_invocation(["kubectl-twill", "get", "ippools"]).unwrap();
        assert!(matches!(cli.command, Command::Get(_)));
        let e = Cli::parse_invocation(["kubectl-twill", "nope"]).unwrap_err();
        assert!(e.to_string().contains("kubectl twill"), "{e}");
    }
}
