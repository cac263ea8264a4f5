//! The `k8s.cni.cncf.io/v1` NetworkAttachmentDefinition, as Multus defines it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A secondary network Multus can attach pods to: a CNI configuration as a JSON string.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "k8s.cni.cncf.io",
    version = "v1",
    kind = "NetworkAttachmentDefinition",
    plural = "network-attachment-definitions",
    singular = "network-attachment-definition",
    shortname = "net-attach-def",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    doc = "NetworkAttachmentDefinition is a CRD schema specified by the Network Plumbing Working Group to express the intent for attaching pods to one or more logical or physical networks. More information available at: https://github.com/k8snetworkplumbingwg/multi-net-spec"
)]
pub struct NetworkAttachmentDefinitionSpec {
    /// NetworkAttachmentDefinition config is a JSON-formatted CNI configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

optional_spec!(NetworkAttachmentDefinitionSpec);
