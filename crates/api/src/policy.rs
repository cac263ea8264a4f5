//! `NicClusterPolicy`: the cluster-wide desired state of the NIC stack.

use crate::FieldError;
use crate::image::{GlobalConfig, ImageSpec};
use crate::state::SyncState;
use k8s_openapi::api::core::v1::{EnvVar, NodeAffinity, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of the cluster's fast-networking stack. Every section is optional; a
/// present section enables its state, an absent one removes what that state deployed.
///
/// Only the instance named `nic-cluster-policy` is acted on.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "mellanox.com",
    version = "v1alpha1",
    kind = "NicClusterPolicy",
    plural = "nicclusterpolicies",
    singular = "nicclusterpolicy",
    status = "NicClusterPolicyStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "NicClusterPolicy is the Schema for the nicclusterpolicies API",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct NicClusterPolicySpec {
    /// Defaults for every section's image: repository, version, pull secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalConfig>,
    /// Node affinity added to every managed DaemonSet's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    /// Tolerations added (before the component's own) to every managed DaemonSet's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Node affinity of the managed Deployments' pods (ib-kubernetes, the nv-ipam controller),
    /// apart from the DaemonSets' `nodeAffinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_node_affinity: Option<NodeAffinity>,
    /// Tolerations of the managed Deployments' pods, apart from the DaemonSets' `tolerations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_tolerations: Option<Vec<Toleration>>,
    /// The OFED (DOCA) driver container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ofed_driver: Option<OfedDriverSpec>,
    /// The RDMA shared device plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma_shared_device_plugin: Option<DevicePluginSpec>,
    /// The SR-IOV network device plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sriov_device_plugin: Option<DevicePluginSpec>,
    /// ib-kubernetes, the InfiniBand PKey/GUID manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ib_kubernetes: Option<IbKubernetesSpec>,
    /// Secondary-network components: Multus, CNI plugins, IPoIB CNI, Whereabouts IPAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_network: Option<SecondaryNetworkSpec>,
    /// NVIDIA IPAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nv_ipam: Option<NvIpamSpec>,
    /// NIC feature discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_feature_discovery: Option<NicFeatureDiscoverySpec>,
    /// DOCA telemetry service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doca_telemetry_service: Option<DocaTelemetryServiceSpec>,
    /// The NIC configuration operator: NIC firmware and its settings, applied node by node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_configuration_operator: Option<NicConfigurationOperatorSpec>,
    /// The NVIDIA Spectrum-X operator (its flow controller on the NIC nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectrum_x_operator: Option<SpectrumXOperatorSpec>,
}

optional_spec!(NicClusterPolicySpec);

impl NicClusterPolicySpec {
    /// Every section's image, for reading or filling defaults.
    fn images_mut(&mut self) -> Vec<&mut ImageSpec> {
        let secondary = self.secondary_network.as_mut();
        let (nic_configuration, nic_configuration_daemon) = match self.nic_configuration_operator.as_mut() {
            Some(s) => (Some(&mut s.operator), Some(&mut s.configuration_daemon)),
            None => (None, None),
        };
        let (multus, cni_plugins, ipoib, ipam_plugin) = match secondary {
            Some(s) => (
                s.multus.as_mut().map(|m| &mut m.image),
                s.cni_plugins.as_mut(),
                s.ipoib.as_mut(),
                s.ipam_plugin.as_mut(),
            ),
            None => (None, None, None, None),
        };
        [
            self.ofed_driver.as_mut().map(|s| &mut s.image),
            self.rdma_shared_device_plugin.as_mut().map(|s| &mut s.image),
            self.sriov_device_plugin.as_mut().map(|s| &mut s.image),
            self.ib_kubernetes.as_mut().map(|s| &mut s.image),
            multus,
            cni_plugins,
            ipoib,
            ipam_plugin,
            self.nv_ipam.as_mut().map(|s| &mut s.image),
            self.nic_feature_discovery.as_mut().map(|s| &mut s.image),
            self.doca_telemetry_service.as_mut().map(|s| &mut s.image),
            nic_configuration,
            nic_configuration_daemon,
            self.spectrum_x_operator.as_mut().map(|s| &mut s.image),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Initial delay and period of one of the driver container's probes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodProbeSpec {
    /// Seconds after the container started before the probe runs.
    pub initial_delay_seconds: i32,
    /// Seconds between two probes.
    pub period_seconds: i32,
}

/// A reference to a ConfigMap in the operands' namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapNameReference {
    /// Name of the ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// CEL rule of the OFED driver's `version`: a driver version (`24.07-0.6.1.0-0`, optionally
/// `doca<release>-` first, as later releases name them) or a `sha256:` digest.
pub const OFED_VERSION_RULE: &str = "!has(self.version) || self.version.matches('^(doca[0-9][0-9.]*-)?[0-9]+\\\\.[0-9]+-[0-9]+(\\\\.[0-9]+)*(-[0-9]+)?$') || self.version.matches('^sha256:[a-f0-9]{64}$')";

/// The OFED driver container and how it is upgraded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": OFED_VERSION_RULE,
    "message": "version must be a driver version such as 24.07-0.6.1.0-0 (<year>.<month>-<release>[.<n>...][-<n>], optionally prefixed doca<release>-) or a sha256:<64 hex digits> digest",
    "fieldPath": ".version",
}]))]
pub struct OfedDriverSpec {
    /// Image of the driver container.
    #[serde(flatten)]
    pub image: ImageSpec,
    /// Startup probe timing (defaults: 10 s delay, 10 s period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<PodProbeSpec>,
    /// Liveness probe timing (defaults: 30 s delay, 30 s period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<PodProbeSpec>,
    /// Readiness probe timing (defaults: 10 s delay, 30 s period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<PodProbeSpec>,
    /// Environment variables of the driver container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// How driver upgrades roll out across nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_policy: Option<DriverUpgradePolicySpec>,
    /// ConfigMap with custom CA certificates for the driver build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_config: Option<ConfigMapNameReference>,
    /// ConfigMap with package repository files for the driver build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_config: Option<ConfigMapNameReference>,
    /// Grace period of the driver pods; unloading modules is slow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 300))]
    pub termination_grace_period_seconds: Option<i64>,
    /// Only precompiled driver images may be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub force_precompiled: Option<bool>,
}

