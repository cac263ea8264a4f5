//! The scale and memory benchmark (`just bench`): against the API server of
//! `NETOP_E2E_KUBECONFIG`, for each N of `BENCH_NODES` (default 500): N NIC nodes, one install
//! (`BENCH_INSTALL`: `split`, our controllers one process each, the default; `all-in-one`, our
//! one process; `original`, the original v24.7.0 from `../shared/original`), the richest example
//! policy (`BENCH_POLICY`), the scheduler and kubelet played by a fast watch (`kubelet`). It
//! measures memory and CPU (`/proc`), the operator's requests (its metrics) and the API server's
//! (`apiserver_request_total`), the time to `ready` after the create and after each of
//! `BENCH_CHANGES` image version changes, the operator's own reaction apart from the played
//! kubelet (last pod Ready → `ready`; spec change → first operand write), and
//! `BENCH_STEADY_SECONDS` of steady state. Each run is printed, and kept as JSON in
//! `target/bench/runs/`; `bench report` puts every kept run side by side (`BENCH_OUT`), with
//! the ratios ours / original. `hack/bench.sh` with `BENCH_COMPARE=1` runs the three installs on
//! a fresh control plane each, then the report.

mod install;
mod kubelet;
mod metrics;
mod report;
mod timeline;

use anyhow::{Context, bail};
use api::{NicClusterPolicy, POLICY_NAME};
use e2e::{TestEnv, unique_name};
use futures::StreamExt;
use install::{Install, Running};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use metrics::Requests;
use report::RunResult;
use serde_json::json;
use std::time::{Duration, Instant};
use timeline::Timeline;

/// How long a convergence may take before the run is called failed.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(900);

/// Where each run is kept.
const RUNS_DIR: &str = "target/bench/runs";

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = env_or("BENCH_OUT", "target/bench/results.md");
    if std::env::args().nth(1).as_deref() == Some("report") {
        let text = report::side_by_side(std::path::Path::new(RUNS_DIR))?;
        std::fs::write(&out, &text).with_context(|| format!("writing {out}"))?;
        println!("{text}");
        eprintln!("side-by-side report in {out}");
        return Ok(());
    }
    let sizes: Vec<usize> = env_or("BENCH_NODES", "500")
        .split(',')
        .map(|n| n.trim().parse().with_context(|| format!("BENCH_NODES: {n:?} is not a number")))
        .collect::<anyhow::Result<_>>()?;
    let steady = Duration::from_secs(env_or("BENCH_STEADY_SECONDS", "300").parse().context("BENCH_STEADY_SECONDS")?);
    let changes: usize = env_or("BENCH_CHANGES", "3").parse().context("BENCH_CHANGES")?;
    let policy_file = env_or("BENCH_POLICY", "example/crs/nicclusterpolicy_every-section.yaml");
    let install = Install::parse(&env_or("BENCH_INSTALL", "split"))?;
    let policy = read_policy(&policy_file)?;
    std::fs::create_dir_all(RUNS_DIR)?;
    for n in sizes {
        eprintln!("== {} at N = {n}", install.name());
        let result = run(install, n, &policy, &policy_file, steady, changes).await?;
        let file = format!("{RUNS_DIR}/{}-{n}.json", install.name());
        std::fs::write(&file, serde_json::to_string_pretty(&result)?).with_context(|| format!("writing {file}"))?;
        println!("{}", report::single(&result));
    }
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

