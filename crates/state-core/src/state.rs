//! The contract a state implements: a name, its section of the policy, a pure render function.

use crate::objects::Kind;
use api::{FieldError, ImageSpec, NicClusterPolicy};
use k8s_openapi::api::core::v1::Node;
use kube::core::DynamicObject;

/// One section of the NicClusterPolicy and the objects it deploys.
pub trait State: Send + Sync + 'static {
    /// The upstream state name, e.g. `state-RDMA-device-plugin`, used in status and labels.
    const NAME: &'static str;
    /// The crate name, e.g. `rdma-dp`: field manager `network-operator/<COMPONENT>`.
    const COMPONENT: &'static str;
    /// Pods of this state need the NIC driver: when the policy has `ofedDriver`, its DaemonSets
    /// only run where `network.nvidia.com/operator.mofed.wait` is `"false"`.
    const NEEDS_DRIVER: bool;
    /// The policy section this state renders.
    type Spec;

    /// The section, or `None` when it is absent (state `ignore`, its objects are deleted).
    fn spec(policy: &NicClusterPolicy) -> Option<&Self::Spec>;
    /// The section's image spec (pull secrets, container resources).
    fn image(spec: &Self::Spec) -> &ImageSpec;
    /// The section's field path in the policy, e.g. `spec.rdmaSharedDevicePlugin`.
    fn field_path() -> &'static str;
    /// Every kind this state may render; these are watched and pruned.
    fn kinds() -> Vec<Kind>;
    /// The objects of this state, before the cross-cutting edits. Pure: no I/O.
    fn render(spec: &Self::Spec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError>;
}

/// What a render function may look at besides its own section.
#[derive(Clone, Copy, Debug)]
pub struct RenderContext<'a> {
    /// Namespace of every namespaced operand.
    pub namespace: &'a str,
    /// The cluster is OpenShift (SCC objects, other defaults).
    pub openshift: bool,
    /// The whole policy, for cross-cutting fields.
    pub policy: &'a NicClusterPolicy,
    /// The cluster's nodes, for states that depend on node labels.
    pub nodes: &'a [Node],
}

impl RenderContext<'_> {
    /// The policy deploys the OFED driver, so driver-dependent pods must wait for it.
    pub fn ofed_enabled(&self) -> bool {
        self.policy.spec.ofed_driver.is_some()
    }
}

/// Why a state could not render its objects. Reported as state `error`; nothing is applied
/// or deleted.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A field of the policy is invalid.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// A template or a rendered document is broken: a bug in this operator, not the input.
    #[error("internal error in manifest {manifest}: {message}")]
    Manifest {
        /// The template's file name.
        manifest: String,
        /// What went wrong.
        message: String,
    },
    /// The state rendered an object of a kind it does not declare (it could never be pruned).
    #[error("internal error: {kind} is not among the kinds this state declares")]
    UndeclaredKind {
        /// `apiVersion/kind` of the object.
        kind: String,
    },
}
