//! `nicctl doctor`: why is the NIC stack not ready? [`gather`] reads the cluster once into
//! [`Facts`]; each check is a pure function of them giving [`Finding`]s (ok, warning or
//! problem, what was found, what to do); the report lists problems first and sets the exit
//! code (0 all ok, 1 warnings, 2 problems).
//!
//! The checks: the CRDs installed and current; which controllers run and which enabled
//! sections have none; Node Feature Discovery and the labels driver pools need; `mofed.wait`
//! stuck on a node; operand pods not ready, by state; the nv-ipam webhook's certificate
//! provider; driver upgrades (failed nodes, stray cordons, drains blocked); each running
//! controller's access as its ServiceAccount (by impersonation); the policy's status against
//! each enabled section.

use crate::Failure;
use crate::live::{self, ClusterArgs, Format, Paint};
use anyhow::Context as _;
use api::state::SyncState;
use api::{NicClusterPolicy, NicNodePolicy};
use clap::Args;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use state_core::edits::{MOFED_WAIT_LABEL, NIC_PRESENT_LABEL};
use std::collections::{BTreeMap, BTreeSet};

/// Arguments of `nicctl doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    output: Format,
    /// Seconds a node may wait for its driver (`mofed.wait` true) before it is a problem.
    #[arg(long, default_value_t = 600)]
    mofed_wait_threshold: i64,
}

/// A finding's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Something is broken.
    Problem,
    /// Something may be wrong, or could not be checked.
    Warning,
    /// As it should be.
    Ok,
}

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check (`crds`, `controllers`, `nfd`, `mofed-wait`, `operand-pods`, `nv-ipam-webhook`,
    /// `upgrades`, `rbac`, `policy-status`).
    pub check: &'static str,
    /// Its weight.
    pub verdict: Verdict,
    /// What was found.
    pub found: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, found: impl Into<String>) -> Self {
        Self { check, verdict: Verdict::Ok, found: found.into(), action: None }
    }

    fn warning(check: &'static str, found: impl Into<String>, action: impl Into<String>) -> Self {
        Self { check, verdict: Verdict::Warning, found: found.into(), action: Some(action.into()) }
    }

    fn problem(check: &'static str, found: impl Into<String>, action: impl Into<String>) -> Self {
        Self { check, verdict: Verdict::Problem, found: found.into(), action: Some(action.into()) }
    }
}

/// A running controller: its Deployment (or Lease) and what it may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Controller {
    /// Its subchart's name (`ofed`, `all-in-one`, ...).
    pub chart: String,
    /// Namespace of its Deployment.
    pub namespace: String,
    /// Its ServiceAccount.
    pub service_account: String,
    /// Ready replicas of its Deployment.
    pub ready: i32,
    /// Its image (the version it runs).
    pub image: String,
    /// Its `network_operator_build_info` labels (`component`, `version`, `commit`), scraped
    /// through the API server's pod proxy; `None` when not reachable.
    pub build_info: Option<String>,
}

/// What a controller's ServiceAccount may not do, as the API server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Not checked, and why.
    Skipped(String),
    /// The grants of its generated RBAC it is denied (`verb group/resource [name] (where)`).
    Denied(Vec<String>),
}

/// Everything the checks read.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Now, Unix seconds.
    pub now: i64,
    /// The operands' namespace.
    pub namespace: String,
    /// The CRDs of this build that are not installed, by name.
    pub crds_missing: Vec<String>,
    /// The CRDs of this build installed with another schema, by name.
    pub crds_outdated: Vec<String>,
    /// The CRDs of this build.
    pub crds_total: usize,
    /// The controllers' Deployments.
    pub controllers: Vec<Controller>,
    /// States served by a held Lease (leader election), by state name.
    pub leased_states: BTreeSet<String>,
    /// The NicClusterPolicy.
    pub policy: Option<NicClusterPolicy>,
    /// The NicNodePolicies.
    pub node_policies: Vec<NicNodePolicy>,
    /// Every node.
    pub nodes: Vec<Node>,
    /// The pods of the operands' namespace.
    pub pods: Vec<Pod>,
    /// The operands' workloads (DaemonSets and Deployments): name → state label.
    pub workload_states: BTreeMap<String, String>,
    /// Events of the operands' namespace.
    pub events: Vec<Event>,
    /// Ready Node Feature Discovery pods (any namespace).
    pub nfd_pods_ready: usize,
    /// API group versions served, of those a check asks about.
    pub served: BTreeSet<String>,
    /// Pods each node in `drain-required` still has to evict.
    pub drain_blocking: BTreeMap<String, Vec<String>>,
    /// Each controller's access, by chart.
    pub access: BTreeMap<String, Access>,
    /// Seconds `mofed.wait` may stay true.
    pub mofed_wait_threshold: i64,
}

