//! The image specification shared by every component of the policy.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// CEL rule of `repository`: what may stand before `/<image>` in an image reference (Docker's
/// reference grammar): a registry host (DNS name, IPv4, or IPv6 in brackets, with an optional
/// port) alone or followed by lowercase path components, or lowercase path components alone.
pub const REPOSITORY_RULE: &str = "self.matches('^(([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\\\\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\\\\[[a-fA-F0-9:]+\\\\])(:[0-9]+)?|[a-z0-9]+(([._]|__|[-]*)[a-z0-9]+)*)(/[a-z0-9]+(([._]|__|[-]*)[a-z0-9]+)*)*$')";

/// Repositories [`REPOSITORY_RULE`] accepts: the test vectors of the unit tests and of the
/// end-to-end test on a real API server.
pub const REPOSITORIES_ACCEPTED: &[&str] = &[
    "nvcr.io/nvidia/mellanox",
    "ghcr.io/mellanox",
    "mellanox",
    "registry.local:5000",
    "10.0.0.1:5000",
    "10.0.0.1",
    "[fd00::1]:5000",
    "[fd00::1]/mirror",
    "localhost",
    "localhost:5000/a/b",
    "127.0.0.1:5000/mellanox",
    "Registry.Example.com:443/team_a/sub-path",
    "registry.example.com/team__a/x.y",
];

/// Repositories [`REPOSITORY_RULE`] refuses (see [`REPOSITORIES_ACCEPTED`]).
pub const REPOSITORIES_REFUSED: &[&str] = &[
    "",
    "https://nvcr.io/nvidia",
    "nvcr.io/nvidia/",
    "nvcr.io/Nvidia",
    "nvcr.io/nvidia:1.0",
    "nvcr.io//x",
    "nvcr.io/nvidia@sha256:ab",
    " nvcr.io",
    "registry.local:port",
    "[fd00::1",
    "-registry.local:5000",
    "registry.local:5000/",
];

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
        "message": "repository must be what stands before /<image> in an image reference: a registry host (DNS name, IPv4 or [IPv6], optional port) alone or with a lowercase path, or a lowercase path, e.g. nvcr.io/nvidia/mellanox, registry.local:5000 or 10.0.0.1:5000/mirror; no scheme, tag, digest or trailing slash",
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
