//! The CustomResourceDefinitions this project ships, generated from the types.
//!
//! `crds/` at the repository root holds these as YAML (`nicctl crds --dir crds`); a test fails
//! when a file there is stale.

use crate::nad::NetworkAttachmentDefinition;
use crate::networks::{HostDeviceNetwork, IPoIBNetwork, MacvlanNetwork};
use crate::nic_configuration;
use crate::nv_ipam;
use crate::policy::NicClusterPolicy;
use crate::spectrum_x::SpectrumXRailPoolConfig;
use crate::whereabouts::{IPPool, OverlappingRangeIPReservation};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, ValidationRule,
};
use kube::CustomResourceExt;

/// The rule that makes the API server refuse a policy with another name than `nic-cluster-policy`.
pub const POLICY_NAME_RULE: &str = "self.metadata.name == 'nic-cluster-policy'";

/// The pattern the API server applies to resource quantities (`100m`, `1Gi`, `2`, `1e3`), as
/// the Kubernetes quantity schema has it.
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// How k8s-openapi describes `Quantity`; schemas with this description get the quantity schema.
const QUANTITY_DESCRIPTION: &str = "Quantity is a fixed-point representation";

/// Longest description kept whole; longer ones (the Kubernetes types' essays) keep their first
/// paragraph, so the CRDs stay small and readable.
const MAX_DESCRIPTION: usize = 300;

/// Every CRD of the project, NicClusterPolicy first.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        nic_cluster_policy(),
        nic_node_policy(),
        finish(MacvlanNetwork::crd()),
        finish(HostDeviceNetwork::crd()),
        finish(IPoIBNetwork::crd()),
        finish(NetworkAttachmentDefinition::crd()),
        finish(IPPool::crd()),
        finish(OverlappingRangeIPReservation::crd()),
        finish(nv_ipam::IPPool::crd()),
        finish(nv_ipam::CIDRPool::crd()),
        finish(nic_configuration::NicConfigurationTemplate::crd()),
        finish(nic_configuration::NicDevice::crd()),
        finish(nic_configuration::NicFirmwareSource::crd()),
        finish(nic_configuration::NicFirmwareTemplate::crd()),
        finish(nic_configuration::NicInterfaceNameTemplate::crd()),
        finish(SpectrumXRailPoolConfig::crd()),
    ]
}

/// The edits every generated CRD gets: `spec` optional at the root, quantities with the
/// quantity schema, key references requiring only `key`, short descriptions.
fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    if let Some(root) = root_schema_mut(&mut crd) {
        // A resource without `spec` is valid, as in the original (see `optional_spec!`).
        if let Some(required) = &mut root.required {
            required.retain(|field| field != "spec");
        }
        root.required = root.required.take().filter(|r| !r.is_empty());
        visit(root, &mut |schema| {
            use_quantity_schema(schema);
            require_only_the_key_of_key_refs(schema);
            shorten_description(schema);
        });
    }
    crd
}

/// Calls `edit` on `schema` and on every schema below it.
fn visit(schema: &mut JSONSchemaProps, edit: &mut impl FnMut(&mut JSONSchemaProps)) {
    edit(schema);
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.items.iter_mut().filter_map(|items| match items {
            JSONSchemaPropsOrArray::Schema(s) => Some(s.as_mut()),
            JSONSchemaPropsOrArray::Schemas(_) => None,
        }))
        .chain(schema.additional_properties.iter_mut().filter_map(|extra| match extra {
            JSONSchemaPropsOrBool::Schema(s) => Some(s.as_mut()),
            JSONSchemaPropsOrBool::Bool(_) => None,
        }));
    for child in children {
        visit(child, edit);
    }
}

/// A `Quantity` becomes the Kubernetes quantity schema: an integer, or a string matching
/// [`QUANTITY_PATTERN`], so `cpu: lots` is refused when the policy is applied, not later when
/// its DaemonSet is.
fn use_quantity_schema(schema: &mut JSONSchemaProps) {
    // The env var `divisor` is a Quantity described as a field, not as the type.
    if let Some(divisor) = schema.properties.as_mut().and_then(|p| p.get_mut("divisor")) {
        set_quantity_schema(divisor);
    }
    if schema.description.as_deref().is_some_and(|d| d.starts_with(QUANTITY_DESCRIPTION)) {
        set_quantity_schema(schema);
    }
}

