//! The five CRDs of the NIC configuration operator (`configuration.net.nvidia.com/v1alpha1`):
//! the NICs it discovers (NicDevice) and what users ask of them (configuration, firmware and
//! interface-name templates, firmware sources). The operator ships them in `crds/` (and the
//! chart) but never creates, owns or deletes them, so removing `spec.nicConfigurationOperator`
//! or the policy never deletes a user's template (the original rendered them with the state,
//! owned by the policy).
//!
//! The fields, defaults and rules are those of the original's v26.4.1 CRDs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group of the NIC configuration kinds.
pub const GROUP: &str = "configuration.net.nvidia.com";

/// The NICs a template applies to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicSelector {
    /// The NIC type (PCI device ID, e.g. `1021` for ConnectX-7).
    pub nic_type: String,
    /// PCI addresses of the NICs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")))]
    pub pci_addresses: Option<Vec<String>>,
    /// Part numbers of the NICs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_numbers: Option<Vec<String>>,
    /// Serial numbers of the NICs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_numbers: Option<Vec<String>>,
}

/// A configuration to apply to NICs of one type on selected nodes.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "configuration.net.nvidia.com",
    version = "v1alpha1",
    kind = "NicConfigurationTemplate",
    plural = "nicconfigurationtemplates",
    singular = "nicconfigurationtemplate",
    namespaced,
    status = "NicTemplateStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "NicConfigurationTemplate is the Schema for the nicconfigurationtemplates API"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.template.spectrumXOptimized) && self.template.spectrumXOptimized.enabled) || (self.nicSelector.nicType == '1023' || self.nicSelector.nicType == '1025' || self.nicSelector.nicType == 'a2dc')",
        "message": "spectrumXOptimized can be enabled only for ConnectX-8, ConnectX-9 or BlueField-3 SuperNICs",
    },
    {
        "rule": "!has(self.template.spectrumXOptimized) || !has(self.template.spectrumXOptimized.multiplaneMode) || self.template.spectrumXOptimized.multiplaneMode != 'hwplb' || self.nicSelector.nicType == '1023' || self.nicSelector.nicType == '1025'",
        "message": "hwplb MultiplaneMode can only be enabled for ConnectX-8 (NicType 1023) or ConnectX-9 (NicType 1025)",
    },
]))]
pub struct NicConfigurationTemplateSpec {
    /// Selects the nodes by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Selects the NICs.
    pub nic_selector: NicSelector,
    /// Reset the NICs to their default configuration first (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub reset_to_default: Option<bool>,
    /// The configuration.
    pub template: ConfigurationTemplate,
}

optional_spec!(NicConfigurationTemplateSpec);

/// The NIC devices a template matched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicTemplateStatus {
    /// Names of the matched NicDevices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_devices: Option<Vec<String>>,
}

/// The settings of a NIC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.spectrumXOptimized) && self.spectrumXOptimized.enabled) || (self.linkType == 'Ethernet' && self.numVfs == 1)",
        "message": "spectrumXOptimized can be enabled only when linkType=='Ethernet' and numVfs==1",
    },
    {
        "rule": "!(has(self.spectrumXOptimized) && self.spectrumXOptimized.enabled) || !(has(self.roceOptimized) && self.roceOptimized.enabled)",
        "message": "spectrumXOptimized includes RoCE optimizations, so separate roceOptimized section must not be enabled",
    },
]))]
pub struct ConfigurationTemplate {
    /// Number of VFs to configure.
    pub num_vfs: i64,
    /// Link type of the ports.
    #[schemars(extend("enum" = ["Ethernet", "Infiniband"]))]
    pub link_type: String,
    /// PCI performance settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_performance_optimized: Option<PciPerformanceOptimized>,
    /// RoCE settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roce_optimized: Option<RoceOptimized>,
    /// GPUDirect settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_direct_optimized: Option<GpuDirectOptimized>,
    /// Spectrum-X settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectrum_x_optimized: Option<SpectrumXOptimized>,
    /// Raw firmware parameters (mlxconfig names and values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_nv_config: Option<Vec<NvConfigParam>>,
}

/// PCI performance settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PciPerformanceOptimized {
    /// Whether they apply.
    pub enabled: bool,
    /// Maximum outstanding accumulated reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_acc_out_read: Option<i64>,
    /// Maximum PCI read request size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [128, 256, 512, 1024, 2048, 4096]))]
    pub max_read_request: Option<i64>,
}

