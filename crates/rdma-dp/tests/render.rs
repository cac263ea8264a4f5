//! Golden renders of the RDMA shared device plugin, plus the inputs it must refuse.

use api::NicClusterPolicy;
use api::policy::DevicePluginSpec;
use k8s_openapi::api::core::v1::{NodeAffinity, Toleration};
use rdma_dp::RdmaDevicePlugin;
use serde_json::json;
use state_core::testing::{self, assert_round_trips, policy_from_file, to_yaml};
use state_core::{RenderContext, State, render_state};

const SEED: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml";

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool) {
    let objects = testing::render::<RdmaDevicePlugin>(policy, openshift);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
}

fn seed() -> NicClusterPolicy {
    policy_from_file(SEED)
}

fn seed_without_ofed() -> NicClusterPolicy {
    let mut policy = seed();
    policy.spec.ofed_driver = None;
    policy
}

fn plugin(policy: &mut NicClusterPolicy) -> &mut DevicePluginSpec {
    policy.spec.rdma_shared_device_plugin.as_mut().expect("the seed policy has the RDMA plugin")
}

fn render_error(policy: &NicClusterPolicy) -> String {
    let ctx = RenderContext::new(testing::NAMESPACE, false, policy);
    render_state::<RdmaDevicePlugin>(&ctx).expect_err("rendering must fail").to_string()
}

#[test]
fn seed_policy_with_ofed_waits_for_the_driver() {
    golden("seed_policy", &seed(), false);
}

#[test]
fn without_ofed_the_plugin_runs_on_every_nic_node() {
    golden("without_ofed", &seed_without_ofed(), false);
}

#[test]
fn policy_tolerations_affinity_pull_secrets_and_resources_are_applied() {
    let mut policy = seed_without_ofed();
    policy.spec.tolerations = Some(vec![Toleration {
        key: Some("dedicated".into()),
        operator: Some("Equal".into()),
        value: Some("hpc".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }]);
    policy.spec.node_affinity = Some(
        serde_json::from_value::<NodeAffinity>(json!({
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "node-role.kubernetes.io/worker", "operator": "Exists"}]}
            ]}
        }))
        .unwrap(),
    );
    let image = &mut plugin(&mut policy).image;
    image.image_pull_secrets = Some(vec!["registry-secret".into()]);
    image.container_resources = Some(vec![
        serde_json::from_value(json!({"name": "rdma-shared-dp", "requests": {"cpu": "100m", "memory": "50Mi"}, "limits": {"memory": "100Mi"}}))
            .unwrap(),
    ]);
    golden("tolerations_affinity_secrets_resources", &policy, false);
}

#[test]
fn use_cdi_adds_the_flag_and_the_cdi_mounts() {
    let mut policy = seed_without_ofed();
    plugin(&mut policy).use_cdi = Some(true);
    golden("use_cdi", &policy, false);
}

#[test]
fn openshift_adds_the_privileged_scc_service_account() {
    golden("openshift", &seed(), true);
}

#[test]
fn a_config_with_quotes_and_newlines_is_stored_byte_for_byte() {
    let mut policy = seed_without_ofed();
    let config = "{\n  \"configList\": [{\"resourceName\": \"rdma_a\", \"rdmaHcaMax\": 63,\n    \"selectors\": {\"ifNames\": [\"it's \\\"quoted\\\"\"]}}]\n}\n";
    plugin(&mut policy).config = Some(config.into());
    let objects = testing::render::<RdmaDevicePlugin>(&policy, false);
    let config_map = objects.iter().find(|o| o.metadata.name.as_deref() == Some("rdma-devices")).unwrap();
    assert_eq!(config_map.data["data"]["config.json"], config);
    golden("config_with_quotes_and_newlines", &policy, false);
}

