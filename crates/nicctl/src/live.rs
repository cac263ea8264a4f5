//! What the cluster commands share: the connection (the user's kubeconfig: `--kubeconfig`,
//! `--context`, `KUBECONFIG`, or the pod's service account in a cluster), the output formats,
//! and terminal tables. The commands only read (and ask the API server to dry-run): nothing is
//! ever written.

use crate::Failure;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::PathBuf;

/// How to reach the cluster.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Path of the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the
    /// in-cluster service account).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of the operands (the chart's release namespace by default).
    #[arg(short = 'n', long, global = true, env = "OPERANDS_NAMESPACE", default_value = "nvidia-network-operator")]
    pub namespace: String,
}

/// Output format of a cluster command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Columns for a terminal (colour only on a terminal).
    #[default]
    Human,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// A client for the cluster of `args`; failing to load the configuration is an input error
/// saying which.
pub async fn connect(args: &ClusterArgs) -> Result<Client, Failure> {
    Ok(connect_with_config(args).await?.0)
}

/// [`connect`], with the configuration it was made from (to make others, e.g. impersonating).
pub async fn connect_with_config(args: &ClusterArgs) -> Result<(Client, Config), Failure> {
    let options = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| Failure::Input(format!("--kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| e.to_string())
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options).await.map_err(|e| e.to_string()),
        None => Config::infer().await.map_err(|e| e.to_string()),
    }
    .map_err(|e| Failure::Input(format!("no usable kubeconfig: {e}")))?;
    let client = Client::try_from(config.clone()).context("building the Kubernetes client")?;
    Ok((client, config))
}

/// Runs a cluster command on a runtime of its own; its failures to read the cluster become
/// [`Failure::Cluster`] (exit code 3).
pub fn block_on(command: impl std::future::Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    match runtime.block_on(command) {
        Err(Failure::Internal(e)) => Err(Failure::Cluster(e)),
        other => other,
    }
}

/// Prints `value` as JSON or YAML (`format` is not [`Format::Human`]).
pub fn print_structured(value: &impl Serialize, format: Format) -> Result<(), Failure> {
    let text = match format {
        Format::Yaml => serde_saphyr::to_string(value).context("serialising the report")?,
        _ => format!("{}\n", serde_json::to_string_pretty(value).context("serialising the report")?),
    };
    crate::emit(&text)?;
    Ok(())
}

/// Colours for a terminal: none when stdout is not one (or `NO_COLOR` is set).
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    on: bool,
}

impl Paint {
    /// Colours when stdout is a terminal.
    pub fn for_stdout() -> Self {
        Self { on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }

    /// No colours.
    pub fn plain() -> Self {
        Self { on: false }
    }

    /// `text` in red.
    pub fn red(self, text: &str) -> String {
        self.wrap("31", text)
    }

    /// `text` in yellow.
    pub fn yellow(self, text: &str) -> String {
        self.wrap("33", text)
    }

    /// `text` in green.
    pub fn green(self, text: &str) -> String {
        self.wrap("32", text)
    }

    fn wrap(self, code: &str, text: &str) -> String {
        if self.on { format!("\u{1b}[{code}m{text}\u{1b}[0m") } else { text.to_string() }
    }
}

/// Rows as aligned columns, like `kubectl get`: a header, then each row; `paint` colours a
/// cell after it is padded (so colour codes do not break the alignment).
pub fn table(header: &[&str], rows: &[Vec<String>], paint: impl Fn(usize, &str) -> String) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let padded: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = if i == last { 0 } else { widths[i].saturating_sub(cell.chars().count()) };
                format!("{}{}", paint(i, &cell), " ".repeat(pad))
            })
            .collect();
        format!("{}\n", padded.join("   ").trim_end())
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// A duration in whole units, like kubectl's AGE column: `45s`, `12m`, `5h`, `3d`.
pub fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_its_columns_and_colour_does_not_shift_them() {
        let rows = vec![vec!["node-a".to_string(), "upgrade-done".to_string()], vec!["b".into(), "x".into()]];
        let plain = table(&["NODE", "STATE"], &rows, |_, cell| cell.to_string());
        assert_eq!(plain, "NODE     STATE\nnode-a   upgrade-done\nb        x\n");
        let painted =
            table(&["NODE", "STATE"], &rows, |i, cell| if i == 0 { format!("<{cell}>") } else { cell.into() });
        assert!(painted.contains("<b>        x"), "{painted}");
    }

    #[test]
    fn ages_read_like_kubectls() {
        assert_eq!(
            (age(45), age(600), age(3 * 3600), age(3 * 86400)),
            ("45s".into(), "10m".into(), "3h".into(), "3d".into())
        );
    }
}
