//! NicNodePolicy reviews: its own rules, and those that compare it with the cluster the webhook
//! watches (a section in both kinds, two NicNodePolicies selecting one node), both ways.

use admission::review::{Cluster, answer_in};
use api::{NicClusterPolicy, NicNodePolicy};
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

fn rdma_section() -> Value {
    json!({"image": "k8s-rdma-shared-dev-plugin", "repository": "ghcr.io/mellanox", "version": "v1.5.1",
           "config": "{\"configList\": [{\"resourceName\": \"rdma_a\", \"rdmaHcaMax\": 63, \"selectors\": {\"vendors\": [\"15b3\"]}}]}"})
}

fn node_policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicNodePolicy", "metadata": {"name": name}, "spec": spec})
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Arc<T> {
    Arc::new(serde_json::from_value(value).expect("typed"))
}

fn review(kind: &str, resource: &str, object: Value) -> AdmissionReview<DynamicObject> {
    serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "mellanox.com", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "mellanox.com", "version": "v1alpha1", "resource": resource},
            "name": object["metadata"]["name"], "operation": "CREATE", "userInfo": {"username": "admin"},
            "object": object, "oldObject": null, "dryRun": false
        }
    }))
    .expect("an AdmissionReview")
}

/// `(allowed, message)` of the answer to a NicNodePolicy review in `cluster`.
fn judge_node_policy(object: Value, cluster: &Cluster) -> (bool, String) {
    let answer = serde_json::to_value(answer_in(review("NicNodePolicy", "nicnodepolicies", object), cluster)).unwrap();
    let response = &answer["response"];
    (response["allowed"].as_bool().unwrap(), response["status"]["message"].as_str().unwrap_or("").to_string())
}

fn nodes(list: &[(&str, &str)]) -> Vec<(String, BTreeMap<String, String>)> {
    list.iter()
        .map(|(name, role)| (name.to_string(), BTreeMap::from([("role".to_string(), role.to_string())])))
        .collect()
}

#[test]
fn a_node_policy_is_refused_for_a_node_another_selects_and_allowed_on_its_own_nodes() {
    let existing =
        node_policy("gpu", json!({"nodeSelector": {"role": "gpu"}, "rdmaSharedDevicePlugin": rdma_section()}));
    let cluster = Cluster {
        node_policies: vec![typed(existing)],
        nodes: nodes(&[("n1", "gpu"), ("n2", "storage")]),
        ..Default::default()
    };
    let storage =
        node_policy("storage", json!({"nodeSelector": {"role": "storage"}, "rdmaSharedDevicePlugin": rdma_section()}));
    assert_eq!(judge_node_policy(storage, &cluster), (true, String::new()));
    let everything = node_policy("everything", json!({"rdmaSharedDevicePlugin": rdma_section()}));
    let (allowed, message) = judge_node_policy(everything, &cluster);
    assert!(!allowed);
    assert!(
        message.starts_with("NicNodePolicy.mellanox.com \"everything\" is invalid: [spec.nodeSelector: node(s) n1 also selected by NicNodePolicy gpu"),
        "{message}"
    );
    // Its own earlier version is not another policy.
    let again = node_policy("gpu", json!({"nodeSelector": {"role": "gpu"}, "rdmaSharedDevicePlugin": rdma_section()}));
    assert_eq!(judge_node_policy(again, &cluster), (true, String::new()));
}

#[test]
fn a_section_in_both_kinds_is_refused_whichever_is_written_second() {
    let mut cluster_policy: NicClusterPolicy = NicClusterPolicy::new(api::POLICY_NAME, Default::default());
    cluster_policy.spec.rdma_shared_device_plugin = Some(serde_json::from_value(rdma_section()).unwrap());
    let cluster = Cluster { cluster_policy: Some(Arc::new(cluster_policy.clone())), ..Default::default() };
    let gpu = node_policy("gpu", json!({"rdmaSharedDevicePlugin": rdma_section()}));
    let (allowed, message) = judge_node_policy(gpu.clone(), &cluster);
    assert!(!allowed);
    assert!(
        message.contains("spec.rdmaSharedDevicePlugin: also set in NicClusterPolicy nic-cluster-policy"),
        "{message}"
    );

    let cluster = Cluster { node_policies: vec![typed::<NicNodePolicy>(gpu)], ..Default::default() };
    let object = serde_json::to_value(&cluster_policy).unwrap();
    let answer =
        serde_json::to_value(answer_in(review("NicClusterPolicy", "nicclusterpolicies", object), &cluster)).unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("spec.rdmaSharedDevicePlugin: also set in NicNodePolicy gpu"), "{message}");
}

#[test]
fn a_node_policy_is_refused_for_its_own_bad_fields_each_named() {
    let bad = node_policy(
        "bad",
        json!({"nodeSelector": {"role": "not a value!"},
               "rdmaSharedDevicePlugin": {"image": "k8s-rdma-shared-dev-plugin", "repository": "ghcr.io/mellanox", "config": "{}"},
               "ofedDriver": {"image": "doca-driver", "repository": "nvcr.io/nvidia/mellanox", "version": "24.10-0.7.0.0-0",
                              "upgradePolicy": {"autoUpgrade": false, "safeLoad": true}}}),
    );
    let (allowed, message) = judge_node_policy(bad, &Cluster::default());
    assert!(!allowed);
    for field in [
        "spec.nodeSelector[role]",
        "spec.ofedDriver.upgradePolicy.safeLoad: safeLoad requires autoUpgrade",
        "spec.rdmaSharedDevicePlugin.version: required: a NicNodePolicy has no spec.global",
    ] {
        assert!(message.contains(field), "{field} in {message}");
    }
}
