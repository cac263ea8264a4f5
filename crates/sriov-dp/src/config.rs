//! The plugin's configuration, checked at render as the original's admission webhook checks it
//! (`sriov_network_device_plugin` schema, name patterns, selectors by device type), so a config
//! the plugin cannot use is an error naming the exact field. A resource without `resourceName`
//! is an error (the original's webhook panicked on it).

use api::{FieldError, validate};
use regex::Regex;
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// Selector keys of `accelerator` devices.
const ACCELERATOR: &[&str] = &["vendors", "devices", "drivers", "pciAddresses"];
/// Selector keys of `auxNetDevice` devices.
const AUX_NET_DEVICE: &[&str] =
    &["vendors", "devices", "drivers", "pfNames", "rootDevices", "linkTypes", "isRdma", "auxTypes"];
/// Selector keys of `netDevice` devices (the default).
const NET_DEVICE: &[&str] = &[
    "vendors",
    "devices",
    "drivers",
    "pciAddresses",
    "pfNames",
    "rootDevices",
    "linkTypes",
    "ddpProfiles",
    "isRdma",
    "needVhostNet",
    "vdpaType",
];
/// Selector keys whose value is a boolean; `vdpaType` is a string; every other one a list.
const BOOLEAN_KEYS: &[&str] = &["isRdma", "needVhostNet"];

static RESOURCE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9][A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("valid pattern"));

/// Every problem of the config `text`, the value of the policy field `field` (empty when it is
/// usable).
pub fn validate(field: &str, text: &str) -> Vec<FieldError> {
    let (entries, mut errors) = validate::config_entries(field, text, "resourceList");
    for (path, resource) in entries {
        check_resource(&path, &resource, &mut errors);
    }
    errors
}

fn check_resource(path: &str, resource: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let at = |key: &str| format!("{path}.{key}");
    let rule = "must consist of letters, digits, '_' or '.' (no '-') and start and end with a letter or digit";
    validate::check_resource_naming(path, resource, &RESOURCE_NAME, rule, errors);
    if resource.get("excludeTopology").is_some_and(|v| !v.is_boolean()) {
        errors.push(FieldError::new(at("excludeTopology"), "must be true or false"));
    }
    let keys = match resource.get("deviceType").map(|t| t.as_str()) {
        None | Some(Some("netDevice")) => NET_DEVICE,
        Some(Some("accelerator")) => ACCELERATOR,
        Some(Some("auxNetDevice")) => AUX_NET_DEVICE,
        Some(_) => {
            errors.push(FieldError::new(at("deviceType"), "must be one of accelerator, netDevice, auxNetDevice"));
            return;
        }
    };
    match resource.get("selectors") {
        None => {}
        Some(Value::Object(selectors)) => check_selectors(&at("selectors"), selectors, keys, errors),
        Some(Value::Array(list)) => {
            for (i, selectors) in list.iter().enumerate() {
                let path = format!("{path}.selectors[{i}]");
                match selectors.as_object() {
                    Some(selectors) => check_selectors(&path, selectors, keys, errors),
                    None => errors.push(FieldError::new(path, "must be an object")),
                }
            }
        }
        Some(_) => errors.push(FieldError::new(at("selectors"), "must be an object or a list of objects")),
    }
}

fn check_selectors(path: &str, selectors: &Map<String, Value>, keys: &[&str], errors: &mut Vec<FieldError>) {
    if selectors.is_empty() {
        errors.push(FieldError::new(path, format!("needs at least one of {}", keys.join(", "))));
    }
    for (key, value) in selectors {
        let key_path = format!("{path}.{key}");
        if !keys.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key_path,
                format!("not a selector of this device type; expected one of {}", keys.join(", ")),
            ));
        } else if BOOLEAN_KEYS.contains(&key.as_str()) {
            if !value.is_boolean() {
                errors.push(FieldError::new(key_path, "must be true or false"));
            }
        } else if key == "vdpaType" {
            if !value.is_string() {
                errors.push(FieldError::new(key_path, "must be a string"));
            }
        } else {
            validate::check_string_list(&key_path, value, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELD: &str = "spec.sriovDevicePlugin.config";

    fn problems(text: &str) -> Vec<String> {
        validate(FIELD, text).into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn the_originals_example_config_is_valid() {
        let config = r#"{"resourceList": [{"resourcePrefix": "nvidia.com", "resourceName": "hostdev",
            "selectors": {"vendors": ["15b3"], "devices": ["101b"], "drivers": [], "pfNames": [], "pciAddresses": [],
                          "rootDevices": [], "linkTypes": [], "isRdma": true}}]}"#;
        assert_eq!(problems(config), Vec::<String>::new());
        assert_eq!(problems(r#"{"resourceList": []}"#), Vec::<String>::new());
    }

    #[test]
    fn configs_of_the_wrong_shape_are_refused() {
        assert_eq!(problems("[]"), [format!("{FIELD}: must be a JSON object with resourceList")]);
        assert_eq!(problems("{}"), [format!("{FIELD}.resourceList: required")]);
        assert_eq!(problems(r#"{"resourceList": [7]}"#), [format!("{FIELD}.resourceList[0]: must be an object")]);
    }

    #[test]
    fn every_problem_is_named_with_its_path_and_a_missing_name_does_not_panic() {
        let config = r#"{"resourceList": [
            {"selectors": {"vendors": ["15b3"]}},
            {"resourceName": "host-dev", "resourcePrefix": "nvidia", "deviceType": "accelerator",
             "selectors": [{"vendors": ["15b3"], "pfNames": ["ens1"]}]},
            {"resourceName": "aux", "deviceType": "auxNetDevice", "selectors": {"isRdma": "yes", "auxTypes": [""]}},
            {"resourceName": "x", "deviceType": "gpu"}]}"#;
        assert_eq!(
            problems(config),
            [
                format!("{FIELD}.resourceList[0].resourceName: required"),
                format!(
                    "{FIELD}.resourceList[1].resourceName: \"host-dev\" must consist of letters, digits, '_' or '.' (no '-') and start and end with a letter or digit"
                ),
                format!("{FIELD}.resourceList[1].resourcePrefix: \"nvidia\" must be a domain name, e.g. nvidia.com"),
                format!(
                    "{FIELD}.resourceList[1].selectors[0].pfNames: not a selector of this device type; expected one of vendors, devices, drivers, pciAddresses"
                ),
                format!("{FIELD}.resourceList[2].selectors.auxTypes[0]: must be a non-empty string"),
                format!("{FIELD}.resourceList[2].selectors.isRdma: must be true or false"),
                format!("{FIELD}.resourceList[3].deviceType: must be one of accelerator, netDevice, auxNetDevice"),
            ]
        );
    }
}
