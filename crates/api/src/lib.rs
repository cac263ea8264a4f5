//! The `mellanox.com/v1alpha1` API of the network operator, as the original product defines it:
//! [`NicClusterPolicy`](policy::NicClusterPolicy), the three secondary-network kinds and the
//! `k8s.cni.cncf.io/v1` [`NetworkAttachmentDefinition`](nad::NetworkAttachmentDefinition) they
//! render to, and the CRDs the chart ships for the IPAMs: [`whereabouts`] and NVIDIA IPAM's
//! pools ([`nv_ipam`]).
//!
//! This crate does no I/O. Besides the types it holds what every other crate needs to agree on:
//! the generated CRDs ([`crd`]), a validator that checks a document against those CRD schemas the
//! way an API server would ([`schema`]), strict parsing with field paths in errors ([`parse`]) and
//! the checks a schema cannot express ([`validate`]).

/// Makes a custom resource's `spec` optional on the wire, as the original's CRDs allow: a
/// resource without `spec` (or with `spec: null`) reads as the default spec.
///
/// The spec type derives `Serialize`/`Deserialize` with `#[serde(remote = "Self")]` (which turns
/// the derived impls into inherent functions); this macro writes the trait impls around them.
macro_rules! optional_spec {
    ($spec:ty) => {
        impl serde::Serialize for $spec {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                <$spec>::serialize(self, serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $spec {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct SpecOrNothing;
                impl<'de> serde::de::Visitor<'de> for SpecOrNothing {
                    type Value = $spec;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a spec object, or nothing")
                    }
                    fn visit_none<E: serde::de::Error>(self) -> Result<$spec, E> {
                        Ok(Default::default())
                    }
                    fn visit_unit<E: serde::de::Error>(self) -> Result<$spec, E> {
                        Ok(Default::default())
                    }
                    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<$spec, D::Error> {
                        <$spec>::deserialize(deserializer)
                    }
                }
                deserializer.deserialize_option(SpecOrNothing)
            }
        }
    };
}

pub mod cert_manager;
pub mod crd;
pub mod image;
pub mod json;
pub mod nad;
pub mod networks;
pub mod nic_configuration;
pub mod node_policy;
pub mod nv_ipam;
pub mod parse;
pub mod pod_spec;
pub mod policy;
pub mod schema;
pub mod selector;
pub mod spectrum_x;
pub mod state;
pub mod validate;
pub mod whereabouts;

pub use image::{ContainerResources, ImageSpec};
pub use nad::NetworkAttachmentDefinition;
pub use networks::{HostDeviceNetwork, IPoIBNetwork, MacvlanNetwork};
pub use node_policy::{NicNodePolicy, NicNodePolicySpec};
pub use policy::{NicClusterPolicy, NicClusterPolicySpec, NicClusterPolicyStatus};
pub use state::SyncState;

/// A problem with one field of a document: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `spec.ofedDriver.version` or `spec.tolerations[0].key`.
    pub path: String,
    /// What is wrong, e.g. `missing field`.
    pub message: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }

    /// Several problems as one (at the first one's path), e.g. for a state's one-line message:
    /// `a.b: required; a.c: must be an integer`. `None` when there are none.
    pub fn join(errors: Vec<FieldError>) -> Option<FieldError> {
        let mut errors = errors.into_iter();
        let first = errors.next()?;
        let rest: Vec<String> = errors.map(|e| e.to_string()).collect();
        let message = if rest.is_empty() { first.message } else { format!("{}; {}", first.message, rest.join("; ")) };
        Some(FieldError { path: first.path, message })
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}

/// The API group of every kind this crate defines (except the NAD).
pub const GROUP: &str = "mellanox.com";
/// The API version of every kind this crate defines (except the NAD).
pub const VERSION: &str = "v1alpha1";
/// The only NicClusterPolicy name the operator acts on.
pub const POLICY_NAME: &str = "nic-cluster-policy";