/// RoCE settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoceOptimized {
    /// Whether they apply.
    pub enabled: bool,
    /// Quality of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<Qos>,
}

/// Quality-of-service settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Qos {
    /// Trust mode.
    pub trust: String,
    /// Priority flow control per priority, e.g. `0,0,0,1,0,0,0,0`.
    #[schemars(regex(pattern = r"^([01],){7}[01]$"))]
    pub pfc: String,
    /// Type of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos: Option<i64>,
}

/// GPUDirect settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuDirectOptimized {
    /// Whether they apply.
    pub enabled: bool,
    /// The environment they are for.
    pub env: String,
}

/// Spectrum-X settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.multiplaneMode) || !has(self.numberOfPlanes) || self.multiplaneMode != 'none' || self.numberOfPlanes == 1",
        "message": "when MultiplaneMode is none, numberOfPlanes must be 1",
    },
    {
        "rule": "!has(self.multiplaneMode) || !has(self.numberOfPlanes) || self.multiplaneMode == 'none' || self.numberOfPlanes != 1",
        "message": "when MultiplaneMode is not none, numberOfPlanes must not be 1",
    },
    {
        "rule": "!has(self.version) || !has(self.multiplaneMode) || !has(self.numberOfPlanes) || !(self.version == 'RA1.3' || self.version == 'RA2.0') || (self.multiplaneMode == 'none' && self.numberOfPlanes == 1)",
        "message": "when Version is RA1.3 or RA2.0, MultiplaneMode must be none and numberOfPlanes must be 1",
    },
]))]
pub struct SpectrumXOptimized {
    /// Whether they apply.
    pub enabled: bool,
    /// Spectrum-X reference architecture version.
    #[schemars(extend("enum" = ["RA1.3", "RA2.0", "RA2.1", "RA2.2"]))]
    pub version: String,
    /// Overlay mode (default `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["l3", "none"], "default" = "none"))]
    pub overlay: Option<String>,
    /// Multiplane mode (default `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["none", "swplb", "hwplb", "uniplane"], "default" = "none"))]
    pub multiplane_mode: Option<String>,
    /// Number of planes (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [1, 2, 4], "default" = 1))]
    pub number_of_planes: Option<i64>,
}

/// One raw firmware parameter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NvConfigParam {
    /// Parameter name.
    pub name: String,
    /// Parameter value.
    pub value: String,
}

/// Which firmware to validate or install.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FirmwareTemplate {
    /// The NicFirmwareSource holding the firmware.
    pub nic_firmware_source_ref: String,
    /// `Validate` (report a mismatch) or `Update` (install).
    #[schemars(extend("enum" = ["Validate", "Update"]))]
    pub update_policy: String,
}

/// A firmware to apply to NICs of one type on selected nodes.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "configuration.net.nvidia.com",
    version = "v1alpha1",
    kind = "NicFirmwareTemplate",
    plural = "nicfirmwaretemplates",
    singular = "nicfirmwaretemplate",
    namespaced,
    status = "NicTemplateStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "NicFirmwareTemplate is the Schema for the nicfirmwaretemplates API"
)]
#[serde(rename_all = "camelCase")]
pub struct NicFirmwareTemplateSpec {
    /// Selects the nodes by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Selects the NICs.
    pub nic_selector: NicSelector,
    /// The firmware.
    pub template: FirmwareTemplate,
}

optional_spec!(NicFirmwareTemplateSpec);

/// Where firmware images are downloaded from.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "configuration.net.nvidia.com",
    version = "v1alpha1",
    kind = "NicFirmwareSource",
    plural = "nicfirmwaresources",
    singular = "nicfirmwaresource",
    namespaced,
    status = "NicFirmwareSourceStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "NicFirmwareSource is the Schema for the nicfirmwaresources API"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "size(self.binUrlSources) > 0 || size(self.bfbUrlSource) > 0 || size(self.docaSpcXCCUrlSource) > 0",
    "message": "At least one of binUrlSources, bfbUrlSource, or docaSpcXCCUrlSource must be specified",
}]))]
pub struct NicFirmwareSourceSpec {
    /// URLs of firmware binaries (`.bin` or archives of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub bin_url_sources: Option<Vec<String>>,
    /// URL of a BlueField bundle (`.bfb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfb_url_source: Option<String>,
    /// URL of a DOCA SPC-X CC package.
    #[serde(default, rename = "docaSpcXCCUrlSource", skip_serializing_if = "Option::is_none")]
    pub doca_spc_xcc_url_source: Option<String>,
}

