//! State `state-ipoib-cni`: the IPoIB CNI plugin (IP over InfiniBand networks) installed into
//! every node's CNI binary directory, rendered from the policy's `spec.secondaryNetwork.ipoib`.
//!
//! Objects: DaemonSet `kube-ipoib-cni-ds` on every node and, on OpenShift, ServiceAccount, Role
//! and RoleBinding `ipoib-cni` for the privileged SCC. The binary directory is `/opt/cni/bin`,
//! `/var/lib/cni/bin` on OpenShift, or the controller's `--cni-bin-dir`.

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

/// The IPoIB CNI state.
pub struct IpoibCni;

impl State for IpoibCni {
    const NAME: &'static str = names::IPOIB;
    const COMPONENT: &'static str = "ipoib";
    const NEEDS_DRIVER: bool = false;
    type Spec = ImageSpec;

    fn spec(policy: &NicClusterPolicy) -> Option<&ImageSpec> {
        policy.spec.secondary_network.as_ref()?.ipoib.as_ref()
    }

    fn image(spec: &ImageSpec) -> &ImageSpec {
        spec
    }

    fn field_path() -> &'static str {
        "spec.secondaryNetwork.ipoib"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::namespaced::<ServiceAccount>(),
            Kind::namespaced::<Role>(),
            Kind::namespaced::<RoleBinding>(),
            Kind::namespaced::<DaemonSet>(),
        ]
    }

    fn render(spec: &ImageSpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        let values = json!({
            "namespace": ctx.namespace,
            "openshift": ctx.openshift,
            "image": spec.reference(),
            "cni_bin_dir": ctx.cni_bin_dir(),
        });
        render_manifests(MANIFESTS, &values)
    }
}
