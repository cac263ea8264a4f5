//! State `state-spectrum-x-operator`: the NVIDIA Spectrum-X operator, rendered from the policy's
//! `spec.spectrumXOperator`: its flow controller configures the Spectrum-X rails of each NIC
//! node from the SpectrumXRailPoolConfigs.
//!
//! Objects: ServiceAccount, ClusterRole and ClusterRoleBinding `spectrum-x-operator`, the
//! DaemonSet `spectrum-x-flowcontroller` on the NIC nodes and, on OpenShift, a Role and
//! RoleBinding for its privileged SCC. With `xPlane.version` set, the flow controller gets the
//! X-plane image it starts (`XPLANE_REPOSITORY`, `XPLANE_IMAGE`, `XPLANE_VERSION`,
//! `IMAGE_PULL_SECRETS`).
//!
//! Unlike the original, the SpectrumXRailPoolConfig CRD is never rendered, owned or deleted: it
//! ships in `crds/` and the chart ([`api::spectrum_x`]), so removing the section or the policy
//! never deletes a rail pool configuration; a CRD the original created is released at start-up.

use api::policy::SpectrumXOperatorSpec;
use api::state::names;
use api::{FieldError, ImageSpec, NicClusterPolicy};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::core::DynamicObject;
use serde_json::json;
use state_core::leftovers::Leftover;
use state_core::objects::Kind;
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};

/// The CRD the original operator rendered with this state.
pub const RAIL_POOL_CRD: &str = "spectrumxrailpoolconfigs.spectrumx.nvidia.com";

const MANIFESTS: &[Manifest] = state_core::manifests!(
    "0010-service-account.yaml",
    "0020-cluster-role.yaml",
    "0030-cluster-role-binding.yaml",
    "0040-role.yaml",
    "0050-role-binding.yaml",
    "0060-flowcontroller.yaml",
);

/// The Spectrum-X operator state.
pub struct SpectrumX;

/// The flow controller's environment naming the X-plane image, when `xPlane.version` is set
/// (as the original: without a version, nothing).
fn x_plane_env(x_plane: Option<&ImageSpec>) -> Result<Vec<serde_json::Value>, FieldError> {
    let Some(x_plane) = x_plane.filter(|x| !x.version.is_empty()) else {
        return Ok(Vec::new());
    };
    if x_plane.repository.is_empty() {
        return Err(FieldError::new(
            "spec.spectrumXOperator.xPlane.repository",
            "required when xPlane.version is set (xPlane is not completed from spec.global)",
        ));
    }
    let secrets = x_plane.image_pull_secrets.iter().flatten().cloned().collect::<Vec<_>>().join(",");
    Ok([
        ("XPLANE_REPOSITORY", x_plane.repository.clone()),
        ("XPLANE_IMAGE", x_plane.image.clone()),
        ("XPLANE_VERSION", x_plane.version.clone()),
        ("IMAGE_PULL_SECRETS", secrets),
    ]
    .into_iter()
    .map(|(name, value)| json!({"name": name, "value": value}))
    .collect())
}

impl State for SpectrumX {
    const NAME: &'static str = names::SPECTRUM_X;
    const COMPONENT: &'static str = "spectrum-x";
    // The original runs it on every NIC node, driver or not.
    const NEEDS_DRIVER: bool = false;
    type Spec = SpectrumXOperatorSpec;

    fn spec(policy: &NicClusterPolicy) -> Option<&SpectrumXOperatorSpec> {
        policy.spec.spectrum_x_operator.as_ref()
    }

    fn image(spec: &SpectrumXOperatorSpec) -> &ImageSpec {
        &spec.image
    }

    fn field_path() -> &'static str {
        "spec.spectrumXOperator"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::namespaced::<ServiceAccount>(),
            Kind::cluster::<ClusterRole>(),
            Kind::cluster::<ClusterRoleBinding>(),
            Kind::namespaced::<Role>(),
            Kind::namespaced::<RoleBinding>(),
            Kind::namespaced::<DaemonSet>(),
        ]
    }

    /// The CRD the original rendered (owned by the policy): released, so deleting the policy
    /// deletes no rail pool configuration.
    fn released() -> Vec<Leftover> {
        vec![Leftover::crd(RAIL_POOL_CRD)]
    }

    fn render(spec: &SpectrumXOperatorSpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        let values = json!({
            "namespace": ctx.namespace,
            "openshift": ctx.openshift,
            "image": spec.image.reference(),
            "x_plane": x_plane_env(spec.x_plane.as_ref())?,
            "cni_bin_dir": ctx.cni_bin_dir(),
        });
        render_manifests(MANIFESTS, &values)
    }
}
