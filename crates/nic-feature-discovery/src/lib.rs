//! State `state-nic-feature-discovery`: NIC feature discovery, rendered from the policy's
//! `spec.nicFeatureDiscovery`. It writes NFD "local" feature files on every node, which NFD turns
//! into `nvidia.com/...` node labels.
//!
//! Objects: DaemonSet `nic-feature-discovery-ds` and, on OpenShift, ServiceAccount, Role and
//! RoleBinding `nic-feature-discovery` for the privileged SCC.

use api::policy::NicFeatureDiscoverySpec;
use api::state::names;
use api::{ImageSpec, NicClusterPolicy};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::DynamicObject;
use serde_json::json;
use state_core::objects::Kind;
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};

const MANIFESTS: &[Manifest] = state_core::manifests!(
    "0010-service-account.yaml",
    "0020-role.yaml",
    "0030-role-binding.yaml",
    "0040-daemonset.yaml",
);

/// The NIC feature discovery state.
pub struct NicFeatureDiscovery;

impl State for NicFeatureDiscovery {
    const NAME: &'static str = names::NIC_FEATURE_DISCOVERY;
    const COMPONENT: &'static str = "nic-feature-discovery";
    // It runs on every node (no NIC selector) and reads what the kernel shows.
    const NEEDS_DRIVER: bool = false;
    type Spec = NicFeatureDiscoverySpec;

    fn spec(policy: &NicClusterPolicy) -> Option<&NicFeatureDiscoverySpec> {
        policy.spec.nic_feature_discovery.as_ref()
    }

    fn image(spec: &NicFeatureDiscoverySpec) -> &ImageSpec {
        &spec.image
    }

    fn field_path() -> &'static str {
        "spec.nicFeatureDiscovery"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::namespaced::<ServiceAccount>(),
            Kind::namespaced::<Role>(),
            Kind::namespaced::<RoleBinding>(),
            Kind::namespaced::<DaemonSet>(),
        ]
    }

    fn render(spec: &NicFeatureDiscoverySpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        let values = json!({"namespace": ctx.namespace, "openshift": ctx.openshift, "image": spec.image.reference()});
        render_manifests(MANIFESTS, &values)
    }
}
