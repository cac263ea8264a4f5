//! The image specification shared by every component of the policy.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// CEL rule of `repository`: what may stand before `/<image>` in an image reference (Docker's
/// reference grammar): a registry host (DNS name, IPv4, or IPv6 in brackets, with an optional
/// port) alone or followed by lowercase path components, or lowercase path components alone.
pub const REPOSITORY_RULE: &str = "self.matches('^(([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\\\\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\\\\[[a-fA-F0-9:]+\\\\])(:[0-9]+)?|[a-z0-9]+(([._]|__|[-]*)[a-z0-9]+)*)(/[a-z0-9]+(([._]|__|[-]*)[a-z0-9]+)*)*$')";

/// Message of [`REPOSITORY_RULE`].
pub const REPOSITORY_MESSAGE: &str = "repository must be what stands before /<image> in an image reference: a registry host (DNS name, IPv4 or [IPv6], optional port) alone or with a lowercase path, or a lowercase path, e.g. nvcr.io/nvidia/mellanox, registry.local:5000 or 10.0.0.1:5000/mirror; no scheme, tag, digest or trailing slash";

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

/// Pattern of `image`: lowercase path components of an image reference, e.g. `mofed` or
/// `team/plugin` (the CRD's pattern, checked at render too).
pub const IMAGE_PATTERN: &str = r"^[a-z0-9]+(([._]|__|[-]*)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|[-]*)[a-z0-9]+)*)*$";
/// Pattern of `version`: an image tag, or a `sha256:` digest.
pub const VERSION_PATTERN: &str = r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|sha256:[a-f0-9]{64})$";

static IMAGE: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(IMAGE_PATTERN).expect("valid pattern"));
static VERSION: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(VERSION_PATTERN).expect("valid pattern"));
static REPOSITORY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    let pattern = REPOSITORY_RULE.split("matches('").nth(1).and_then(|p| p.split("')").next()).unwrap_or_default();
    regex::Regex::new(&pattern.replace(r"\\", r"\")).expect("valid pattern")
});

/// Checks that `spec`, the image of the policy section `section` (e.g.
/// `spec.rdmaSharedDevicePlugin`), composes a valid image reference: every problem named with
/// its field, before anything is rendered (a reference no runtime can pull would replace
/// working pods with ones that cannot start).
pub fn check(section: &str, spec: &ImageSpec) -> Result<(), crate::FieldError> {
    let mut errors = Vec::new();
    for (field, value) in [("repository", &spec.repository), ("version", &spec.version)] {
        if value.is_empty() {
            errors.push(crate::FieldError::new(
                format!("{section}.{field}"),
                format!("required: set it here or spec.global.{field} for every section"),
            ));
        }
    }
    if !spec.repository.is_empty() && !REPOSITORY.is_match(&spec.repository) {
        errors.push(crate::FieldError::new(
            format!("{section}.repository"),
            format!("{:?} is not an image repository (a registry host, a lowercase path, or both)", spec.repository),
        ));
    }
    if !IMAGE.is_match(&spec.image) {
        errors.push(crate::FieldError::new(
            format!("{section}.image"),
            format!("{:?} is not an image name (lowercase letters, digits, '.', '_', '-' and '/')", spec.image),
        ));
    }
    if !spec.version.is_empty() && !VERSION.is_match(&spec.version) {
        errors.push(crate::FieldError::new(
            format!("{section}.version"),
            format!(
                "{:?} is neither an image tag (up to 128 letters, digits, '_', '.', '-') nor a sha256: digest",
                spec.version
            ),
        ));
    }
    let name = format!("{}/{}", spec.repository.trim_end_matches('/'), spec.image);
    if errors.is_empty() && name.len() > 255 {
        errors.push(crate::FieldError::new(
            format!("{section}.image"),
            format!("the image name {name:?} is longer than 255 characters"),
        ));
    }
    match crate::FieldError::join(errors) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Where a component's container image comes from, plus per-container resources.
///
/// Embedded inline (flattened) into every component section of the policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image name, e.g. `k8s-rdma-shared-dev-plugin`.
    #[schemars(regex(pattern = IMAGE_PATTERN), length(max = 255))]
    pub image: String,
    /// Image repository, e.g. `ghcr.io/mellanox`; when left out, `spec.global.repository`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"[a-zA-Z0-9\.\-\/]+"), length(max = 255), extend("x-kubernetes-validations" = [{
        "rule": REPOSITORY_RULE,
        "message": REPOSITORY_MESSAGE,
    }]))]
    pub repository: String,
    /// Image tag, or a `sha256:` digest; when left out, `spec.global.version`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = VERSION_PATTERN))]
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

