//! Checks the CRD schema cannot make on its own (or makes with CEL, which only an API server
//! evaluates). Controllers run these before rendering, so bad input becomes a state `error`
//! naming the field instead of half-applied objects.

use crate::FieldError;
use crate::policy::NicClusterPolicy;
use regex::Regex;
use std::sync::LazyLock;

/// Format of an InfiniBand GUID: eight hexadecimal pairs separated by colons.
pub const GUID_PATTERN: &str = r"^([0-9A-Fa-f]{2}:){7}[0-9A-Fa-f]{2}$";

static GUID: LazyLock<Regex> = LazyLock::new(|| Regex::new(GUID_PATTERN).expect("valid GUID pattern"));

/// A domain name, as device plugins require of a `resourcePrefix`.
pub static RESOURCE_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z]{2,})+$").expect("valid pattern")
});

/// A device plugin's `resourceName`, as both plugins (RDMA shared, SR-IOV) check it at start-up:
/// they exit on any other.
pub static RESOURCE_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_]+$").expect("valid pattern"));

/// An entry of a device plugin's config with its field path, e.g.
/// (`spec.rdmaSharedDevicePlugin.config.configList[0]`, the entry's object).
pub type ConfigEntry = (String, serde_json::Map<String, serde_json::Value>);

/// The entries of a device plugin's JSON config `text` (the value of the policy field `field`):
/// a JSON object whose `list` key is a non-empty array of objects, no two with the same
/// `resourcePrefix` and `resourceName` (the plugins exit on an empty list or a duplicate).
/// Returns each object entry with its field path, and the problems found on the way.
pub fn config_entries(field: &str, text: &str, list: &str) -> (Vec<ConfigEntry>, Vec<FieldError>) {
    use serde_json::Value;
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return (Vec::new(), vec![FieldError::new(field, format!("invalid JSON: {e}"))]),
    };
    let Some(config) = value.as_object() else {
        return (Vec::new(), vec![FieldError::new(field, format!("must be a JSON object with {list}"))]);
    };
    let list_path = format!("{field}.{list}");
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    match config.get(list) {
        None => errors.push(FieldError::new(&list_path, "required")),
        Some(Value::Array(items)) if items.is_empty() => {
            errors.push(FieldError::new(&list_path, "needs at least one resource (the plugin exits without one)"))
        }
        Some(Value::Array(items)) => {
            let mut names: std::collections::BTreeMap<(String, String), String> = Default::default();
            for (i, item) in items.iter().enumerate() {
                let path = format!("{list_path}[{i}]");
                let Some(entry) = item.as_object() else {
                    errors.push(FieldError::new(path, "must be an object"));
                    continue;
                };
                let text = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
                if let Some(name) = entry.get("resourceName").and_then(Value::as_str) {
                    let key = (text("resourcePrefix"), name.to_string());
                    match names.get(&key) {
                        Some(first) => errors.push(FieldError::new(
                            format!("{path}.resourceName"),
                            format!("{name:?} is already the name of {first} (the plugin exits on a duplicate)"),
                        )),
                        None => drop(names.insert(key, path.clone())),
                    }
                }
                entries.push((path, entry.clone()));
            }
        }
        Some(_) => errors.push(FieldError::new(&list_path, "must be an array")),
    }
    (entries, errors)
}

/// Checks a device plugin entry's `resourceName` (required, matching [`RESOURCE_NAME`]) and
/// optional `resourcePrefix` (a domain name) at `path`.
pub fn check_resource_naming(
    path: &str,
    entry: &serde_json::Map<String, serde_json::Value>,
    errors: &mut Vec<FieldError>,
) {
    use serde_json::Value;
    let at = |key: &str| format!("{path}.{key}");
    match entry.get("resourceName") {
        None => errors.push(FieldError::new(at("resourceName"), "required")),
        Some(Value::String(name)) if RESOURCE_NAME.is_match(name) => {}
        Some(Value::String(name)) => errors.push(FieldError::new(
            at("resourceName"),
            format!("{name:?} must consist of letters, digits and '_' only (the plugin exits on any other name)"),
        )),
        Some(_) => errors.push(FieldError::new(at("resourceName"), "must be a string")),
    }
    match entry.get("resourcePrefix") {
        None => {}
        Some(Value::String(prefix)) if RESOURCE_PREFIX.is_match(prefix) => {}
        Some(Value::String(prefix)) => errors
            .push(FieldError::new(at("resourcePrefix"), format!("{prefix:?} must be a domain name, e.g. nvidia.com"))),
        Some(_) => errors.push(FieldError::new(at("resourcePrefix"), "must be a string")),
    }
}

/// Checks that `value` (at `path`) is a list of non-empty strings.
pub fn check_string_list(path: &str, value: &serde_json::Value, errors: &mut Vec<FieldError>) {
    let Some(items) = value.as_array() else {
        errors.push(FieldError::new(path, "must be a list of strings"));
        return;
    };
    for (i, item) in items.iter().enumerate() {
        if item.as_str().is_none_or(str::is_empty) {
            errors.push(FieldError::new(format!("{path}[{i}]"), "must be a non-empty string"));
        }
    }
}

