//! The image specification shared by every component of the policy.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// CEL rule of `repository`: a normalised image repository (as Docker's reference grammar: an
/// optional registry host with an optional port, then lowercase path components).
pub const REPOSITORY_RULE: &str = "self.matches('^([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\\\\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]+)?/)?[a-z0-9]+(([._]|__|[-]*)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|[-]*)[a-z0-9]+)*)*$')";

/// Where a component's container image comes from, plus per-container resources.
///
/// Embedded inline (flattened) into every component section of the policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image name, e.g. `k8s-rdma-shared-dev-plugin`.
    #[schemars(regex(pattern = r"[a-zA-Z0-9\-]+"))]
    pub image: String,
    /// Image repository, e.g. `ghcr.io/mellanox`.
    #[schemars(regex(pattern = r"[a-zA-Z0-9\.\-\/]+"), length(max = 255), extend("x-kubernetes-validations" = [{
        "rule": REPOSITORY_RULE,
        "message": "repository must be an image repository in lowercase: an optional registry host (with an optional port) and a path, e.g. nvcr.io/nvidia/mellanox or 10.0.0.1:5000/mirror; no scheme, tag, digest or trailing slash",
    }]))]
    pub repository: String,
    /// Image tag, or a `sha256:` digest.
    #[schemars(regex(pattern = r"[a-zA-Z0-9\.-]+"))]
    pub version: String,
    /// Names of Secrets in the operands' namespace used to pull the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = []))]
    pub image_pull_secrets: Option<Vec<String>>,
    /// Resource requests and limits per container name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_resources: Option<Vec<ContainerResources>>,
}

/// Resource requests and limits of one container, selected by its name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerResources {
    /// Name of the container the resources apply to.
    pub name: String,
    /// Maximum amount of compute resources allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BTreeMap<String, Quantity>>,
    /// Minimum amount of compute resources required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<BTreeMap<String, Quantity>>,
}

impl ImageSpec {
    /// The full image reference: `repository/image:version`, or `repository/image@sha256:…`
    /// when the version is a digest.
    pub fn reference(&self) -> String {
        let repository = self.repository.trim_end_matches('/');
        if self.version.starts_with("sha256:") {
            format!("{repository}/{}@{}", self.image, self.version)
        } else {
            format!("{repository}/{}:{}", self.image, self.version)
        }
    }

    /// The resources configured for the container named `container`, if any.
    pub fn resources_for(&self, container: &str) -> Option<&ContainerResources> {
        self.container_resources.as_ref()?.iter().find(|r| r.name == container)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(version: &str) -> ImageSpec {
        ImageSpec {
            image: "plugin".into(),
            repository: "ghcr.io/mellanox".into(),
            version: version.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tag_versions_join_with_a_colon() {
        assert_eq!(spec("v1.5.1").reference(), "ghcr.io/mellanox/plugin:v1.5.1");
    }

    #[test]
    fn digest_versions_join_with_an_at_sign() {
        assert_eq!(spec("sha256:0123abcd").reference(), "ghcr.io/mellanox/plugin@sha256:0123abcd");
    }

    #[test]
    fn resources_are_found_by_container_name() {
        let mut s = spec("v1");
        s.container_resources = Some(vec![ContainerResources { name: "a".into(), ..Default::default() }]);
        assert!(s.resources_for("a").is_some());
        assert!(s.resources_for("b").is_none());
    }
}
