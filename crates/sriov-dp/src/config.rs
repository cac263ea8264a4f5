//! The plugin's configuration, checked at render as the original's admission webhook checks it
//! (`sriov_network_device_plugin` schema, name patterns, selectors by device type), so a config
//! the plugin cannot use is an error naming the exact field. A resource without `resourceName`
//! is an error (the original's webhook panicked on it).
//!
//! Selectors are those the plugin (v3.7) documents for each device type; a known selector of the
//! wrong type is an error, an unknown one only a [warning](warnings): the plugin is the judge,
//! and newer plugins know more selectors.

use api::{FieldError, validate};
use serde_json::{Map, Value};

/// Selector keys every device type has (all an `accelerator` has).
const COMMON: &[&str] = &["vendors", "devices", "drivers", "pciAddresses", "acpiIndexes"];
/// Selector keys `auxNetDevice` devices have besides [`COMMON`].
const AUX_NET_DEVICE: &[&str] = &["pfNames", "rootDevices", "linkTypes", "isRdma", "auxTypes"];
/// Selector keys `netDevice` devices (the default) have besides [`COMMON`].
const NET_DEVICE: &[&str] =
    &["pfNames", "rootDevices", "linkTypes", "ddpProfiles", "isRdma", "needVhostNet", "vdpaType", "pKeys"];
/// Selector keys whose value is a boolean; `vdpaType` is a string; every other one a list.
const BOOLEAN_KEYS: &[&str] = &["isRdma", "needVhostNet"];

/// Every problem of the config `text`, the value of the policy field `field` (empty when it is
/// usable).
pub fn validate(field: &str, text: &str) -> Vec<FieldError> {
    check(field, text).errors
}

/// What the plugin may not understand in the config `text` but decides itself (selectors it
/// does not document), each naming its path; said in the state's message.
pub fn warnings(field: &str, text: &str) -> Vec<String> {
    check(field, text).warnings
}

/// Errors and warnings of one config.
#[derive(Default)]
struct Findings {
    errors: Vec<FieldError>,
    warnings: Vec<String>,
}

fn check(field: &str, text: &str) -> Findings {
    let (entries, errors) = validate::config_entries(field, text, "resourceList");
    let mut findings = Findings { errors, warnings: Vec::new() };
    for (path, resource) in entries {
        check_resource(&path, &resource, &mut findings);
    }
    findings
}

fn check_resource(path: &str, resource: &Map<String, Value>, findings: &mut Findings) {
    let errors = &mut findings.errors;
    let at = |key: &str| format!("{path}.{key}");
    validate::check_resource_naming(path, resource, errors);
    if resource.get("excludeTopology").is_some_and(|v| !v.is_boolean()) {
        errors.push(FieldError::new(at("excludeTopology"), "must be true or false"));
    }
    let (device_type, extra) = match resource.get("deviceType").map(|t| t.as_str()) {
        None | Some(Some("netDevice")) => ("netDevice", NET_DEVICE),
        Some(Some("accelerator")) => ("accelerator", &[][..]),
        Some(Some("auxNetDevice")) => ("auxNetDevice", AUX_NET_DEVICE),
        Some(_) => {
            errors.push(FieldError::new(at("deviceType"), "must be one of accelerator, netDevice, auxNetDevice"));
            return;
        }
    };
    let keys: &[&str] = &COMMON.iter().chain(extra).copied().collect::<Vec<_>>();
    match resource.get("selectors") {
        None => {}
        Some(Value::Object(selectors)) => check_selectors(&at("selectors"), selectors, (device_type, keys), findings),
        Some(Value::Array(list)) => {
            for (i, selectors) in list.iter().enumerate() {
                let path = format!("{path}.selectors[{i}]");
                match selectors.as_object() {
                    Some(selectors) => check_selectors(&path, selectors, (device_type, keys), findings),
                    None => findings.errors.push(FieldError::new(path, "must be an object")),
                }
            }
        }
        Some(_) => errors.push(FieldError::new(at("selectors"), "must be an object or a list of objects")),
    }
}

