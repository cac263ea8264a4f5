//! `nicctl`: the network operator's offline tool.
//!
//! - `nicctl render -f POLICY.yaml [--nodes NODES.yaml]` prints, as one multi-document YAML
//!   stream, every object the compiled-in states would create for the given documents.
//! - `nicctl crds [--dir DIR]` prints every CRD of the project (or writes one file each).
//! - `nicctl rbac [--dir DIR]` prints the RBAC rules of every controller (or writes each
//!   subchart's `files/rbac.yaml` under `DIR`).
//!
//! Bad input exits with code 2 and one line naming the file and the field path. The states
//! compiled in: every state of the policy (as on a cluster with every optional API, e.g.
//! cert-manager); network CRs render to NetworkAttachmentDefinitions.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod rbac;
mod render;

/// The network operator's offline tool.
#[derive(Debug, Parser)]
#[command(name = "nicctl", version, about)]
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
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
enum Failure {
    /// The user's input is wrong: exit code 2.
    Input(String),
    /// Anything else (I/O, serialisation): exit code 1.
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render(args) => render::run(&args),
        Command::Crds { dir } => crds(dir.as_deref()).map_err(Failure::from),
        Command::Rbac { dir } => rbac::run(dir.as_deref()).map_err(Failure::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout; a reader that went away (`nicctl rbac | head`) ends the output
/// quietly, as other command-line tools do.
fn emit(text: &str) -> anyhow::Result<()> {
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
