//! The two CRDs of NVIDIA IPAM (`nv-ipam.nvidia.com/v1alpha1`), the pools its controller splits
//! into per-node blocks: the operator ships them in `crds/` (and the chart) but never creates,
//! owns or deletes them, so removing `spec.nvIpam` or the policy never deletes a pool (the
//! original created them at run time, owned by the policy, and deleting the policy wiped every
//! pool and its allocations).
//!
//! The fields, printer columns and status subresource are the original's (v24.7.0). Pools live
//! in the operands' namespace: the IPAM's controller and node agent read them from there.

use k8s_openapi::api::core::v1::NodeSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the NVIDIA IPAM kinds.
pub const GROUP: &str = "nv-ipam.nvidia.com";

/// A subnet the IPAM controller splits into blocks of `perNodeBlockSize` addresses, one per node.
// Two printer columns of the same type look like a duplicated attribute to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "nv-ipam.nvidia.com",
    version = "v1alpha1",
    kind = "IPPool",
    plural = "ippools",
    singular = "ippool",
    namespaced,
    status = "IPPoolStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "IPPool contains configuration for IPAM controller",
    printcolumn(name = "Subnet", type_ = "string", json_path = ".spec.subnet"),
    printcolumn(name = "Gateway", type_ = "string", json_path = ".spec.gateway"),
    printcolumn(name = "Block Size", type_ = "integer", json_path = ".spec.perNodeBlockSize")
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// Subnet of the pool.
    pub subnet: String,
    /// Amount of IPs to allocate for each node; must be less than the amount of available IPs
    /// in the subnet.
    pub per_node_block_size: i64,
    /// Gateway for the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Reserved IP addresses that nv-ipam must not allocate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusions: Option<Vec<ExcludeRange>>,
    /// Selector for nodes; empty matches every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<NodeSelector>,
}

optional_spec!(IPPoolSpec);

/// A range of IP addresses to exclude from allocation; `startIP` and `endIP` are part of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExcludeRange {
    /// First excluded address.
    #[serde(rename = "startIP")]
    pub start_ip: String,
    /// Last excluded address.
    #[serde(rename = "endIP")]
    pub end_ip: String,
}

/// The IP ranges allocated to nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IPPoolStatus {
    /// IP allocations for nodes.
    pub allocations: Vec<Allocation>,
}

/// The block of one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Allocation {
    /// The node.
    #[serde(rename = "nodeName")]
    pub node_name: String,
    /// First address of the block.
    #[serde(rename = "startIP")]
    pub start_ip: String,
    /// Last address of the block.
    #[serde(rename = "endIP")]
    pub end_ip: String,
}

/// A CIDR block the IPAM controller splits into prefixes of `perNodeNetworkPrefix`, one per node.
// Two printer columns of the same type look like a duplicated attribute to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "nv-ipam.nvidia.com",
    version = "v1alpha1",
    kind = "CIDRPool",
    plural = "cidrpools",
    singular = "cidrpool",
    namespaced,
    status = "CIDRPoolStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "CIDRPool contains configuration for CIDR pool",
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "Gateway index", type_ = "integer", json_path = ".spec.gatewayIndex"),
    printcolumn(name = "Per Node Network Prefix", type_ = "integer", json_path = ".spec.perNodeNetworkPrefix")
)]
#[serde(rename_all = "camelCase")]
pub struct CIDRPoolSpec {
    /// The pool's CIDR block, split into prefixes of `perNodeNetworkPrefix` and distributed
    /// between the matching nodes.
    pub cidr: String,
    /// Size of the network prefix of each node.
    pub per_node_network_prefix: i32,
    /// Use the IP with this index in the node's prefix as its gateway; no gateway when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_index: Option<i32>,
    /// Reserved IP addresses that nv-ipam must not allocate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusions: Option<Vec<ExcludeRange>>,
    /// Static allocations of the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_allocations: Option<Vec<CIDRPoolStaticAllocation>>,
    /// Selector for nodes; empty matches every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<NodeSelector>,
}

optional_spec!(CIDRPoolSpec);

/// A prefix allocated statically, to a node or (without `nodeName`) to nobody.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CIDRPoolStaticAllocation {
    /// The node; empty preallocates the prefix without giving it to a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The statically allocated prefix.
    pub prefix: String,
    /// Gateway for the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// The prefixes allocated to nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CIDRPoolStatus {
    /// Prefix allocations for nodes.
    pub allocations: Vec<CIDRPoolAllocation>,
}

/// The prefix of one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CIDRPoolAllocation {
    /// The node owning this allocation.
    pub node_name: String,
    /// The allocated prefix.
    pub prefix: String,
    /// Gateway for the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}
