//! Every rule of the original webhook (spec §4.1) that needs code, with its bad inputs
//! (including those that crashed the original), and the AdmissionReview answers.

use admission::review::answer;
use admission::rules::findings;
use api::NicClusterPolicy;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::{Value, json};

fn policy(spec: Value) -> NicClusterPolicy {
    serde_json::from_value(json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
                                  "metadata": {"name": "nic-cluster-policy"}, "spec": spec}))
    .expect("a NicClusterPolicy")
}

fn image(name: &str) -> Value {
    json!({"image": name, "repository": "ghcr.io/mellanox", "version": "v1.0.0"})
}

fn rdma(config: Option<&str>) -> Value {
    let mut section = image("k8s-rdma-shared-dev-plugin");
    if let Some(config) = config {
        section["config"] = json!(config);
    }
    json!({"rdmaSharedDevicePlugin": section})
}

fn paths(spec: Value) -> Vec<String> {
    findings(&policy(spec)).into_iter().map(|f| f.path).collect()
}

fn messages(spec: Value) -> Vec<String> {
    findings(&policy(spec)).into_iter().map(|f| f.to_string()).collect()
}

const RDMA_OK: &str =
    r#"{"configList": [{"resourceName": "rdma_a", "rdmaHcaMax": 63, "selectors": {"vendors": ["15b3"]}}]}"#;

#[test]
fn every_example_policy_of_the_original_passes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../example/crs");
    for entry in std::fs::read_dir(dir).expect("example/crs") {
        let path = entry.expect("an entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        for document in api::parse::parse_all(&text).unwrap_or_default() {
            if let api::parse::Document::Policy(policy) = document {
                assert_eq!(findings(&policy), [], "{}", path.display());
            }
        }
    }
}

#[test]
fn container_resources_name_a_rendered_container_and_only_cpu_and_memory_above_zero_limits_not_below_requests() {
    let mut section = image("k8s-rdma-shared-dev-plugin");
    section["config"] = json!(RDMA_OK);
    section["containerResources"] = json!([
        {"name": "rdma-shared-dp", "requests": {"cpu": "0", "hugepages-2Mi": "1Gi", "memory": "2Gi"}, "limits": {"memory": "1Gi"}},
    ]);
    let found = messages(json!({"rdmaSharedDevicePlugin": section.clone()}));
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found.iter().any(|f| f.contains("containerResources[0].requests.hugepages-2Mi")), "{found:?}");
    assert!(found.iter().any(|f| f.contains("containerResources[0].requests.cpu")), "{found:?}");
    assert!(found.iter().any(|f| f.contains("containerResources[0].requests.memory")), "{found:?}");

    section["containerResources"] = json!([{"name": "rdma-plugin", "limits": {"cpu": "1"}}]);
    let found = messages(json!({"rdmaSharedDevicePlugin": section}));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("spec.rdmaSharedDevicePlugin.containerResources[0].name: no container \"rdma-plugin\""),
        "{found:?}"
    );
}

#[test]
fn guids_must_be_guids_and_the_range_must_grow() {
    let mut ib = image("ib-kubernetes");
    ib["ufmSecret"] = json!("ufm-secret");
    ib["pKeyGUIDPoolRangeStart"] = json!("02:00:00:00:00:00:00:zz");
    ib["pKeyGUIDPoolRangeEnd"] = json!("");
    assert_eq!(
        paths(json!({"ibKubernetes": ib.clone()})),
        ["spec.ibKubernetes.pKeyGUIDPoolRangeStart", "spec.ibKubernetes.pKeyGUIDPoolRangeEnd"]
    );
    ib["pKeyGUIDPoolRangeStart"] = json!("02:00:00:00:00:00:00:10");
    ib["pKeyGUIDPoolRangeEnd"] = json!("02:00:00:00:00:00:00:01");
    assert_eq!(paths(json!({"ibKubernetes": ib})), ["spec.ibKubernetes.pKeyGUIDPoolRangeEnd"]);
}