/// How driver upgrades roll out across nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.safeLoad) || !self.safeLoad || (has(self.autoUpgrade) && self.autoUpgrade)",
    "message": "safeLoad requires autoUpgrade to be true",
    "fieldPath": ".safeLoad",
}, {
    "rule": "!has(self.maxUnavailable) || string(self.maxUnavailable).matches('^([1-9][0-9]?|100)%$') || (string(self.maxUnavailable).matches('^[1-9][0-9]*$') && int(string(self.maxUnavailable)) == self.maxUnavailable)",
    "message": "maxUnavailable must be a number of nodes (at least 1) or a percentage from 1% to 100%, e.g. 2 or \"25%\"",
    "fieldPath": ".maxUnavailable",
}]))]
pub struct DriverUpgradePolicySpec {
    /// Master switch: when false, nothing else here has an effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub auto_upgrade: Option<bool>,
    /// Nodes upgraded at the same time; 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 1))]
    pub max_parallel_upgrades: Option<i32>,
    /// Load a new driver only after the node was cordoned and drained (needs autoUpgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub safe_load: Option<bool>,
    /// Pods to wait for before draining a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_completion: Option<WaitForCompletionSpec>,
    /// How nodes are drained; absent means no drain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainSpec>,
    /// Nodes that may be unavailable (cordoned or not Ready) at once, upgrading, failed or
    /// not: a number or a percentage of the nodes running the driver (rounded up); default 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "25%"))]
    pub max_unavailable: Option<IntOrString>,
}

impl DriverUpgradePolicySpec {
    /// How many of `total` nodes may be unavailable at once: `maxUnavailable` as a number, or
    /// as a percentage of `total` rounded up; 25% when unset. An error names the field.
    pub fn max_unavailable_of(&self, total: usize) -> Result<usize, FieldError> {
        let field = "spec.ofedDriver.upgradePolicy.maxUnavailable";
        let invalid = |shown: String| {
            FieldError::new(
                field,
                format!("{shown} is neither a number of nodes (at least 1) nor a percentage from 1% to 100%"),
            )
        };
        match &self.max_unavailable {
            None => Ok((total * 25).div_ceil(100)),
            Some(IntOrString::Int(n)) if *n >= 1 => Ok(usize::try_from(*n).unwrap_or(usize::MAX)),
            Some(IntOrString::Int(n)) => Err(invalid(n.to_string())),
            Some(IntOrString::String(text)) => {
                let percent = text.strip_suffix('%').and_then(|p| p.parse::<usize>().ok());
                match percent {
                    Some(p) if (1..=100).contains(&p) => Ok((total * p).div_ceil(100)),
                    _ => Err(invalid(format!("{text:?}"))),
                }
            }
        }
    }
}

/// Pods whose completion an upgrade waits for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitForCompletionSpec {
    /// Label selector of the pods to wait for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<String>,
    /// Seconds to wait; 0 means forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 0))]
    pub timeout_seconds: Option<i32>,
}

/// How a node is drained before its driver is upgraded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    /// Drain nodes at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub enable: Option<bool>,
    /// Also evict pods not managed by a controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    /// Label selector of the pods to evict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ""))]
    pub pod_selector: Option<String>,
    /// Seconds a drain may take; 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 300))]
    pub timeout_seconds: Option<i32>,
    /// Also evict pods that use emptyDir volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub delete_empty_dir: Option<bool>,
}

