//! What a pass reads, as plain values: the nodes' upgrade keys ([`node_view`]), each driver
//! pod against its DaemonSet's newest template revision ([`driver_pod`]), and which nodes run
//! a driver pod ([`managed`]). The watches keep only what these read ([`slim_node`],
//! [`slim_driver_pod`]).

use super::decide::{DriverPod, Managed, NodeView, Revision};
use super::{
    DRAIN_START_ANNOTATION, FAILURE_ANNOTATION, INITIAL_STATE_ANNOTATION, LEGACY_STATE_ANNOTATION, NodeState,
    REQUESTED_ANNOTATION, REQUESTOR_MODE_ANNOTATION, REVISION_HASH_LABEL, SKIP_LABEL, STATE_LABEL,
    WAIT_START_ANNOTATION,
};
use crate::SAFE_LOAD_ANNOTATION;
use crate::pod::{Pod, PodSpec};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Restarts after which a container that is not Ready counts as crash-looping.
pub const CRASH_LOOP_RESTARTS: i32 = 10;

/// Keeps of a node what a pass reads: name, uid, resourceVersion, the upgrade labels and
/// annotations, `spec.unschedulable` and the Ready condition.
pub fn slim_node(node: &mut Node) {
    let meta = &mut node.metadata;
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.finalizers = None;
    if let Some(labels) = &mut meta.labels {
        labels.retain(|k, _| k == STATE_LABEL || k == SKIP_LABEL);
    }
    if let Some(annotations) = &mut meta.annotations {
        annotations.retain(|k, _| k.starts_with("nvidia.com/ofed-driver-upgrade") || k == LEGACY_STATE_ANNOTATION);
    }
    let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable);
    node.spec = Some(NodeSpec { unschedulable, ..Default::default() });
    let ready: Vec<NodeCondition> = node
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .filter(|c| c.type_ == "Ready")
        .map(|c| NodeCondition { type_: c.type_.clone(), status: c.status.clone(), ..Default::default() })
        .collect();
    node.status = Some(NodeStatus { conditions: Some(ready), ..Default::default() });
}

/// The upgrade keys, cordon and readiness of `node`.
pub fn node_view(node: &Node) -> NodeView {
    let label = |key: &str| node.metadata.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str);
    let annotation = |key: &str| node.metadata.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str);
    let seconds = |key: &str| annotation(key).and_then(|v| v.trim().parse::<i64>().ok());
    NodeView {
        name: node.metadata.name.clone().unwrap_or_default(),
        state: NodeState::parse(label(STATE_LABEL)),
        skip: label(SKIP_LABEL) == Some("true"),
        requested: annotation(REQUESTED_ANNOTATION) == Some("true"),
        safe_load: annotation(SAFE_LOAD_ANNOTATION).is_some_and(|v| !v.is_empty()),
        initially_unschedulable: annotation(INITIAL_STATE_ANNOTATION) == Some("true"),
        unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        ready: node
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        wait_started: seconds(WAIT_START_ANNOTATION),
        drain_started: seconds(DRAIN_START_ANNOTATION),
        failure: annotation(FAILURE_ANNOTATION).map(str::to_string),
        legacy: annotation(LEGACY_STATE_ANNOTATION).is_some(),
        requestor_mode: annotation(REQUESTOR_MODE_ANNOTATION) == Some("true"),
    }
}

/// Keeps of a driver pod what the mofed.wait label and upgrades read: labels (revision hash),
/// first owner, deletion, node, phase, Ready condition and container readiness and restarts.
pub fn slim_driver_pod(pod: &mut Pod) {
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    if let Some(labels) = &mut meta.labels {
        labels.retain(|k, _| k == REVISION_HASH_LABEL);
    }
    if let Some(owners) = &mut meta.owner_references {
        owners.truncate(1);
    }
    if let Some(conditions) = pod.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        conditions.retain(|c| c.type_ == "Ready");
    }
    // The pod type decodes only the fields read here; a driver pod's volumes are not.
    pod.spec = Some(PodSpec { node_name, volumes: None });
}

/// The template hash of a DaemonSet's newest revision: among `revisions`, those named
/// `<daemon_set>-<hash>`, the one with the highest `revision`.
pub fn newest_revision_hash(daemon_set: &str, revisions: &[ControllerRevision]) -> Option<String> {
    let prefix = format!("{daemon_set}-");
    revisions
        .iter()
        .filter_map(|r| Some((r.revision, r.metadata.name.as_deref()?.strip_prefix(&prefix)?)))
        .max_by_key(|(revision, _)| *revision)
        .map(|(_, hash)| hash.to_string())
}

