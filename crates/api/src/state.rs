//! Sync-state values and the names of the policy's states.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The state of one component (or of the whole policy), as the original product reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SyncState {
    /// Every object exists and its workload is available.
    #[serde(rename = "ready")]
    Ready,
    /// Progressing: objects missing, not yet available, or a transient API error.
    #[serde(rename = "notReady")]
    NotReady,
    /// The section is absent from the policy (or the policy is not the one acted on).
    #[serde(rename = "ignore")]
    Ignore,
    /// The section cannot be rendered: bad input or a missing dependency.
    #[serde(rename = "error")]
    Error,
}

impl SyncState {
    /// Every value, in the order dashboards list them.
    pub const ALL: [SyncState; 4] = [Self::Ready, Self::NotReady, Self::Ignore, Self::Error];

    /// The wire value (`ready`, `notReady`, `ignore`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::NotReady => "notReady",
            Self::Ignore => "ignore",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a state that is ready but leaves nodes without its operand starts that part of its
/// message (parts are separated by `; `), e.g. `left out: 1 NIC node(s) without NFD labels get no
/// driver: node-3`. The aggregator carries such parts into the policy's `reason` and its
/// `NodesServed` condition, so "ready" never hides them.
pub const LEFT_OUT_NOTE: &str = "left out: ";

/// The state names of the policy's sections, in the original's execution order.
pub mod names {
    /// `spec.secondaryNetwork.multus`
    pub const MULTUS: &str = "state-multus-cni";
    /// `spec.secondaryNetwork.cniPlugins`
    pub const CNI_PLUGINS: &str = "state-container-networking-plugins";
    /// `spec.secondaryNetwork.ipoib`
    pub const IPOIB: &str = "state-ipoib-cni";
    /// `spec.secondaryNetwork.ipamPlugin`
    pub const WHEREABOUTS: &str = "state-whereabouts-cni";
    /// `spec.ofedDriver`
    pub const OFED: &str = "state-OFED";
    /// `spec.sriovDevicePlugin`
    pub const SRIOV_DP: &str = "state-SRIOV-device-plugin";
    /// `spec.rdmaSharedDevicePlugin`
    pub const RDMA_DP: &str = "state-RDMA-device-plugin";
    /// `spec.ibKubernetes`
    pub const IB_KUBERNETES: &str = "state-ib-kubernetes";
    /// `spec.nvIpam`
    pub const NV_IPAM: &str = "state-nv-ipam-cni";
    /// `spec.nicFeatureDiscovery`
    pub const NIC_FEATURE_DISCOVERY: &str = "state-nic-feature-discovery";
    /// `spec.docaTelemetryService`
    pub const DOCA_TELEMETRY: &str = "state-doca-telemetry-service";
    /// `spec.nicConfigurationOperator`
    pub const NIC_CONFIGURATION: &str = "state-nic-configuration-operator";
    /// `spec.spectrumXOperator`
    pub const SPECTRUM_X: &str = "state-spectrum-x-operator";

    /// Every state of the policy, in execution order.
    pub const ALL: [&str; 13] = [
        MULTUS,
        CNI_PLUGINS,
        IPOIB,
        WHEREABOUTS,
        OFED,
        SRIOV_DP,
        RDMA_DP,
        IB_KUBERNETES,
        NV_IPAM,
        NIC_FEATURE_DISCOVERY,
        DOCA_TELEMETRY,
        NIC_CONFIGURATION,
        SPECTRUM_X,
    ];
}

/// The policy's status conditions, as the original defines them (its
/// `api/v1alpha1/nicclusterpolicyconditions.go`, from release v26.7): one `<Component>Ready`
/// condition per enabled section, and the aggregate `Ready`.
pub mod conditions {
    use super::names;

    /// The aggregate condition: True only when every enabled section is ready.
    pub const READY: &str = "Ready";
    /// Reason of a component condition whose workloads are fully available.
    pub const COMPONENT_READY: &str = "ComponentReady";
    /// Reason of a component condition still deploying, expected to become ready by itself.
    pub const COMPONENT_NOT_READY: &str = "ComponentNotReady";
    /// Reason of a component condition that needs attention; also of `Ready` when any has it.
    pub const COMPONENT_ERROR: &str = "ComponentError";
    /// Reason of `Ready` when every enabled section is ready.
    pub const ALL_COMPONENTS_READY: &str = "AllComponentsReady";
    /// Reason of `Ready` when a section is still deploying and none is in error.
    pub const COMPONENTS_NOT_READY: &str = "ComponentsNotReady";

    /// The component condition type of state `name`. The original has no Whereabouts state
    /// since v25; ours keeps the section, and its condition is `WhereaboutsCNIReady`.
    pub fn component_type(name: &str) -> Option<&'static str> {
        Some(match name {
            names::OFED => "OFEDDriverReady",
            names::RDMA_DP => "RDMASharedDevicePluginReady",
            names::SRIOV_DP => "SRIOVDevicePluginReady",
            names::IB_KUBERNETES => "IBKubernetesReady",
            names::MULTUS => "MultusCNIReady",
            names::CNI_PLUGINS => "CNIPluginsReady",
            names::IPOIB => "IPoIBCNIReady",
            names::WHEREABOUTS => "WhereaboutsCNIReady",
            names::NV_IPAM => "NVIPAMReady",
            names::NIC_FEATURE_DISCOVERY => "NICFeatureDiscoveryReady",
            names::DOCA_TELEMETRY => "DOCATelemetryServiceReady",
            names::NIC_CONFIGURATION => "NICConfigurationOperatorReady",
            names::SPECTRUM_X => "SpectrumXOperatorReady",
            _ => return None,
        })
    }

    /// Every component condition type (to prune those of sections removed).
    pub fn component_types() -> impl Iterator<Item = &'static str> {
        names::ALL.into_iter().filter_map(component_type)
    }
}