/// A device plugin: its image, its JSON configuration and CDI mode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevicePluginSpec {
    /// Image of the plugin.
    #[serde(flatten)]
    pub image: ImageSpec,
    /// The plugin's configuration (JSON), stored as-is in its ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Use the Container Device Interface to expose devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cdi: Option<bool>,
}

/// ib-kubernetes and its UFM connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.pKeyGUIDPoolRangeStart) || !has(self.pKeyGUIDPoolRangeEnd) || self.pKeyGUIDPoolRangeEnd.lowerAscii() > self.pKeyGUIDPoolRangeStart.lowerAscii()",
    "message": "pKeyGUIDPoolRangeEnd must be greater than pKeyGUIDPoolRangeStart",
    "fieldPath": ".pKeyGUIDPoolRangeEnd",
}]))]
pub struct IbKubernetesSpec {
    /// Image of ib-kubernetes.
    #[serde(flatten)]
    pub image: ImageSpec,
    /// Seconds between two updates of the PKey/GUID state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 5))]
    pub periodic_update_seconds: Option<i32>,
    /// First GUID of the pool, `xx:xx:xx:xx:xx:xx:xx:xx`.
    #[serde(default, rename = "pKeyGUIDPoolRangeStart", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::validate::GUID_PATTERN), length(max = 23))]
    pub p_key_guid_pool_range_start: Option<String>,
    /// Last GUID of the pool, `xx:xx:xx:xx:xx:xx:xx:xx`.
    #[serde(default, rename = "pKeyGUIDPoolRangeEnd", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::validate::GUID_PATTERN), length(max = 23))]
    pub p_key_guid_pool_range_end: Option<String>,
    /// Name of the Secret with the UFM credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ufm_secret: Option<String>,
}

/// Multus: its image and an optional explicit configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultusSpec {
    /// Image of Multus.
    #[serde(flatten)]
    pub image: ImageSpec,
    /// Multus configuration (JSON); missing or empty means generated from the master plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

/// The secondary-network components.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecondaryNetworkSpec {
    /// Multus CNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multus: Option<MultusSpec>,
    /// The reference CNI plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_plugins: Option<ImageSpec>,
    /// The IPoIB CNI plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipoib: Option<ImageSpec>,
    /// The Whereabouts IPAM plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam_plugin: Option<ImageSpec>,
}

/// NVIDIA IPAM.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NvIpamSpec {
    /// Image of NVIDIA IPAM.
    #[serde(flatten)]
    pub image: ImageSpec,
    /// Deploy the IPPool/CIDRPool validating webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_webhook: Option<bool>,
}

/// NIC feature discovery.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicFeatureDiscoverySpec {
    /// Image of NIC feature discovery.
    #[serde(flatten)]
    pub image: ImageSpec,
}

/// The DOCA telemetry service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocaTelemetryServiceSpec {
    /// Image of the DOCA telemetry service.
    #[serde(flatten)]
    pub image: ImageSpec,
    /// Where the service's configuration comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<DocaTelemetryServiceConfig>,
}

/// Configuration source of the DOCA telemetry service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocaTelemetryServiceConfig {
    /// Name of a ConfigMap in the operands' namespace used instead of the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), extend("x-kubernetes-validations" = [{
        "rule": crate::networks::DNS_SUBDOMAIN_RULE,
        "message": "fromConfigMap must name a ConfigMap: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)",
    }]))]
    pub from_config_map: Option<String>,
}

/// The NIC configuration operator (`spec.nicConfigurationOperator`): its operator Deployment and
/// its configuration daemon on the NIC nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicConfigurationOperatorSpec {
    /// Image of the operator (Deployment `nic-configuration-operator`).
    pub operator: ImageSpec,
    /// Image of the configuration daemon (DaemonSet `nic-configuration-daemon`).
    pub configuration_daemon: ImageSpec,
    /// Environment variables of both containers, after `LOG_LEVEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Storage of the NIC firmware files; without it, none is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_firmware_storage: Option<NicFirmwareStorageSpec>,
    /// Log verbosity of both: `info` (the default) or `debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["info", "debug"], "default" = "info"))]
    pub log_level: Option<String>,
}

impl NicConfigurationOperatorSpec {
    /// `logLevel`, `info` when left out.
    pub fn log_level(&self) -> &str {
        self.log_level.as_deref().unwrap_or("info")
    }
}

