//! What is measured: the original (v24.7.0, one Go process, `../shared/original/run`), our
//! split install (one process per controller, as the chart's subcharts run them) or our
//! all-in-one (`network-operator`, one process); their processes' memory and CPU from `/proc`,
//! their API requests from their own metrics.

use crate::metrics::{self, Requests};
use anyhow::{Context, bail};
use e2e::binary::ControllerProcess;
use e2e::original::Original;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every controller binary of the split install.
pub const CONTROLLERS: &[&str] = &[
    "aggregator",
    "ofed-controller",
    "rdma-dp-controller",
    "sriov-dp-controller",
    "nic-feature-discovery-controller",
    "doca-telemetry-controller",
    "ib-kubernetes-controller",
    "multus-controller",
    "cni-plugins-controller",
    "ipoib-controller",
    "whereabouts-controller",
    "nv-ipam-state-controller",
    "nic-configuration-controller",
    "spectrum-x-controller",
    "network-nads-controller",
];

/// The all-in-one install's one binary.
pub const ALL_IN_ONE: &str = "network-operator";

/// Which operator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Install {
    /// The original operator.
    Original,
    /// Ours, one process per controller.
    Split,
    /// Ours, one process.
    AllInOne,
}

impl Install {
    /// From `BENCH_INSTALL`.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "original" => Ok(Self::Original),
            "split" => Ok(Self::Split),
            "all-in-one" => Ok(Self::AllInOne),
            other => {
                bail!("BENCH_INSTALL: {other:?} is none of original, split (one process per controller), all-in-one")
            }
        }
    }

    /// Its name in `BENCH_INSTALL` and the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::Split => "split",
            Self::AllInOne => "all-in-one",
        }
    }
}

/// The summed figures of an install's processes at one moment.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Requests sent so far, by method.
    pub requests: Requests,
    /// Resident memory now, KiB.
    pub rss_kib: u64,
    /// Peak resident memory, KiB.
    pub peak_kib: u64,
    /// CPU seconds (user and system).
    pub cpu_seconds: f64,
}

/// An install, running; stopped when dropped.
pub enum Running {
    /// Our processes, by binary name.
    Ours(Vec<(String, ControllerProcess)>),
    /// The original process.
    Original(Original),
}

impl Running {
    /// Starts `install` with its operands in `namespace`.
    pub async fn start(install: Install, namespace: &str) -> anyhow::Result<Self> {
        let binaries: Vec<&str> = match install {
            Install::Original => {
                let script = e2e::original::script().context("the original is not beside the checkout")?;
                let original = Original::start(&script, namespace);
                let url = original.metrics_url().context("the original names no metrics URL")?;
                let addr = address(&url)?;
                for _ in 0..120 {
                    if fetch(addr, "/metrics").await.is_some() {
                        return Ok(Self::Original(original));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                bail!("the original's metrics ({url}) did not answer in 30 s")
            }
            Install::Split => CONTROLLERS.to_vec(),
            Install::AllInOne => vec![ALL_IN_ONE],
        };
        let bin_dir = e2e::binary::bin_dir();
        let mut processes = Vec::new();
        for name in binaries {
            if !bin_dir.join(name).is_file() {
                bail!("{name} is not built in {} (hack/build-release.sh)", bin_dir.display());
            }
            processes.push((name.to_string(), ControllerProcess::start(name, namespace, &[("RUST_LOG", "warn")])));
        }
        for (_, process) in &processes {
            process.wait_ready().await;
        }
        Ok(Self::Ours(processes))
    }

    /// How many processes it runs.
    pub fn processes(&self) -> usize {
        match self {
            Self::Ours(processes) => processes.len(),
            Self::Original(_) => 1,
        }
    }

    /// Its figures now: memory and CPU summed over its processes, requests by method.
    pub async fn figures(&self) -> Figures {
        let mut out = Figures::default();
        match self {
            Self::Ours(processes) => {
                for (_, process) in processes {
                    add_process(&mut out, process.pid());
                    for (method, n) in metrics::ours(&process.metrics().await) {
                        *out.requests.entry(method).or_default() += n;
                    }
                }
            }
            Self::Original(original) => {
                if let Some(pid) = original.pid() {
                    add_process(&mut out, pid);
                }
                let page = match original.metrics_url().as_deref().map(address) {
                    Some(Ok(addr)) => fetch(addr, "/metrics").await.unwrap_or_default(),
                    _ => String::new(),
                };
                out.requests = metrics::original(&page);
            }
        }
        out
    }
}

/// Adds the memory and CPU of process `pid` (from `/proc`).
fn add_process(out: &mut Figures, pid: u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| -> u64 {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which is in parentheses): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
    out.rss_kib += kib("VmRSS:");
    out.peak_kib += kib("VmHWM:");
    out.cpu_seconds += ticks / 100.0;
}

/// `host:port` of an `http://host:port/...` URL.
fn address(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let host = rest.split('/').next().unwrap_or(rest);
    host.parse().with_context(|| format!("{url}: not http://host:port"))
}

/// `GET path` over HTTP/1.0 (no chunked body): the body of a 200 answer.
async fn fetch(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.split_whitespace().nth(1).filter(|code| *code == "200").map(|_| body.to_string())
}