#[test]
fn a_section_without_its_own_or_a_global_repository_and_version_is_refused_naming_both() {
    let bare = json!({"image": "k8s-rdma-shared-dev-plugin", "config": RDMA_OK});
    assert_eq!(
        messages(json!({"rdmaSharedDevicePlugin": bare.clone()})),
        ["spec.rdmaSharedDevicePlugin.repository: required: set it here or spec.global.repository for every section; \
             spec.rdmaSharedDevicePlugin.version: required: set it here or spec.global.version for every section"]
    );
    let global = json!({"repository": "ghcr.io/mellanox", "version": "v1.0.0"});
    assert_eq!(paths(json!({"global": global, "rdmaSharedDevicePlugin": bare})), Vec::<String>::new());
}

#[test]
fn safe_load_needs_auto_upgrade() {
    let mut ofed = image("mofed");
    ofed["version"] = json!("23.04-0.5.3.3.1");
    ofed["upgradePolicy"] = json!({"safeLoad": true});
    assert_eq!(paths(json!({"ofedDriver": ofed})), ["spec.ofedDriver.upgradePolicy.safeLoad"]);
}

#[test]
fn the_rdma_config_must_be_there_be_json_and_have_the_plugins_shape() {
    // A missing config made the original panic.
    assert_eq!(paths(rdma(None)), ["spec.rdmaSharedDevicePlugin.config"]);
    assert_eq!(paths(rdma(Some("{not json"))), ["spec.rdmaSharedDevicePlugin.config"]);
    let found = messages(rdma(Some(
        r#"{"configList": [{"rdmaHcaMax": 1, "selectors": {"vendors": ["15b3"]}}, {"resourceName": "-bad-", "rdmaHcaMax": 1, "devices": ["ib0"], "resourcePrefix": "not a prefix"}]}"#,
    )));
    assert_eq!(found.len(), 1, "one finding for the section: {found:?}");
    for part in ["configList[0].resourceName", "configList[1].resourceName", "configList[1].resourcePrefix"] {
        assert!(found[0].contains(part), "{part} in {found:?}");
    }
}

#[test]
fn the_sriov_config_must_be_json_with_resource_names_and_known_selectors() {
    let sriov = |config: &str| {
        let mut section = image("sriov-network-device-plugin");
        section["config"] = json!(config);
        json!({"sriovDevicePlugin": section})
    };
    // A resource without resourceName made the original panic.
    let found =
        messages(sriov(r#"{"resourceList": [{"resourcePrefix": "nvidia.com", "selectors": {"vendors": ["15b3"]}}]}"#));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("resourceList[0].resourceName"), "{found:?}");
    // A known selector of the wrong type is refused; an unknown one is the plugin's to judge.
    let found = messages(sriov(
        r#"{"resourceList": [{"resourceName": "hostdev", "deviceType": "accelerator", "selectors": {"vendors": "15b3"}}]}"#,
    ));
    assert!(found[0].contains("resourceList[0].selectors.vendors"), "{found:?}");
    let passed = messages(sriov(
        r#"{"resourceList": [{"resourceName": "ib", "selectors": {"pKeys": ["0x7fff"], "acpiIndexes": ["1"], "newOne": ["x"]}}]}"#,
    ));
    assert_eq!(passed, Vec::<String>::new());
    assert_eq!(paths(sriov("[]")).len(), 1);
}

#[test]
fn findings_of_every_section_come_together() {
    let mut ofed = image("mofed");
    ofed["version"] = json!("23.04-0.5.3.3.1");
    ofed["upgradePolicy"] = json!({"safeLoad": true});
    let mut ib = image("ib-kubernetes");
    ib["ufmSecret"] = json!("ufm-secret");
    ib["pKeyGUIDPoolRangeStart"] = json!("nope");
    let mut spec = rdma(None);
    spec["ofedDriver"] = ofed;
    spec["ibKubernetes"] = ib;
    assert_eq!(
        paths(spec),
        [
            "spec.ofedDriver.upgradePolicy.safeLoad",
            "spec.ibKubernetes.pKeyGUIDPoolRangeStart",
            "spec.rdmaSharedDevicePlugin.config"
        ]
    );
}

fn review(operation: &str, object: Value) -> AdmissionReview<DynamicObject> {
    serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "mellanox.com", "version": "v1alpha1", "kind": "NicClusterPolicy"},
            "resource": {"group": "mellanox.com", "version": "v1alpha1", "resource": "nicclusterpolicies"},
            "name": "nic-cluster-policy", "operation": operation, "userInfo": {"username": "admin"},
            "object": object, "oldObject": null, "dryRun": false
        }
    }))
    .expect("an AdmissionReview")
}

