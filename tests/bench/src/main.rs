//! The scale and memory benchmark (`just bench`): against the API server of
//! `NETOP_E2E_KUBECONFIG`, for each N of `BENCH_NODES` (default 500): N NIC nodes, every
//! controller binary as its own process (release build, `NETOP_BIN_DIR`), or with
//! `BENCH_INSTALL=all-in-one` the one `network-operator` process that runs them all, the richest example
//! policy (`BENCH_POLICY`), the scheduler and kubelet played for every pod; it measures the
//! time to `ready`, the time from an image version change to every state ready for the new
//! generation, each controller's API requests by verb (convergence, and `BENCH_STEADY_SECONDS`
//! of steady state, which must show no write), and its resident memory (now and peak) and CPU
//! seconds. Prints a Markdown table per N (and writes them to `BENCH_OUT`).

use anyhow::{Context, bail};
use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::target_node;
use e2e::{TestEnv, unique_name};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Every controller binary, with the chart that runs it.
const CONTROLLERS: &[&str] = &[
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
    "network-nads-controller",
];

/// The single-process install's one binary (`BENCH_INSTALL=all-in-one`).
const ALL_IN_ONE: &str = "network-operator";

/// How long convergence may take before the run is called failed.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(900);

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = env_or("BENCH_NODES", "500")
        .split(',')
        .map(|n| n.trim().parse().with_context(|| format!("BENCH_NODES: {n:?} is not a number")))
        .collect::<anyhow::Result<_>>()?;
    let steady = Duration::from_secs(env_or("BENCH_STEADY_SECONDS", "300").parse().context("BENCH_STEADY_SECONDS")?);
    let policy_file = env_or("BENCH_POLICY", "example/crs/nicclusterpolicy_every-section.yaml");
    let out = env_or("BENCH_OUT", "target/bench/results.md");
    let install = env_or("BENCH_INSTALL", "split");
    let binaries: Vec<&str> = match install.as_str() {
        "split" => CONTROLLERS.to_vec(),
        "all-in-one" => vec![ALL_IN_ONE],
        other => bail!("BENCH_INSTALL: {other:?} is neither split (one process per controller) nor all-in-one"),
    };
    let mut policy = read_policy(&policy_file)?;
    let mut notes = String::new();
    // nv-ipam's webhook needs cert-manager, which the benchmark's control plane does not serve.
    if let Some(nv_ipam) = policy.spec.nv_ipam.as_mut().filter(|n| n.enable_webhook == Some(true)) {
        nv_ipam.enable_webhook = Some(false);
        notes.push_str(" `nvIpam.enableWebhook` set to false (no cert-manager);");
    }
    let mut report = format!(
        "# Benchmark ({})\n\nInstall: {install} ({} processes); policy: `{policy_file}`;{notes} steady state: {} s.\n",
        jiff::Timestamp::now(),
        binaries.len(),
        steady.as_secs()
    );
    for n in sizes {
        eprintln!("== N = {n}");
        let section = run(n, &policy, steady, &binaries).await?;
        println!("{section}");
        report.push_str(&section);
        if let Some(dir) = std::path::Path::new(&out).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&out, &report).with_context(|| format!("writing {out}"))?;
    }
    eprintln!("results in {out}");
    Ok(())
}

fn read_policy(path: &str) -> anyhow::Result<NicClusterPolicy> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    for document in api::parse::parse_all(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))? {
        if let api::parse::Document::Policy(policy) = document {
            return Ok(*policy);
        }
    }
    bail!("{path} holds no NicClusterPolicy")
}

/// One controller's figures.
#[derive(Clone, Debug, Default)]
struct Figures {
    requests: BTreeMap<String, f64>,
    rss_kib: u64,
    peak_kib: u64,
    cpu_seconds: f64,
}

fn is_write(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete" | "deletecollection")
}

/// Requests by verb, from a `/metrics` page.
fn requests(metrics: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("network_operator_api_requests_total{")) {
        let verb = line.split("verb=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *out.entry(verb.to_string()).or_default() += value;
    }
    out
}

/// Resident memory now and at its peak (KiB), and CPU seconds, of process `pid`.
fn process_figures(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which is in parentheses): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
    (kib("VmRSS:"), kib("VmHWM:"), ticks / 100.0)
}

