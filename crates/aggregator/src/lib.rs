//! The aggregator: folds the `status.appliedStates` entries the state controllers write into
//! the NicClusterPolicy's (and each NicNodePolicy's) global `status.state`, `status.reason` and conditions (`Ready`,
//! `NodesServed`, one `<Component>Ready` per enabled section), emits an
//! Event when the global state changes, and exports every state as a metric.
//!
//! [`fold`] is the pure rule; [`controller`] writes the result.

pub mod controller;
pub mod fold;
pub mod liveness;

use state_core::rbac::ControllerRbac;

/// The RBAC rules of the aggregator: read and watch the policy, patch its status, record Events
/// (those of the cluster-scoped policy go to the `default` namespace, so the rule is
/// cluster-wide), and its Lease.
pub fn rbac() -> ControllerRbac {
    let mut rbac = ControllerRbac::with_lease();
    // Whose controllers still run: their leader Leases, in the release's namespace.
    rbac.lease.allow("coordination.k8s.io", "leases", &["list", "watch"]);
    rbac.allow_policy_status();
    rbac.cluster.allow(api::GROUP, "nicnodepolicies", &["get", "list", "watch"]).allow_every(
        api::GROUP,
        "nicnodepolicies/status",
        &["patch"],
        "the global status of each NicNodePolicy (the users name them)",
    );
    rbac.cluster.allow_every(
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "records an Event on the policy at each change of its state; Event names are generated",
    );
    rbac
}