/// Each policy state with the subchart (controller) that runs it.
pub fn state_charts() -> Vec<(&'static str, &'static str)> {
    crate::render::states().into_iter().map(|s| (s.name, s.component)).collect()
}

/// The states whose section the policy (or a NicNodePolicy) sets.
fn enabled_states(facts: &Facts) -> Vec<(&'static str, &'static str)> {
    state_charts()
        .into_iter()
        .filter(|(state, _)| {
            facts.policy.as_ref().is_some_and(|p| p.spec.has_section(state))
                || facts.node_policies.iter().any(|p| p.has_section(state))
        })
        .collect()
}

fn names(items: &[String]) -> String {
    let mut shown: Vec<String> = items.iter().take(10).cloned().collect();
    if items.len() > 10 {
        shown.push(format!("and {} more", items.len() - 10));
    }
    shown.join(", ")
}

/// The CRDs are installed, with this build's schemas.
pub fn check_crds(facts: &Facts) -> Vec<Finding> {
    const APPLY: &str = "apply the CRDs of this release: kubectl apply --server-side --force-conflicts -f crds/ \
         (the chart's crds/ folder)";
    let mut out = Vec::new();
    if !facts.crds_missing.is_empty() {
        out.push(Finding::problem("crds", format!("not installed: {}", names(&facts.crds_missing)), APPLY));
    }
    if !facts.crds_outdated.is_empty() {
        out.push(Finding::warning(
            "crds",
            format!("installed with another schema than this build's: {}", names(&facts.crds_outdated)),
            APPLY,
        ));
    }
    if out.is_empty() {
        out.push(Finding::ok("crds", format!("all {} CRDs installed and current", facts.crds_total)));
    }
    out
}

/// Which controllers run, and which enabled sections have none.
pub fn check_controllers(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let running =
        |chart: &str| facts.controllers.iter().any(|c| (c.chart == chart || c.chart == "all-in-one") && c.ready > 0);
    for controller in &facts.controllers {
        let built =
            controller.build_info.as_deref().map_or_else(|| "build info not reachable".to_string(), str::to_string);
        let what = format!(
            "{} in {} ({}, {} ready; {built})",
            controller.chart, controller.namespace, controller.image, controller.ready
        );
        if controller.ready > 0 {
            out.push(Finding::ok("controllers", format!("running: {what}")));
        } else {
            out.push(Finding::warning(
                "controllers",
                format!("not ready: {what}"),
                format!(
                    "kubectl describe deployment -n {} -l app.kubernetes.io/name={}",
                    controller.namespace, controller.chart
                ),
            ));
        }
    }
    for (state, chart) in enabled_states(facts) {
        if !running(chart) && !facts.leased_states.contains(state) {
            out.push(Finding::problem(
                "controllers",
                format!("{state} is enabled in the policy but no controller runs it (no ready {chart} or all-in-one controller)"),
                format!("install or enable the {chart} controller: helm upgrade ... --set {chart}.enabled=true"),
            ));
        }
    }
    if out.is_empty() {
        out.push(Finding::ok("controllers", "no section is enabled and no controller runs"));
    }
    out
}

