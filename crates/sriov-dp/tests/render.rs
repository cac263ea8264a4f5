//! Golden renders of the SR-IOV network device plugin, plus the inputs it must refuse.

use api::NicClusterPolicy;
use serde_json::json;
use sriov_dp::SriovDevicePlugin;
use state_core::testing::{self, assert_round_trips, policy_from_file, to_yaml};
use state_core::{RenderContext, render_state};

fn full() -> NicClusterPolicy {
    policy_from_file("example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full.yaml")
}

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool) -> Vec<kube::core::DynamicObject> {
    let objects = testing::render::<SriovDevicePlugin>(policy, openshift);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn render_error(policy: &NicClusterPolicy) -> String {
    let ctx = RenderContext::new(testing::NAMESPACE, false, policy);
    render_state::<SriovDevicePlugin>(&ctx).expect_err("rendering must fail").to_string()
}

fn set_config(policy: &mut NicClusterPolicy, config: Option<&str>) {
    policy.spec.sriov_device_plugin.as_mut().unwrap().config = config.map(String::from);
}

#[test]
fn the_full_example_waits_for_the_driver_and_mounts_its_config() {
    let objects = golden("full_example", &full(), false);
    let ds = objects.last().unwrap();
    let pod = &ds.data["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["name"], "ofed-driver-validation");
    assert_eq!(pod["nodeSelector"]["network.nvidia.com/operator.mofed.wait"], "false");
    assert_eq!(pod["serviceAccountName"], "sriov-device-plugin");
}

#[test]
fn the_openshift_hostdev_example_adds_the_scc_role() {
    let policy = policy_from_file("example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-ocp-hostdev.yaml");
    let objects = golden("openshift_hostdev", &policy, true);
    assert!(objects.iter().any(|o| o.types.as_ref().unwrap().kind == "Role"));
}

#[test]
fn tolerations_affinity_pull_secrets_resources_and_cdi_are_applied() {
    let mut policy = full();
    policy.spec.tolerations =
        Some(vec![serde_json::from_value(json!({"key": "dedicated", "operator": "Exists"})).unwrap()]);
    let section = policy.spec.sriov_device_plugin.as_mut().unwrap();
    section.use_cdi = Some(true);
    section.image.image_pull_secrets = Some(vec!["registry-secret".into()]);
    section.image.container_resources =
        Some(vec![serde_json::from_value(json!({"name": "kube-sriovdp", "limits": {"memory": "100Mi"}})).unwrap()]);
    let objects = golden("cross_cutting_cdi", &policy, false);
    let container = &objects.last().unwrap().data["spec"]["template"]["spec"]["containers"][0];
    assert!(container["args"].to_string().contains("--use-cdi"));
    assert_eq!(container["resources"], json!({"limits": {"memory": "100Mi"}}));
}

#[test]
fn a_config_the_plugin_cannot_use_is_an_error_naming_the_exact_path() {
    let mut policy = full();
    set_config(
        &mut policy,
        Some(
            r#"{"resourceList": [{"resourceName": "a", "selectors": {"vendors": ["15b3"]}}, {"resourceName": "b", "deviceType": "accelerator", "selectors": {"drivers": [7]}}]}"#,
        ),
    );
    assert!(
        render_error(&policy).starts_with(
            "spec.sriovDevicePlugin.config.resourceList[1].selectors.drivers[0]: must be a non-empty string"
        ),
        "{}",
        render_error(&policy)
    );
    set_config(&mut policy, Some(r#"{"resourceList": [{"selectors": {"vendors": ["15b3"]}}]}"#));
    assert_eq!(render_error(&policy), "spec.sriovDevicePlugin.config.resourceList[0].resourceName: required");
    set_config(&mut policy, None);
    assert!(render_error(&policy).starts_with("spec.sriovDevicePlugin.config: required"));
}

#[test]
fn a_config_change_rolls_the_pods() {
    let hash = |policy: &NicClusterPolicy| {
        testing::render::<SriovDevicePlugin>(policy, false).last().unwrap().data["spec"]["template"]["metadata"]["annotations"]
            ["nvidia.network-operator.config-hash"]
            .clone()
    };
    let mut changed = full();
    set_config(
        &mut changed,
        Some(r#"{"resourceList": [{"resourceName": "other", "selectors": {"vendors": ["15b3"]}}]}"#),
    );
    assert_ne!(hash(&full()), hash(&changed));
}

#[test]
fn a_node_policys_plugin_is_named_after_it_with_its_tolerations_and_the_shared_service_account() {
    let policy =
        testing::node_policy_from_file("example/crs/mellanox.com_v1alpha1_nicnodepolicy_cr.yaml", "storage-nodes");
    let objects = testing::render_node_policy::<SriovDevicePlugin>(&policy, &Default::default());
    assert_round_trips(&objects);
    insta::assert_snapshot!("node_policy", to_yaml(&objects));
}
