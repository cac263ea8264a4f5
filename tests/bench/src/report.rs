//! One run's figures (kept as JSON), and the Markdown tables: one run alone, and every kept run
//! side by side per N with the ratios ours / original.

use crate::metrics::{self, Requests};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// What one run of one install at one N measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// `original`, `split` or `all-in-one`.
    pub install: String,
    /// NIC nodes.
    pub nodes: usize,
    /// Nodes in the cluster at the end.
    pub nodes_in_cluster: usize,
    /// Operand pods after the create.
    pub pods: usize,
    /// The install's processes.
    pub processes: usize,
    /// The policy file, and what the benchmark changed in it.
    pub policy: String,
    /// What the benchmark changed in the policy.
    pub notes: Vec<String>,
    /// Seconds of steady state.
    pub steady_seconds: u64,
    /// Resident memory before the policy, MiB (summed over processes).
    pub rss_idle_mib: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib: f64,
    /// Peak resident memory, MiB (the sum of each process's peak).
    pub peak_mib: f64,
    /// CPU seconds over the whole run.
    pub cpu_seconds: f64,
    /// The operator's requests from the create to `ready`, by method.
    pub requests_create: Requests,
    /// The operator's requests over every version change.
    pub requests_changes: Requests,
    /// The operator's requests in steady state.
    pub requests_steady: Requests,
    /// The API server's requests (without the played kubelet's) from the create to `ready`.
    pub apiserver_create: Requests,
    /// The API server's requests over every version change.
    pub apiserver_changes: Requests,
    /// The API server's requests in steady state.
    pub apiserver_steady: Requests,
    /// Seconds from the create to `ready`.
    pub ready_after_create_s: f64,
    /// Seconds from each version change to `ready`.
    pub ready_after_change_s: Vec<f64>,
    /// Seconds from each version change to the first operand write.
    pub first_write_s: Vec<f64>,
    /// Seconds from the played kubelet's last action to `ready` (the create, then each change).
    pub reaction_ready_s: Vec<f64>,
}

impl RunResult {
    /// A run about to start.
    pub fn new(
        install: &str,
        nodes: usize,
        processes: usize,
        policy: &str,
        notes: &[String],
        steady: Duration,
        idle_kib: u64,
    ) -> Self {
        Self {
            install: install.to_string(),
            nodes,
            processes,
            policy: policy.to_string(),
            notes: notes.to_vec(),
            steady_seconds: steady.as_secs(),
            rss_idle_mib: idle_kib as f64 / 1024.0,
            ..Self::default()
        }
    }

    fn per_minute(&self, requests: &Requests) -> (f64, f64) {
        let (all, writes) = metrics::totals(requests);
        let minutes = (self.steady_seconds as f64 / 60.0).max(f64::EPSILON);
        (all / minutes, writes / minutes)
    }

    /// The table's rows: (label, value shown, value compared in the ratio).
    fn rows(&self) -> Vec<(&'static str, String, f64)> {
        let count = |r: &Requests| {
            let (all, writes) = metrics::totals(r);
            (format!("{all:.0} ({writes:.0} writes)"), all)
        };
        let (create, create_n) = count(&self.requests_create);
        let (changes, changes_n) = count(&self.requests_changes);
        let (server_create, server_create_n) = count(&self.apiserver_create);
        let (server_changes, server_changes_n) = count(&self.apiserver_changes);
        let (steady_rpm, steady_wpm) = self.per_minute(&self.requests_steady);
        let (server_rpm, _) = self.per_minute(&self.apiserver_steady);
        let steady_writes = metrics::totals(&self.requests_steady).1;
        let (ready_p50, ready_max) = (percentile(&self.reaction_ready_s, 0.5), percentile(&self.reaction_ready_s, 1.0));
        let (write_p50, write_max) = (percentile(&self.first_write_s, 0.5), percentile(&self.first_write_s, 1.0));
        let change = percentile(&self.ready_after_change_s, 0.5);
        vec![
            ("processes", self.processes.to_string(), self.processes as f64),
            ("RSS at the end (MiB)", format!("{:.1}", self.rss_mib), self.rss_mib),
            ("peak RSS (MiB)", format!("{:.1}", self.peak_mib), self.peak_mib),
            ("CPU seconds", format!("{:.1}", self.cpu_seconds), self.cpu_seconds),
            ("operator requests, create → ready", create, create_n),
            ("operator requests, version changes", changes, changes_n),
            ("operator requests per minute, steady", format!("{steady_rpm:.1}"), steady_rpm),
            ("operator writes in steady state", format!("{steady_writes:.0} ({steady_wpm:.1}/min)"), steady_writes),
            ("API server requests, create → ready", server_create, server_create_n),
            ("API server requests, version changes", server_changes, server_changes_n),
            ("API server requests per minute, steady", format!("{server_rpm:.1}"), server_rpm),
            ("create → ready (s)", format!("{:.1}", self.ready_after_create_s), self.ready_after_create_s),
            ("version change → ready (s, median)", format!("{change:.1}"), change),
            ("last pod Ready → ready (s, p50 / max)", format!("{ready_p50:.2} / {ready_max:.2}"), ready_p50),
            ("spec change → first operand write (s, p50 / max)", format!("{write_p50:.2} / {write_max:.2}"), write_p50),
        ]
    }
}

