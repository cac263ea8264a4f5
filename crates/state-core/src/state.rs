//! The contract a state implements: a name, its section of the policy, a pure render function.

use crate::leftovers::Leftover;
use crate::nodes::NodeFacts;
use crate::objects::Kind;
use api::{FieldError, ImageSpec, NicClusterPolicy};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::DynamicObject;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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
    /// NicNodePolicies may hold this section: the controller also renders it for each of them
    /// ([`crate::scope`]).
    const NODE_POLICIES: bool = false;
    /// Kinds whose objects every NicNodePolicy of this state shares (the ServiceAccounts and
    /// roles its pods use, which the controllers' RBAC grants by name): they keep their names and
    /// are owned by every NicNodePolicy holding the section ([`crate::scope`]).
    const SHARED_KINDS: &'static [&'static str] = &[];
    /// Kinds whose objects hold the user's data (e.g. the NIC firmware storage PVC): created
    /// when missing and then never changed, owned or deleted by the operator (no state label,
    /// no owner reference); one the original labelled and owned is released
    /// ([`crate::leftovers::release_object`]).
    const KEPT_KINDS: &'static [&'static str] = &[];
    /// The name of object `name` of this state when it belongs to NicNodePolicy `policy`.
    fn scoped_name(name: &str, policy: &str) -> String {
        format!("{name}-{policy}")
    }

    /// The section, or `None` when it is absent (state `ignore`, its objects are deleted).
    fn spec(policy: &NicClusterPolicy) -> Option<&Self::Spec>;
    /// The section's image spec (pull secrets, container resources).
    fn image(spec: &Self::Spec) -> &ImageSpec;
    /// Every image spec of the section with its field path, the main one ([`image`](Self::image))
    /// first: each is checked and completed from `spec.global`, and gives pull secrets and
    /// container resources (with several, a workload gets the pull secrets of the images its
    /// containers run).
    fn images(spec: &Self::Spec) -> Vec<(String, &ImageSpec)> {
        vec![(Self::field_path().to_string(), Self::image(spec))]
    }
    /// The section's field path in the policy, e.g. `spec.rdmaSharedDevicePlugin`.
    fn field_path() -> &'static str;
    /// Every kind this state may render; these are watched and pruned.
    fn kinds() -> Vec<Kind>;
    /// The Node labels rendering reads. Non-empty: the controller watches the NIC nodes
    /// (keeping only these labels and `status.nodeInfo`) and re-renders when they change.
    const NODE_LABELS: &'static [&'static str] = &[];
    /// ConfigMaps of the operands' namespace the section names; they are read before rendering,
    /// and a change of any ConfigMap of that namespace re-renders (when this is true).
    const READS_CONFIG_MAPS: bool = false;
    /// The ConfigMaps the section names (with [`READS_CONFIG_MAPS`](Self::READS_CONFIG_MAPS)).
    fn referenced_config_maps(_spec: &Self::Spec) -> Vec<String> {
        Vec::new()
    }
    /// Objects older releases created that this state no longer renders; the controller
    /// deletes each once at start-up, when it is the operator's ([`crate::leftovers`]).
    fn leftovers() -> Vec<Leftover> {
        Vec::new()
    }
    /// Objects older releases created, labelled and owned, that hold the user's data and that
    /// this state no longer renders: the controller releases each once at start-up (removes
    /// the state label and the policy's owner reference, [`crate::leftovers::release`]), so
    /// neither a prune nor the policy's deletion ever removes them.
    fn released() -> Vec<Leftover> {
        Vec::new()
    }
    /// What the section holds that the operand decides itself and may not understand (e.g. a
    /// selector the plugin does not document), each naming its field: said in the state's
    /// message; nothing else changes.
    fn warnings(_spec: &Self::Spec) -> Vec<String> {
        Vec::new()
    }
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
    /// What was read from the cluster for this render (render itself does no I/O).
    pub observed: &'a Observed,
}

/// Facts read from the cluster that a render may depend on.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The NIC nodes (only the labels the state reads, and `status.nodeInfo`), by name.
    pub nodes: Vec<Arc<NodeFacts>>,
    /// The ConfigMaps the section names that exist, by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// What the registries said about image repositories (`registry/path/image`).
    pub image_tags: BTreeMap<String, ImageTags>,
    /// Facts only OpenShift clusters have.
    pub openshift: OpenShiftFacts,
    /// The nodes' CNI binary directory when the controller was given one (`--cni-bin-dir`,
    /// `CNI_BIN_DIR`); `None` means the cluster type's default ([`RenderContext::cni_bin_dir`]).
    pub cni_bin_dir: Option<String>,
    /// The [optional](crate::objects::Kind::optional) kinds of the state that the API server
    /// serves, by [`Kind::type_name`] (discovered before each render).
    pub served: BTreeSet<String>,
    /// The live objects of the state (its label-selected watch): what the cluster runs now,
    /// for a render that keeps the shape of objects it adopted (e.g. OFED's legacy pools).
    pub owned: Vec<Arc<DynamicObject>>,
    /// Rendering for a NicNodePolicy: every NicNodePolicy holding the state's section (the
    /// owners of its [shared](State::SHARED_KINDS) objects).
    pub peers: Vec<Arc<api::NicNodePolicy>>,
}

