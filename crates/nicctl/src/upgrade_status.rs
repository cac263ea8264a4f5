//! `nicctl upgrade status`: the driver upgrade of the cluster at a glance. Per NIC node: its
//! upgrade state (the OFED controller's node label), since when (the node's last Event of that
//! transition), the driver version its pod runs and the one its DaemonSet's template says, its
//! cordon, and what holds it (the pods a drain waits for, or why it failed); then totals and the
//! limits in force. [`report`] is pure; [`gather`] reads the cluster.

use crate::Failure;
use crate::live::{self, ClusterArgs, Format, Paint};
use anyhow::Context as _;
use api::{NicClusterPolicy, NicNodePolicy};
use clap::Args;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use ofed::upgrade::{DRAIN_SKIP_LABEL, FAILURE_ANNOTATION, NodeState, STATE_LABEL};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Arguments of `nicctl upgrade status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    output: Format,
    /// Refresh every 2 seconds until interrupted.
    #[arg(short, long)]
    watch: bool,
}

/// What the report is made from.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// The NIC nodes.
    pub nodes: Vec<Node>,
    /// The driver pods.
    pub driver_pods: Vec<Pod>,
    /// The driver DaemonSets.
    pub daemon_sets: Vec<DaemonSet>,
    /// Events on nodes recorded by the OFED controller.
    pub events: Vec<Event>,
    /// Pods on nodes being drained, by node (those a drain would evict).
    pub draining_pods: BTreeMap<String, Vec<String>>,
    /// The NicClusterPolicy.
    pub policy: Option<NicClusterPolicy>,
    /// The NicNodePolicies.
    pub node_policies: Vec<NicNodePolicy>,
    /// Now, Unix seconds.
    pub now: i64,
}

/// One node's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeLine {
    /// The node.
    pub node: String,
    /// Its upgrade state (`""`: none yet).
    pub state: String,
    /// Seconds since it entered that state, if an Event says.
    pub since_seconds: Option<i64>,
    /// The driver version its pod runs.
    pub running: Option<String>,
    /// The version its DaemonSet's template runs.
    pub wanted: Option<String>,
    /// It is cordoned.
    pub cordoned: bool,
    /// What holds it: the pods its drain waits for, or why its upgrade failed.
    pub blocking: Option<String>,
}

/// The limits of one policy's upgrades.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// `NicClusterPolicy` or `NicNodePolicy/<name>`.
    pub policy: String,
    /// Whether `autoUpgrade` is on.
    pub auto_upgrade: bool,
    /// `maxParallelUpgrades` (0: no limit).
    pub max_parallel_upgrades: u32,
    /// `maxUnavailable` as written (default 25%).
    pub max_unavailable: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// One line per NIC node, by name.
    pub nodes: Vec<NodeLine>,
    /// Nodes per state.
    pub totals: BTreeMap<String, usize>,
    /// The limits in force, per policy with a driver.
    pub limits: Vec<Limits>,
}

/// The tag of an image reference (`repo/name:tag`), else the reference.
fn version_of(image: &str) -> String {
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.split_once(':') {
        Some((_, tag)) => tag.to_string(),
        None => image.to_string(),
    }
}

fn first_image(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> Option<String> {
    spec.and_then(|s| s.containers.first()).and_then(|c| c.image.clone())
}

/// The driver pod (labelled [`ofed::DRIVER_LABEL`]) bound to `node` and not being deleted.
pub fn driver_pod_on<'a>(pods: &'a [Pod], node: &str) -> Option<&'a Pod> {
    pods.iter()
        .filter(|p| p.labels().contains_key(ofed::DRIVER_LABEL))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
}

/// The report of `inputs`.
pub fn report(inputs: &Inputs) -> Report {
    let mut lines = Vec::new();
    for node in &inputs.nodes {
        let name = node.name_any();
        let state = node.labels().get(STATE_LABEL).cloned().unwrap_or_default();
        let pod = driver_pod_on(&inputs.driver_pods, &name);
        let running = pod.and_then(|p| first_image(p.spec.as_ref())).map(|i| version_of(&i));
        let owner = pod.and_then(|p| p.owner_references().first().map(|o| o.uid.clone()));
        let wanted = inputs
            .daemon_sets
            .iter()
            .find(|ds| ds.metadata.uid.is_some() && ds.metadata.uid == owner)
            .and_then(|ds| first_image(ds.spec.as_ref().and_then(|s| s.template.spec.as_ref())))
            .map(|i| version_of(&i));
        let reason = NodeState::parse(Some(state.as_str())).reason();
        let since = inputs
            .events
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()))
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| {
                let series = e.series.as_ref().map(|s| s.last_observed_time.0);
                series.or(e.event_time.as_ref().map(|t| t.0)).map(|t| t.as_second())
            })
            .max()
            .map(|at| inputs.now - at);
        let blocking = match state.as_str() {
            "upgrade-failed" => node.annotations().get(FAILURE_ANNOTATION).cloned(),
            "drain-required" => inputs.draining_pods.get(&name).filter(|p| !p.is_empty()).map(|pods| pods.join(", ")),
            _ => None,
        };
        let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        lines.push(NodeLine { node: name, state, since_seconds: since, running, wanted, cordoned, blocking });
    }
    lines.sort_by(|a, b| a.node.cmp(&b.node));
    let mut totals = BTreeMap::new();
    for line in &lines {
        let state = if line.state.is_empty() { "(none)".to_string() } else { line.state.clone() };
        *totals.entry(state).or_default() += 1;
    }
    let mut limits = Vec::new();
    let mut add = |policy: String, spec: Option<&api::policy::OfedDriverSpec>| {
        if let Some(spec) = spec {
            let upgrade = spec.upgrade_policy.clone().unwrap_or_default();
            let max_unavailable = match &upgrade.max_unavailable {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => n.to_string(),
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => s.clone(),
                None => "25%".to_string(),
            };
            limits.push(Limits {
                policy,
                auto_upgrade: upgrade.auto_upgrade == Some(true),
                max_parallel_upgrades: upgrade.max_parallel_upgrades.map_or(1, |n| n.max(0) as u32),
                max_unavailable,
            });
        }
    };
    if let Some(policy) = &inputs.policy {
        add("NicClusterPolicy".to_string(), policy.spec.ofed_driver.as_ref());
    }
    for policy in &inputs.node_policies {
        add(format!("NicNodePolicy/{}", policy.name_any()), policy.spec.ofed_driver.as_ref());
    }
    Report { nodes: lines, totals, limits }
}

/// The report as a terminal shows it.
pub fn human(report: &Report, paint: Paint) -> String {
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|l| {
            vec![
                l.node.clone(),
                if l.state.is_empty() { "-".into() } else { l.state.clone() },
                l.since_seconds.map_or("-".into(), live::age),
                l.running.clone().unwrap_or("-".into()),
                l.wanted.clone().unwrap_or("-".into()),
                if l.cordoned { "yes".into() } else { "no".into() },
                l.blocking.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = live::table(
        &["NODE", "STATE", "SINCE", "RUNNING", "WANTED", "CORDONED", "BLOCKING"],
        &rows,
        |i, cell| match (i, cell.trim()) {
            (1, "upgrade-failed") => paint.red(cell),
            (1, "upgrade-done") => paint.green(cell),
            (1, "-") => cell.to_string(),
            (1, _) => paint.yellow(cell),
            _ => cell.to_string(),
        },
    );
    let totals: Vec<String> = report.totals.iter().map(|(state, n)| format!("{n} {state}")).collect();
    out.push_str(&format!("\n{} node(s): {}\n", report.nodes.len(), totals.join(", ")));
    for limit in &report.limits {
        out.push_str(&format!(
            "{}: autoUpgrade {}, maxParallelUpgrades {}, maxUnavailable {}\n",
            limit.policy,
            limit.auto_upgrade,
            if limit.max_parallel_upgrades == 0 {
                "unlimited".to_string()
            } else {
                limit.max_parallel_upgrades.to_string()
            },
            limit.max_unavailable
        ));
    }
    out
}

/// Reads what [`report`] needs from the cluster.
pub async fn gather(client: &Client, namespace: &str) -> Result<Inputs, Failure> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{}=true", state_core::edits::NIC_PRESENT_LABEL)))
        .await
        .context("listing the NIC nodes")?
        .items;
    let driver_pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(ofed::DRIVER_LABEL))
        .await
        .with_context(|| format!("listing the driver pods in {namespace}"))?
        .items;
    let daemon_sets = Api::<DaemonSet>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing the DaemonSets in {namespace}"))?
        .items
        .into_iter()
        .filter(|ds| ds.labels().contains_key(ofed::DRIVER_LABEL) || ds.name_any().starts_with("mofed-"))
        .collect();
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields("regarding.kind=Node"))
        .await
        .context("listing the Events on nodes")?
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("ofed-controller"))
        .collect();
    let mut draining_pods = BTreeMap::new();
    for node in nodes.iter().filter(|n| n.labels().get(STATE_LABEL).map(String::as_str) == Some("drain-required")) {
        let name = node.name_any();
        draining_pods.insert(name.clone(), pods_to_evict(client, &name).await?);
    }
    let policy = Api::<NicClusterPolicy>::all(client.clone())
        .get_opt(api::POLICY_NAME)
        .await
        .context("reading the NicClusterPolicy")?;
    let node_policies = match Api::<NicNodePolicy>::all(client.clone()).list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(e) => return Err(anyhow::Error::new(e).context("listing the NicNodePolicies").into()),
    };
    let now = jiff::Timestamp::now().as_second();
    Ok(Inputs { nodes, driver_pods, daemon_sets, events, draining_pods, policy, node_policies, now })
}

/// The pods on `node` a drain evicts: not DaemonSet pods, not mirror pods, not labelled to skip,
/// not finished.
pub async fn pods_to_evict(client: &Client, node: &str) -> Result<Vec<String>, Failure> {
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .with_context(|| format!("listing the pods on {node}"))?
        .items;
    Ok(pods
        .iter()
        .filter(|p| !p.owner_references().iter().any(|o| o.kind == "DaemonSet"))
        .filter(|p| !p.annotations().contains_key("kubernetes.io/config.mirror"))
        .filter(|p| p.labels().get(DRAIN_SKIP_LABEL).map(String::as_str) != Some("true"))
        .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
        .collect())
}

/// Runs `nicctl upgrade status`.
pub async fn run(args: &StatusArgs) -> Result<(), Failure> {
    let client = live::connect(&args.cluster).await?;
    loop {
        let report = report(&gather(&client, &args.cluster.namespace).await?);
        match args.output {
            Format::Human => {
                let text = human(&report, Paint::for_stdout());
                if args.watch {
                    crate::emit(&format!("\u{1b}[2J\u{1b}[H{text}"))?;
                } else {
                    crate::emit(&text)?;
                }
            }
            format => live::print_structured(&report, format)?,
        }
        if !args.watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, state: &str, cordoned: bool, failure: Option<&str>) -> Node {
        let mut annotations = serde_json::Map::new();
        if let Some(failure) = failure {
            annotations.insert(FAILURE_ANNOTATION.into(), json!(failure));
        }
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {STATE_LABEL: state},
            "annotations": annotations}, "spec": {"unschedulable": cordoned}}))
        .unwrap()
    }

    fn driver(node: &str, image: &str, owner: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": format!("mofed-{node}"), "labels": {ofed::DRIVER_LABEL: ""},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": owner}]},
            "spec": {"nodeName": node, "containers": [{"name": "mofed", "image": image}]}}))
        .unwrap()
    }

    #[test]
    fn each_node_shows_its_state_since_when_its_versions_and_what_blocks_it() {
        let daemon_set: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "mofed-ds", "uid": "u1"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "mofed",
                "image": "nvcr.io/nvidia/mellanox/doca-driver:24.10-0.7.0.0-0"}]}}}}))
        .unwrap();
        let event: Event = serde_json::from_value(json!({"metadata": {"name": "e1"}, "reason": "DrainRequired",
            "eventTime": "2026-11-30T10:00:00.000000Z", "regarding": {"kind": "Node", "name": "b"}}))
        .unwrap();
        let inputs = Inputs {
            nodes: vec![
                node("b", "drain-required", true, None),
                node("a", "upgrade-done", false, None),
                node("c", "upgrade-failed", true, Some("drain failed: timed out after 5s")),
            ],
            driver_pods: vec![
                driver("a", "nvcr.io/nvidia/mellanox/doca-driver:24.10-0.7.0.0-0", "u1"),
                driver("b", "nvcr.io/nvidia/mellanox/doca-driver:24.07-0.6.1.0-0", "u1"),
            ],
            daemon_sets: vec![daemon_set],
            events: vec![event],
            draining_pods: [("b".to_string(), vec!["work/train-0".to_string()])].into(),
            policy: Some(serde_json::from_value(json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
                "metadata": {"name": "nic-cluster-policy"},
                "spec": {"ofedDriver": {"image": "doca-driver", "repository": "nvcr.io/nvidia/mellanox", "version": "24.10-0.7.0.0-0",
                         "upgradePolicy": {"autoUpgrade": true, "maxParallelUpgrades": 2}}}}))
            .unwrap()),
            node_policies: vec![],
            now: "2026-11-30T10:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second() + 90,
        };
        let report = report(&inputs);
        let names: Vec<&str> = report.nodes.iter().map(|l| l.node.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let b = &report.nodes[1];
        assert_eq!(b.running.as_deref(), Some("24.07-0.6.1.0-0"));
        assert_eq!(b.wanted.as_deref(), Some("24.10-0.7.0.0-0"));
        assert_eq!((b.since_seconds, b.cordoned, b.blocking.as_deref()), (Some(90), true, Some("work/train-0")));
        assert_eq!(report.nodes[2].blocking.as_deref(), Some("drain failed: timed out after 5s"));
        assert_eq!(report.totals["upgrade-done"], 1);
        assert_eq!(
            report.limits,
            [Limits {
                policy: "NicClusterPolicy".into(),
                auto_upgrade: true,
                max_parallel_upgrades: 2,
                max_unavailable: "25%".into()
            }]
        );
        let text = human(&report, Paint::plain());
        assert!(text.contains("b      drain-required   90s     24.07-0.6.1.0-0"), "{text}");
        assert!(text.contains("3 node(s): 1 drain-required, 1 upgrade-done, 1 upgrade-failed"), "{text}");
        assert!(
            text.contains("NicClusterPolicy: autoUpgrade true, maxParallelUpgrades 2, maxUnavailable 25%"),
            "{text}"
        );
    }
}