/// Node Feature Discovery runs, and every NIC node has the labels the driver pools need.
pub fn check_nfd(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let nic_nodes: Vec<&Node> =
        facts.nodes.iter().filter(|n| n.labels().get(NIC_PRESENT_LABEL).map(String::as_str) == Some("true")).collect();
    if facts.nfd_pods_ready > 0 {
        out.push(Finding::ok("nfd", format!("Node Feature Discovery: {} pod(s) ready", facts.nfd_pods_ready)));
    } else {
        out.push(Finding::warning(
            "nfd",
            "no ready Node Feature Discovery pod (label app.kubernetes.io/name=node-feature-discovery) in any namespace",
            "install Node Feature Discovery (the chart's nfd.enabled, or your own) with the PCI vendor rule for 15b3",
        ));
    }
    if nic_nodes.is_empty() {
        out.push(Finding::warning(
            "nfd",
            format!("no node has {NIC_PRESENT_LABEL}=true: no node counts as a NIC node"),
            "check that NFD runs on the NIC nodes and labels PCI vendors (pci-15b3)",
        ));
        return out;
    }
    let driver_wanted = facts.policy.as_ref().is_some_and(|p| p.spec.ofed_driver.is_some())
        || facts.node_policies.iter().any(|p| p.spec.ofed_driver.is_some());
    let mut left_out = Vec::new();
    let mut missing_labels = BTreeSet::new();
    for node in &nic_nodes {
        let missing: Vec<&str> =
            ofed::pools::POOL_LABELS.iter().copied().filter(|l| !node.labels().contains_key(*l)).collect();
        if !missing.is_empty() {
            left_out.push(node.name_any());
            missing_labels.extend(missing);
        }
    }
    if left_out.is_empty() {
        out.push(Finding::ok(
            "nfd",
            format!("all {} NIC node(s) have the OS, kernel and architecture labels", nic_nodes.len()),
        ));
    } else {
        let found = format!(
            "NIC node(s) left out of every driver pool: {} (missing {})",
            names(&left_out),
            missing_labels.into_iter().collect::<Vec<_>>().join(", ")
        );
        let action = "check NFD's worker on those nodes (kubectl get pods -A -l app.kubernetes.io/name=node-feature-discovery -o wide)";
        out.push(if driver_wanted {
            Finding::problem("nfd", format!("{found}: they get no driver"), action)
        } else {
            Finding::warning("nfd", found, action)
        });
    }
    out
}

/// What a pod's containers say: phase, each container not ready with its waiting or last
/// terminated reason and restarts.
pub fn pod_summary(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let mut parts = vec![format!("{} {}", pod.name_any(), status.phase.unwrap_or_else(|| "Pending".into()))];
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for c in containers.filter(|c| !c.ready) {
        let mut what = format!("container {}", c.name);
        if let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            what.push_str(&format!(" waiting ({})", waiting.reason.clone().unwrap_or_default()));
        }
        if let Some(last) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
            what.push_str(&format!(
                ", last terminated {} (exit {})",
                last.reason.clone().unwrap_or_default(),
                last.exit_code
            ));
        }
        if c.restart_count > 0 {
            what.push_str(&format!(", restarted {} times", c.restart_count));
        }
        parts.push(what);
    }
    parts.join("; ")
}

/// `mofed.wait` stuck `true` longer than the threshold, with the driver pod's state.
pub fn check_mofed_wait(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut waiting = 0;
    for node in facts.nodes.iter().filter(|n| n.labels().get(MOFED_WAIT_LABEL).map(String::as_str) == Some("true")) {
        waiting += 1;
        let name = node.name_any();
        let Some(pod) = crate::upgrade_status::driver_pod_on(&facts.pods, &name) else {
            out.push(Finding::problem(
                "mofed-wait",
                format!("{name}: {MOFED_WAIT_LABEL}=true and no driver pod runs on it"),
                format!(
                    "kubectl get daemonsets -n {} -l {}; check the node's pool labels and taints",
                    facts.namespace,
                    ofed::DRIVER_LABEL
                ),
            ));
            continue;
        };
        let status = pod.status.as_ref();
        let ready_since = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.as_ref())
            .or(pod.metadata.creation_timestamp.as_ref())
            .map(|t| t.0.as_second());
        let waited = ready_since.map(|since| facts.now - since).unwrap_or(0);
        if waited > facts.mofed_wait_threshold {
            out.push(Finding::problem(
                "mofed-wait",
                format!("{name}: waiting for its driver for {} ({})", live::age(waited), pod_summary(pod)),
                format!(
                    "kubectl logs -n {} {} --all-containers; the device plugins on {name} wait for it",
                    facts.namespace,
                    pod.name_any()
                ),
            ));
        }
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "mofed-wait",
            format!(
                "{waiting} node(s) waiting for their driver, none for longer than {}",
                live::age(facts.mofed_wait_threshold)
            ),
        ));
    }
    out
}