/// `pod` as an upgrade sees it, given the newest template hash of each driver DaemonSet (by
/// uid); `None` for a pod owned by something else, or by a DaemonSet whose hash is not known.
pub fn driver_pod(pod: &Pod, hashes: &BTreeMap<String, String>) -> Option<DriverPod> {
    let revision = match pod.metadata.owner_references.as_ref().and_then(|o| o.first()) {
        None => Revision::Orphan,
        Some(owner) => {
            let current = hashes.get(&owner.uid)?;
            let hash = pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH_LABEL));
            if hash == Some(current) { Revision::Current } else { Revision::Outdated }
        }
    };
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && !containers.is_empty()
        && containers.iter().all(|c| c.ready);
    let init = status.and_then(|s| s.init_container_statuses.as_deref()).unwrap_or_default();
    let crash_loop = init
        .iter()
        .chain(containers)
        .find(|c| !c.ready && c.restart_count > CRASH_LOOP_RESTARTS)
        .map(|c| format!("container {} restarted {} times", c.name, c.restart_count));
    Some(DriverPod {
        name: pod.metadata.name.clone().unwrap_or_default(),
        revision,
        running,
        crash_loop,
        terminating: pod.metadata.deletion_timestamp.is_some(),
    })
}

/// The nodes running a driver pod (bound to them), each with its pod, by node name; a node
/// with several (an old one terminating) is judged by the one not being deleted.
pub fn managed(nodes: &[Arc<Node>], pods: &[Arc<Pod>], hashes: &BTreeMap<String, String>) -> Vec<Managed> {
    let mut on_node: BTreeMap<&str, DriverPod> = BTreeMap::new();
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else { continue };
        let Some(view) = driver_pod(pod, hashes) else { continue };
        match on_node.get(node) {
            Some(kept) if !kept.terminating => {}
            _ => {
                on_node.insert(node, view);
            }
        }
    }
    let mut out: Vec<Managed> = nodes
        .iter()
        .filter_map(|node| {
            let name = node.metadata.name.as_deref()?;
            let pod = on_node.get(name)?.clone();
            Some(Managed { node: node_view(node), pod })
        })
        .collect();
    out.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    out
}

