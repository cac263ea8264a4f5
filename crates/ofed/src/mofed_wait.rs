//! The `network.nvidia.com/operator.mofed.wait` node label: `"true"` on a NIC node of a pool
//! until its driver pod is Ready, then `"false"`, so driver-dependent states run only where the
//! driver is loaded; removed from every node when the policy has no `ofedDriver`. Decided by a
//! pure function, written only when it changes.

use crate::pod::Pod;
use kube::Client;
use state_core::edits::MOFED_WAIT_LABEL;
pub use state_core::nodes::LabelChange as Change;
use state_core::nodes::NodeFacts;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Whether `pod` (a driver pod) is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The label changes to make: with OFED deployed, every node of a pool (`pooled`) gets `"false"`
/// when a driver pod on it is Ready, else `"true"`; without OFED, every node that has the label
/// loses it. Nodes already right are left out.
pub fn changes(
    ofed: bool,
    nodes: &[Arc<NodeFacts>],
    pooled: &BTreeSet<String>,
    pods: &[Arc<Pod>],
) -> BTreeMap<String, Change> {
    let ready_on: BTreeSet<&str> =
        pods.iter().filter(|p| is_ready(p)).filter_map(|p| p.spec.as_ref()?.node_name.as_deref()).collect();
    let mut out = BTreeMap::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let current = node.metadata.labels.as_ref().and_then(|l| l.get(MOFED_WAIT_LABEL)).map(String::as_str);
        let wanted = match (ofed, pooled.contains(&name)) {
            (true, true) => Some(Change::Set(if ready_on.contains(name.as_str()) { "false" } else { "true" })),
            (true, false) => None,
            (false, _) => current.map(|_| Change::Remove),
        };
        match wanted {
            Some(Change::Set(value)) if current != Some(value) => {
                out.insert(name, Change::Set(value));
            }
            Some(Change::Remove) => {
                out.insert(name, Change::Remove);
            }
            _ => {}
        }
    }
    out
}

/// Whether this controller's pod cache is behind the driver DaemonSets' status: fewer pooled
/// nodes with a driver pod seen Ready than the DaemonSets' `available` pods. Then some nodes'
/// labels are still `"true"` although their driver is up, and the driver-gated states cannot run
/// there yet: OFED is not ready until the cache (and the labels) catch up. Says so, if it is.
pub fn labels_behind(available: i64, pooled: &BTreeSet<String>, pods: &[Arc<Pod>]) -> Option<String> {
    let seen: BTreeSet<&str> = pods
        .iter()
        .filter(|p| is_ready(p))
        .filter_map(|p| p.spec.as_ref()?.node_name.as_deref())
        .filter(|node| pooled.contains(*node))
        .collect();
    let seen = i64::try_from(seen.len()).unwrap_or(i64::MAX);
    (seen < available).then(|| {
        format!("{seen} of {available} available driver pods seen Ready; {MOFED_WAIT_LABEL} follows on the others")
    })
}

/// Writes `changes` of the label ([`state_core::nodes::write_label`]).
pub async fn write(client: &Client, manager: &str, changes: &BTreeMap<String, Change>) -> Vec<String> {
    state_core::nodes::write_label(client, manager, MOFED_WAIT_LABEL, changes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, wait: Option<&str>) -> Arc<NodeFacts> {
        let labels = match wait {
            Some(v) => json!({MOFED_WAIT_LABEL: v}),
            None => json!({}),
        };
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap())
    }

    fn pod(node: &str, ready: bool) -> Arc<Pod> {
        let status = if ready { "True" } else { "False" };
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": format!("driver-{node}")}, "spec": {"nodeName": node, "containers": []},
                "status": {"conditions": [{"type": "Ready", "status": status}]}}),
            )
            .unwrap(),
        )
    }

    fn pooled(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_labels_are_behind_while_fewer_driver_pods_are_seen_ready_than_the_daemonsets_count_available() {
        let pods = [pod("n1", true), pod("n2", false), pod("elsewhere", true)];
        let note = labels_behind(2, &pooled(&["n1", "n2"]), &pods).expect("one pod not yet seen Ready");
        assert!(note.starts_with("1 of 2 available driver pods seen Ready"), "{note}");
        assert_eq!(labels_behind(1, &pooled(&["n1", "n2"]), &pods), None, "caught up");
        assert_eq!(labels_behind(0, &pooled(&["n1"]), &[]), None, "a node without a driver pod holds nothing back");
    }

    #[test]
    fn a_node_waits_until_its_driver_pod_is_ready() {
        let nodes = [node("a", None), node("b", Some("true")), node("c", Some("true"))];
        let pods = [pod("b", false), pod("c", true)];
        let changes = changes(true, &nodes, &pooled(&["a", "b", "c"]), &pods);
        assert_eq!(
            changes.into_iter().collect::<Vec<_>>(),
            [("a".to_string(), Change::Set("true")), ("c".to_string(), Change::Set("false"))],
            "b already says true"
        );
    }

    #[test]
    fn nodes_without_a_pool_never_get_the_label() {
        assert!(changes(true, &[node("x", None)], &pooled(&[]), &[]).is_empty());
    }

    #[test]
    fn without_ofed_the_label_is_removed_everywhere() {
        let nodes = [node("a", Some("false")), node("b", None)];
        let changes = changes(false, &nodes, &pooled(&["a", "b"]), &[]);
        assert_eq!(changes.into_iter().collect::<Vec<_>>(), [("a".to_string(), Change::Remove)]);
    }

    #[test]
    fn steady_state_changes_nothing() {
        let nodes = [node("a", Some("false")), node("b", Some("true"))];
        assert!(changes(true, &nodes, &pooled(&["a", "b"]), &[pod("a", true)]).is_empty());
    }
}