/// Operand pods not ready, grouped by state, with their containers and recent Events.
pub fn check_operand_pods(facts: &Facts) -> Vec<Finding> {
    let mut by_state: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pod in &facts.pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready || status.and_then(|s| s.phase.as_deref()) == Some("Succeeded") {
            continue;
        }
        let owner = pod.owner_references().first().map(|o| match o.kind.as_str() {
            "ReplicaSet" => o.name.rsplit_once('-').map_or(o.name.clone(), |(d, _)| d.to_string()),
            _ => o.name.clone(),
        });
        let state = owner.and_then(|o| facts.workload_states.get(&o).cloned()).unwrap_or_else(|| "(no state)".into());
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_else(|| "unscheduled".into());
        let mut line = format!("{} on {node}", pod_summary(pod));
        let mut events: Vec<&Event> = facts
            .events
            .iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some("Pod")
                    && e.involved_object.name.as_deref() == Some(&pod.name_any())
            })
            .collect();
        events.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0.as_second()).unwrap_or(0));
        let recent: Vec<String> = events
            .iter()
            .rev()
            .take(2)
            .map(|e| format!("{}: {}", e.reason.clone().unwrap_or_default(), e.message.clone().unwrap_or_default()))
            .collect();
        if !recent.is_empty() {
            line.push_str(&format!(" [events: {}]", recent.join(" | ")));
        }
        by_state.entry(state).or_default().push(line);
    }
    if by_state.is_empty() {
        let count = facts.pods.len();
        return vec![Finding::ok("operand-pods", format!("all {count} pod(s) in {} are ready", facts.namespace))];
    }
    by_state
        .into_iter()
        .map(|(state, pods)| {
            Finding::problem(
                "operand-pods",
                format!("{state}: {} pod(s) not ready: {}", pods.len(), pods.join("; ")),
                format!(
                    "kubectl describe pod -n {} <pod>; kubectl logs -n {} <pod> --all-containers",
                    facts.namespace, facts.namespace
                ),
            )
        })
        .collect()
}

/// The nv-ipam webhook needs cert-manager (or OpenShift's service CA) for its certificate.
pub fn check_nv_ipam_webhook(facts: &Facts) -> Vec<Finding> {
    let webhook =
        facts.policy.as_ref().and_then(|p| p.spec.nv_ipam.as_ref()).is_some_and(|n| n.enable_webhook == Some(true));
    if !webhook {
        return vec![Finding::ok("nv-ipam-webhook", "the nv-ipam webhook is not enabled")];
    }
    if facts.served.contains("cert-manager.io/v1") {
        vec![Finding::ok(
            "nv-ipam-webhook",
            "cert-manager's API (cert-manager.io/v1) is served for the webhook's certificate",
        )]
    } else if facts.served.contains("config.openshift.io/v1") {
        vec![Finding::ok("nv-ipam-webhook", "OpenShift's service CA issues the webhook's certificate")]
    } else {
        vec![Finding::problem(
            "nv-ipam-webhook",
            "spec.nvIpam.enableWebhook is true but neither cert-manager (cert-manager.io/v1) nor OpenShift's service CA is present",
            "install cert-manager, or set spec.nvIpam.enableWebhook: false",
        )]
    }
}

