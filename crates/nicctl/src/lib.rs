//! `nicctl`: the network operator's command-line tool, also installed as the kubectl plugin
//! `kubectl-nic` (`kubectl nic ...`).
//!
//! Offline:
//! - `nicctl render -f POLICY.yaml [--nodes NODES.yaml]` prints, as one multi-document YAML
//!   stream, every object the compiled-in states would create for the given documents.
//! - `nicctl crds [--dir DIR]` prints every CRD of the project (or writes one file each).
//! - `nicctl rbac [--dir DIR]` prints the RBAC rules of every controller (or writes each
//!   subchart's `files/rbac.yaml` under `DIR`).
//!
//! Against a live cluster, read with the user's kubeconfig and never written to ([`live`]):
//! - `nicctl doctor`: why the NIC stack is not ready ([`doctor`]); exit code 0, 1 (warnings)
//!   or 2 (problems).
//! - `nicctl diff -f POLICY.yaml`: what applying a policy would change ([`diff`]); exit code 1
//!   when something would.
//! - `nicctl upgrade status [--watch]`: the driver upgrade at a glance ([`upgrade_status`]).
//!
//! Bad input exits with code 2 and one line naming the file and the field path. The states
//! compiled in: every state of the policy (as on a cluster with every optional API, e.g.
//! cert-manager); network CRs render to NetworkAttachmentDefinitions.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub mod diff;
pub mod doctor;
pub mod live;
mod rbac;
mod render;
pub mod upgrade_status;

/// The network operator's command-line tool.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print every object the compiled-in states would create for a NicClusterPolicy (and any
    /// network CRs in the same file), as one multi-document YAML stream.
    Render(render::RenderArgs),
    /// Print every CRD of the project as YAML, or write one file per CRD into a directory.
    Crds {
        /// Write `<crd name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the RBAC rules every controller needs, or write them into the subcharts.
    Rbac {
        /// Write `<chart>/files/rbac.yaml` under this directory (the umbrella chart's `charts/`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check a live cluster's NIC stack: one report, problems first, each with what to do.
    /// Exit code 0 (all ok), 1 (warnings), 2 (problems).
    Doctor(doctor::DoctorArgs),
    /// Show what applying a policy file would create, change or delete in a live cluster, and
    /// which driver pools would roll. Exit code 1 when anything would change.
    Diff(diff::DiffArgs),
    /// Driver upgrades in a live cluster.
    Upgrade {
        #[command(subcommand)]
        command: UpgradeCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UpgradeCommand {
    /// Each NIC node's upgrade state, since when, its driver version and the one it should run.
    Status(upgrade_status::StatusArgs),
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// The user's input is wrong: exit code 2.
    Input(String),
    /// Anything else (I/O, serialisation, an unreachable cluster): exit code 1.
    Internal(anyhow::Error),
    /// Done, with this exit code (a report's verdict: doctor's warnings or problems, diff's
    /// changes).
    Exit(u8),
    /// A cluster command could not read the cluster (unreachable, a request refused): exit
    /// code 3, never mistaken for a verdict.
    Cluster(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

/// Runs the tool as `program` (`nicctl`, or `kubectl nic` for the plugin: its help and errors
/// name it so) on the process's arguments.
pub fn main(program: &'static str) -> ExitCode {
    use clap::CommandFactory;
    let matches = Cli::command().name(program).bin_name(program).get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Render(args) => render::run(&args),
        Command::Crds { dir } => crds(dir.as_deref()).map_err(Failure::from),
        Command::Rbac { dir } => rbac::run(dir.as_deref()).map_err(Failure::from),
        Command::Doctor(args) => live::block_on(doctor::run(&args)),
        Command::Diff(args) => live::block_on(diff::run(&args)),
        Command::Upgrade { command: UpgradeCommand::Status(args) } => live::block_on(upgrade_status::run(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Exit(code)) => ExitCode::from(code),
        Err(Failure::Input(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(Failure::Cluster(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// Writes `text` to stdout; a reader that went away (`nicctl rbac | head`) ends the output
/// quietly, as other command-line tools do.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

fn crds(dir: Option<&Path>) -> anyhow::Result<()> {
    let mut stream = String::new();
    for crd in api::crd::all() {
        let yaml = api::crd::to_yaml(&crd).context("serialising a CRD")?;
        match dir {
            Some(dir) => {
                let path = dir.join(api::crd::file_name(&crd));
                std::fs::write(&path, &yaml).with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            None => {
                stream.push_str("---\n");
                stream.push_str(&yaml);
            }
        }
    }
    emit(&stream)
}
