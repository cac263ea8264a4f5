//! Golden renders of NIC feature discovery: the original's example, OpenShift, the policy's
//! cross-cutting fields, and a containerResources entry naming no container.

use api::NicClusterPolicy;
use nic_feature_discovery::NicFeatureDiscovery;
use serde_json::json;
use state_core::testing::{self, assert_round_trips, policy_from_file, to_yaml};
use state_core::{RenderContext, render_state};

fn full() -> NicClusterPolicy {
    policy_from_file("example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full.yaml")
}

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool) -> Vec<kube::core::DynamicObject> {
    let objects = testing::render::<NicFeatureDiscovery>(policy, openshift);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

#[test]
fn the_full_example_runs_discovery_on_every_node() {
    let objects = golden("full_example", &full(), false);
    assert_eq!(objects.len(), 1);
    let pod = &objects[0].data["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "ghcr.io/mellanox/nic-feature-discovery:v0.0.1");
    assert!(pod.get("nodeSelector").is_none(), "every node, NIC or not");
    assert_eq!(pod["containers"][0]["resources"]["limits"]["memory"], "150Mi");
}

#[test]
fn openshift_adds_the_privileged_scc_service_account() {
    let objects = golden("openshift", &full(), true);
    let kinds: Vec<&str> = objects.iter().map(|o| o.types.as_ref().unwrap().kind.as_str()).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding", "DaemonSet"]);
}

#[test]
fn tolerations_affinity_pull_secrets_and_resources_are_applied() {
    let mut policy = full();
    policy.spec.tolerations =
        Some(vec![serde_json::from_value(json!({"key": "dedicated", "operator": "Exists"})).unwrap()]);
    policy.spec.node_affinity = Some(
        serde_json::from_value(json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node-role.kubernetes.io/worker", "operator": "Exists"}]}]}}))
        .unwrap(),
    );
    let section = policy.spec.nic_feature_discovery.as_mut().unwrap();
    section.image.image_pull_secrets = Some(vec!["registry-secret".into()]);
    section.image.container_resources = Some(vec![
        serde_json::from_value(json!({"name": "nic-feature-discovery", "limits": {"memory": "200Mi"}})).unwrap(),
    ]);
    let objects = golden("cross_cutting", &policy, false);
    let pod = &objects[0].data["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["resources"], json!({"limits": {"memory": "200Mi"}}));
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry-secret");
    assert!(pod["affinity"]["nodeAffinity"].is_object());
}

#[test]
fn resources_for_an_unknown_container_are_an_error_naming_the_entry() {
    let mut policy = full();
    policy.spec.nic_feature_discovery.as_mut().unwrap().image.container_resources =
        Some(vec![serde_json::from_value(json!({"name": "nfd", "limits": {"cpu": "1"}})).unwrap()]);
    let ctx = RenderContext::new(testing::NAMESPACE, false, &policy);
    let err = render_state::<NicFeatureDiscovery>(&ctx).unwrap_err().to_string();
    assert!(err.starts_with("spec.nicFeatureDiscovery.containerResources[0].name: no container \"nfd\""), "{err}");
}

#[test]
fn zero_or_inverted_quantities_are_an_error_naming_the_entry() {
    let mut policy = full();
    policy.spec.nic_feature_discovery.as_mut().unwrap().image.container_resources = Some(vec![
        serde_json::from_value(
            json!({"name": "nic-feature-discovery", "requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}),
        )
        .unwrap(),
    ]);
    let ctx = RenderContext::new(testing::NAMESPACE, false, &policy);
    let err = render_state::<NicFeatureDiscovery>(&ctx).unwrap_err().to_string();
    assert_eq!(
        err,
        "spec.nicFeatureDiscovery.containerResources[0].requests.memory: the request (1Gi) is greater than the limit (512Mi)"
    );
}