/// Driver upgrades: failed nodes, nodes cordoned with no upgrade in progress, blocked drains.
pub fn check_upgrades(facts: &Facts) -> Vec<Finding> {
    use ofed::upgrade::{FAILURE_ANNOTATION, STATE_LABEL};
    let mut out = Vec::new();
    for node in &facts.nodes {
        let name = node.name_any();
        let state = node.labels().get(STATE_LABEL).map(String::as_str).unwrap_or("");
        let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        match state {
            "upgrade-failed" => out.push(Finding::problem(
                "upgrades",
                format!(
                    "{name}: driver upgrade failed: {}",
                    node.annotations().get(FAILURE_ANNOTATION).cloned().unwrap_or_else(|| "no reason recorded".into())
                ),
                format!(
                    "fix the cause, then delete its driver pod (kubectl delete pod -n {} -l {} --field-selector spec.nodeName={name})",
                    facts.namespace,
                    ofed::DRIVER_LABEL
                ),
            )),
            "drain-required" => {
                if let Some(pods) = facts.drain_blocking.get(&name).filter(|p| !p.is_empty()) {
                    out.push(Finding::warning(
                        "upgrades",
                        format!("{name}: draining, still on the node: {}", names(pods)),
                        "check their PodDisruptionBudgets (kubectl get pdb -A)",
                    ));
                }
            }
            "" | "upgrade-done" | "upgrade-required" if cordoned => out.push(Finding::warning(
                "upgrades",
                format!("{name}: cordoned with no driver upgrade in progress (state {})", if state.is_empty() { "none" } else { state }),
                format!("if nothing else cordoned it: kubectl uncordon {name}"),
            )),
            _ => {}
        }
    }
    if out.is_empty() {
        out.push(Finding::ok("upgrades", "no failed upgrade, no stray cordon, no blocked drain"));
    }
    out
}

/// Each running controller's ServiceAccount may do what its generated RBAC grants.
pub fn check_rbac(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for (chart, access) in &facts.access {
        out.push(match access {
            Access::Skipped(why) => Finding::warning("rbac", format!("{chart}: not checked: {why}"), "run as a user who may impersonate ServiceAccounts"),
            Access::Denied(denied) if denied.is_empty() => {
                Finding::ok("rbac", format!("{chart}: its ServiceAccount may do all its generated RBAC grants"))
            }
            Access::Denied(denied) => Finding::problem(
                "rbac",
                format!("{chart}: its ServiceAccount is denied: {}", names(denied)),
                format!("reinstall the {chart} subchart's RBAC (helm upgrade), or check for policies (e.g. admission, aggregation) removing it"),
            ),
        });
    }
    out
}

/// The policy's status against each enabled section: missing, stale, in error, not ready.
pub fn check_policy_status(facts: &Facts) -> Vec<Finding> {
    let Some(policy) = &facts.policy else {
        let found = if facts.node_policies.is_empty() {
            "no NicClusterPolicy and no NicNodePolicy"
        } else {
            "no NicClusterPolicy"
        };
        return vec![Finding::warning(
            "policy-status",
            found,
            "apply a NicClusterPolicy named nic-cluster-policy (see example/crs)",
        )];
    };
    let generation = policy.metadata.generation.unwrap_or(0);
    let entries = policy.status.as_ref().and_then(|s| s.applied_states.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for (state, chart) in state_charts().into_iter().filter(|(s, _)| policy.spec.has_section(s)) {
        let Some(entry) = entries.iter().find(|e| e.name == state) else {
            out.push(Finding::problem(
                "policy-status",
                format!("{state}: no status entry: no controller has reported"),
                format!("check that the {chart} controller runs (kubectl logs -l app.kubernetes.io/name={chart} -A)"),
            ));
            continue;
        };
        let message = entry.message.clone().unwrap_or_default();
        match entry.state {
            SyncState::Error => out.push(Finding::problem(
                "policy-status",
                format!("{state}: error: {message}"),
                "fix the field it names",
            )),
            SyncState::NotReady => out.push(Finding::warning(
                "policy-status",
                format!("{state}: notReady: {message}"),
                "see its message; the operand-pods check shows pods not ready",
            )),
            _ => {}
        }
        if let Some(observed) = entry.observed_generation.filter(|o| *o < generation) {
            out.push(Finding::warning(
                "policy-status",
                format!("{state}: stale: computed for generation {observed}, the policy is at {generation}"),
                format!("its controller ({chart}) has not reconciled the latest change: check it runs and its logs"),
            ));
        }
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "policy-status",
            format!("every enabled section reports ready for generation {generation}"),
        ));
    }
    out
}

