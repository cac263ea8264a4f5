//! The secondary-network controller: every MacvlanNetwork, HostDeviceNetwork and IPoIBNetwork
//! becomes one `k8s.cni.cncf.io/v1` NetworkAttachmentDefinition named after it, in its
//! `spec.networkNamespace`, with the CNI configuration built with serde.
//!
//! [`render`] is the pure part (CR → NAD); [`controller`] applies it, removes the NAD left in a
//! previous namespace, and reports the CR's status.

pub mod controller;
pub mod render;

use api::networks::{HostDeviceNetwork, IPoIBNetwork, MacvlanNetwork};
use kube::Resource;
use state_core::rbac::{ControllerRbac, OBJECT_VERBS, READ_VERBS};

/// The RBAC rules of the network controller, all cluster-wide: read and watch the three network
/// kinds and patch their status, reconcile NetworkAttachmentDefinitions in any namespace, watch
/// Namespaces (a waiting network goes ahead when its namespace appears), and its Lease.
pub fn rbac() -> ControllerRbac {
    let mut rbac = ControllerRbac::with_lease();
    for plural in [MacvlanNetwork::plural(&()), HostDeviceNetwork::plural(&()), IPoIBNetwork::plural(&())] {
        rbac.cluster.allow(api::GROUP, &plural, &READ_VERBS).allow_every(
            api::GROUP,
            &format!("{plural}/status"),
            &["patch"],
            "writes the status of the network CRs, whose names are the user's",
        );
    }
    let nads = controller::nad_kind();
    rbac.cluster
        .allow_every(
            &nads.resource.group,
            &nads.resource.plural,
            &OBJECT_VERBS,
            "a NetworkAttachmentDefinition per network CR, in the namespace and with the name the user gives; \
             it changes and deletes only NADs a network CR of ours owns (controller owner reference)",
        )
        .allow("", "namespaces", &READ_VERBS);
    rbac
}
