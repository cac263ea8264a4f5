//! State `state-ib-kubernetes`: ib-kubernetes, which gives InfiniBand pods their PKeys and GUIDs
//! through UFM, rendered from the policy's `spec.ibKubernetes`.
//!
//! Objects: ServiceAccount, ClusterRole and ClusterRoleBinding `ib-kubernetes`, the Deployment
//! `ib-kubernetes` and, on OpenShift, a Role and RoleBinding for the privileged SCC. Unlike the
//! original, a missing `ufmSecret` is an error naming the field (the original rendered a
//! Deployment the API server refused), and the policy's pull secrets, tolerations and node
//! affinity apply.

use api::policy::IbKubernetesSpec;
use api::state::names;
use api::{FieldError, ImageSpec, NicClusterPolicy};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::core::DynamicObject;
use serde_json::json;
use state_core::objects::Kind;
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};

const MANIFESTS: &[Manifest] = state_core::manifests!(
    "0010-service-account.yaml",
    "0020-role.yaml",
    "0030-role-binding.yaml",
    "0040-cluster-role.yaml",
    "0050-cluster-role-binding.yaml",
    "0060-deployment.yaml",
);

/// The ib-kubernetes state.
pub struct IbKubernetes;

impl State for IbKubernetes {
    const NAME: &'static str = names::IB_KUBERNETES;
    const COMPONENT: &'static str = "ib-kubernetes";
    const NEEDS_DRIVER: bool = false;
    type Spec = IbKubernetesSpec;

    fn spec(policy: &NicClusterPolicy) -> Option<&IbKubernetesSpec> {
        policy.spec.ib_kubernetes.as_ref()
    }

    fn image(spec: &IbKubernetesSpec) -> &ImageSpec {
        &spec.image
    }

    fn field_path() -> &'static str {
        "spec.ibKubernetes"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::namespaced::<ServiceAccount>(),
            Kind::namespaced::<Role>(),
            Kind::namespaced::<RoleBinding>(),
            Kind::cluster::<ClusterRole>(),
            Kind::cluster::<ClusterRoleBinding>(),
            Kind::namespaced::<Deployment>(),
        ]
    }

    fn render(spec: &IbKubernetesSpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        let secret = spec.ufm_secret.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
            FieldError::new(
                "spec.ibKubernetes.ufmSecret",
                "required: the name of the Secret with UFM_USERNAME, UFM_PASSWORD and UFM_ADDRESS",
            )
        })?;
        api::pod_spec::object_name("spec.ibKubernetes.ufmSecret", secret)?;
        let values = json!({
            "namespace": ctx.namespace,
            "openshift": ctx.openshift,
            "image": spec.image.reference(),
            "ufm_secret": secret,
            "periodic_update": spec.periodic_update_seconds.unwrap_or(5).to_string(),
            "guid_start": spec.p_key_guid_pool_range_start.clone().unwrap_or_default(),
            "guid_end": spec.p_key_guid_pool_range_end.clone().unwrap_or_default(),
        });
        render_manifests(MANIFESTS, &values)
    }
}