/// Every check's findings, problems first (then warnings, then ok; in check order within).
pub fn findings(facts: &Facts) -> Vec<Finding> {
    let checks: [fn(&Facts) -> Vec<Finding>; 9] = [
        check_crds,
        check_controllers,
        check_nfd,
        check_mofed_wait,
        check_operand_pods,
        check_nv_ipam_webhook,
        check_upgrades,
        check_rbac,
        check_policy_status,
    ];
    let mut all: Vec<Finding> = checks.iter().flat_map(|check| check(facts)).collect();
    all.sort_by_key(|f| f.verdict);
    all
}

/// The exit code of a report: 0 all ok, 1 warnings, 2 problems.
pub fn exit_code(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.verdict).min() {
        Some(Verdict::Problem) => 2,
        Some(Verdict::Warning) => 1,
        _ => 0,
    }
}

/// The report as a terminal shows it.
pub fn human(findings: &[Finding], paint: Paint) -> String {
    let mut out = String::new();
    for f in findings {
        let mark = match f.verdict {
            Verdict::Problem => paint.red("PROBLEM"),
            Verdict::Warning => paint.yellow("WARNING"),
            Verdict::Ok => paint.green("ok     "),
        };
        out.push_str(&format!("{mark} {:<16} {}\n", f.check, f.found));
        if let Some(action) = &f.action {
            out.push_str(&format!("        {:<16} → {action}\n", ""));
        }
    }
    let count = |v: Verdict| findings.iter().filter(|f| f.verdict == v).count();
    out.push_str(&format!(
        "\n{} problem(s), {} warning(s), {} ok\n",
        count(Verdict::Problem),
        count(Verdict::Warning),
        count(Verdict::Ok)
    ));
    out
}

/// The labels of the `network_operator_build_info` series in a metrics text, e.g.
/// `component="ofed",version="0.1.0",commit="abc"`.
pub fn build_info(metrics: &str) -> Option<String> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("network_operator_build_info{")?.split_once('}').map(|(l, _)| l.to_string()))
}

/// Scrapes one running pod of `deployment` through the API server's pod proxy (3 seconds at
/// most).
async fn scrape_build_info(client: &Client, deployment: &Deployment) -> Option<String> {
    let namespace = deployment.namespace()?;
    let selector: Vec<String> =
        deployment.spec.as_ref()?.selector.match_labels.as_ref()?.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .ok()?;
    let pod = pods.items.into_iter().find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))?;
    let port = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("http-metrics"))?
        .container_port;
    let path = format!("/api/v1/namespaces/{namespace}/pods/{}:{port}/proxy/metrics", pod.name_any());
    let request = http::Request::get(path).body(Vec::new()).ok()?;
    let text =
        tokio::time::timeout(std::time::Duration::from_secs(3), client.request_text(request)).await.ok()?.ok()?;
    build_info(&text)
}

/// Whether two CRD schemas say the same (the API server may reorder nothing but drops nothing
/// either: a plain comparison of each version's name and schema).
fn same_schema(desired: &CustomResourceDefinition, live: &CustomResourceDefinition) -> bool {
    let versions = |crd: &CustomResourceDefinition| -> Vec<(String, serde_json::Value)> {
        crd.spec
            .versions
            .iter()
            .map(|v| (v.name.clone(), serde_json::to_value(&v.schema).unwrap_or_default()))
            .collect()
    };
    versions(desired) == versions(live)
}

