//! The plugin's configuration, checked at render as the original's admission webhook checks it
//! (`rdma_shared_device_plugin` schema and name patterns), so a config the plugin cannot use is
//! an error naming the exact field, never rolled out to every node.

use api::{FieldError, validate};
use serde_json::{Map, Value};

/// Keys a `selectors` object may have.
pub const SELECTOR_KEYS: [&str; 5] = ["vendors", "deviceIDs", "drivers", "ifNames", "linkTypes"];

/// Every problem of the config `text`, the value of the policy field `field` (empty when it is
/// usable): JSON; an object with a `configList` array; each entry with a `resourceName` (letters,
/// digits, `-`, `_`, `.`, starting and ending with a letter or digit), an integer `rdmaHcaMax`,
/// an optional FQDN `resourcePrefix`, and `selectors` (only the known keys, at least one) or
/// `devices`, each a list of non-empty strings.
pub fn validate(field: &str, text: &str) -> Vec<FieldError> {
    let (entries, mut errors) = validate::config_entries(field, text, "configList");
    for (path, entry) in entries {
        check_entry(&path, &entry, &mut errors);
    }
    errors
}

fn check_entry(path: &str, entry: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let at = |key: &str| format!("{path}.{key}");
    validate::check_resource_naming(path, entry, errors);
    match entry.get("rdmaHcaMax") {
        None => errors.push(FieldError::new(at("rdmaHcaMax"), "required")),
        Some(n) if n.is_i64() || n.is_u64() => {}
        Some(_) => errors.push(FieldError::new(at("rdmaHcaMax"), "must be an integer")),
    }
    let (selectors, devices) = (entry.get("selectors"), entry.get("devices"));
    if selectors.is_none() && devices.is_none() {
        errors.push(FieldError::new(path, "needs selectors or devices"));
    }
    if let Some(devices) = devices {
        validate::check_string_list(&at("devices"), devices, errors);
    }
    match selectors {
        None => {}
        Some(Value::Object(selectors)) => {
            if selectors.is_empty() {
                errors.push(FieldError::new(
                    at("selectors"),
                    format!("needs at least one of {}", SELECTOR_KEYS.join(", ")),
                ));
            }
            for (key, list) in selectors {
                let key_path = format!("{path}.selectors.{key}");
                if SELECTOR_KEYS.contains(&key.as_str()) {
                    validate::check_string_list(&key_path, list, errors);
                } else {
                    errors.push(FieldError::new(
                        key_path,
                        format!("unknown selector; expected one of {}", SELECTOR_KEYS.join(", ")),
                    ));
                }
            }
        }
        Some(_) => errors.push(FieldError::new(at("selectors"), "must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELD: &str = "spec.rdmaSharedDevicePlugin.config";

    fn problems(text: &str) -> Vec<String> {
        validate(FIELD, text).into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn the_seed_config_is_valid() {
        let seed = r#"{"configList": [{"resourceName": "rdma_shared_device_a", "rdmaHcaMax": 63,
                       "selectors": {"vendors": [], "deviceIDs": [], "drivers": [], "ifNames": ["ens1f0"], "linkTypes": []}}]}"#;
        assert_eq!(problems(seed), Vec::<String>::new());
        let with_devices = r#"{"configList": [{"resourceName": "rdma_B_9", "resourcePrefix": "example.com", "rdmaHcaMax": 1, "devices": ["mlx5_0"]}]}"#;
        assert_eq!(problems(with_devices), Vec::<String>::new());
    }

    #[test]
    fn configs_of_the_wrong_shape_are_refused() {
        assert_eq!(problems("42"), [format!("{FIELD}: must be a JSON object with configList")]);
        assert_eq!(problems("[]"), [format!("{FIELD}: must be a JSON object with configList")]);
        assert_eq!(problems("{}"), [format!("{FIELD}.configList: required")]);
        assert_eq!(problems(r#"{"configList": 5}"#), [format!("{FIELD}.configList: must be an array")]);
        assert_eq!(problems(r#"{"configList": [5]}"#), [format!("{FIELD}.configList[0]: must be an object")]);
    }

    #[test]
    fn every_problem_of_an_entry_is_named_with_its_path() {
        let config = r#"{"configList": [{"rdmaHcaMax": "63", "resourcePrefix": "-bad-", "selectors": {"vendor": ["15b3"], "ifNames": [""]}},
                                        {"resourceName": "has space", "rdmaHcaMax": 1}]}"#;
        assert_eq!(
            problems(config),
            [
                format!("{FIELD}.configList[0].resourceName: required"),
                format!("{FIELD}.configList[0].resourcePrefix: \"-bad-\" must be a domain name, e.g. nvidia.com"),
                format!("{FIELD}.configList[0].rdmaHcaMax: must be an integer"),
                format!("{FIELD}.configList[0].selectors.ifNames[0]: must be a non-empty string"),
                format!(
                    "{FIELD}.configList[0].selectors.vendor: unknown selector; expected one of vendors, deviceIDs, drivers, ifNames, linkTypes"
                ),
                format!(
                    "{FIELD}.configList[1].resourceName: \"has space\" must consist of letters, digits and '_' only (the plugin exits on any other name)"
                ),
                format!("{FIELD}.configList[1]: needs selectors or devices"),
            ]
        );
    }

    #[test]
    fn resource_names_the_plugin_refuses_are_errors() {
        for name in ["rdma-a", "rdma.a", "", "a/b", "ä"] {
            let config =
                format!(r#"{{"configList": [{{"resourceName": "{name}", "rdmaHcaMax": 1, "devices": ["mlx5_0"]}}]}}"#);
            let found = problems(&config);
            assert_eq!(found.len(), 1, "{name:?}: {found:?}");
            assert!(found[0].starts_with(&format!("{FIELD}.configList[0].resourceName: ")), "{found:?}");
        }
    }

    #[test]
    fn invalid_json_names_the_position() {
        assert_eq!(
            problems("{\"configList\": ["),
            [format!("{FIELD}: invalid JSON: EOF while parsing a list at line 1 column 16")]
        );
    }
}
