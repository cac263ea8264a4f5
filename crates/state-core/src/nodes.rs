//! The NIC nodes, for states whose objects depend on them (the OFED driver's pools): a watch of
//! the Nodes labelled `feature.node.kubernetes.io/pci-15b3.present=true` that keeps only the
//! labels the state reads, its own labels and the container runtime, so even thousands of nodes
//! cost little memory. Controllers of other states start no Node watch at all.

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, NodeStatus, NodeSystemInfo};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::sync::Arc;

pub use crate::edits::NIC_PRESENT_LABEL as NIC_LABEL;

/// Live, slimmed copies of the NIC nodes.
#[derive(Clone)]
pub struct NodeCache {
    store: Store<Node>,
}

impl NodeCache {
    /// Watches the NIC nodes, keeping the labels in `labels` (and nothing else of the metadata
    /// but the name) and the container runtime of `status.nodeInfo`. The stream yields on every
    /// change and must be polled (it drives the cache).
    pub fn watch(client: &Client, labels: &'static [&'static str]) -> (Self, impl Stream<Item = ()> + Send + 'static) {
        let config = watcher::Config::default().labels(&format!("{NIC_LABEL}=true"));
        let writer = reflector::store::Writer::default();
        let store = writer.as_reader();
        let stream = reflector::reflector(
            writer,
            watcher(Api::<Node>::all(client.clone()), config).modify(move |node| slim(node, labels)),
        )
        .default_backoff()
        .filter_map(|event| async move {
            match event {
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => Some(()),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "watch of NIC nodes failed; retrying");
                    None
                }
            }
        });
        (Self { store }, stream)
    }

    /// A cache holding `nodes` (for tests and offline rendering).
    pub fn from_nodes(nodes: Vec<Node>, labels: &'static [&'static str]) -> Self {
        let mut writer = reflector::store::Writer::default();
        writer.apply_watcher_event(&watcher::Event::Init);
        for mut node in nodes {
            slim(&mut node, labels);
            writer.apply_watcher_event(&watcher::Event::InitApply(node));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Self { store: writer.as_reader() }
    }

    /// Waits until the cache holds the first full list.
    pub async fn synced(&self) {
        let _ = self.store.wait_until_ready().await;
    }

    /// Every NIC node, sorted by name.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        let mut nodes = self.store.state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        nodes
    }
}

/// Drops everything of `node` but its name, the labels in `keep` (plus the NIC label) and the
/// container runtime version.
pub fn slim(node: &mut Node, keep: &[&str]) {
    let runtime = node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.container_runtime_version.clone());
    let labels = node.metadata.labels.take().unwrap_or_default();
    let kept = labels.into_iter().filter(|(k, _)| k == NIC_LABEL || keep.contains(&k.as_str())).collect();
    node.metadata = kube::api::ObjectMeta {
        name: node.metadata.name.take(),
        resource_version: node.metadata.resource_version.take(),
        labels: Some(kept),
        ..Default::default()
    };
    node.spec = None;
    node.status = runtime.map(|container_runtime_version| NodeStatus {
        node_info: Some(NodeSystemInfo { container_runtime_version, ..Default::default() }),
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_slimmed_node_keeps_only_what_rendering_reads() {
        let mut node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "resourceVersion": "3", "annotations": {"a": "b"},
                         "labels": {NIC_LABEL: "true", "kernel": "5.15", "other": "x"}},
            "spec": {"podCIDR": "10.0.0.0/24"},
            "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://1.7", "kernelVersion": "5.15",
                       "architecture": "amd64", "bootID": "", "kubeProxyVersion": "", "kubeletVersion": "",
                       "machineID": "", "operatingSystem": "linux", "osImage": "", "systemUUID": ""},
                       "images": [{"names": ["a"], "sizeBytes": 1}]},
        }))
        .unwrap();
        slim(&mut node, &["kernel"]);
        let value = serde_json::to_value(&node).unwrap();
        assert_eq!(
            value["metadata"],
            json!({"name": "n1", "resourceVersion": "3", "labels": {NIC_LABEL: "true", "kernel": "5.15"}})
        );
        assert_eq!(value["spec"], serde_json::Value::Null);
        assert_eq!(value["status"]["nodeInfo"]["containerRuntimeVersion"], "containerd://1.7");
        assert_eq!(value["status"].get("images"), None);
    }
}
