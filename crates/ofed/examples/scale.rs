//! Scale benchmark of state-OFED (not a test): rendering for 5,000 NIC nodes in 50 pools.
//!
//!     cargo run --release -p ofed --example scale
//!
//! Each node carries 60 NFD-like labels, annotations and a full `status.nodeInfo`, as a real
//! node does; the cache keeps only what the state reads. (The memory of the Node watch itself
//! is measured against a real API server by `hack/bench-ofed-nodes.sh`.)

use k8s_openapi::api::core::v1::Node;
use ofed::OfedDriver;
use ofed::pools::{ARCH_LABEL, KERNEL_LABEL, OS_LABEL, OS_VERSION_LABEL};
use serde_json::json;
use state_core::nodes::NodeCache;
use state_core::{ImageTags, Observed, RenderContext, State, render_state};
use std::time::Instant;

const NODES: usize = 5_000;
const POOLS: usize = 50;

/// A node as the API server returns it: NFD's many labels, annotations, node info.
fn node(i: usize) -> Node {
    let mut labels = serde_json::Map::new();
    for l in 0..60 {
        labels.insert(format!("feature.node.kubernetes.io/cpu-cpuid.FEATURE{l}"), json!("true"));
    }
    labels.insert("feature.node.kubernetes.io/pci-15b3.present".into(), json!("true"));
    labels.insert(OS_LABEL.into(), json!("ubuntu"));
    labels.insert(OS_VERSION_LABEL.into(), json!("22.04"));
    labels.insert(KERNEL_LABEL.into(), json!(format!("5.15.0-{}-generic", i % POOLS)));
    labels.insert(ARCH_LABEL.into(), json!("amd64"));
    serde_json::from_value(json!({
        "metadata": {"name": format!("node-{i:05}"), "resourceVersion": "12345", "labels": labels,
                     "annotations": {"nfd.node.kubernetes.io/feature-labels": "x".repeat(600), "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": "10.0.0.0/24", "providerID": "baremetal://x"},
        "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://1.7.2", "architecture": "amd64", "bootID": "b",
                   "kernelVersion": "5.15.0", "kubeProxyVersion": "", "kubeletVersion": "v1.30.1", "machineID": "m",
                   "operatingSystem": "linux", "osImage": "Ubuntu 22.04.3 LTS", "systemUUID": "s"},
                   "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                   "images": (0..30).map(|n| json!({"names": [format!("registry/image-{n}:tag")], "sizeBytes": 1})).collect::<Vec<_>>()}
    }))
    .expect("valid node")
}

fn main() {
    let nodes = NodeCache::from_nodes((0..NODES).map(node), OfedDriver::NODE_LABELS).nodes();

    let policy = state_core::testing::policy_from_file("example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml");
    let mut observed = Observed { nodes, ..Default::default() };
    observed.image_tags.insert("nvcr.io/nvidia/mellanox/mofed".into(), ImageTags::Listed(Default::default()));
    let ctx =
        RenderContext { namespace: "nvidia-network-operator", openshift: false, policy: &policy, observed: &observed };
    let mut best = f64::MAX;
    let mut objects = 0;
    for _ in 0..10 {
        let started = Instant::now();
        objects = render_state::<OfedDriver>(&ctx).expect("renders").expect("section present").len();
        best = best.min(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!("render: {NODES} nodes in {POOLS} pools -> {objects} objects in {best:.1} ms (best of 10)");
}
