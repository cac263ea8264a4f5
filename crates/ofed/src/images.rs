//! Which driver image a pool runs: the precompiled image for its kernel when the registry lists
//! its tag, otherwise the image that builds the driver on the node (unless `forcePrecompiled`).
//!
//! A pool whose DaemonSet already runs one of its two candidates keeps it, whatever the
//! registry says or cannot say: a new choice is made only for a new pool, a new version or a
//! new kernel. So a registry outage, a slow first listing after a restart, or a precompiled
//! image published later never changes a template, which would reinstall the driver on every
//! node of the pool.

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

/// The image `pool` already runs (`live`, its DaemonSet's driver image) when it is one of the
/// pool's candidates for this version and kernel; a choice that needs no registry.
pub fn kept(spec: &OfedDriverSpec, pool: &Pool, live: Option<&str>) -> Option<Chosen> {
    let live = live?;
    let repository = repository(spec);
    let precompiled = format!("{repository}:{}", precompiled_tag(spec, pool));
    let source = format!("{repository}:{}-{}-{}", spec.image.version, pool.os_tag(), pool.arch);
    let forced = spec.force_precompiled == Some(true);
    match live {
        _ if live == precompiled => Some(Chosen { reference: precompiled, precompiled: true }),
        _ if live == source && !forced => Some(Chosen { reference: source, precompiled: false }),
        _ => None,
    }
}

/// The image of `pool`: the one it runs ([`kept`]), else chosen from what the registry said
/// about the repository's tags.
pub fn choose(
    spec: &OfedDriverSpec,
    pool: &Pool,
    tags: &BTreeMap<String, ImageTags>,
    live: Option<&str>,
) -> Result<Chosen, FieldError> {
    let repository = repository(spec);
    let version = &spec.image.version;
    if version.starts_with("sha256:") {
        return Ok(Chosen { reference: format!("{repository}@{version}"), precompiled: false });
    }
    if let Some(kept) = kept(spec, pool, live) {
        return Ok(kept);
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
            _ if !crate::settings().precompiled_lookup => {
                "the precompiled-image lookup is off (OFED_PRECOMPILED_LOOKUP=false): turn it on, or remove forcePrecompiled"
                    .to_string()
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn spec(force: bool) -> OfedDriverSpec {
        let mut spec: OfedDriverSpec = serde_json::from_value(serde_json::json!({
            "image": "mofed", "repository": "r.io/mellanox", "version": "24.07-0.6.1.0-0"}))
        .unwrap();
        spec.force_precompiled = force.then_some(true);
        spec
    }

    fn pool() -> Pool {
        Pool {
            os: "ubuntu".into(),
            os_version: "22.04".into(),
            kernel: "5.15.0-78-generic".into(),
            arch: "amd64".into(),
            ostree: None,
            runtime: String::new(),
            nodes: vec!["n1".into()],
            legacy: false,
        }
    }

    const SOURCE: &str = "r.io/mellanox/mofed:24.07-0.6.1.0-0-ubuntu22.04-amd64";
    const PRECOMPILED: &str = "r.io/mellanox/mofed:24.07-0.6.1.0-0-5.15.0-78-generic-ubuntu22.04-amd64";

    fn tags(tags: ImageTags) -> BTreeMap<String, ImageTags> {
        BTreeMap::from([("r.io/mellanox/mofed".to_string(), tags)])
    }

    #[test]
    fn a_pool_keeps_its_image_whatever_the_registry_says_until_version_or_kernel_change() {
        let listed = ImageTags::Listed(BTreeSet::from([PRECOMPILED.rsplit(':').next().unwrap().to_string()]));
        for answer in [ImageTags::Pending, ImageTags::Failed("connection refused".into()), listed.clone()] {
            let chosen = choose(&spec(false), &pool(), &tags(answer.clone()), Some(SOURCE)).unwrap();
            assert_eq!(chosen.reference, SOURCE, "{answer:?}: the running source image stays");
            let chosen = choose(&spec(false), &pool(), &tags(answer.clone()), Some(PRECOMPILED)).unwrap();
            assert_eq!((chosen.reference.as_str(), chosen.precompiled), (PRECOMPILED, true), "{answer:?}");
        }
        // A new version: the old image is no candidate, the registry decides.
        let old = "r.io/mellanox/mofed:23.10-0.5.5.0-0-ubuntu22.04-amd64";
        let chosen = choose(&spec(false), &pool(), &tags(listed), Some(old)).unwrap();
        assert_eq!(chosen.reference, PRECOMPILED);
        let chosen = choose(&spec(false), &pool(), &tags(ImageTags::Failed("down".into())), Some(old)).unwrap();
        assert_eq!(chosen.reference, SOURCE, "first choice for the new version, without a registry");
    }

    #[test]
    fn no_registry_answer_ever_changes_a_kept_image() {
        // Every answer the registry can give (listing, not listing, failing, not yet asked),
        // for pools running either candidate: the pool keeps what it runs.
        let precompiled = PRECOMPILED.rsplit(':').next().unwrap().to_string();
        let answers = [
            ImageTags::Pending,
            ImageTags::Failed("timeout".into()),
            ImageTags::Listed(BTreeSet::new()),
            ImageTags::Listed(BTreeSet::from([precompiled.clone()])),
            ImageTags::Listed(BTreeSet::from([precompiled, "other".to_string()])),
        ];
        for answer in answers {
            for live in [SOURCE, PRECOMPILED] {
                let registries = [tags(answer.clone()), BTreeMap::new()];
                for tags in &registries {
                    let chosen = choose(&spec(false), &pool(), tags, Some(live)).unwrap();
                    assert_eq!(chosen.reference, live, "{answer:?}, {} registry answers", tags.len());
                }
            }
        }
    }

    #[test]
    fn force_precompiled_does_not_keep_a_source_image() {
        assert_eq!(kept(&spec(true), &pool(), Some(SOURCE)), None);
        assert!(kept(&spec(true), &pool(), Some(PRECOMPILED)).is_some());
        let err = choose(&spec(true), &pool(), &tags(ImageTags::Pending), Some(SOURCE)).unwrap_err();
        assert!(err.to_string().starts_with("spec.ofedDriver.forcePrecompiled"), "{err}");
    }
}
