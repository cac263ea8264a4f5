//! Golden renders of the IPoIB CNI plugin.

use api::{ImageSpec, NicClusterPolicy};
use ipoib::IpoibCni;
use state_core::testing::{self, assert_round_trips, find, policy_from_file, to_yaml};
use state_core::{Observed, State};

const IPOIB: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-ipoib.yaml";

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool) -> Vec<kube::core::DynamicObject> {
    let objects = testing::render::<IpoibCni>(policy, openshift);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn ipoib(policy: &mut NicClusterPolicy) -> &mut ImageSpec {
    policy.spec.secondary_network.as_mut().and_then(|s| s.ipoib.as_mut()).expect("the policy has ipoib")
}

fn pod(objects: &[kube::core::DynamicObject]) -> serde_json::Value {
    find(objects, "DaemonSet", "kube-ipoib-cni-ds").data["spec"]["template"]["spec"].clone()
}

#[test]
fn the_ipoib_example_installs_the_plugin_on_every_node_without_a_service_account() {
    let objects = golden("ipoib_example", &policy_from_file(IPOIB), false);
    assert_eq!(objects.len(), 1);
    let pod = pod(&objects);
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/opt/cni/bin");
    assert!(pod["serviceAccountName"].is_null() && pod["nodeSelector"].is_null());
}

#[test]
fn the_full_example_renders() {
    assert_round_trips(&testing::render::<IpoibCni>(
        &policy_from_file("example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full.yaml"),
        false,
    ));
}

#[test]
fn openshift_adds_the_privileged_scc_service_account_and_the_openshift_bin_dir() {
    let objects = golden("openshift", &policy_from_file(IPOIB), true);
    let kinds: Vec<&str> = objects.iter().map(|o| o.types.as_ref().unwrap().kind.as_str()).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding", "DaemonSet"]);
    let pod = pod(&objects);
    assert_eq!(pod["serviceAccountName"], "ipoib-cni");
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/var/lib/cni/bin");
}

#[test]
fn a_configured_cni_bin_dir_overrides_the_default() {
    let observed = Observed { cni_bin_dir: Some("/usr/libexec/cni".into()), ..Default::default() };
    let objects = testing::render_observed::<IpoibCni>(&policy_from_file(IPOIB), false, &observed);
    assert_eq!(pod(&objects)["volumes"][0]["hostPath"]["path"], "/usr/libexec/cni");
}

#[test]
fn policy_tolerations_affinity_pull_secrets_and_resources_are_applied() {
    let mut policy = policy_from_file(IPOIB);
    testing::add_cross_cutting(&mut policy, ipoib, "ipoib-cni");
    let objects = golden("tolerations_affinity_secrets_resources", &policy, false);
    let pod = pod(&objects);
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["containers"][0]["resources"]["requests"]["cpu"], "200m");
    assert_eq!(objects[0].metadata.labels.as_ref().unwrap()[state_core::STATE_LABEL], IpoibCni::NAME);
}
