//! The CustomResourceDefinitions this project ships, generated from the types.
//!
//! `crds/` at the repository root holds these as YAML (`nicctl crds --dir crds`); a test fails
//! when a file there is stale.

use crate::nad::NetworkAttachmentDefinition;
use crate::networks::{HostDeviceNetwork, IPoIBNetwork, MacvlanNetwork};
use crate::policy::NicClusterPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, ValidationRule,
};
use kube::CustomResourceExt;

/// The rule that makes the API server refuse a policy with another name than `nic-cluster-policy`.
pub const POLICY_NAME_RULE: &str = "self.metadata.name == 'nic-cluster-policy'";

/// Longest description kept whole; longer ones (the Kubernetes types' essays) keep their first
/// paragraph, so the CRDs stay small and readable.
const MAX_DESCRIPTION: usize = 300;

/// Every CRD of the project, NicClusterPolicy first.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        nic_cluster_policy(),
        MacvlanNetwork::crd(),
        HostDeviceNetwork::crd(),
        IPoIBNetwork::crd(),
        NetworkAttachmentDefinition::crd(),
    ];
    for crd in &mut crds {
        if let Some(root) = root_schema_mut(crd) {
            shorten_descriptions(root);
        }
    }
    crds
}

fn shorten_descriptions(schema: &mut JSONSchemaProps) {
    if let Some(description) = &mut schema.description
        && description.len() > MAX_DESCRIPTION
    {
        let first = description.split("\n\n").next().unwrap_or_default();
        *description = first.trim().to_string();
    }
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
        shorten_descriptions(child);
    }
}

/// The NicClusterPolicy CRD, with the root-level rule on the policy's name.
pub fn nic_cluster_policy() -> CustomResourceDefinition {
    let mut crd = NicClusterPolicy::crd();
    if let Some(root) = root_schema_mut(&mut crd) {
        root.x_kubernetes_validations = Some(vec![ValidationRule {
            rule: POLICY_NAME_RULE.to_string(),
            message: Some(format!("only the NicClusterPolicy named {} is acted on", crate::POLICY_NAME)),
            ..Default::default()
        }]);
    }
    crd
}

/// The CRD serving `kind`, if this project defines it.
pub fn for_kind(kind: &str) -> Option<CustomResourceDefinition> {
    all().into_iter().find(|crd| crd.spec.names.kind == kind)
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
