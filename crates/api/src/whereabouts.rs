//! The two CRDs of the Whereabouts IPAM plugin (`whereabouts.cni.cncf.io/v1alpha1`), as
//! Whereabouts defines them: the operator ships them in `crds/` (and the chart) but never
//! creates, owns or deletes them, so removing `spec.secondaryNetwork.ipamPlugin` or the policy
//! never deletes the IP allocations they hold (the original created them at run time, owned by
//! the policy, and deleting the policy wiped every pool).
//!
//! The schemas are the original's (v24.7.0), plus the optional `ifname` that Whereabouts v0.7
//! and later record, so the API server does not prune it from their writes.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group of the Whereabouts kinds.
pub const GROUP: &str = "whereabouts.cni.cncf.io";

/// A range of IP addresses and which pod holds each allocated one.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "whereabouts.cni.cncf.io",
    version = "v1alpha1",
    kind = "IPPool",
    plural = "ippools",
    singular = "ippool",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    doc = "IPPool is the Schema for the ippools API"
)]
pub struct IPPoolSpec {
    /// Range is a RFC 4632/4291-style string that represents an IP address and prefix length in
    /// CIDR notation.
    pub range: String,
    /// Allocations is the set of allocated IPs for the given range. Its indices are a direct
    /// mapping to the IP with the same index/offset for the pool's range.
    pub allocations: BTreeMap<String, IPAllocation>,
}

optional_spec!(IPPoolSpec);

/// IPAllocation represents metadata about the pod/container owner of a specific IP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IPAllocation {
    /// The container's id.
    pub id: String,
    /// The pod, `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub podref: Option<String>,
    /// The pod's interface (Whereabouts v0.7 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
}

/// The reservation of one IP across overlapping ranges.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "whereabouts.cni.cncf.io",
    version = "v1alpha1",
    kind = "OverlappingRangeIPReservation",
    plural = "overlappingrangeipreservations",
    singular = "overlappingrangeipreservation",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    doc = "OverlappingRangeIPReservation is the Schema for the OverlappingRangeIPReservations API"
)]
pub struct OverlappingRangeIPReservationSpec {
    /// The container's id.
    pub containerid: String,
    /// The pod, `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub podref: Option<String>,
    /// The pod's interface (Whereabouts v0.7 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
}

optional_spec!(OverlappingRangeIPReservationSpec);
