//! State `state-RDMA-device-plugin`: the RDMA shared device plugin, rendered from the policy's
//! `spec.rdmaSharedDevicePlugin`.
//!
//! Objects: ConfigMap `rdma-devices` (the plugin's JSON config, key `config.json`), DaemonSet
//! `rdma-shared-dp-ds` on NIC nodes (gated on the driver when the policy deploys OFED) and, on
//! OpenShift, ServiceAccount/Role/RoleBinding `rdma-shared` for the privileged SCC.

pub mod config;

use api::policy::DevicePluginSpec;
use api::state::names;
use api::{ImageSpec, NicClusterPolicy};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::DynamicObject;
use serde_json::json;
use state_core::objects::{self, Kind};
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};

/// Name of the ConfigMap holding the plugin's configuration.
pub const CONFIG_MAP: &str = "rdma-devices";

const MANIFESTS: &[Manifest] = state_core::manifests!(
    "0010-service-account.yaml",
    "0020-role.yaml",
    "0030-role-binding.yaml",
    "0050-daemonset.yaml",
);

/// The RDMA shared device plugin state.
pub struct RdmaDevicePlugin;

impl State for RdmaDevicePlugin {
    const NAME: &'static str = names::RDMA_DP;
    const COMPONENT: &'static str = "rdma-dp";
    const NEEDS_DRIVER: bool = true;
    const NODE_POLICIES: bool = true;
    const SHARED_KINDS: &'static [&'static str] = &["ServiceAccount", "Role", "RoleBinding"];
    type Spec = DevicePluginSpec;

    fn spec(policy: &NicClusterPolicy) -> Option<&DevicePluginSpec> {
        policy.spec.rdma_shared_device_plugin.as_ref()
    }

    fn image(spec: &DevicePluginSpec) -> &ImageSpec {
        &spec.image
    }

    fn field_path() -> &'static str {
        "spec.rdmaSharedDevicePlugin"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::namespaced::<ServiceAccount>(),
            Kind::namespaced::<Role>(),
            Kind::namespaced::<RoleBinding>(),
            Kind::namespaced::<ConfigMap>(),
            Kind::namespaced::<DaemonSet>(),
        ]
    }

    fn render(spec: &DevicePluginSpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        let field = format!("{}.config", Self::field_path());
        let config =
            objects::checked_config(&field, spec.config.as_ref(), "a JSON object with configList", config::validate)?;
        let values = json!({
            "namespace": ctx.namespace,
            "openshift": ctx.openshift,
            "ofed": ctx.ofed_enabled(),
            "image": spec.image.reference(),
            "use_cdi": spec.use_cdi.unwrap_or(false),
            "config_hash": objects::hash(config),
        });
        let mut rendered = render_manifests(MANIFESTS, &values)?;
        // The ConfigMap goes right before the DaemonSet that mounts it.
        let at = rendered.len().saturating_sub(1);
        rendered.insert(at, objects::config_map(CONFIG_MAP, ctx.namespace, "config.json", config));
        Ok(rendered)
    }
}