/// The nodes of `nodes` in the middle of an upgrade (a state other than unknown or done) that
/// are not among `managed` (they run no driver pod right now).
pub fn podless(nodes: &[Arc<Node>], managed: &[Managed]) -> Vec<NodeView> {
    let running: BTreeSet<&str> = managed.iter().map(|m| m.node.name.as_str()).collect();
    let mut out: Vec<NodeView> = nodes
        .iter()
        .map(|node| node_view(node))
        .filter(|view| !running.contains(view.name.as_str()))
        .filter(|view| !matches!(view.state, NodeState::Unknown | NodeState::UpgradeDone))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn revision(name: &str, number: i64) -> ControllerRevision {
        serde_json::from_value(json!({"metadata": {"name": name}, "revision": number})).unwrap()
    }

    #[test]
    fn the_newest_revision_of_the_daemon_set_gives_the_hash() {
        let revisions = [
            revision("mofed-ubuntu22.04-abc-ds-7d9f", 1),
            revision("mofed-ubuntu22.04-abc-ds-5c4b", 3),
            revision("mofed-ubuntu22.04-abc-ds-88aa", 2),
            revision("mofed-ubuntu22.04-abcd-ds-ffff", 9),
        ];
        assert_eq!(newest_revision_hash("mofed-ubuntu22.04-abc-ds", &revisions).as_deref(), Some("5c4b"));
        assert_eq!(newest_revision_hash("other-ds", &revisions), None);
    }

    fn driver(hash: Option<&str>, owner: Option<&str>, status: serde_json::Value) -> Pod {
        let mut value = json!({"metadata": {"name": "mofed-x", "labels": {}}, "spec": {"nodeName": "n1", "containers": []}, "status": status});
        if let Some(hash) = hash {
            value["metadata"]["labels"][REVISION_HASH_LABEL] = json!(hash);
        }
        if let Some(uid) = owner {
            value["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": uid}]);
        }
        pod(value)
    }

    fn running() -> serde_json::Value {
        json!({"phase": "Running", "containerStatuses": [{"name": "mofed", "ready": true, "restartCount": 0, "image": "", "imageID": ""}]})
    }

    #[test]
    fn a_pod_is_current_outdated_orphan_or_not_ours() {
        let hashes: BTreeMap<String, String> = [("uid-1".to_string(), "new".to_string())].into();
        let of = |p: &Pod| driver_pod(p, &hashes).map(|d| (d.revision, d.ready()));
        assert_eq!(of(&driver(Some("new"), Some("uid-1"), running())), Some((Revision::Current, true)));
        assert_eq!(of(&driver(Some("old"), Some("uid-1"), running())), Some((Revision::Outdated, false)));
        assert_eq!(of(&driver(None, Some("uid-1"), running())), Some((Revision::Outdated, false)));
        assert_eq!(of(&driver(Some("new"), None, running())), Some((Revision::Orphan, false)));
        assert_eq!(of(&driver(Some("new"), Some("uid-2"), running())), None, "another owner's, or its hash unknown");
    }

    #[test]
    fn a_pod_is_running_only_when_every_container_is_ready_and_crash_loops_after_ten_restarts() {
        let hashes: BTreeMap<String, String> = [("uid-1".to_string(), "new".to_string())].into();
        let of = |status| driver_pod(&driver(Some("new"), Some("uid-1"), status), &hashes).unwrap();
        assert!(!of(json!({"phase": "Running", "containerStatuses": []})).running);
        assert!(!of(json!({"phase": "Pending"})).running);
        let half = json!({"phase": "Running", "containerStatuses": [
            {"name": "mofed", "ready": true, "restartCount": 0, "image": "", "imageID": ""},
            {"name": "dtk", "ready": false, "restartCount": 10, "image": "", "imageID": ""}]});
        let pod = of(half);
        assert!(!pod.running);
        assert_eq!(pod.crash_loop, None, "10 restarts are not yet a crash loop");
        let looping = json!({"phase": "Running", "initContainerStatuses": [
            {"name": "init", "ready": false, "restartCount": 11, "image": "", "imageID": ""}]});
        assert_eq!(of(looping).crash_loop.as_deref(), Some("container init restarted 11 times"));
    }

    #[test]
    fn a_node_shows_its_keys_cordon_and_readiness() {
        let mut node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {STATE_LABEL: "drain-required", SKIP_LABEL: "true", "other": "x"},
                         "annotations": {REQUESTED_ANNOTATION: "true", SAFE_LOAD_ANNOTATION: "true",
                                         INITIAL_STATE_ANNOTATION: "true", DRAIN_START_ANNOTATION: "1700000000",
                                         LEGACY_STATE_ANNOTATION: "x", "big": "y"}},
            "spec": {"unschedulable": true, "podCIDR": "10.0.0.0/24"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"},
                                      {"type": "MemoryPressure", "status": "False"}]}
        }))
        .unwrap();
        slim_node(&mut node);
        assert_eq!(node.metadata.labels.as_ref().unwrap().len(), 2);
        assert!(!node.metadata.annotations.as_ref().unwrap().contains_key("big"));
        assert_eq!(node.status.as_ref().unwrap().conditions.as_ref().unwrap().len(), 1);
        let view = node_view(&node);
        assert_eq!(view.state, NodeState::DrainRequired);
        assert!(view.skip && view.requested && view.safe_load && view.initially_unschedulable && view.legacy);
        assert!(view.unschedulable && view.ready);
        assert_eq!((view.drain_started, view.wait_started), (Some(1_700_000_000), None));
    }

    #[test]
    fn managed_nodes_are_those_running_a_driver_pod_judged_by_the_pod_not_being_deleted() {
        let hashes: BTreeMap<String, String> = [("uid-1".to_string(), "new".to_string())].into();
        let node = |name: &str| Arc::new(serde_json::from_value::<Node>(json!({"metadata": {"name": name}})).unwrap());
        let mut old = driver(Some("old"), Some("uid-1"), running());
        old.metadata.name = Some("old".into());
        old.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let new = driver(Some("new"), Some("uid-1"), json!({"phase": "Pending"}));
        let mut unbound = driver(Some("new"), Some("uid-1"), json!({"phase": "Pending"}));
        unbound.spec = Some(PodSpec::default());
        let pods = [Arc::new(old), Arc::new(new), Arc::new(unbound)];
        let found = managed(&[node("n2"), node("n1")], &pods, &hashes);
        assert_eq!(found.len(), 1, "n2 runs no driver pod");
        assert_eq!((found[0].node.name.as_str(), found[0].pod.name.as_str()), ("n1", "mofed-x"));
    }
}
