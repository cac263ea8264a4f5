//! State `state-container-networking-plugins`: the reference CNI plugins (macvlan,
//! host-device, static, ...) installed into every node's CNI binary directory, rendered from the
//! policy's `spec.secondaryNetwork.cniPlugins`.
//!
//! Objects: DaemonSet `cni-plugins-ds` on every node; no ServiceAccount. The binary directory is
//! `/opt/cni/bin`, `/var/lib/cni/bin` on OpenShift, or the controller's `--cni-bin-dir`.

use api::state::names;
use api::{ImageSpec, NicClusterPolicy};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::core::DynamicObject;
use serde_json::json;
use state_core::objects::Kind;
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};

const MANIFESTS: &[Manifest] = state_core::manifests!("0010-daemonset.yaml");

/// The CNI plugins state.
pub struct CniPlugins;

impl State for CniPlugins {
    const NAME: &'static str = names::CNI_PLUGINS;
    const COMPONENT: &'static str = "cni-plugins";
    const NEEDS_DRIVER: bool = false;
    type Spec = ImageSpec;

    fn spec(policy: &NicClusterPolicy) -> Option<&ImageSpec> {
        policy.spec.secondary_network.as_ref()?.cni_plugins.as_ref()
    }

    fn image(spec: &ImageSpec) -> &ImageSpec {
        spec
    }

    fn field_path() -> &'static str {
        "spec.secondaryNetwork.cniPlugins"
    }

    fn kinds() -> Vec<Kind> {
        vec![Kind::namespaced::<DaemonSet>()]
    }

    fn render(spec: &ImageSpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        let values = json!({
            "namespace": ctx.namespace,
            "image": spec.reference(),
            "cni_bin_dir": ctx.cni_bin_dir(),
        });
        render_manifests(MANIFESTS, &values)
    }
}
