//! The generated CRDs: up to date in `crds/`, structural, and with CEL rules that compile and hold.

use api::crd;
use serde_json::{Value, json};
use std::path::PathBuf;

const REGENERATE: &str = "cargo run -p nicctl -- crds --dir crds";

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn crds_in_the_repository_match_the_types() {
    let mut stale = Vec::new();
    for definition in crd::all() {
        let name = crd::file_name(&definition);
        let expected = crd::to_yaml(&definition).expect("CRD serialises");
        match std::fs::read_to_string(crds_dir().join(&name)) {
            Ok(actual) if actual == expected => {}
            Ok(_) => stale.push(format!("crds/{name} is stale")),
            Err(e) => stale.push(format!("crds/{name} cannot be read: {e}")),
        }
    }
    assert!(stale.is_empty(), "{}\nregenerate with: {REGENERATE}", stale.join("\n"));
}

#[test]
fn crds_directory_holds_no_file_the_types_do_not_generate() {
    let expected: Vec<String> = crd::all().iter().map(crd::file_name).collect();
    for entry in std::fs::read_dir(crds_dir()).expect("crds/ exists") {
        let name = entry.expect("readable entry").file_name().to_string_lossy().into_owned();
        assert!(expected.contains(&name), "crds/{name} is not generated; remove it or regenerate with: {REGENERATE}");
    }
}

#[test]
fn every_crd_schema_is_structural() {
    for definition in crd::all() {
        let problems = api::schema::structural_problems(&crd::schema_json(&definition));
        assert!(problems.is_empty(), "{}: {problems:#?}", definition.metadata.name.unwrap_or_default());
    }
}

#[test]
fn every_crd_has_a_status_subresource_and_the_original_printer_columns() {
    for definition in crd::all().into_iter().filter(|c| c.spec.group == api::GROUP) {
        let version = &definition.spec.versions[0];
        assert_eq!(definition.spec.scope, "Cluster");
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(columns, [("Status", ".status.state"), ("Age", ".metadata.creationTimestamp")]);
    }
}

#[test]
fn applied_states_is_a_map_list_keyed_by_name() {
    let schema = crd::schema_json(&crd::nic_cluster_policy());
    let applied = &schema["properties"]["status"]["properties"]["appliedStates"];
    assert_eq!(applied["x-kubernetes-list-type"], "map");
    assert_eq!(applied["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(applied["items"]["required"], json!(["name", "state"]));
}

fn policy(spec: Value) -> Value {
    json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
           "metadata": {"name": "nic-cluster-policy"}, "spec": spec})
}

fn cel_failures(object: &Value) -> Vec<String> {
    let schema = crd::schema_json(&crd::nic_cluster_policy());
    match kube::core::cel::Validator::new().validate(&schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| format!("{}: {}", e.field_path, e.message)).collect(),
    }
}

fn image() -> Value {
    json!({"image": "x", "repository": "r", "version": "1"})
}

#[test]
fn cel_rules_accept_a_valid_policy() {
    let mut ofed = image();
    ofed["upgradePolicy"] = json!({"autoUpgrade": true, "safeLoad": true});
    let mut ib = image();
    ib["pKeyGUIDPoolRangeStart"] = json!("02:00:00:00:00:00:00:00");
    ib["pKeyGUIDPoolRangeEnd"] = json!("02:FF:FF:FF:FF:FF:FF:FF");
    assert_eq!(cel_failures(&policy(json!({"ofedDriver": ofed, "ibKubernetes": ib}))), Vec::<String>::new());
}

#[test]
fn cel_rule_refuses_another_policy_name() {
    let mut object = policy(json!({}));
    object["metadata"]["name"] = json!("my-policy");
    let failures = cel_failures(&object);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("only the NicClusterPolicy named nic-cluster-policy"), "{failures:?}");
}

#[test]
fn cel_rule_refuses_safe_load_without_auto_upgrade() {
    let mut ofed = image();
    ofed["upgradePolicy"] = json!({"safeLoad": true});
    let failures = cel_failures(&policy(json!({"ofedDriver": ofed})));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("safeLoad requires autoUpgrade"), "{failures:?}");
}

#[test]
fn cel_rule_refuses_a_guid_range_that_ends_before_it_starts() {
    let mut ib = image();
    ib["pKeyGUIDPoolRangeStart"] = json!("02:FF:00:00:00:00:00:00");
    ib["pKeyGUIDPoolRangeEnd"] = json!("02:00:00:00:00:00:00:00");
    let failures = cel_failures(&policy(json!({"ibKubernetes": ib})));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("pKeyGUIDPoolRangeEnd must be greater"), "{failures:?}");
}

#[test]
fn guid_format_is_enforced_by_the_schema_pattern() {
    let mut ib = image();
    ib["pKeyGUIDPoolRangeStart"] = json!("02:00:00");
    let violations =
        api::schema::validate(&crd::schema_json(&crd::nic_cluster_policy()), &policy(json!({"ibKubernetes": ib})));
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].path, "spec.ibKubernetes.pKeyGUIDPoolRangeStart");
}