/// The value of a resource quantity (`100m`, `1.5Gi`, `2`, `1e3`), or `None` when it is not one.
pub fn quantity_value(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    number.parse::<f64>().ok().filter(|n| n.is_finite()).map(|n| n * factor)
}

/// The problems of a section's `containerResources` (the original webhook's rule): only `cpu`
/// and `memory`, no zero quantity, and no limit below its request. `section` is the section's
/// field path, e.g. `spec.rdmaSharedDevicePlugin`.
pub fn container_resources(section: &str, entries: &[crate::ContainerResources]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("{section}.containerResources[{i}]");
        for (kind, map) in [("requests", &entry.requests), ("limits", &entry.limits)] {
            for (resource, quantity) in map.iter().flatten() {
                let path = format!("{at}.{kind}.{resource}");
                if !matches!(resource.as_str(), "cpu" | "memory") {
                    errors.push(FieldError::new(path, "only cpu and memory can be set"));
                } else if quantity_value(&quantity.0) == Some(0.0) {
                    errors.push(FieldError::new(path, format!("{kind} for {resource} is zero")));
                }
            }
        }
        for (resource, request) in entry.requests.iter().flatten() {
            let limit = entry.limits.as_ref().and_then(|l| l.get(resource));
            if let (Some(request_value), Some(limit_value)) =
                (quantity_value(&request.0), limit.and_then(|l| quantity_value(&l.0)))
                && limit_value < request_value
            {
                let limit = limit.map(|l| l.0.as_str()).unwrap_or_default();
                errors.push(FieldError::new(
                    format!("{at}.requests.{resource}"),
                    format!("the request ({}) is greater than the limit ({limit})", request.0),
                ));
            }
        }
    }
    errors
}

/// Every problem of the policy that the CRD schema does not already report.
pub fn policy(policy: &NicClusterPolicy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if policy.metadata.name.as_deref() != Some(crate::POLICY_NAME) {
        errors.push(FieldError::new(
            "metadata.name",
            format!("only the NicClusterPolicy named {} is acted on", crate::POLICY_NAME),
        ));
    }
    if let Some(upgrade) = policy.spec.ofed_driver.as_ref().and_then(|o| o.upgrade_policy.as_ref())
        && upgrade.safe_load == Some(true)
        && upgrade.auto_upgrade != Some(true)
    {
        errors.push(FieldError::new(
            "spec.ofedDriver.upgradePolicy.safeLoad",
            "safeLoad requires autoUpgrade to be true",
        ));
    }
    if let Some(Err(error)) =
        policy.spec.ofed_driver.as_ref().and_then(|o| o.upgrade_policy.as_ref()).map(|u| u.max_unavailable_of(1))
    {
        errors.push(error);
    }
    errors.extend(crate::pod_spec::placement(policy));
    if let Some(ofed) = &policy.spec.ofed_driver {
        errors.extend(crate::pod_spec::env("spec.ofedDriver.env", ofed.env.as_deref().unwrap_or_default()));
        for (field, reference) in [("certConfig", &ofed.cert_config), ("repoConfig", &ofed.repo_config)] {
            if let Some(name) = reference.as_ref().and_then(|r| r.name.as_deref()).filter(|n| !n.is_empty()) {
                errors.extend(crate::pod_spec::object_name(&format!("spec.ofedDriver.{field}.name"), name).err());
            }
        }
    }
    let doca_config = policy.spec.doca_telemetry_service.as_ref().and_then(|d| d.config.as_ref());
    if let Some(name) = doca_config.and_then(|c| c.from_config_map.as_deref()).filter(|n| !n.is_empty()) {
        errors.extend(crate::pod_spec::object_name("spec.docaTelemetryService.config.fromConfigMap", name).err());
    }
    if let Some(ib) = &policy.spec.ib_kubernetes {
        if let Some(secret) = ib.ufm_secret.as_deref().filter(|n| !n.is_empty()) {
            errors.extend(crate::pod_spec::object_name("spec.ibKubernetes.ufmSecret", secret).err());
        }
        let start = ib.p_key_guid_pool_range_start.as_deref();
        let end = ib.p_key_guid_pool_range_end.as_deref();
        for (field, value) in [("pKeyGUIDPoolRangeStart", start), ("pKeyGUIDPoolRangeEnd", end)] {
            if let Some(v) = value
                && !GUID.is_match(v)
            {
                errors.push(FieldError::new(
                    format!("spec.ibKubernetes.{field}"),
                    format!("{v:?} is not a GUID of the form xx:xx:xx:xx:xx:xx:xx:xx (hexadecimal)"),
                ));
            }
        }
        if let (Some(start), Some(end)) = (start.and_then(guid_value), end.and_then(guid_value))
            && end <= start
        {
            errors.push(FieldError::new(
                "spec.ibKubernetes.pKeyGUIDPoolRangeEnd",
                "pKeyGUIDPoolRangeEnd must be greater than pKeyGUIDPoolRangeStart",
            ));
        }
    }
    errors
}

