//! The `network.nvidia.com/operator.nic-configuration.wait` node label, which components that
//! must wait for the NIC firmware settings select on (e.g. the SR-IOV network operator's
//! `configDaemonNodeSelector`). While the policy has `spec.nicConfigurationOperator`, its
//! configuration daemon sets it; without the section, as the original, this controller does:
//! `"true"` where a daemon pod is still there (terminating), `"false"` on the other NIC nodes,
//! and none on other nodes. Decided by a pure function, written only when it changes.

use crate::{DAEMON_POD_LABEL, NicConfiguration};
use api::NicClusterPolicy;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use kube::{Api, Client};
use state_core::State;
use state_core::nodes::{LabelChange, NodeCache, NodeFacts, write_label};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The node label.
pub const WAIT_LABEL: &str = "network.nvidia.com/operator.nic-configuration.wait";

/// The label changes to make. With the section, none (the daemon owns the label). Without it:
/// a node where a daemon pod is gets `"true"`; every other NIC node `"false"`; every other node
/// (in `labelled`: the nodes that have the label) loses it. Nodes already right are left out.
pub fn changes(
    section: bool,
    nic_nodes: &[Arc<NodeFacts>],
    labelled: &[Arc<NodeFacts>],
    daemon_on: &BTreeSet<String>,
) -> BTreeMap<String, LabelChange> {
    let mut out = BTreeMap::new();
    if section {
        return out;
    }
    let current = |node: &NodeFacts| node.metadata.labels.as_ref().and_then(|l| l.get(WAIT_LABEL)).cloned();
    let name = |node: &NodeFacts| node.metadata.name.clone().unwrap_or_default();
    let nic: BTreeSet<String> = nic_nodes.iter().map(|n| name(n)).collect();
    for node in nic_nodes {
        let wanted = if daemon_on.contains(&name(node)) { "true" } else { "false" };
        if current(node).as_deref() != Some(wanted) {
            out.insert(name(node), LabelChange::Set(wanted));
        }
    }
    for node in labelled.iter().filter(|n| !nic.contains(&name(n))) {
        let change = if daemon_on.contains(&name(node)) { LabelChange::Set("true") } else { LabelChange::Remove };
        if change != LabelChange::Set("true") || current(node).as_deref() != Some("true") {
            out.insert(name(node), change);
        }
    }
    out
}

/// How long after the last change the labels are written (a burst of events writes once).
const SETTLE: Duration = Duration::from_millis(200);

/// Keeps the label on every node until the process stops: watches the policy, the NIC nodes,
/// the nodes that have the label and the daemon's pods in `namespace`.
pub async fn run(client: Client, namespace: String) {
    let (nic_nodes, nic_changes) = NodeCache::watch(&client, &[WAIT_LABEL]);
    let labelled_config = watcher::Config::default().labels(WAIT_LABEL);
    let (labelled, labelled_writer) = reflector::store::<NodeFacts>();
    let labelled_changes = reflector::reflector(
        labelled_writer,
        watcher::watcher(Api::<NodeFacts>::all(client.clone()), labelled_config).default_backoff(),
    )
    .map(|_| ());
    let (pods, pods_writer) = reflector::store::<Pod>();
    let pod_changes = reflector::reflector(
        pods_writer,
        watcher::watcher(
            Api::<Pod>::namespaced(client.clone(), &namespace),
            watcher::Config::default().labels(DAEMON_POD_LABEL),
        )
        .default_backoff(),
    )
    .map(|_| ());
    let (policies, policies_writer) = reflector::store::<NicClusterPolicy>();
    let policy_changes = reflector::reflector(
        policies_writer,
        watcher::watcher(
            Api::<NicClusterPolicy>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={}", api::POLICY_NAME)),
        )
        .default_backoff(),
    )
    .map(|_: Result<Event<NicClusterPolicy>, _>| ());
    let mut changed = futures::stream::select_all([
        nic_changes.boxed(),
        labelled_changes.boxed(),
        pod_changes.boxed(),
        policy_changes.boxed(),
    ]);
    let manager = state_core::reconcile::field_manager::<NicConfiguration>();
    while changed.next().await.is_some() {
        // Settle: take every event of the burst, then write once.
        while let Ok(Some(())) = tokio::time::timeout(SETTLE, changed.next()).await {}
        if labelled.wait_until_ready().await.is_err() || pods.wait_until_ready().await.is_err() {
            return;
        }
        nic_nodes.synced().await;
        let section = policies.state().iter().any(|p| NicConfiguration::spec(p).is_some());
        let daemon_on: BTreeSet<String> =
            pods.state().iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
        let changes = changes(section, &nic_nodes.nodes(), &labelled.state(), &daemon_on);
        for error in write_label(&client, &manager, WAIT_LABEL, &changes).await {
            tracing::warn!(state = NicConfiguration::NAME, %error, "could not write {WAIT_LABEL}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, wait: Option<&str>) -> Arc<NodeFacts> {
        let labels = match wait {
            Some(v) => json!({WAIT_LABEL: v}),
            None => json!({}),
        };
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap())
    }

    fn on(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn with_the_section_the_daemon_owns_the_label() {
        let nic = [node("a", None), node("b", Some("true"))];
        assert!(changes(true, &nic, &[], &on(&["b"])).is_empty());
    }

    #[test]
    fn without_the_section_nic_nodes_say_false_unless_a_daemon_pod_is_still_there() {
        let nic = [node("a", None), node("b", Some("false")), node("c", Some("false"))];
        let found = changes(false, &nic, &[], &on(&["c"]));
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [("a".to_string(), LabelChange::Set("false")), ("c".to_string(), LabelChange::Set("true"))],
            "b is already right"
        );
    }

    #[test]
    fn without_the_section_other_nodes_lose_the_label_unless_a_daemon_pod_is_there() {
        let nic = [node("a", Some("false"))];
        let labelled = [node("a", Some("false")), node("gpu-only", Some("false")), node("leaving", Some("true"))];
        let found = changes(false, &nic, &labelled, &on(&["leaving"]));
        assert_eq!(found.into_iter().collect::<Vec<_>>(), [("gpu-only".to_string(), LabelChange::Remove)]);
    }
}