/// Reads what the checks need from the cluster (and asks the API server what each running
/// controller's ServiceAccount may do, by impersonation, where the user may impersonate).
pub async fn gather(client: &Client, config: &kube::Config, args: &DoctorArgs) -> Result<Facts, Failure> {
    let namespace = args.cluster.namespace.clone();
    let mut facts = Facts {
        now: jiff::Timestamp::now().as_second(),
        namespace: namespace.clone(),
        mofed_wait_threshold: args.mofed_wait_threshold,
        ..Default::default()
    };
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let desired = api::crd::all();
    facts.crds_total = desired.len();
    for crd in &desired {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match crds.get_opt(&name).await.with_context(|| format!("reading CRD {name}"))? {
            None => facts.crds_missing.push(name),
            Some(live) if !same_schema(crd, &live) => facts.crds_outdated.push(name),
            Some(_) => {}
        }
    }
    let deployments = Api::<Deployment>::all(client.clone())
        .list(&ListParams::default().labels("app.kubernetes.io/part-of=network-operator"))
        .await
        .context("listing the operator's Deployments")?
        .items;
    // A Deployment being deleted (its release uninstalled, its namespace going) runs nothing.
    for deployment in deployments.iter().filter(|d| d.metadata.deletion_timestamp.is_none()) {
        let pod_spec = deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        facts.controllers.push(Controller {
            chart: deployment.labels().get("app.kubernetes.io/name").cloned().unwrap_or_else(|| deployment.name_any()),
            namespace: deployment.namespace().unwrap_or_default(),
            service_account: pod_spec.and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into()),
            ready: deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
            image: pod_spec.and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default(),
            build_info: scrape_build_info(client, deployment).await,
        });
    }
    facts.controllers.sort_by(|a, b| a.chart.cmp(&b.chart));
    let lease_namespaces: BTreeSet<String> =
        facts.controllers.iter().map(|c| c.namespace.clone()).chain([namespace.clone()]).collect();
    for ns in lease_namespaces {
        let leases = Api::<Lease>::namespaced(client.clone(), &ns).list(&ListParams::default()).await;
        for lease in leases.map(|l| l.items).unwrap_or_default() {
            let Some(serves) = lease.annotations().get(state_core::lease::SERVES_ANNOTATION) else { continue };
            let spec = lease.spec.clone().unwrap_or_default();
            let renewed = spec.renew_time.map(|t| t.0.as_second()).unwrap_or(0);
            let held = spec.holder_identity.is_some_and(|h| !h.is_empty())
                && facts.now - renewed <= i64::from(spec.lease_duration_seconds.unwrap_or(15));
            if held {
                facts.leased_states.extend(serves.split(',').map(|s| s.trim().to_string()));
            }
        }
    }
    facts.policy = Api::<NicClusterPolicy>::all(client.clone()).get_opt(api::POLICY_NAME).await.ok().flatten();
    facts.node_policies = Api::<NicNodePolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    facts.nodes =
        Api::<Node>::all(client.clone()).list(&ListParams::default()).await.context("listing the nodes")?.items;
    facts.pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing the pods of {namespace}"))?
        .items;
    let daemon_sets = Api::<DaemonSet>::namespaced(client.clone(), &namespace).list(&ListParams::default()).await;
    for ds in daemon_sets.map(|l| l.items).unwrap_or_default() {
        if let Some(state) = ds.labels().get(state_core::STATE_LABEL) {
            facts.workload_states.insert(ds.name_any(), state.clone());
        }
    }
    let operand_deployments =
        Api::<Deployment>::namespaced(client.clone(), &namespace).list(&ListParams::default()).await;
    for deployment in operand_deployments.map(|l| l.items).unwrap_or_default() {
        if let Some(state) = deployment.labels().get(state_core::STATE_LABEL) {
            facts.workload_states.insert(deployment.name_any(), state.clone());
        }
    }
    facts.events = Api::<Event>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let nfd = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().labels("app.kubernetes.io/name=node-feature-discovery"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    facts.nfd_pods_ready = nfd
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    for api_version in ["cert-manager.io/v1", "config.openshift.io/v1"] {
        if client.list_api_group_resources(api_version).await.is_ok() {
            facts.served.insert(api_version.to_string());
        }
    }
    for node in facts
        .nodes
        .iter()
        .filter(|n| n.labels().get(ofed::upgrade::STATE_LABEL).map(String::as_str) == Some("drain-required"))
    {
        let name = node.name_any();
        let pods = crate::upgrade_status::pods_to_evict(client, &name).await?;
        facts.drain_blocking.insert(name, pods);
    }
    facts.access = access(client, config, &facts.controllers, &namespace).await?;
    Ok(facts)
}

