//! The CRD of the NVIDIA Spectrum-X operator (`spectrumx.nvidia.com/v1alpha2`): a rail pool
//! configuration its flow controller reads. The operator ships it in `crds/` (and the chart)
//! but never creates, owns or deletes it, so removing `spec.spectrumXOperator` or the policy
//! never deletes a user's configuration (the original rendered it with the state, owned by the
//! policy).
//!
//! The fields, defaults and rules are those of the original's v26.4.1 CRD.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group of the Spectrum-X kinds.
pub const GROUP: &str = "spectrumx.nvidia.com";

/// The Spectrum-X configuration of a pool of nodes: the VFs of each PF and the rails they form.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "spectrumx.nvidia.com",
    version = "v1alpha2",
    kind = "SpectrumXRailPoolConfig",
    plural = "spectrumxrailpoolconfigs",
    singular = "spectrumxrailpoolconfig",
    namespaced,
    status = "SpectrumXRailPoolConfigStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "SpectrumXRailPoolConfig is the Schema for the spectrumxrailpoolconfigs API."
)]
#[serde(rename_all = "camelCase")]
pub struct SpectrumXRailPoolConfigSpec {
    /// Selects the Spectrum-X nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Namespace of the NetworkAttachmentDefinitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_namespace: Option<String>,
    /// Number of VFs of each PF.
    #[schemars(range(min = 1))]
    pub num_vfs: i64,
    /// An integer or a percentage of the pool's nodes configured in parallel (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    pub max_unavailable: Option<IntOrString>,
    /// Whether dynamic resource allocation is used (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub dra_enabled: Option<bool>,
    /// The rails.
    #[schemars(length(min = 1))]
    pub rail_topology: Vec<RailTopology>,
}

optional_spec!(SpectrumXRailPoolConfigSpec);

/// One rail: its PFs, MTU and addresses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.cidrPoolRef) || !has(self.ipam)",
    "message": "Only one of cidrPoolRef or ipam can be specified",
}]))]
pub struct RailTopology {
    /// Name of the rail.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The PFs of the rail.
    pub nic_selector: RailNicSelector,
    /// MTU of the rail.
    #[schemars(range(min = 0))]
    pub mtu: i64,
    /// A CIDRPool (NVIDIA IPAM) the rail's addresses come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_pool_ref: Option<String>,
    /// IPAM configuration, instead of `cidrPoolRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<String>,
}

/// The PFs of a rail, by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RailNicSelector {
    /// PF names.
    #[schemars(length(min = 1))]
    pub pf_names: Vec<String>,
}

/// What the Spectrum-X operator observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpectrumXRailPoolConfigStatus {
    /// The generation last synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How the last sync went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_status: Option<String>,
}
