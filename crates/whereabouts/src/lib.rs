//! State `state-whereabouts-cni`: the Whereabouts IPAM plugin, rendered from the policy's
//! `spec.secondaryNetwork.ipamPlugin`.
//!
//! Objects: ClusterRole `whereabouts-cni`, ServiceAccount and ClusterRoleBinding `whereabouts`,
//! ConfigMap `whereabouts-config` (the IP reconciler's schedule, `30 4 * * *`) and DaemonSet
//! `whereabouts` on every node.
//!
//! Unlike the original, the state never renders the Whereabouts CRDs (`ippools`,
//! `overlappingrangeipreservations`): they ship in `crds/` and the chart
//! ([`api::whereabouts`]), so removing the section or the policy never deletes a user's IP
//! allocations. As the original does, the controller deletes the CronJob
//! `whereabouts-ip-reconciler` of older releases once at start-up (only when it is the
//! operator's).

use api::state::names;
use api::{ImageSpec, NicClusterPolicy};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::core::DynamicObject;
use serde_json::json;
use state_core::leftovers::Leftover;
use state_core::objects::Kind;
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};

/// The CronJob older releases ran the IP reconciler with (now the DaemonSet's control loop).
pub const LEFTOVER_CRON_JOB: &str = "whereabouts-ip-reconciler";

/// The Whereabouts CRDs (shipped in `crds/`; the original operator rendered them).
pub const POOL_CRDS: [&str; 2] =
    ["ippools.whereabouts.cni.cncf.io", "overlappingrangeipreservations.whereabouts.cni.cncf.io"];

const MANIFESTS: &[Manifest] = state_core::manifests!(
    "0010-cluster-role.yaml",
    "0020-service-account.yaml",
    "0030-cluster-role-binding.yaml",
    "0040-config-map.yaml",
    "0050-daemonset.yaml",
);

/// The Whereabouts IPAM state.
pub struct Whereabouts;

impl State for Whereabouts {
    const NAME: &'static str = names::WHEREABOUTS;
    const COMPONENT: &'static str = "whereabouts";
    const NEEDS_DRIVER: bool = false;
    type Spec = ImageSpec;

    fn spec(policy: &NicClusterPolicy) -> Option<&ImageSpec> {
        policy.spec.secondary_network.as_ref()?.ipam_plugin.as_ref()
    }

    fn image(spec: &ImageSpec) -> &ImageSpec {
        spec
    }

    fn field_path() -> &'static str {
        "spec.secondaryNetwork.ipamPlugin"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::cluster::<ClusterRole>(),
            Kind::namespaced::<ServiceAccount>(),
            Kind::cluster::<ClusterRoleBinding>(),
            Kind::namespaced::<ConfigMap>(),
            Kind::namespaced::<DaemonSet>(),
        ]
    }

    fn leftovers() -> Vec<Leftover> {
        vec![Leftover { kind: Kind::namespaced::<CronJob>(), name: LEFTOVER_CRON_JOB }]
    }

    /// The IP pool CRDs the original operator rendered, owned by the policy: released, so that
    /// deleting the policy after a takeover deletes no IP allocation.
    fn released() -> Vec<Leftover> {
        POOL_CRDS.into_iter().map(Leftover::crd).collect()
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
