//! Playing the scheduler and the kubelet on a control plane that has neither: Nodes to give
//! DaemonSets somewhere to run, Bindings for pending pods, pod status as a kubelet reports it,
//! and confirmation of the deletion of bound pods.

use crate::TestEnv;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// The NFD label every NIC state selects nodes on.
pub const NIC_LABEL: &str = "feature.node.kubernetes.io/pci-15b3.present";
/// The label the OFED state sets to `"false"` once a node's driver is ready.
pub const MOFED_WAIT_LABEL: &str = "network.nvidia.com/operator.mofed.wait";

/// Labels of a NIC node whose driver is ready (no OFED controller runs in these tests, so the
/// driver gate is open).
pub fn nic_node_labels() -> Vec<(&'static str, &'static str)> {
    vec![(NIC_LABEL, "true"), (MOFED_WAIT_LABEL, "false")]
}

/// Creates the Ready Node `name` with `labels` (plus `kubernetes.io/hostname` and
/// `kubernetes.io/os`), registered for cleanup.
pub async fn create_node(env: &TestEnv, name: &str, labels: &[(&str, &str)]) {
    let mut all: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    all.insert("kubernetes.io/hostname".into(), json!(name));
    all.insert("kubernetes.io/os".into(), json!("linux"));
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": all}})).expect("valid Node");
    let nodes: Api<Node> = Api::all(env.client.clone());
    env.cleanup.node(name);
    nodes.create(&PostParams::default(), &node).await.unwrap_or_else(|e| panic!("creating Node {name}: {e}"));
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("marking Node {name} Ready: {e}"));
}

/// The node a pod is meant for: its `spec.nodeName`, else the node its DaemonSet affinity names
/// (`matchFields` on `metadata.name`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = &spec.node_name {
        return Some(node.clone());
    }
    let required =
        spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    required
        .node_selector_terms
        .iter()
        .flat_map(|term| term.match_fields.iter().flatten())
        .find(|field| field.key == "metadata.name" && field.operator == "In")
        .and_then(|field| field.values.as_ref()?.first().cloned())
}

/// Pods matching `selector` in `namespace` that are not being deleted.
pub async fn pods(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default().labels(selector)).await.expect("pods listable");
    list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

/// Plays scheduler and kubelet for every pod matching `selector` in `namespace`: binds it to
/// its node (DaemonSet pods) or to `any_node`, and reports it Running and Ready. Returns how
/// many pods are running afterwards.
pub async fn run_pods(client: &Client, namespace: &str, selector: &str, any_node: Option<&str>) -> usize {
    run_pods_where(client, namespace, selector, any_node, |_| true).await
}

/// Like [`run_pods`], for the pods meant for node `node` only.
pub async fn run_pods_on(client: &Client, namespace: &str, selector: &str, node: &str) -> usize {
    run_pods_where(client, namespace, selector, None, |target| target == node).await
}

async fn run_pods_where(
    client: &Client,
    namespace: &str,
    selector: &str,
    any_node: Option<&str>,
    on: impl Fn(&str) -> bool,
) -> usize {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut running = 0;
    for pod in pods(client, namespace, selector).await {
        let name = pod.name_any();
        let Some(node) = target_node(&pod).or_else(|| any_node.map(str::to_string)) else { continue };
        if !on(&node) {
            continue;
        }
        if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
            let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                 "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
            let bound: Result<serde_json::Value, _> =
                api.create_subresource("binding", &name, &PostParams::default(), &binding).await;
            if let Err(e) = bound {
                eprintln!("binding pod {name} to {node}: {e}");
                continue;
            }
        }
        if is_ready(&pod) {
            running += 1;
            continue;
        }
        let status = running_status(&pod);
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await {
            Ok(_) => running += 1,
            Err(e) => eprintln!("marking pod {name} Running: {e}"),
        }
    }
    running
}

/// The status patch a kubelet sends once `pod` runs: Running, every condition and container
/// Ready, now.
pub fn running_status(pod: &Pod) -> serde_json::Value {
    let now = jiff::Timestamp::now().to_string();
    let containers: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            json!({"name": c.name, "ready": true, "started": true, "restartCount": 0,
                   "image": c.image.clone().unwrap_or_default(), "imageID": "",
                   "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let condition = |type_: &str| json!({"type": type_, "status": "True", "lastTransitionTime": now});
    json!({"status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "10.0.0.1", "startTime": now,
        "conditions": [condition("PodScheduled"), condition("Initialized"), condition("ContainersReady"), condition("Ready")],
        "containerStatuses": containers,
    }})
}

/// Whether `pod` is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Plays the kubelet confirming that the terminating pods of `namespace` stopped: bound pods
/// otherwise stay `Terminating` forever.
pub async fn confirm_deletions(client: &Client, namespace: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = api.list(&ListParams::default()).await else { return };
    for pod in list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_some()) {
        let _ =
            api.delete(&pod.name_any(), &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
    }
}