/// Asks the API server, as each running controller's ServiceAccount, for every grant of its
/// generated RBAC.
async fn access(
    client: &Client,
    config: &kube::Config,
    controllers: &[Controller],
    operands: &str,
) -> Result<BTreeMap<String, Access>, Failure> {
    let mut out = BTreeMap::new();
    if controllers.is_empty() {
        return Ok(out);
    }
    let may_impersonate = review(client, "", "serviceaccounts", "impersonate", None, None).await;
    let generated: BTreeMap<&str, state_core::rbac::ControllerRbac> = crate::rbac::controllers()?.into_iter().collect();
    for controller in controllers {
        let Some(rbac) = generated.get(controller.chart.as_str()) else { continue };
        if may_impersonate != Some(true) {
            out.insert(controller.chart.clone(), Access::Skipped("you may not impersonate ServiceAccounts".into()));
            continue;
        }
        let mut as_sa = config.clone();
        as_sa.auth_info.impersonate =
            Some(format!("system:serviceaccount:{}:{}", controller.namespace, controller.service_account));
        as_sa.auth_info.impersonate_groups = None;
        let sa_client = Client::try_from(as_sa).context("building an impersonating client")?;
        let mut denied = Vec::new();
        for (rules, namespace, where_) in
            [(&rbac.cluster, None, "cluster-wide"), (&rbac.operands, Some(operands), operands)]
        {
            for rule in rules.to_policy_rules() {
                let groups = rule.api_groups.clone().unwrap_or_default();
                let resources = rule.resources.clone().unwrap_or_default();
                let names = rule.resource_names.clone().unwrap_or_default();
                let names: Vec<Option<&str>> =
                    if names.is_empty() { vec![None] } else { names.iter().map(|n| Some(n.as_str())).collect() };
                for group in &groups {
                    for resource in &resources {
                        for verb in &rule.verbs {
                            for name in &names {
                                if review(&sa_client, group, resource, verb, namespace, *name).await != Some(true) {
                                    let named = name.map(|n| format!(" {n}")).unwrap_or_default();
                                    let group = if group.is_empty() { "core" } else { group.as_str() };
                                    denied.push(format!("{verb} {group}/{resource}{named} ({where_})"));
                                }
                            }
                        }
                    }
                }
            }
        }
        out.insert(controller.chart.clone(), Access::Denied(denied));
    }
    Ok(out)
}

/// A SelfSubjectAccessReview: `Some(allowed)`, or `None` when the review itself failed.
async fn review(
    client: &Client,
    group: &str,
    resource: &str,
    verb: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Option<bool> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r.to_string(), Some(s.to_string())),
        None => (resource.to_string(), None),
    };
    let request = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_string()),
                resource: Some(resource),
                subresource,
                verb: Some(verb.to_string()),
                namespace: namespace.map(str::to_string),
                name: name.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    reviews.create(&PostParams::default(), &request).await.ok().and_then(|r| r.status).map(|s| s.allowed)
}

/// Runs `nicctl doctor`.
pub async fn run(args: &DoctorArgs) -> Result<(), Failure> {
    let (client, config) = live::connect_with_config(&args.cluster).await?;
    let facts = gather(&client, &config, args).await?;
    let findings = findings(&facts);
    match args.output {
        Format::Human => crate::emit(&human(&findings, Paint::for_stdout()))?,
        format => live::print_structured(&findings, format)?,
    }
    match exit_code(&findings) {
        0 => Ok(()),
        code => Err(Failure::Exit(code)),
    }
}

#[cfg(test)]
#[path = "doctor_tests.rs"]
mod tests;
