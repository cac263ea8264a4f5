//! Golden renders of the DOCA telemetry service, the user's ConfigMap rule, and its reconcile
//! against a mock API server while that ConfigMap is missing.

use api::NicClusterPolicy;
use doca_telemetry::DocaTelemetry;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;
use state_core::metrics::Metrics;
use state_core::owned::OwnedObjects;
use state_core::reconcile::{Context, sync};
use state_core::testing::{self, NAMESPACE, assert_round_trips, mock_client, policy_from_file, to_yaml};
use state_core::{Observed, RenderContext, State, render_state};

fn full() -> NicClusterPolicy {
    policy_from_file("example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full.yaml")
}

fn every_section() -> NicClusterPolicy {
    policy_from_file("example/crs/nicclusterpolicy_every-section.yaml")
}

fn render(
    policy: &NicClusterPolicy,
    openshift: bool,
    observed: &Observed,
) -> Result<Vec<kube::core::DynamicObject>, String> {
    let ctx = RenderContext { namespace: NAMESPACE, openshift, policy, observed };
    render_state::<DocaTelemetry>(&ctx).map(|o| o.unwrap()).map_err(|e| e.to_string())
}

fn golden(
    name: &str,
    policy: &NicClusterPolicy,
    openshift: bool,
    observed: &Observed,
) -> Vec<kube::core::DynamicObject> {
    let objects = render(policy, openshift, observed).unwrap();
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn with_users_config_map() -> Observed {
    let mut observed = Observed::default();
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "doca-telemetry-custom-config"}, "data": {"dts_config_map.ini": "port=0"}}),
    )
    .unwrap();
    observed.config_maps.insert("doca-telemetry-custom-config".into(), cm);
    observed
}

#[test]
fn without_config_the_default_config_map_is_rendered_and_pods_wait_for_the_driver() {
    let objects = golden("full_example_default_config", &full(), false, &Observed::default());
    let config = objects.iter().find(|o| o.types.as_ref().unwrap().kind == "ConfigMap").unwrap();
    assert!(config.data["data"]["dts_config_map.ini"].as_str().unwrap().contains("prometheus=http://0.0.0.0:9189"));
    let pod = &objects.last().unwrap().data["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["network.nvidia.com/operator.mofed.wait"], "false", "the full example deploys OFED");
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "doca-telemetry-service");
}

#[test]
fn a_named_config_map_is_mounted_and_never_rendered() {
    let objects = golden("users_config_map", &every_section(), false, &with_users_config_map());
    assert!(!objects.iter().any(|o| o.types.as_ref().unwrap().kind == "ConfigMap"), "the user's ConfigMap is not ours");
    let pod = &objects.last().unwrap().data["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "doca-telemetry-custom-config");
}

#[test]
fn openshift_adds_the_privileged_scc_role() {
    let objects = golden("openshift", &full(), true, &Observed::default());
    let kinds: Vec<&str> = objects.iter().map(|o| o.types.as_ref().unwrap().kind.as_str()).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "DaemonSet"]);
}

#[test]
fn tolerations_affinity_pull_secrets_and_resources_are_applied() {
    let mut policy = full();
    policy.spec.tolerations =
        Some(vec![serde_json::from_value(json!({"key": "dedicated", "operator": "Exists"})).unwrap()]);
    let section = policy.spec.doca_telemetry_service.as_mut().unwrap();
    section.image.image_pull_secrets = Some(vec!["registry-secret".into()]);
    section.image.container_resources = Some(vec![
        serde_json::from_value(json!({"name": "doca-telemetry-service", "requests": {"cpu": "100m"}})).unwrap(),
    ]);
    let objects = golden("cross_cutting", &policy, false, &Observed::default());
    let pod = &objects.last().unwrap().data["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["resources"], json!({"requests": {"cpu": "100m"}}));
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry-secret");
}

#[test]
fn a_missing_named_config_map_waits_and_config_without_a_name_is_an_error() {
    let err = render(&every_section(), false, &Observed::default()).unwrap_err();
    assert_eq!(
        err,
        "ConfigMap nvidia-network-operator/doca-telemetry-custom-config named by spec.docaTelemetryService.config.fromConfigMap does not exist"
    );
    let mut policy = full();
    policy.spec.doca_telemetry_service.as_mut().unwrap().config = Some(Default::default());
    let err = render(&policy, false, &Observed::default()).unwrap_err();
    assert!(err.starts_with("spec.docaTelemetryService.config.fromConfigMap: required when config is set"), "{err}");
}

#[tokio::test]
async fn while_the_named_config_map_is_missing_nothing_is_applied_and_the_state_is_not_ready() {
    let (client, mut server) = mock_client();
    let ctx = Context::new(
        client,
        NAMESPACE.into(),
        false,
        OwnedObjects::from_objects(DocaTelemetry::kinds(), vec![]),
        Metrics::new(),
    );
    let task = tokio::spawn(async move { sync::<DocaTelemetry>(&every_section(), &ctx).await });
    server
        .expect(
            "GET",
            "/api/v1/namespaces/nvidia-network-operator/configmaps/doca-telemetry-custom-config",
            404,
            testing::status_error(404, "NotFound"),
        )
        .await;
    server.expect_no_more().await;
    let outcome = task.await.unwrap();
    assert_eq!(outcome.state, api::SyncState::NotReady);
    assert!(outcome.message.unwrap().contains("does not exist"));
}