async fn figures(processes: &[(String, ControllerProcess)]) -> BTreeMap<String, Figures> {
    let mut out = BTreeMap::new();
    for (name, process) in processes {
        let (rss_kib, peak_kib, cpu_seconds) = process_figures(process.pid());
        out.insert(
            name.clone(),
            Figures { requests: requests(&process.metrics().await), rss_kib, peak_kib, cpu_seconds },
        );
    }
    out
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn shown(requests: &BTreeMap<String, f64>) -> String {
    if requests.is_empty() {
        return "none".into();
    }
    requests.iter().map(|(verb, n)| format!("{verb} {n}")).collect::<Vec<_>>().join(", ")
}

/// Creates `n` Ready NIC nodes with the NFD labels of one Ubuntu pool, 16 at a time.
async fn create_nodes(env: &TestEnv, prefix: &str, n: usize) {
    let labels = [
        ("feature.node.kubernetes.io/pci-15b3.present", "true"),
        ("feature.node.kubernetes.io/system-os_release.ID", "ubuntu"),
        ("feature.node.kubernetes.io/system-os_release.VERSION_ID", "22.04"),
        ("feature.node.kubernetes.io/kernel-version.full", "5.15.0-78-generic"),
        ("kubernetes.io/arch", "amd64"),
    ];
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let name = format!("{prefix}-{i:04}");
            async move { e2e::kubelet::create_node(env, &name, &labels).await }
        })
        .await;
}

/// Plays scheduler and kubelet for every pod of `namespace` once: binds the pending ones (to
/// their DaemonSet's node, else to `any_node`), reports them Running and Ready, and confirms
/// deletions; 32 at a time.
async fn play(client: &Client, namespace: &str, any_node: &str) -> usize {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = api.list(&ListParams::default()).await else { return 0 };
    let ready = |pod: &Pod| {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let todo: Vec<Pod> =
        list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_some() || !ready(p)).collect();
    let count = todo.len();
    futures::stream::iter(todo)
        .for_each_concurrent(32, |pod| {
            let api = api.clone();
            async move {
                let name = pod.name_any();
                if pod.metadata.deletion_timestamp.is_some() {
                    let _ = api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                    return;
                }
                let node = target_node(&pod).unwrap_or_else(|| any_node.to_string());
                if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
                    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                         "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                    let bound: Result<serde_json::Value, _> =
                        api.create_subresource("binding", &name, &PostParams::default(), &binding).await;
                    if bound.is_err() {
                        return;
                    }
                }
                let now = jiff::Timestamp::now().to_string();
                let containers: Vec<_> = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .map(|c| json!({"name": c.name, "ready": true, "started": true, "restartCount": 0,
                                    "image": c.image.clone().unwrap_or_default(), "imageID": "",
                                    "state": {"running": {"startedAt": now}}}))
                    .collect();
                let condition = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
                let status = json!({"status": {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "10.0.0.1", "startTime": now,
                    "conditions": [condition("PodScheduled"), condition("Initialized"), condition("ContainersReady"), condition("Ready")],
                    "containerStatuses": containers}});
                let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
            }
        })
        .await;
    count
}

/// Whether the policy is ready for its current generation in every entry.
async fn all_ready(client: &Client) -> Result<(), String> {
    let policy = Api::<NicClusterPolicy>::all(client.clone()).get(POLICY_NAME).await.map_err(|e| e.to_string())?;
    let generation = policy.metadata.generation;
    let status = policy.status.clone().unwrap_or_default();
    let stale: Vec<String> = status
        .applied_states
        .iter()
        .flatten()
        .filter(|e| e.observed_generation != generation || !matches!(e.state.to_string().as_str(), "ready" | "ignore"))
        .map(|e| format!("{} {} {:?}", e.name, e.state, e.message))
        .collect();
    let global = status.state.map(|s| s.to_string()).unwrap_or_default();
    if global == "ready" && stale.is_empty() { Ok(()) } else { Err(format!("{global}: {stale:?}")) }
}

