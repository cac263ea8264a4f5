//! The NIC nodes, for states whose objects depend on them (the OFED driver's pools): a watch of
//! the Nodes labelled `feature.node.kubernetes.io/pci-15b3.present=true` that keeps, per node,
//! only its name, the labels the state reads and its container runtime ([`NodeFacts`]), so even
//! thousands of nodes cost little memory. Controllers of other states start no Node watch.

pub use crate::edits::NIC_PRESENT_LABEL as NIC_LABEL;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// What is kept of a node: its name, the labels a state reads and, as the label
/// [`RUNTIME_LABEL`], its container runtime (one map: a map costs half a KiB even when small).
pub type NodeFacts = PartialObjectMeta<Node>;

/// Label of [`NodeFacts`] (never of a real node) holding the container runtime (`docker`,
/// `containerd`, `cri-o`).
pub const RUNTIME_LABEL: &str = "network-operator.nvidia.com/container-runtime";

/// Per node name, the values of the kept labels, in [`NodeCache`]'s order.
type CompactNodes = BTreeMap<String, Vec<Option<Box<str>>>>;

/// Live copies of the NIC nodes, compact: per node its name and the values of the kept labels
/// (about 300 bytes a node); [`NodeFacts`] are built when asked for.
#[derive(Clone)]
pub struct NodeCache {
    keep: &'static [&'static str],
    nodes: Arc<RwLock<CompactNodes>>,
    synced: tokio::sync::watch::Receiver<bool>,
}

impl NodeCache {
    fn new(keep: &'static [&'static str]) -> (Self, tokio::sync::watch::Sender<bool>) {
        let (done, synced) = tokio::sync::watch::channel(false);
        (Self { keep, nodes: Arc::default(), synced }, done)
    }

    /// Watches the NIC nodes (metadata only, 100 a page), keeping the labels in `labels`. The
    /// stream yields on every change and must be polled (it drives the cache).
    pub fn watch(client: &Client, labels: &'static [&'static str]) -> (Self, impl Stream<Item = ()> + Send + 'static) {
        let config = watcher::Config::default().labels(&format!("{NIC_LABEL}=true")).page_size(100);
        let (cache, done) = Self::new(labels);
        let writer = cache.clone();
        let mut listing: Option<CompactNodes> = None;
        let stream = watcher::watcher(Api::<NodeFacts>::all(client.clone()), config).default_backoff().filter_map(
            move |event| {
                let changed = match event {
                    Ok(Event::Init) => {
                        listing = Some(BTreeMap::new());
                        false
                    }
                    Ok(Event::InitApply(node)) => {
                        if let Some((name, values)) = writer.compact(&node) {
                            listing.get_or_insert_with(BTreeMap::new).insert(name, values);
                        }
                        false
                    }
                    Ok(Event::InitDone) => {
                        *writer.nodes.write().unwrap_or_else(|e| e.into_inner()) = listing.take().unwrap_or_default();
                        let _ = done.send(true);
                        true
                    }
                    Ok(Event::Apply(node)) => {
                        if let Some((name, values)) = writer.compact(&node) {
                            writer.nodes.write().unwrap_or_else(|e| e.into_inner()).insert(name, values);
                        }
                        true
                    }
                    Ok(Event::Delete(node)) => {
                        let name = node.metadata.name.unwrap_or_default();
                        writer.nodes.write().unwrap_or_else(|e| e.into_inner()).remove(&name);
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %crate::apply::describe_watch(&e), "watch of NIC nodes failed; retrying");
                        false
                    }
                };
                std::future::ready(changed.then_some(()))
            },
        );
        (cache, stream)
    }

    /// A cache holding `nodes` (for tests and benchmarks).
    pub fn from_nodes(nodes: impl IntoIterator<Item = Node>, labels: &'static [&'static str]) -> Self {
        let (cache, done) = Self::new(labels);
        {
            let mut map = cache.nodes.write().unwrap_or_else(|e| e.into_inner());
            for node in nodes {
                if let Some((name, values)) = cache.compact(&facts(node, None)) {
                    map.insert(name, values);
                }
            }
        }
        let _ = done.send(true);
        cache
    }

    /// The name and kept label values of `node`: the NIC label, then `keep`, then the runtime.
    fn compact(&self, node: &NodeFacts) -> Option<(String, Vec<Option<Box<str>>>)> {
        let name = node.metadata.name.clone()?;
        let labels = node.metadata.labels.as_ref();
        let value = |key: &str| labels.and_then(|l| l.get(key)).map(|v| v.as_str().into());
        let values =
            std::iter::once(NIC_LABEL).chain(self.keep.iter().copied()).chain([RUNTIME_LABEL]).map(value).collect();
        Some((name, values))
    }

    /// Waits until the cache holds the first full list.
    pub async fn synced(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|done| *done).await;
    }

    /// Every NIC node, sorted by name.
    pub fn nodes(&self) -> Vec<Arc<NodeFacts>> {
        let keys: Vec<&str> =
            std::iter::once(NIC_LABEL).chain(self.keep.iter().copied()).chain([RUNTIME_LABEL]).collect();
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes
            .iter()
            .map(|(name, values)| {
                let labels = keys
                    .iter()
                    .zip(values)
                    .filter_map(|(key, value)| Some((key.to_string(), value.as_deref()?.to_string())))
                    .collect();
                Arc::new(PartialObjectMeta {
                    types: None,
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(labels),
                        ..Default::default()
                    },
                    _phantom: Default::default(),
                })
            })
            .collect()
    }
}

