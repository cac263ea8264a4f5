//! Which driver image a pool runs: the precompiled image for its kernel when the registry lists
//! its tag, otherwise the image that builds the driver on the node (unless `forcePrecompiled`).

use crate::pools::Pool;
use api::FieldError;
use api::policy::OfedDriverSpec;
use state_core::ImageTags;
use std::collections::BTreeMap;

/// The image a pool runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// The full reference.
    pub reference: String,
    /// It is a precompiled image (no driver build on the node).
    pub precompiled: bool,
}

/// The image repository of the driver: `<repository>/<image>`.
pub fn repository(spec: &OfedDriverSpec) -> String {
    format!("{}/{}", spec.image.repository.trim_end_matches('/'), spec.image.image)
}

/// The precompiled tag of `pool`: `<version>-<kernel>-<os><version>-<arch>`.
pub fn precompiled_tag(spec: &OfedDriverSpec, pool: &Pool) -> String {
    format!("{}-{}-{}-{}", spec.image.version, pool.kernel, pool.os_tag(), pool.arch)
}

/// The image of `pool`, knowing what the registry said about the repository's tags.
pub fn choose(spec: &OfedDriverSpec, pool: &Pool, tags: &BTreeMap<String, ImageTags>) -> Result<Chosen, FieldError> {
    let repository = repository(spec);
    let version = &spec.image.version;
    if version.starts_with("sha256:") {
        return Ok(Chosen { reference: format!("{repository}@{version}"), precompiled: false });
    }
    let tag = precompiled_tag(spec, pool);
    let known = tags.get(&repository);
    if let Some(ImageTags::Listed(listed)) = known
        && listed.contains(&tag)
    {
        return Ok(Chosen { reference: format!("{repository}:{tag}"), precompiled: true });
    }
    if spec.force_precompiled == Some(true) {
        let why = match known {
            Some(ImageTags::Listed(_)) => "the registry does not list it".to_string(),
            Some(ImageTags::Failed(e)) => format!("the registry could not be asked: {e}"),
            Some(ImageTags::Pending) | None => "the registry has not been asked yet".to_string(),
        };
        return Err(FieldError::new(
            "spec.ofedDriver.forcePrecompiled",
            format!("precompiled image {repository}:{tag} is required for pool {}, but {why}", pool.daemon_set()),
        ));
    }
    Ok(Chosen { reference: format!("{repository}:{version}-{}-{}", pool.os_tag(), pool.arch), precompiled: false })
}