/// A DNS-1123 label: the pattern of `pvcName` and `storageClassName`, as in the original.
const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Where the NIC configuration operator keeps firmware files: a PersistentVolumeClaim in the
/// operands' namespace, created by the operator when `create` (and never deleted by it: it
/// holds the user's files), else the user's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicFirmwareStorageSpec {
    /// Create the PVC (default), or use an existing one of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub create: Option<bool>,
    /// Name of the PVC; default `nic-fw-storage-pvc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_LABEL_PATTERN), length(min = 1, max = 63), extend("default" = "nic-fw-storage-pvc"))]
    pub pvc_name: Option<String>,
    /// Storage class of a created PVC; the cluster's default when left out. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_LABEL_PATTERN), length(min = 1, max = 63), extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "storageClassName is immutable once set: remove nicFirmwareStorage and set it again with a new value",
    }]))]
    pub storage_class_name: Option<String>,
    /// Size a created PVC requests, e.g. `1Gi` (the default). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(\d+)(Ei|Pi|Ti|Gi|Mi|Ki)$"), extend("default" = "1Gi", "x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "availableStorageSize is immutable once set: remove nicFirmwareStorage and set it again with a new value",
    }]))]
    pub available_storage_size: Option<String>,
}

impl NicFirmwareStorageSpec {
    /// `create`, true when left out.
    pub fn create(&self) -> bool {
        self.create.unwrap_or(true)
    }

    /// `pvcName`, `nic-fw-storage-pvc` when left out.
    pub fn pvc_name(&self) -> &str {
        self.pvc_name.as_deref().unwrap_or("nic-fw-storage-pvc")
    }

    /// `availableStorageSize`, `1Gi` when left out.
    pub fn available_storage_size(&self) -> &str {
        self.available_storage_size.as_deref().unwrap_or("1Gi")
    }
}

/// The NVIDIA Spectrum-X operator (`spec.spectrumXOperator`): its flow controller on the NIC nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpectrumXOperatorSpec {
    /// Image of the Spectrum-X operator's flow controller.
    #[serde(flatten)]
    pub image: ImageSpec,
    /// The X-plane image the flow controller starts (passed to it when `version` is set; not
    /// completed from `spec.global`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_plane: Option<ImageSpec>,
}

/// The observed state of the policy: one global state and one entry per section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicClusterPolicyStatus {
    /// Global state: `ready` when every enabled section is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SyncState>,
    /// Why the global state is what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One entry per section, each written by that section's controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub applied_states: Option<Vec<AppliedState>>,
    /// Standard conditions; `Ready` mirrors the global state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
}

/// The state one section's controller reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedState {
    /// State name, e.g. `state-RDMA-device-plugin`.
    pub name: String,
    /// The section's state.
    pub state: SyncState,
    /// What holds the section back, or its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The policy generation this entry was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl NicClusterPolicySpec {
    /// Whether the section of the state named `state` (e.g. `state-OFED`) is set.
    pub fn has_section(&self, state: &str) -> bool {
        use crate::state::names;
        let secondary = self.secondary_network.as_ref();
        match state {
            names::MULTUS => secondary.is_some_and(|s| s.multus.is_some()),
            names::CNI_PLUGINS => secondary.is_some_and(|s| s.cni_plugins.is_some()),
            names::IPOIB => secondary.is_some_and(|s| s.ipoib.is_some()),
            names::WHEREABOUTS => secondary.is_some_and(|s| s.ipam_plugin.is_some()),
            names::OFED => self.ofed_driver.is_some(),
            names::SRIOV_DP => self.sriov_device_plugin.is_some(),
            names::RDMA_DP => self.rdma_shared_device_plugin.is_some(),
            names::IB_KUBERNETES => self.ib_kubernetes.is_some(),
            names::NV_IPAM => self.nv_ipam.is_some(),
            names::NIC_FEATURE_DISCOVERY => self.nic_feature_discovery.is_some(),
            names::DOCA_TELEMETRY => self.doca_telemetry_service.is_some(),
            names::NIC_CONFIGURATION => self.nic_configuration_operator.is_some(),
            names::SPECTRUM_X => self.spectrum_x_operator.is_some(),
            _ => false,
        }
    }
}

impl NicClusterPolicy {
    /// The policy as its states render it: every section's image completed from
    /// `spec.global` ([`ImageSpec::apply_global`]); borrowed as it is without `spec.global`.
    /// Controllers and `nicctl` resolve where the policy comes in; the stored object keeps what
    /// the user wrote.
    pub fn with_global_defaults(&self) -> std::borrow::Cow<'_, NicClusterPolicy> {
        let Some(global) = &self.spec.global else {
            return std::borrow::Cow::Borrowed(self);
        };
        let mut resolved = self.clone();
        for image in resolved.spec.images_mut() {
            image.apply_global(global);
        }
        std::borrow::Cow::Owned(resolved)
    }

    /// This state's entry in `status.appliedStates`, if any.
    pub fn applied_state(&self, name: &str) -> Option<&AppliedState> {
        self.status.as_ref()?.applied_states.as_ref()?.iter().find(|s| s.name == name)
    }
}