/// The policy as both operators get it: the driver's tags from the loopback `registry`;
/// nv-ipam's webhook off (it needs cert-manager, which the control plane does not serve).
fn bench_policy(policy: &NicClusterPolicy, registry: &str) -> (NicClusterPolicy, Vec<String>) {
    let mut policy = policy.clone();
    let mut notes = Vec::new();
    if let Some(ofed) = policy.spec.ofed_driver.as_mut() {
        ofed.image.repository = format!("{registry}/mellanox");
        ofed.image.image = "mofed".into();
        notes.push("`ofedDriver` from a loopback registry that lists no precompiled image".to_string());
    }
    if let Some(nv_ipam) = policy.spec.nv_ipam.as_mut().filter(|n| n.enable_webhook == Some(true)) {
        nv_ipam.enable_webhook = Some(false);
        notes.push("`nvIpam.enableWebhook` false (no cert-manager)".to_string());
    }
    (policy, notes)
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

/// The API server's request counts now (`/metrics`), by method, without the played kubelet's.
async fn apiserver_requests(client: &Client) -> Requests {
    let request = http::Request::get("/metrics").body(Vec::new()).expect("a request");
    metrics::apiserver(&client.request_text(request).await.unwrap_or_default())
}

/// Waits until `check` gives a time, or fails after [`CONVERGENCE_LIMIT`] naming `what`.
async fn wait_for(what: &str, timeline: &Timeline, check: impl Fn() -> Option<Instant>) -> anyhow::Result<Instant> {
    let started = Instant::now();
    loop {
        if let Some(at) = check() {
            return Ok(at);
        }
        if started.elapsed() > CONVERGENCE_LIMIT {
            bail!("{what}: not after {:?} (policy {:?})", started.elapsed(), timeline.policy());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One run of `install` with `n` nodes.
async fn run(
    install: Install,
    n: usize,
    policy: &NicClusterPolicy,
    policy_file: &str,
    steady: Duration,
    changes: usize,
) -> anyhow::Result<RunResult> {
    let Some(env) = TestEnv::new("netop-bench").await else {
        bail!("NETOP_E2E_KUBECONFIG is not set: start ../shared/k8s/up or point it at a cluster");
    };
    let client = env.client.clone();
    // The original runs on its own CRDs (ours come back when the guard is dropped).
    let _original_crds = match install {
        Install::Original => {
            let script = e2e::original::script().context("the original is not beside the checkout")?;
            Some(e2e::original::install_original_crds(&client, &script).await)
        }
        _ => None,
    };
    let prefix = unique_name("bench");
    let started = Instant::now();
    create_nodes(&env, &prefix, n).await;
    eprintln!("{n} nodes created in {:?}", started.elapsed());
    e2e::every_section_prerequisites(&client, &env.namespace).await;
    let registry = e2e::registry::serve("mellanox/mofed", Vec::new()).await;
    let (policy, notes) = bench_policy(policy, &registry);

    let running = Running::start(install, &env.namespace).await?;
    let idle = running.figures().await;
    let kubelet = kubelet::Kubelet::start(client.clone(), &env.namespace, format!("{prefix}-0000"));
    let timeline = Timeline::start(&client, &env.namespace);
    let mut result = RunResult::new(install.name(), n, running.processes(), policy_file, &notes, steady, idle.rss_kib);

    // Create the policy; ready when every operand rolled out and the policy says so.
    let before = (running.figures().await, apiserver_requests(&client).await);
    let created_at = Instant::now();
    let created = e2e::fresh_policy(&env, &policy).await;
    let generation = created.metadata.generation.unwrap_or(1);
    let ready = wait_for("ready after create", &timeline, || timeline.ready(created_at, generation, None)).await?;
    result.ready_after_create_s = (ready - created_at).as_secs_f64();
    result.reaction_ready_s.push(reaction(&kubelet, ready));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_create = (running.figures().await, apiserver_requests(&client).await);
    result.requests_create = metrics::delta(&after_create.0.requests, &before.0.requests);
    result.apiserver_create = metrics::delta(&after_create.1, &before.1);
    result.pods =
        Api::<Pod>::namespaced(client.clone(), &env.namespace).list_metadata(&ListParams::default()).await?.items.len();
    eprintln!("ready {:.1} s after create ({} pods)", result.ready_after_create_s, result.pods);

    // Image version changes of a DaemonSet on every node (multus): the first operand write,
    // then ready again for the new generation.
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    for change in 0..changes {
        let version = format!("v9.9.{change}-bench");
        let patch = json!({"spec": {"secondaryNetwork": {"multus": {"version": version}}}});
        let changed_at = Instant::now();
        let changed = policies.patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let generation = changed.metadata.generation.unwrap_or_default();
        let written =
            wait_for("the first operand write", &timeline, || timeline.first_image(changed_at, &version)).await?;
        let ready = wait_for("ready after a version change", &timeline, || {
            timeline.ready(changed_at, generation, Some(&version))
        })
        .await?;
        result.first_write_s.push((written - changed_at).as_secs_f64());
        result.ready_after_change_s.push((ready - changed_at).as_secs_f64());
        result.reaction_ready_s.push(reaction(&kubelet, ready));
        eprintln!(
            "change {}: first write {:.2} s, ready {:.1} s",
            change + 1,
            (written - changed_at).as_secs_f64(),
            (ready - changed_at).as_secs_f64()
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_changes = (running.figures().await, apiserver_requests(&client).await);
    result.requests_changes = metrics::delta(&after_changes.0.requests, &after_create.0.requests);
    result.apiserver_changes = metrics::delta(&after_changes.1, &after_create.1);

    // Steady state: nothing changes.
    eprintln!("steady state for {steady:?}");
    tokio::time::sleep(steady).await;
    let after_steady = (running.figures().await, apiserver_requests(&client).await);
    result.requests_steady = metrics::delta(&after_steady.0.requests, &after_changes.0.requests);
    result.apiserver_steady = metrics::delta(&after_steady.1, &after_changes.1);
    result.rss_mib = after_steady.0.rss_kib as f64 / 1024.0;
    result.peak_mib = after_steady.0.peak_kib as f64 / 1024.0;
    result.cpu_seconds = after_steady.0.cpu_seconds;
    result.nodes_in_cluster = Api::<Node>::all(client.clone()).list_metadata(&ListParams::default()).await?.items.len();
    drop(running);
    Ok(result)
}

/// The operator's own reaction: from the played kubelet's last action before `ready` to it.
fn reaction(kubelet: &kubelet::Kubelet, ready: Instant) -> f64 {
    kubelet.last_action_before(ready).map(|last| (ready - last).as_secs_f64()).unwrap_or(0.0)
}