impl Observed {
    /// The same facts, with every optional kind of `kinds` served: offline rendering shows
    /// what a cluster with those APIs gets.
    pub fn serving_all(mut self, kinds: &[Kind]) -> Self {
        self.served.extend(kinds.iter().filter(|k| k.optional).map(Kind::type_name));
        self
    }
}

/// Where plain Kubernetes nodes keep CNI binaries.
pub const KUBERNETES_CNI_BIN_DIR: &str = "/opt/cni/bin";
/// Where OpenShift nodes keep CNI binaries.
pub const OPENSHIFT_CNI_BIN_DIR: &str = "/var/lib/cni/bin";

/// What an OpenShift cluster says about itself, where a render needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenShiftFacts {
    /// Driver-toolkit images by RHCOS version (the tags of ImageStream `openshift/driver-toolkit`).
    pub driver_toolkit: BTreeMap<String, String>,
    /// The cluster-wide proxy (`Proxy/cluster`): `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`
    /// with their values, those that are set.
    pub proxy: Vec<(String, String)>,
    /// The cluster-wide proxy names a trusted CA bundle (`spec.trustedCA.name`).
    pub trusted_ca: bool,
}

/// What is known about the tags of one image repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageTags {
    /// Not asked yet, or the answer is on its way.
    Pending,
    /// The registry listed these tags.
    Listed(BTreeSet<String>),
    /// The registry could not be asked; why.
    Failed(String),
}

/// Nothing observed: for states that read nothing from the cluster, and offline rendering.
pub static NOTHING_OBSERVED: Observed = Observed {
    nodes: Vec::new(),
    config_maps: BTreeMap::new(),
    image_tags: BTreeMap::new(),
    openshift: OpenShiftFacts { driver_toolkit: BTreeMap::new(), proxy: Vec::new(), trusted_ca: false },
    cni_bin_dir: None,
    served: BTreeSet::new(),
    owned: Vec::new(),
    peers: Vec::new(),
};

impl<'a> RenderContext<'a> {
    /// A context with nothing observed from the cluster.
    pub fn new(namespace: &'a str, openshift: bool, policy: &'a NicClusterPolicy) -> Self {
        Self { namespace, openshift, policy, observed: &NOTHING_OBSERVED }
    }
}

impl RenderContext<'_> {
    /// The policy deploys the OFED driver, so driver-dependent pods must wait for it.
    pub fn ofed_enabled(&self) -> bool {
        self.policy.spec.ofed_driver.is_some()
    }

    /// Whether the API server serves `kind`: always for required kinds, as observed for
    /// [optional](crate::objects::Kind::optional) ones.
    pub fn serves(&self, kind: &Kind) -> bool {
        !kind.optional || self.observed.served.contains(&kind.type_name())
    }

    /// The host directory the CNI DaemonSets install their binaries into: the one the
    /// controller was given (non-empty), else `/var/lib/cni/bin` on OpenShift, else `/opt/cni/bin`.
    pub fn cni_bin_dir(&self) -> &str {
        match self.observed.cni_bin_dir.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            Some(dir) => dir,
            None if self.openshift => OPENSHIFT_CNI_BIN_DIR,
            None => KUBERNETES_CNI_BIN_DIR,
        }
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
    /// The input is not complete yet (e.g. no node to render for): the state is `notReady`
    /// with this reason, and nothing is applied or deleted.
    #[error("{0}")]
    Waiting(String),
    /// The state rendered an object of a kind it does not declare (it could never be pruned).
    #[error("internal error: {kind} is not among the kinds this state declares")]
    UndeclaredKind {
        /// `apiVersion/kind` of the object.
        kind: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_kinds_are_always_served_and_optional_ones_as_discovered() {
        use k8s_openapi::api::core::v1::Service;
        let policy = NicClusterPolicy::new(api::POLICY_NAME, Default::default());
        let optional = Kind::namespaced::<Service>().optional();
        let ctx = RenderContext::new("ns", false, &policy);
        assert!(ctx.serves(&Kind::namespaced::<Service>()));
        assert!(!ctx.serves(&optional), "nothing observed: an optional API counts as absent");
        let observed = Observed::default().serving_all(std::slice::from_ref(&optional));
        assert_eq!(observed.served, BTreeSet::from(["v1/Service".to_string()]));
        assert!(RenderContext { observed: &observed, ..ctx }.serves(&optional));
    }

    #[test]
    fn the_cni_bin_dir_is_the_configured_one_else_the_cluster_types_default() {
        let policy = NicClusterPolicy::new(api::POLICY_NAME, Default::default());
        assert_eq!(RenderContext::new("ns", false, &policy).cni_bin_dir(), "/opt/cni/bin");
        assert_eq!(RenderContext::new("ns", true, &policy).cni_bin_dir(), "/var/lib/cni/bin");
        for (configured, openshift, wanted) in [
            ("/usr/libexec/cni", false, "/usr/libexec/cni"),
            ("/usr/libexec/cni", true, "/usr/libexec/cni"),
            ("", true, "/var/lib/cni/bin"),
        ] {
            let observed = Observed { cni_bin_dir: Some(configured.into()), ..Default::default() };
            let ctx = RenderContext { namespace: "ns", openshift, policy: &policy, observed: &observed };
            assert_eq!(ctx.cni_bin_dir(), wanted, "{configured:?} on openshift={openshift}");
        }
    }
}