fn guid_value(guid: &str) -> Option<u64> {
    GUID.is_match(guid).then(|| u64::from_str_radix(&guid.replace(':', ""), 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DriverUpgradePolicySpec, IbKubernetesSpec, NicClusterPolicySpec, OfedDriverSpec};

    fn named(name: &str, spec: NicClusterPolicySpec) -> NicClusterPolicy {
        let mut p = NicClusterPolicy::new(name, spec);
        p.metadata.name = Some(name.into());
        p
    }

    fn paths(p: &NicClusterPolicy) -> Vec<String> {
        policy(p).into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn an_empty_policy_with_the_right_name_is_valid() {
        assert!(policy(&named("nic-cluster-policy", Default::default())).is_empty());
    }

    #[test]
    fn another_name_is_reported_on_metadata_name() {
        assert_eq!(paths(&named("mine", Default::default())), ["metadata.name"]);
    }

    #[test]
    fn max_unavailable_is_a_positive_number_or_a_percentage_rounded_up() {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let limit = |value: IntOrString, total| {
            DriverUpgradePolicySpec { max_unavailable: Some(value), ..Default::default() }
                .max_unavailable_of(total)
                .map_err(|e| e.to_string())
        };
        assert_eq!(DriverUpgradePolicySpec::default().max_unavailable_of(7), Ok(2), "unset: 25%, rounded up");
        assert_eq!(limit(IntOrString::Int(2), 10), Ok(2));
        assert_eq!(limit(IntOrString::String("25%".into()), 10), Ok(3));
        assert_eq!(limit(IntOrString::String("100%".into()), 3), Ok(3));
        assert_eq!(limit(IntOrString::String("1%".into()), 3), Ok(1));
        for bad in [IntOrString::Int(0), IntOrString::Int(-1), IntOrString::String("0%".into())] {
            let error = limit(bad, 3).unwrap_err();
            assert!(error.starts_with("spec.ofedDriver.upgradePolicy.maxUnavailable: "), "{error}");
        }
        for bad in ["101%", "half", "2"] {
            assert!(limit(IntOrString::String(bad.into()), 3).is_err(), "{bad}");
        }
    }

    #[test]
    fn safe_load_without_auto_upgrade_is_reported() {
        let spec = NicClusterPolicySpec {
            ofed_driver: Some(OfedDriverSpec {
                upgrade_policy: Some(DriverUpgradePolicySpec { safe_load: Some(true), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(paths(&named("nic-cluster-policy", spec)), ["spec.ofedDriver.upgradePolicy.safeLoad"]);
    }

    fn ib(start: &str, end: &str) -> NicClusterPolicy {
        named(
            "nic-cluster-policy",
            NicClusterPolicySpec {
                ib_kubernetes: Some(IbKubernetesSpec {
                    p_key_guid_pool_range_start: Some(start.into()),
                    p_key_guid_pool_range_end: Some(end.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    }

    #[test]
    fn guid_ranges_must_be_well_formed_and_increasing() {
        assert!(paths(&ib("02:00:00:00:00:00:00:00", "02:FF:FF:FF:FF:FF:FF:FF")).is_empty());
        assert_eq!(
            paths(&ib("02:00:00:00:00:00:00", "zz")),
            ["spec.ibKubernetes.pKeyGUIDPoolRangeStart", "spec.ibKubernetes.pKeyGUIDPoolRangeEnd"]
        );
        assert_eq!(
            paths(&ib("02:FF:00:00:00:00:00:00", "02:00:00:00:00:00:00:00")),
            ["spec.ibKubernetes.pKeyGUIDPoolRangeEnd"]
        );
    }

    #[test]
    fn quantities_are_read_with_their_suffixes() {
        assert_eq!(quantity_value("100m"), Some(0.1));
        assert_eq!(quantity_value("1Gi"), Some(1073741824.0));
        assert_eq!(quantity_value("1.5"), Some(1.5));
        assert_eq!(quantity_value("1e3"), Some(1000.0));
        assert_eq!(quantity_value("2k"), Some(2000.0));
        assert_eq!(quantity_value("lots"), None);
    }

    #[test]
    fn container_resources_allow_cpu_and_memory_above_zero_and_limits_above_requests() {
        let entries: Vec<crate::ContainerResources> = serde_json::from_value(serde_json::json!([
            {"name": "a", "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}},
            {"name": "b", "requests": {"cpu": "0", "memory": "2Gi", "hugepages-2Mi": "1Gi"}, "limits": {"memory": "1Gi"}},
        ]))
        .unwrap();
        let found: Vec<String> = container_resources("spec.x", &entries).into_iter().map(|e| e.to_string()).collect();
        assert_eq!(
            found,
            [
                "spec.x.containerResources[1].requests.cpu: requests for cpu is zero",
                "spec.x.containerResources[1].requests.hugepages-2Mi: only cpu and memory can be set",
                "spec.x.containerResources[1].requests.memory: the request (2Gi) is greater than the limit (1Gi)",
            ]
        );
    }
}