fn response(review: AdmissionReview<DynamicObject>) -> Value {
    serde_json::to_value(answer(review)).expect("serialisable")["response"].clone()
}

#[test]
fn a_bad_policy_is_denied_with_every_finding_as_a_422_with_causes() {
    let object = serde_json::to_value(policy(rdma(Some("{not json")))).unwrap();
    let answer = response(review("CREATE", object));
    assert_eq!(answer["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(answer["allowed"], false);
    assert_eq!(answer["status"]["code"], 422);
    assert_eq!(answer["status"]["reason"], "Invalid");
    let message = answer["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "NicClusterPolicy.mellanox.com \"nic-cluster-policy\" is invalid: [spec.rdmaSharedDevicePlugin.config: "
        ),
        "{message}"
    );
    assert_eq!(answer["status"]["details"]["causes"][0]["field"], "spec.rdmaSharedDevicePlugin.config");
}

#[test]
fn a_good_policy_is_allowed_and_a_delete_always_passes() {
    let good = serde_json::to_value(policy(rdma(Some(RDMA_OK)))).unwrap();
    assert_eq!(response(review("UPDATE", good))["allowed"], true);
    let bad = serde_json::to_value(policy(rdma(None))).unwrap();
    assert_eq!(response(review("DELETE", bad))["allowed"], true);
}

#[test]
fn a_review_without_a_request_or_with_an_unreadable_object_is_refused_not_a_crash() {
    let empty: AdmissionReview<DynamicObject> =
        serde_json::from_value(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).unwrap();
    assert_eq!(response(empty)["allowed"], false);
    let odd = json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
                     "metadata": {"name": "nic-cluster-policy"}, "spec": {"ofedDriver": "not an object"}});
    let answer = response(review("CREATE", odd));
    assert_eq!(answer["allowed"], false);
    assert!(answer["status"]["message"].as_str().unwrap().starts_with("not a readable NicClusterPolicy"), "{answer}");
}

#[test]
fn another_review_version_is_refused_and_another_kind_allowed_with_a_warning() {
    let mut old_version = serde_json::to_value(review("CREATE", json!({}))).unwrap();
    old_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let old_version: AdmissionReview<DynamicObject> = serde_json::from_value(old_version).unwrap();
    let answer = response(old_version);
    assert_eq!(answer["allowed"], false);
    assert!(answer["status"]["message"].as_str().unwrap().contains("admission.k8s.io/v1beta1"), "{answer}");

    let mut config_map = serde_json::to_value(review(
        "CREATE",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x"}, "data": {"ofedDriver": "not a policy"}}),
    ))
    .unwrap();
    config_map["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    let answer = response(serde_json::from_value(config_map).unwrap());
    assert_eq!(answer["allowed"], true, "{answer}");
    assert!(answer["warnings"][0].as_str().unwrap().contains("does not judge /ConfigMap"), "{answer}");
}

#[test]
fn a_broken_drain_pod_selector_is_refused_before_any_node_is_cordoned() {
    let mut ofed = image("mofed");
    ofed["version"] = json!("23.04-0.5.3.3.1");
    ofed["upgradePolicy"] = json!({"autoUpgrade": true, "drain": {"enable": true, "podSelector": "a in (b"}});
    assert_eq!(paths(json!({"ofedDriver": ofed})), ["spec.ofedDriver.upgradePolicy.drain.podSelector"]);
}