/// The facts of `node`: its name, its labels (only those in `keep` and the NIC label, when
/// given) and its container runtime.
pub fn facts(node: Node, keep: Option<&[&str]>) -> NodeFacts {
    let runtime = node.status.as_ref().and_then(|s| s.node_info.as_ref()).and_then(|info| {
        let version = info.container_runtime_version.as_str();
        ["docker", "containerd", "cri-o"].into_iter().find(|r| version.starts_with(r))
    });
    let mut labels: std::collections::BTreeMap<String, String> = node
        .metadata
        .labels
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| keep.is_none_or(|keep| k == NIC_LABEL || keep.contains(&k.as_str())))
        .collect();
    if let Some(runtime) = runtime {
        labels.insert(RUNTIME_LABEL.to_string(), runtime.to_string());
    }
    PartialObjectMeta {
        types: None,
        metadata: kube::api::ObjectMeta { name: node.metadata.name, labels: Some(labels), ..Default::default() },
        _phantom: Default::default(),
    }
}

/// The container runtime of a node (`docker`, `containerd`, `cri-o`), when known.
pub fn container_runtime(node: &NodeFacts) -> Option<&str> {
    node.metadata.labels.as_ref()?.get(RUNTIME_LABEL).map(String::as_str)
}

/// A change of one node's label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelChange {
    /// Set it to this value.
    Set(&'static str),
    /// Remove it.
    Remove,
}

/// Writes `changes` of node label `label`: a value by server-side apply with `manager`, a
/// removal by a merge patch (whoever set it). Returns the errors, one line per node.
pub async fn write_label(
    client: &Client,
    manager: &str,
    label: &str,
    changes: &BTreeMap<String, LabelChange>,
) -> Vec<String> {
    use kube::api::{Patch, PatchParams};
    use serde_json::json;
    let nodes: Api<Node> = Api::all(client.clone());
    let mut errors = Vec::new();
    for (name, change) in changes {
        let result = match change {
            LabelChange::Set(value) => {
                let patch =
                    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {label: value}}});
                nodes.patch(name, &PatchParams::apply(manager).force(), &Patch::Apply(&patch)).await
            }
            LabelChange::Remove => {
                let patch = json!({"metadata": {"labels": {label: null}}});
                nodes.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await
            }
        };
        match result {
            Ok(_) => tracing::info!(node = %name, ?change, "{label} updated"),
            Err(e) => errors.push(format!("labelling node {name}: {}", crate::apply::describe(&e))),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_node_is_reduced_to_what_rendering_reads() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "resourceVersion": "3", "annotations": {"a": "b"},
                         "labels": {NIC_LABEL: "true", "kernel": "5.15", "other": "x"}},
            "spec": {"podCIDR": "10.0.0.0/24"},
            "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://1.7", "kernelVersion": "5.15",
                       "architecture": "amd64", "bootID": "", "kubeProxyVersion": "", "kubeletVersion": "",
                       "machineID": "", "operatingSystem": "linux", "osImage": "", "systemUUID": ""},
                       "images": [{"names": ["a"], "sizeBytes": 1}]},
        }))
        .unwrap();
        let facts = facts(node, Some(&["kernel"]));
        assert_eq!(
            serde_json::to_value(&facts.metadata).unwrap(),
            json!({"name": "n1", "labels": {NIC_LABEL: "true", "kernel": "5.15", RUNTIME_LABEL: "containerd"}})
        );
        assert_eq!(container_runtime(&facts), Some("containerd"));
    }
}
