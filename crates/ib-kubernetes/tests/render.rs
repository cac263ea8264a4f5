//! Golden renders of ib-kubernetes, and the input it must refuse.

use api::NicClusterPolicy;
use ib_kubernetes::IbKubernetes;
use serde_json::json;
use state_core::testing::{self, assert_round_trips, policy_from_file, to_yaml};
use state_core::{RenderContext, render_state};

fn full() -> NicClusterPolicy {
    policy_from_file("example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full.yaml")
}

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool) -> Vec<kube::core::DynamicObject> {
    let objects = testing::render::<IbKubernetes>(policy, openshift);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn env(objects: &[kube::core::DynamicObject]) -> serde_json::Value {
    objects.last().unwrap().data["spec"]["template"]["spec"]["containers"][0]["env"].clone()
}

#[test]
fn the_full_example_renders_quoted_guids_and_the_ufm_secret() {
    let objects = golden("full_example", &full(), false);
    let env = env(&objects);
    let value = |name: &str| env.as_array().unwrap().iter().find(|e| e["name"] == name).unwrap().clone();
    assert_eq!(value("GUID_POOL_RANGE_START")["value"], "02:00:00:00:00:00:00:00");
    assert_eq!(value("DAEMON_PERIODIC_UPDATE")["value"], "5");
    assert_eq!(value("UFM_ADDRESS")["valueFrom"]["secretKeyRef"]["name"], "ufm-secret");
    assert_eq!(value("UFM_PORT")["valueFrom"]["secretKeyRef"]["optional"], true);
}

#[test]
fn the_deployment_placement_fields_place_the_deployment_instead_of_the_daemonset_ones() {
    let mut policy = full();
    policy.spec.tolerations =
        Some(vec![serde_json::from_value(json!({"key": "nic-only", "operator": "Exists"})).unwrap()]);
    policy.spec.deployment_tolerations = Some(vec![
        serde_json::from_value(json!({"key": "infra", "operator": "Exists", "effect": "NoSchedule"})).unwrap(),
    ]);
    policy.spec.deployment_node_affinity = Some(
        serde_json::from_value(json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node-role.kubernetes.io/infra", "operator": "Exists"}]}]}}))
        .unwrap(),
    );
    let objects = golden("deployment_placement", &policy, false);
    let pod = &objects.last().unwrap().data["spec"]["template"]["spec"];
    let tolerations = pod["tolerations"].to_string();
    assert!(tolerations.contains("infra") && !tolerations.contains("nic-only"), "{tolerations}");
    let required = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    assert!(required.to_string().contains("node-role.kubernetes.io/infra"), "{required}");
    assert!(pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].is_array(), "kept");
}

#[test]
fn openshift_adds_the_privileged_scc_role() {
    let objects = golden("openshift", &full(), true);
    assert!(objects.iter().any(|o| o.types.as_ref().unwrap().kind == "Role"));
}

#[test]
fn pull_secrets_tolerations_and_node_affinity_apply_to_the_deployment() {
    let mut policy = full();
    policy.spec.tolerations =
        Some(vec![serde_json::from_value(json!({"key": "dedicated", "operator": "Exists"})).unwrap()]);
    policy.spec.node_affinity = Some(
        serde_json::from_value(json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node-role.kubernetes.io/worker", "operator": "Exists"}]}]}}))
        .unwrap(),
    );
    policy.spec.ib_kubernetes.as_mut().unwrap().image.image_pull_secrets = Some(vec!["registry-secret".into()]);
    let objects = golden("cross_cutting", &policy, false);
    let pod = &objects.last().unwrap().data["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry-secret");
    assert!(pod["tolerations"].to_string().contains("dedicated"));
    assert!(pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].is_object());
    assert!(pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].is_array(), "kept");
}

#[test]
fn a_missing_ufm_secret_is_an_error_naming_the_field() {
    let mut policy = full();
    policy.spec.ib_kubernetes.as_mut().unwrap().ufm_secret = None;
    let ctx = RenderContext::new(testing::NAMESPACE, false, &policy);
    let err = render_state::<IbKubernetes>(&ctx).unwrap_err().to_string();
    assert!(err.starts_with("spec.ibKubernetes.ufmSecret: required"), "{err}");
}