#[test]
fn a_config_the_plugin_cannot_use_is_an_error_naming_the_exact_path() {
    let mut policy = seed_without_ofed();
    plugin(&mut policy).config = Some(r#"{"configList": [{"rdmaHcaMax": 63, "devices": ["mlx5_0"]}]}"#.into());
    let ctx = state_core::RenderContext::new("ns", false, &policy);
    let err = state_core::render_state::<RdmaDevicePlugin>(&ctx).unwrap_err();
    assert_eq!(err.to_string(), "spec.rdmaSharedDevicePlugin.config.configList[0].resourceName: required");
}

#[test]
fn a_config_change_changes_the_pod_template_so_pods_restart() {
    let hash = |policy: &NicClusterPolicy| {
        let objects = testing::render::<RdmaDevicePlugin>(policy, false);
        let ds = objects.iter().find(|o| o.types.as_ref().unwrap().kind == "DaemonSet").unwrap();
        ds.data["spec"]["template"]["metadata"]["annotations"]["nvidia.network-operator.config-hash"].clone()
    };
    let mut changed = seed();
    plugin(&mut changed).config = Some(
        r#"{"configList": [{"resourceName": "rdma_b", "rdmaHcaMax": 63, "selectors": {"vendors": ["15b3"]}}]}"#.into(),
    );
    assert_ne!(hash(&seed()), hash(&changed));
}

#[test]
fn an_empty_or_duplicated_resource_list_is_an_error_naming_the_entry() {
    let mut policy = seed();
    plugin(&mut policy).config = Some(r#"{"configList": []}"#.into());
    assert_eq!(
        render_error(&policy),
        "spec.rdmaSharedDevicePlugin.config.configList: needs at least one resource (the plugin exits without one)"
    );
    let entry = r#"{"resourceName": "rdma_a", "rdmaHcaMax": 63, "selectors": {"vendors": ["15b3"]}}"#;
    plugin(&mut policy).config = Some(format!(r#"{{"configList": [{entry}, {entry}]}}"#));
    assert!(
        render_error(&policy).starts_with(
            "spec.rdmaSharedDevicePlugin.config.configList[1].resourceName: \"rdma_a\" is already the name of"
        ),
        "{}",
        render_error(&policy)
    );
}

#[test]
fn invalid_config_json_is_an_error_naming_the_field() {
    let mut policy = seed();
    plugin(&mut policy).config = Some("{\"configList\": [".into());
    let message = render_error(&policy);
    assert!(message.starts_with("spec.rdmaSharedDevicePlugin.config: invalid JSON"), "{message}");
}

#[test]
fn a_missing_or_empty_config_is_an_error_naming_the_field() {
    for config in [None, Some(String::new()), Some("  ".into())] {
        let mut policy = seed();
        plugin(&mut policy).config = config;
        let message = render_error(&policy);
        assert!(message.starts_with("spec.rdmaSharedDevicePlugin.config: required"), "{message}");
    }
}

#[test]
fn every_object_carries_the_state_label_and_the_owner_reference() {
    let mut policy = seed();
    policy.metadata.uid = Some("0b5a4c0e-1b2c-4d5e-8f90-123456789abc".into());
    for object in testing::render::<RdmaDevicePlugin>(&policy, true) {
        assert_eq!(object.metadata.labels.as_ref().unwrap()[state_core::STATE_LABEL], RdmaDevicePlugin::NAME);
        let owner = &object.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("NicClusterPolicy", Some(true)));
    }
}

#[test]
fn a_digest_version_gives_an_image_reference_by_digest() {
    let mut policy = seed_without_ofed();
    plugin(&mut policy).image.version =
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into();
    let objects = testing::render::<RdmaDevicePlugin>(&policy, false);
    let ds = objects.iter().find(|o| o.types.as_ref().unwrap().kind == "DaemonSet").unwrap();
    assert_eq!(
        ds.data["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/mellanox/k8s-rdma-shared-dev-plugin@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
}

#[test]
fn container_resources_for_an_unknown_container_are_an_error_naming_the_entry() {
    let mut policy = seed();
    plugin(&mut policy).image.container_resources =
        Some(vec![serde_json::from_value(json!({"name": "rdma-shared-dp-typo", "limits": {"cpu": "1"}})).unwrap()]);
    let message = render_error(&policy);
    assert_eq!(
        message,
        "spec.rdmaSharedDevicePlugin.containerResources[0].name: no container \"rdma-shared-dp-typo\" in this component (containers: ofed-driver-validation, rdma-shared-dp)"
    );
}

#[test]
fn a_node_policys_plugin_is_named_after_it_selects_its_nodes_and_waits_for_its_driver() {
    let policy = testing::node_policy_from_file("example/crs/mellanox.com_v1alpha1_nicnodepolicy_cr.yaml", "pool-a");
    let objects = testing::render_node_policy::<RdmaDevicePlugin>(&policy, &Default::default());
    assert_round_trips(&objects);
    insta::assert_snapshot!("node_policy", to_yaml(&objects));
}