/// The `q` quantile (nearest rank) of `values`; 0 when there are none.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// One run as a Markdown section.
pub fn single(run: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## {} at N = {} ({} operand pods)\n", run.install, run.nodes, run.pods);
    let _ = writeln!(out, "| | {} |\n|---|---|", run.install);
    for (label, shown, _) in run.rows() {
        let _ = writeln!(out, "| {label} | {shown} |");
    }
    out
}

/// The installs in the report's column order.
const ORDER: [&str; 3] = ["original", "split", "all-in-one"];

/// Every run in `dir` side by side, one table per N, with the ratios ours / original.
pub fn side_by_side(dir: &Path) -> anyhow::Result<String> {
    let mut runs: BTreeMap<usize, BTreeMap<String, RunResult>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let run: RunResult = serde_json::from_str(&std::fs::read_to_string(&path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            runs.entry(run.nodes).or_default().insert(run.install.clone(), run);
        }
    }
    let mut out = String::from("# Benchmark: the original beside ours\n");
    for (n, by_install) in &runs {
        let installs: Vec<&RunResult> = ORDER.iter().filter_map(|i| by_install.get(*i)).collect();
        let Some(first) = installs.first() else { continue };
        let _ = writeln!(
            out,
            "\n## N = {n} NIC nodes ({} operand pods; policy `{}`; {}; steady state {} s)\n",
            first.pods,
            first.policy,
            first.notes.join(", "),
            first.steady_seconds
        );
        let original = by_install.get("original");
        let ours: Vec<&RunResult> = installs.iter().copied().filter(|r| r.install != "original").collect();
        let mut header = String::from("| |");
        for run in &installs {
            header.push_str(&format!(" {} |", run.install));
        }
        if original.is_some() {
            for run in &ours {
                header.push_str(&format!(" {} / original |", run.install));
            }
        }
        let columns = header.matches('|').count() - 1;
        let _ = writeln!(out, "{header}\n|{}", "---|".repeat(columns));
        let table: Vec<Vec<(&str, String, f64)>> = installs.iter().map(|r| r.rows()).collect();
        for (row, (label, _, _)) in table[0].iter().enumerate() {
            let mut line = format!("| {label} |");
            for rows in &table {
                line.push_str(&format!(" {} |", rows[row].1));
            }
            if let Some(original) = original {
                let theirs = original.rows()[row].2;
                for run in &ours {
                    line.push_str(&format!(" {} |", ratio(run.rows()[row].2, theirs)));
                }
            }
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(out)
}

/// `ours / theirs`, or a dash where it means nothing.
fn ratio(ours: f64, theirs: f64) -> String {
    if theirs == 0.0 { "–".into() } else { format!("{:.2}", ours / theirs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(install: &str, rss: f64, reactions: &[f64]) -> RunResult {
        RunResult {
            install: install.into(),
            nodes: 100,
            processes: 1,
            rss_mib: rss,
            steady_seconds: 120,
            requests_steady: Requests::from([("GET".to_string(), 240.0), ("PUT".to_string(), 60.0)]),
            reaction_ready_s: reactions.to_vec(),
            ..RunResult::default()
        }
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 0.5), 2.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 1.0), 3.0);
    }

    #[test]
    fn the_report_puts_the_installs_side_by_side_with_ratios_to_the_original() {
        let dir = std::env::temp_dir().join(e2e::unique_name("bench-report"));
        std::fs::create_dir_all(&dir).unwrap();
        for result in [run("all-in-one", 10.0, &[0.2]), run("original", 40.0, &[2.5]), run("split", 80.0, &[0.4])] {
            std::fs::write(dir.join(format!("{}.json", result.install)), serde_json::to_string(&result).unwrap())
                .unwrap();
        }
        let text = side_by_side(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            text.contains("| | original | split | all-in-one | split / original | all-in-one / original |"),
            "{text}"
        );
        assert!(text.contains("| RSS at the end (MiB) | 40.0 | 80.0 | 10.0 | 2.00 | 0.25 |"), "{text}");
        assert!(
            text.contains("| operator requests per minute, steady | 150.0 | 150.0 | 150.0 | 1.00 | 1.00 |"),
            "{text}"
        );
        assert!(text.contains("| operator writes in steady state | 60 (30.0/min) |"), "{text}");
        assert!(
            text.contains(
                "| last pod Ready → ready (s, p50 / max) | 2.50 / 2.50 | 0.40 / 0.40 | 0.20 / 0.20 | 0.16 | 0.08 |"
            ),
            "{text}"
        );
    }
}
