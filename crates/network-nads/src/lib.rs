//! The secondary-network controller: every MacvlanNetwork, HostDeviceNetwork and IPoIBNetwork
//! becomes one `k8s.cni.cncf.io/v1` NetworkAttachmentDefinition named after it, in its
//! `spec.networkNamespace`, with the CNI configuration built with serde.
//!
//! [`render`] is the pure part (CR → NAD); [`controller`] applies it, removes the NAD left in a
//! previous namespace, and reports the CR's status.

pub mod controller;
pub mod render;
