//! The three cluster-scoped secondary-network kinds; each renders one NetworkAttachmentDefinition.

use crate::policy::AppliedState;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// State of a secondary network: `ready`, `notReady` or `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NetworkState {
    /// The NetworkAttachmentDefinition exists and matches the spec.
    #[serde(rename = "ready")]
    Ready,
    /// The NetworkAttachmentDefinition could not be written yet (e.g. its namespace is missing).
    #[serde(rename = "notReady")]
    NotReady,
    /// The spec cannot be turned into a CNI configuration (e.g. invalid `ipam` JSON).
    #[serde(rename = "error")]
    Error,
}

/// CEL rule on `networkNamespace`: empty, or a namespace name (a DNS-1123 label), so a network
/// whose namespace can never exist is refused when it is applied.
pub const NAMESPACE_RULE: &str = "self == '' || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";
/// CEL rule of a name that must be a DNS-1123 subdomain (a ConfigMap's, say).
pub const DNS_SUBDOMAIN_RULE: &str =
    "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
/// CEL rule of a HostDeviceNetwork's `resourceName`: the device plugin's resource name pattern,
/// optionally after a prefix (`nvidia.com/`), which the state keeps.
pub const RESOURCE_NAME_RULE: &str =
    "self.matches('^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$')";
/// Message of [`NAMESPACE_RULE`].
pub const NAMESPACE_MESSAGE: &str = "networkNamespace must be a namespace name: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";

/// A macvlan secondary network.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "mellanox.com",
    version = "v1alpha1",
    kind = "MacvlanNetwork",
    plural = "macvlannetworks",
    singular = "macvlannetwork",
    status = "MacvlanNetworkStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "MacvlanNetwork is the Schema for the macvlannetworks API",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MacvlanNetworkSpec {
    /// Namespace of the NetworkAttachmentDefinition; empty means `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), extend("x-kubernetes-validations" = [{
        "rule": NAMESPACE_RULE,
        "message": NAMESPACE_MESSAGE,
    }]))]
    pub network_namespace: Option<String>,
    /// Host interface to enslave; empty means the default-route interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Macvlan mode; empty means `bridge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["bridge", "private", "vepa", "passthru"]))]
    pub mode: Option<String>,
    /// MTU of the interface; 0 means the master's MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub mtu: Option<i32>,
    /// IPAM configuration (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<String>,
}

optional_spec!(MacvlanNetworkSpec);

/// Observed state of a MacvlanNetwork.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MacvlanNetworkStatus {
    /// Whether the NetworkAttachmentDefinition is in place.
    pub state: NetworkState,
    /// Why the state is not `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Reference of the NetworkAttachmentDefinition, `<apiVersion>/namespaces/<ns>/<Kind>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macvlan_network_attachment_def: Option<String>,
}

/// A host-device secondary network backed by a device-plugin resource pool.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "mellanox.com",
    version = "v1alpha1",
    kind = "HostDeviceNetwork",
    plural = "hostdevicenetworks",
    singular = "hostdevicenetwork",
    status = "HostDeviceNetworkStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "HostDeviceNetwork is the Schema for the hostdevicenetworks API",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct HostDeviceNetworkSpec {
    /// Namespace of the NetworkAttachmentDefinition; empty means `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), extend("x-kubernetes-validations" = [{
        "rule": NAMESPACE_RULE,
        "message": NAMESPACE_MESSAGE,
    }]))]
    pub network_namespace: Option<String>,
    /// Device-plugin resource pool; `nvidia.com/` is prefixed unless already present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), extend("x-kubernetes-validations" = [{
        "rule": RESOURCE_NAME_RULE,
        "message": "resourceName must be a device-plugin resource name: letters, digits, '-', '_' and '.', starting and ending with a letter or digit, optionally after a prefix such as nvidia.com/",
    }]))]
    pub resource_name: Option<String>,
    /// IPAM configuration (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<String>,
}

optional_spec!(HostDeviceNetworkSpec);

/// Observed state of a HostDeviceNetwork.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostDeviceNetworkStatus {
    /// Whether the NetworkAttachmentDefinition is in place.
    pub state: NetworkState,
    /// Why the state is not `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Reference of the NetworkAttachmentDefinition, `<apiVersion>/namespaces/<ns>/<Kind>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_device_network_attachment_def: Option<String>,
    /// Kept for compatibility with the original's status shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub applied_states: Option<Vec<AppliedState>>,
}

/// An IP-over-InfiniBand secondary network.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "mellanox.com",
    version = "v1alpha1",
    kind = "IPoIBNetwork",
    plural = "ipoibnetworks",
    singular = "ipoibnetwork",
    status = "IPoIBNetworkStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "IPoIBNetwork is the Schema for the ipoibnetworks API",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct IPoIBNetworkSpec {
    /// Namespace of the NetworkAttachmentDefinition; empty means `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), extend("x-kubernetes-validations" = [{
        "rule": NAMESPACE_RULE,
        "message": NAMESPACE_MESSAGE,
    }]))]
    pub network_namespace: Option<String>,
    /// Host IPoIB interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// IPAM configuration (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<String>,
}

optional_spec!(IPoIBNetworkSpec);

/// Observed state of an IPoIBNetwork.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPoIBNetworkStatus {
    /// Whether the NetworkAttachmentDefinition is in place.
    pub state: NetworkState,
    /// Why the state is not `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Reference of the NetworkAttachmentDefinition, `<apiVersion>/namespaces/<ns>/<Kind>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipoib_network_attachment_def: Option<String>,
}