optional_spec!(NicFirmwareSourceSpec);

/// What the operator made of a firmware source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicFirmwareSourceStatus {
    /// Where the download and processing stand.
    #[schemars(extend("enum" = ["Downloading", "Processing", "Success", "ProcessingFailed", "DownloadFailed", "CacheVerificationFailed"]))]
    pub state: String,
    /// Why, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Firmware versions found, with the PSIDs of each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_versions: Option<BTreeMap<String, Vec<String>>>,
    /// BlueField bundle versions found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfb_versions: Option<BTreeMap<String, String>>,
    /// DOCA SPC-X CC version found.
    #[serde(default, rename = "docaSpcXCCVersion", skip_serializing_if = "Option::is_none")]
    pub doca_spc_xcc_version: Option<String>,
}

/// How the network and RDMA interfaces of selected nodes are named.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "configuration.net.nvidia.com",
    version = "v1alpha1",
    kind = "NicInterfaceNameTemplate",
    plural = "nicinterfacenametemplates",
    singular = "nicinterfacenametemplate",
    namespaced,
    status = "NicInterfaceNameTemplateStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "NicInterfaceNameTemplate is the Schema for the nicinterfacenametemplates API"
)]
#[serde(rename_all = "camelCase")]
pub struct NicInterfaceNameTemplateSpec {
    /// Selects the nodes by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Prefix of the network interface names.
    pub net_device_prefix: String,
    /// Prefix of the RDMA device names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma_device_prefix: Option<String>,
    /// Ports of each NIC.
    pub pfs_per_nic: i64,
    /// PCI addresses of the NICs, rail by rail.
    pub rail_pci_addresses: Vec<Vec<String>>,
}

optional_spec!(NicInterfaceNameTemplateSpec);

/// The status of an interface-name template (no fields in this version).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NicInterfaceNameTemplateStatus {}

/// One NIC of one node, as the configuration daemon found it, and what it should be.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "configuration.net.nvidia.com",
    version = "v1alpha1",
    kind = "NicDevice",
    plural = "nicdevices",
    singular = "nicdevice",
    namespaced,
    status = "NicDeviceStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "NicDevice is the Schema for the nicdevices API"
)]
#[serde(rename_all = "camelCase")]
pub struct NicDeviceSpec {
    /// The configuration wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<NicDeviceConfiguration>,
    /// The firmware wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwareTemplate>,
    /// The interface names wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name_template: Option<NicDeviceInterfaceNames>,
}

optional_spec!(NicDeviceSpec);

/// The configuration wanted of one NIC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicDeviceConfiguration {
    /// Reset the NIC to its default configuration first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_to_default: Option<bool>,
    /// The settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ConfigurationTemplate>,
}

/// The interface names wanted of one NIC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicDeviceInterfaceNames {
    /// Prefix of the network interface names.
    pub net_device_prefix: String,
    /// Prefix of the RDMA device names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma_device_prefix: Option<String>,
    /// Index of the NIC.
    pub nic_index: i64,
    /// Index of the rail.
    pub rail_index: i64,
    /// Indices of the planes.
    pub plane_indices: Vec<i64>,
}

/// What the configuration daemon found of one NIC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicDeviceStatus {
    /// The node.
    pub node: String,
    /// The NIC type (PCI device ID).
    #[serde(rename = "type")]
    pub nic_type: String,
    /// Serial number.
    pub serial_number: String,
    /// Part number.
    pub part_number: String,
    /// Parameter-set identifier of its firmware.
    pub psid: String,
    /// Firmware version.
    pub firmware_version: String,
    /// Model name.
    pub model_name: String,
    /// A SuperNIC.
    #[serde(rename = "superNIC")]
    pub super_nic: bool,
    /// A DPU.
    pub dpu: bool,
    /// Its ports.
    pub ports: Vec<NicDevicePort>,
    /// Conditions of the configuration and firmware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

/// One port of a NIC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicDevicePort {
    /// PCI address.
    pub pci: String,
    /// Network interface name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<String>,
    /// RDMA interface name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma_interface: Option<String>,
}
