//! Golden renders of the Spectrum-X operator state.

use api::NicClusterPolicy;
use serde_json::json;
use spectrum_x::SpectrumX;
use state_core::testing::{self, assert_round_trips, find, policy_from_file, to_yaml};

const EXAMPLE: &str = "example/crs/nicclusterpolicy_spectrum-x.yaml";

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool) -> Vec<kube::core::DynamicObject> {
    let objects = testing::render::<SpectrumX>(policy, openshift);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn flow_controller(objects: &[kube::core::DynamicObject]) -> &serde_json::Value {
    &find(objects, "DaemonSet", "spectrum-x-flowcontroller").data["spec"]["template"]["spec"]
}

#[test]
fn the_flow_controller_runs_on_the_nic_nodes_with_the_x_plane_image() {
    let objects = golden("example", &policy_from_file(EXAMPLE), false);
    let kinds: Vec<&str> = objects.iter().map(|o| o.types.as_ref().unwrap().kind.as_str()).collect();
    assert_eq!(kinds, ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]);
    let pod = flow_controller(&objects);
    assert_eq!(pod["nodeSelector"], json!({"feature.node.kubernetes.io/pci-15b3.present": "true"}));
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "nvcr.io/nvidia/mellanox/spectrum-x-operator:network-operator-v26.4.1");
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| Some((v["name"].as_str()?, v["value"].as_str()?)))
        .collect();
    assert_eq!(
        env,
        [
            ("XPLANE_REPOSITORY", "nvcr.io/nvstaging/doca"),
            ("XPLANE_IMAGE", "xplane"),
            ("XPLANE_VERSION", "3.4.0005"),
            ("IMAGE_PULL_SECRETS", ""),
        ]
    );
}

#[test]
fn without_an_x_plane_version_the_flow_controller_gets_no_x_plane_settings() {
    let mut policy = policy_from_file(EXAMPLE);
    policy.spec.spectrum_x_operator.as_mut().unwrap().x_plane.as_mut().unwrap().version.clear();
    let objects = testing::render::<SpectrumX>(&policy, false);
    let env = flow_controller(&objects)["containers"][0]["env"].as_array().unwrap().clone();
    let names: Vec<&str> = env.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, ["POD_NAMESPACE", "NODE_NAME"]);
}

#[test]
fn an_x_plane_version_without_a_repository_is_an_error_naming_the_field() {
    let mut policy = policy_from_file(EXAMPLE);
    policy.spec.spectrum_x_operator.as_mut().unwrap().x_plane.as_mut().unwrap().repository.clear();
    let error = testing::render_error::<SpectrumX>(&policy);
    assert!(error.starts_with("spec.spectrumXOperator.xPlane.repository: required"), "{error}");
}

#[test]
fn openshift_adds_the_privileged_scc_role_and_cross_cutting_fields_apply() {
    let mut policy = policy_from_file(EXAMPLE);
    testing::add_cross_cutting(
        &mut policy,
        |p| &mut p.spec.spectrum_x_operator.as_mut().unwrap().image,
        "spectrum-x-flowcontroller",
    );
    let objects = golden("openshift_cross_cutting", &policy, true);
    find(&objects, "Role", "spectrum-x-operator");
    find(&objects, "RoleBinding", "spectrum-x-operator");
    let pod = flow_controller(&objects);
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "registry-secret"}]));
    assert_eq!(pod["containers"][0]["resources"]["requests"]["cpu"], "200m");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
}

#[test]
fn the_rail_pool_crd_is_never_rendered_and_the_originals_is_released() {
    let objects = testing::render::<SpectrumX>(&policy_from_file(EXAMPLE), false);
    assert!(!objects.iter().any(|o| o.types.as_ref().unwrap().kind == "CustomResourceDefinition"));
    let released: Vec<&str> = <SpectrumX as state_core::State>::released().iter().map(|l| l.name).collect();
    assert_eq!(released, [spectrum_x::RAIL_POOL_CRD]);
}