fn check_selectors(
    path: &str,
    selectors: &Map<String, Value>,
    (device_type, keys): (&str, &[&str]),
    findings: &mut Findings,
) {
    let errors = &mut findings.errors;
    if selectors.is_empty() {
        errors.push(FieldError::new(path, format!("needs at least one of {}", keys.join(", "))));
    }
    for (key, value) in selectors {
        let key_path = format!("{path}.{key}");
        if !keys.contains(&key.as_str()) {
            findings.warnings.push(format!(
                "{key_path}: not a selector the plugin documents for {device_type} devices ({}); passed on as written",
                keys.join(", ")
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
        assert_eq!(
            problems(r#"{"resourceList": []}"#),
            [format!("{FIELD}.resourceList: needs at least one resource (the plugin exits without one)")]
        );
        let twice = r#"{"resourceList": [{"resourceName": "a", "selectors": {"vendors": ["15b3"]}},
                                          {"resourceName": "a", "selectors": {"vendors": ["15b3"]}},
                                          {"resourceName": "a", "resourcePrefix": "other.com", "selectors": {"vendors": ["15b3"]}}]}"#;
        assert_eq!(
            problems(twice),
            [format!(
                "{FIELD}.resourceList[1].resourceName: \"a\" is already the name of {FIELD}.resourceList[0] (the plugin exits on a duplicate)"
            )]
        );
    }

    #[test]
    fn every_selector_of_the_plugin_is_accepted_and_an_unknown_one_is_a_warning() {
        let config = r#"{"resourceList": [
            {"resourceName": "ib", "selectors": {"vendors": ["15b3"], "pKeys": ["0x7fff"], "acpiIndexes": ["101"],
             "needVhostNet": false, "vdpaType": "vhost", "ddpProfiles": ["GTP"]}},
            {"resourceName": "aux", "deviceType": "auxNetDevice", "selectors": {"auxTypes": ["sf"], "pciAddresses": ["0000:03:00.0"]}},
            {"resourceName": "gpu", "deviceType": "accelerator", "selectors": [{"devices": ["1017"], "pfNames": ["ens1"]}]},
            {"resourceName": "new", "selectors": {"vendors": ["15b3"], "futureSelector": ["x"]}}]}"#;
        assert_eq!(problems(config), Vec::<String>::new());
        assert_eq!(
            warnings(FIELD, config),
            [
                format!(
                    "{FIELD}.resourceList[2].selectors[0].pfNames: not a selector the plugin documents for accelerator devices (vendors, devices, drivers, pciAddresses, acpiIndexes); passed on as written"
                ),
                format!(
                    "{FIELD}.resourceList[3].selectors.futureSelector: not a selector the plugin documents for netDevice devices (vendors, devices, drivers, pciAddresses, acpiIndexes, pfNames, rootDevices, linkTypes, ddpProfiles, isRdma, needVhostNet, vdpaType, pKeys); passed on as written"
                ),
            ]
        );
        let wrong_type =
            r#"{"resourceList": [{"resourceName": "ib", "selectors": {"pKeys": "0x7fff", "acpiIndexes": [1]}}]}"#;
        assert_eq!(
            problems(wrong_type),
            [
                format!("{FIELD}.resourceList[0].selectors.acpiIndexes[0]: must be a non-empty string"),
                format!("{FIELD}.resourceList[0].selectors.pKeys: must be a list of strings"),
            ]
        );
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
                    "{FIELD}.resourceList[1].resourceName: \"host-dev\" must consist of letters, digits and '_' only (the plugin exits on any other name)"
                ),
                format!("{FIELD}.resourceList[1].resourcePrefix: \"nvidia\" must be a domain name, e.g. nvidia.com"),
                format!("{FIELD}.resourceList[2].selectors.auxTypes[0]: must be a non-empty string"),
                format!("{FIELD}.resourceList[2].selectors.isRdma: must be true or false"),
                format!("{FIELD}.resourceList[3].deviceType: must be one of accelerator, netDevice, auxNetDevice"),
            ]
        );
    }
}
