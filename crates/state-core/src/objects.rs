//! Small helpers over rendered objects: identity, kinds, typed construction.

use api::FieldError;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use kube::core::{ApiResource, DynamicObject};
use serde::Serialize;
use std::fmt;

/// A kind a state renders, with its scope (namespaced kinds are watched in the operands'
/// namespace only, cluster-scoped kinds cluster-wide).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Objects of this kind live in a namespace.
    pub namespaced: bool,
    /// The kind's API may not be installed (e.g. cert-manager's): whether the API server
    /// serves it is observed before each render ([`crate::Observed::served`]), and the
    /// controller does not wait for its watch to start.
    pub optional: bool,
}

impl Kind {
    /// The kind of `K`, a namespaced type (k8s-openapi, or a custom resource).
    pub fn namespaced<K: kube::Resource<DynamicType = ()>>() -> Self {
        Self { resource: ApiResource::erase::<K>(&()), namespaced: true, optional: false }
    }

    /// The kind of `K`, a cluster-scoped type.
    pub fn cluster<K: kube::Resource<DynamicType = ()>>() -> Self {
        Self { resource: ApiResource::erase::<K>(&()), namespaced: false, optional: false }
    }

    /// The same kind, from an API the cluster may not have installed (see [`Kind::optional`]).
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// `apiVersion/kind`, e.g. `cert-manager.io/v1/Issuer`: how [`crate::Observed::served`]
    /// names the kind.
    pub fn type_name(&self) -> String {
        format!("{}/{}", self.resource.api_version, self.resource.kind)
    }

    /// Whether `object` is of this kind.
    pub fn matches(&self, object: &DynamicObject) -> bool {
        object
            .types
            .as_ref()
            .is_some_and(|t| t.api_version == self.resource.api_version && t.kind == self.resource.kind)
    }
}

/// Identity of an object: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `apiVersion` of the object.
    pub api_version: String,
    /// `kind` of the object.
    pub kind: String,
    /// Namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The identity of `object`.
    pub fn of(object: &DynamicObject) -> Self {
        let types = object.types.clone().unwrap_or_default();
        Self {
            api_version: types.api_version,
            kind: types.kind,
            namespace: object.metadata.namespace.clone(),
            name: object.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A typed object (e.g. a k8s-openapi ConfigMap) as a [`DynamicObject`].
pub fn to_dynamic<K: kube::Resource<DynamicType = ()> + Serialize>(object: &K) -> DynamicObject {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    value["apiVersion"] = K::api_version(&()).into();
    value["kind"] = K::kind(&()).into();
    serde_json::from_value(value).unwrap_or_else(|_| DynamicObject::new("", &ApiResource::erase::<K>(&())))
}

/// The object as one JSON value (types, metadata and the rest).
pub fn to_value(object: &DynamicObject) -> serde_json::Value {
    serde_json::to_value(object).unwrap_or_default()
}

/// A stable 64-bit FNV-1a hash of `text`, in decimal (revision and config-hash annotations).
pub fn hash(text: &str) -> String {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)).to_string()
}

/// A user-supplied config string, or `None` when it is missing or blank (an empty `config`
/// counts as not set).
pub fn non_empty(config: Option<&String>) -> Option<&str> {
    config.map(String::as_str).filter(|c| !c.trim().is_empty())
}

/// Checks that `text` (the value of the policy field `field`) is JSON; the error names the
/// field and the position.
pub fn check_json(field: &str, text: &str) -> Result<(), FieldError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| FieldError::new(field, format!("invalid JSON: {e}")))
}

/// The most a ConfigMap holds (the sum of its data), as the API server enforces it.
pub const CONFIG_MAP_LIMIT: usize = 1024 * 1024;

/// Checks that `text` (the value of the policy field `field`) fits in a ConfigMap.
pub fn check_fits_config_map(field: &str, text: &str) -> Result<(), FieldError> {
    if text.len() <= CONFIG_MAP_LIMIT {
        return Ok(());
    }
    let megabytes = text.len() as f64 / 1e6;
    Err(FieldError::new(field, format!("the config is {megabytes:.1} MB; a ConfigMap holds at most 1 MiB")))
}

/// A device plugin's JSON config: set and not blank, small enough for a ConfigMap, and free of
/// the problems `check` finds (all of them named in the one error); `missing` says what the
/// config must hold when it is not set.
pub fn checked_config<'a>(
    field: &str,
    config: Option<&'a String>,
    missing: &str,
    check: fn(&str, &str) -> Vec<FieldError>,
) -> Result<&'a str, FieldError> {
    let config = non_empty(config).ok_or_else(|| {
        FieldError::new(field, format!("required: the plugin cannot start without a configuration ({missing})"))
    })?;
    check_fits_config_map(field, config)?;
    match FieldError::join(check(field, config)) {
        Some(problems) => Err(problems),
        None => Ok(config),
    }
}

/// A ConfigMap holding `value` under `key`, built in Rust so the value is never re-quoted.
pub fn config_map(name: &str, namespace: &str, key: &str, value: &str) -> DynamicObject {
    to_dynamic(&ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(namespace.into()), ..Default::default() },
        data: Some([(key.to_string(), value.to_string())].into()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_configs_count_as_not_set() {
        assert_eq!(non_empty(Some(&"  \n".to_string())), None);
        assert_eq!(non_empty(None), None);
        assert_eq!(non_empty(Some(&"{}".to_string())), Some("{}"));
    }

    #[test]
    fn invalid_json_names_the_field_and_the_position() {
        let err = check_json("spec.x.config", "{\"a\": }").unwrap_err();
        assert_eq!(err.path, "spec.x.config");
        assert!(err.message.starts_with("invalid JSON: expected value at line 1 column 7"), "{}", err.message);
    }

    #[test]
    fn a_config_too_large_for_a_config_map_names_the_field_and_the_sizes() {
        assert!(check_fits_config_map("spec.x.config", &"a".repeat(CONFIG_MAP_LIMIT)).is_ok());
        let err = check_fits_config_map("spec.x.config", &"a".repeat(1_200_000)).unwrap_err();
        assert_eq!(err.to_string(), "spec.x.config: the config is 1.2 MB; a ConfigMap holds at most 1 MiB");
    }

    #[test]
    fn config_maps_keep_the_value_byte_for_byte() {
        let cm = config_map("c", "ns", "config.json", "{\"it's\": \"a\\nb\"}\n");
        assert_eq!(cm.data["data"]["config.json"], "{\"it's\": \"a\\nb\"}\n");
        assert_eq!(ObjectKey::of(&cm).to_string(), "ConfigMap ns/c");
    }
}