fn set_quantity_schema(schema: &mut JSONSchemaProps) {
    let typed = |type_: &str| JSONSchemaProps { type_: Some(type_.to_string()), ..Default::default() };
    if schema.description.as_deref().is_none_or(|d| d.starts_with(QUANTITY_DESCRIPTION)) {
        schema.description = Some("A quantity: an integer, or a string such as `100m`, `1.5Gi` or `2`.".to_string());
    }
    schema.any_of = Some(vec![typed("integer"), typed("string")]);
    schema.pattern = Some(QUANTITY_PATTERN.to_string());
    schema.x_kubernetes_int_or_string = Some(true);
}

/// `configMapKeyRef` and `secretKeyRef` require only `key`, as in the original's CRD (the name
/// may be empty for backwards compatibility).
fn require_only_the_key_of_key_refs(schema: &mut JSONSchemaProps) {
    for name in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(key_ref) = schema.properties.as_mut().and_then(|p| p.get_mut(name)) {
            key_ref.required = Some(vec!["key".to_string()]);
        }
    }
}

fn shorten_description(schema: &mut JSONSchemaProps) {
    if let Some(description) = &mut schema.description
        && description.len() > MAX_DESCRIPTION
    {
        let first = description.split("\n\n").next().unwrap_or_default();
        *description = first.trim().to_string();
    }
}

/// The NicClusterPolicy CRD, with the root-level rule on the policy's name.
pub fn nic_cluster_policy() -> CustomResourceDefinition {
    let mut crd = finish(NicClusterPolicy::crd());
    if let Some(root) = root_schema_mut(&mut crd) {
        root.x_kubernetes_validations = Some(vec![ValidationRule {
            rule: POLICY_NAME_RULE.to_string(),
            message: Some(format!("only the NicClusterPolicy named {} is acted on", crate::POLICY_NAME)),
            ..Default::default()
        }]);
    }
    crd
}

/// The rule that keeps a NicNodePolicy's name short enough for the `ds-owner` label of its
/// objects (`nnp-<name>`, a label value of at most 63 characters).
pub const NODE_POLICY_NAME_RULE: &str = "size(self.metadata.name) <= 59";

/// The NicNodePolicy CRD: the generated schema and the name-length rule.
pub fn nic_node_policy() -> CustomResourceDefinition {
    let mut crd = finish(crate::node_policy::NicNodePolicy::crd());
    if let Some(root) = root_schema_mut(&mut crd) {
        root.x_kubernetes_validations = Some(vec![ValidationRule {
            rule: NODE_POLICY_NAME_RULE.to_string(),
            message: Some(
                "a NicNodePolicy name has at most 59 characters: its objects carry the label ds-owner=nnp-<name>"
                    .into(),
            ),
            ..Default::default()
        }]);
    }
    crd
}

/// The CRD serving `kind`, if this project ships it (the first one: NicClusterPolicy, the
/// networks, the NAD, the Whereabouts kinds, then NVIDIA IPAM's; see [`for_type`] where the
/// group matters, e.g. for `IPPool`).
pub fn for_kind(kind: &str) -> Option<CustomResourceDefinition> {
    all().into_iter().find(|crd| crd.spec.names.kind == kind)
}

/// The CRD serving `kind` of `api_version` (`group/version`), if this project ships it: e.g.
/// the Whereabouts `IPPool`, and not nv-ipam's kind of the same name.
pub fn for_type(api_version: &str, kind: &str) -> Option<CustomResourceDefinition> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    all().into_iter().find(|crd| {
        crd.spec.names.kind == kind && crd.spec.group == group && crd.spec.versions.iter().any(|v| v.name == version)
    })
}

/// The OpenAPI v3 schema of the CRD's (single) version, as JSON.
pub fn schema_json(crd: &CustomResourceDefinition) -> serde_json::Value {
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(|s| serde_json::to_value(s).unwrap_or_default())
        .unwrap_or_default()
}

/// The CRD as a YAML document, as written to `crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// The file name a CRD is stored under in `crds/`: `<crd name>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

fn root_schema_mut(crd: &mut CustomResourceDefinition) -> Option<&mut JSONSchemaProps> {
    crd.spec.versions.first_mut()?.schema.as_mut()?.open_api_v3_schema.as_mut()
}
