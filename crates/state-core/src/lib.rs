//! What every state controller shares, implemented once.
//!
//! A state (one section of the NicClusterPolicy, e.g. `state-RDMA-device-plugin`) is a name and
//! a pure render function ([`State`]). This crate turns that into a controller:
//! - [`render`]: templates ([`template`]) then the cross-cutting edits ([`edits`]) every object
//!   gets: labels, owner reference, tolerations, node affinity, pull secrets, resources, OFED gate;
//! - [`scope`]: whose objects a reconcile handles, the NicClusterPolicy's or one
//!   NicNodePolicy's;
//! - [`reconcile`]: server-side apply of what changed, prune of what is no longer rendered,
//!   [`readiness`], and this state's own `status.appliedStates` entry;
//! - [`run`]: the binary's runner: flags, logs, `/metrics` + `/healthz` + `/readyz`,
//!   [`lease`]-based leader election, graceful shutdown.

pub mod adopt;
pub mod apply;
pub mod edits;
pub mod events;
pub mod lease;
pub mod leftovers;
pub mod metrics;
pub mod node_policies;
pub mod nodes;
pub mod objects;
pub mod owned;
pub mod rbac;
pub mod readiness;
pub mod reconcile;
pub mod render;
pub mod requests;
pub mod run;
pub mod scope;
pub mod state;
pub mod subset;
pub mod template;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use render::render_state;
pub use run::run;
pub use state::{
    ImageTags, KUBERNETES_CNI_BIN_DIR, OPENSHIFT_CNI_BIN_DIR, Observed, OpenShiftFacts, RenderContext, RenderError,
    State,
};

/// Label every rendered object carries: the name of the state that owns it.
pub const STATE_LABEL: &str = "nvidia.network-operator.state";
/// Prefix of the server-side-apply field manager: `network-operator/<component>`.
pub const FIELD_MANAGER_PREFIX: &str = "network-operator";