/// Defaults for every section's image (`spec.global`), as in the original since v25.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalConfig {
    /// Repository of every section that leaves `repository` out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"[a-zA-Z0-9\.\-\/]+"), length(max = 255), extend("x-kubernetes-validations" = [{
        "rule": REPOSITORY_RULE,
        "message": REPOSITORY_MESSAGE,
    }]))]
    pub repository: Option<String>,
    /// Version (tag) of every section that leaves `version` out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = VERSION_PATTERN))]
    pub version: Option<String>,
    /// Pull secrets of every section that lists none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<String>>,
}

impl ImageSpec {
    /// Fills what this image leaves out from `global`, as the original's `ApplyGlobalConfig`:
    /// an empty `repository` or `version` takes the global one; no pull secrets (absent or
    /// empty) take the global list. What the section sets always wins.
    pub fn apply_global(&mut self, global: &GlobalConfig) {
        if self.repository.is_empty() {
            self.repository = global.repository.clone().unwrap_or_default();
        }
        if self.version.is_empty() {
            self.version = global.version.clone().unwrap_or_default();
        }
        let global_secrets = global.image_pull_secrets.as_ref().filter(|s| !s.is_empty());
        if self.image_pull_secrets.as_ref().is_none_or(Vec::is_empty)
            && let Some(secrets) = global_secrets
        {
            self.image_pull_secrets = Some(secrets.clone());
        }
    }

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
    fn unusable_image_references_are_errors_naming_each_field() {
        assert_eq!(check("spec.x", &spec("v1.5.1")), Ok(()));
        assert_eq!(check("spec.x", &spec(&format!("sha256:{}", "a".repeat(64)))), Ok(()));
        for (image, version, field) in [
            ("plugin", "v1 2", "spec.x.version"),
            ("plugin", "v1\nkind: Secret", "spec.x.version"),
            ("plugin", "sha256:zz", "spec.x.version"),
            ("plugin", "$(reboot)-x", "spec.x.version"),
            ("img:tag", "v1", "spec.x.image"),
            ("../../etc/x", "v1", "spec.x.image"),
            ("Plugin", "v1", "spec.x.image"),
        ] {
            let mut bad = spec(version);
            bad.image = image.into();
            let error = check("spec.x", &bad).unwrap_err();
            assert!(error.to_string().starts_with(&format!("{field}: ")), "{image} {version}: {error}");
        }
        let mut long = spec("v1");
        long.image = "a".repeat(300);
        assert!(check("spec.x", &long).unwrap_err().to_string().contains("longer than 255"));
        let mut port = spec("v1");
        port.repository = "localhost:99999x/r".into();
        assert!(check("spec.x", &port).is_err());
    }

    #[test]
    fn a_missing_repository_or_version_is_required_naming_the_global_default() {
        let mut bare = spec("");
        bare.repository = String::new();
        let error = check("spec.x", &bare).unwrap_err().to_string();
        assert!(error.contains("spec.x.repository: required: set it here or spec.global.repository"), "{error}");
        assert!(error.contains("spec.x.version: required: set it here or spec.global.version"), "{error}");
    }

    #[test]
    fn global_defaults_fill_only_what_the_section_leaves_out() {
        let global = GlobalConfig {
            repository: Some("registry.local:5000/mirror".into()),
            version: Some("v9".into()),
            image_pull_secrets: Some(vec!["global-secret".into()]),
        };
        let mut own = spec("v1");
        own.image_pull_secrets = Some(vec!["own".into()]);
        let before = own.clone();
        own.apply_global(&global);
        assert_eq!(own, before, "what the section sets wins");
        let mut bare = ImageSpec { image: "plugin".into(), image_pull_secrets: Some(vec![]), ..Default::default() };
        bare.apply_global(&global);
        assert_eq!(bare.reference(), "registry.local:5000/mirror/plugin:v9");
        assert_eq!(bare.image_pull_secrets, Some(vec!["global-secret".into()]), "an empty list takes the global one");
        let mut untouched = ImageSpec { image: "plugin".into(), ..Default::default() };
        untouched.apply_global(&GlobalConfig::default());
        assert_eq!(untouched.repository, "", "no global default leaves it empty (then required)");
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