/// Plays the kubelet until the policy is ready for its generation; how long it took.
async fn converge(client: &Client, namespace: &str, any_node: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let played = play(client, namespace, any_node).await;
        match all_ready(client).await {
            Ok(()) if played == 0 => return Ok(started.elapsed()),
            Ok(()) => {}
            Err(why) if started.elapsed() > CONVERGENCE_LIMIT => {
                bail!("not ready after {:?}: {why}", started.elapsed())
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One run with `n` nodes: the Markdown section of its results.
async fn run(n: usize, policy: &NicClusterPolicy, steady: Duration, binaries: &[&str]) -> anyhow::Result<String> {
    let Some(env) = TestEnv::new("netop-bench").await else {
        bail!("NETOP_E2E_KUBECONFIG is not set: start ../shared/k8s/up or point it at a cluster");
    };
    let client = env.client.clone();
    let prefix = unique_name("bench");
    let started = Instant::now();
    create_nodes(&env, &prefix, n).await;
    eprintln!("{n} nodes created in {:?}", started.elapsed());
    e2e::every_section_prerequisites(&client, &env.namespace).await;
    let bin_dir = e2e::binary::bin_dir();
    let mut processes = Vec::new();
    for name in binaries.iter().filter(|name| bin_dir.join(name).is_file()) {
        let process = ControllerProcess::start(name, &env.namespace, &[("RUST_LOG", "warn")]);
        processes.push((name.to_string(), process));
    }
    for (_, process) in &processes {
        process.wait_ready().await;
    }
    let idle = figures(&processes).await;
    let any_node = format!("{prefix}-0000");

    // Create the policy and converge.
    let before = figures(&processes).await;
    e2e::fresh_policy(&env, policy).await;
    let to_ready = converge(&client, &env.namespace, &any_node).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_create = figures(&processes).await;
    let pods = Api::<Pod>::namespaced(client.clone(), &env.namespace).list(&ListParams::default()).await?.items.len();
    eprintln!("ready after {to_ready:?} ({pods} pods)");

    // An image version change: every state ready again for the new generation.
    let version = format!("v9.9.{}", jiff::Timestamp::now().as_second() % 1000);
    let change = json!({"spec": {"ibKubernetes": {"version": version}}});
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&change))
        .await?;
    let to_ready_again = converge(&client, &env.namespace, &any_node).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_change = figures(&processes).await;
    eprintln!("ready again after {to_ready_again:?}; steady state for {steady:?}");

    // Steady state.
    tokio::time::sleep(steady).await;
    let after_steady = figures(&processes).await;

    let nodes = Api::<Node>::all(client.clone()).list_metadata(&ListParams::default()).await?.items.len();
    let mut out = String::new();
    writeln!(out, "\n## N = {n} NIC nodes ({nodes} nodes in the cluster, {pods} operand pods)\n")?;
    writeln!(
        out,
        "- policy created → `ready`: {:.1} s (the benchmark plays scheduler and kubelet for every pod)",
        to_ready.as_secs_f64()
    )?;
    writeln!(
        out,
        "- `ibKubernetes.version` changed → every state `ready` for the new generation: {:.1} s",
        to_ready_again.as_secs_f64()
    )?;
    writeln!(
        out,
        "\n| controller | RSS idle (MiB) | RSS now / peak (MiB) | CPU s | requests, create → ready | requests, version change | writes in {} s steady |",
        steady.as_secs()
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    let mut total_rss = 0;
    let mut steady_writes = 0.0;
    for (name, _) in &processes {
        let (i, b, c, g, s) =
            (&idle[name], &before[name], &after_create[name], &after_change[name], &after_steady[name]);
        let writes: f64 =
            delta(&s.requests, &g.requests).iter().filter(|(v, _)| is_write(v)).map(|(_, n)| n).sum::<f64>().max(0.0);
        steady_writes += writes;
        total_rss += s.rss_kib;
        writeln!(
            out,
            "| {name} | {:.1} | {:.1} / {:.1} | {:.2} | {} | {} | {writes:.0} |",
            i.rss_kib as f64 / 1024.0,
            s.rss_kib as f64 / 1024.0,
            s.peak_kib as f64 / 1024.0,
            s.cpu_seconds,
            shown(&delta(&c.requests, &b.requests)),
            shown(&delta(&g.requests, &c.requests)),
        )?;
    }
    writeln!(out, "| **all** | | {:.1} | | | | {steady_writes:.0} |", total_rss as f64 / 1024.0)?;
    if steady_writes > 0.0 {
        eprintln!("WARNING: {steady_writes} writes in steady state");
    }
    drop(processes);
    Ok(out)
}
