//! Golden renders of the CNI plugins.

use api::{ImageSpec, NicClusterPolicy};
use cni_plugins::CniPlugins;
use state_core::testing::{self, assert_round_trips, find, policy_from_file, to_yaml};
use state_core::{Observed, State};

const SEED: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml";

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool) -> Vec<kube::core::DynamicObject> {
    let objects = testing::render::<CniPlugins>(policy, openshift);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn plugins(policy: &mut NicClusterPolicy) -> &mut ImageSpec {
    policy.spec.secondary_network.as_mut().and_then(|s| s.cni_plugins.as_mut()).expect("the policy has cniPlugins")
}

fn bin_dir(objects: &[kube::core::DynamicObject]) -> serde_json::Value {
    find(objects, "DaemonSet", "cni-plugins-ds").data["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"]
        .clone()
}

#[test]
fn the_seed_policy_installs_the_plugins_into_opt_cni_bin_on_every_node() {
    let objects = golden("seed_policy", &policy_from_file(SEED), false);
    assert_eq!(objects.len(), 1);
    assert_eq!(bin_dir(&objects), "/opt/cni/bin");
    let pod = &objects[0].data["spec"]["template"]["spec"];
    assert!(pod["nodeSelector"].is_null() && pod["serviceAccountName"].is_null());
}

#[test]
fn every_upstream_example_with_the_section_renders() {
    for file in [
        "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full.yaml",
        "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-ipoib.yaml",
        "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-nvidia-ipam.yaml",
    ] {
        assert_round_trips(&testing::render::<CniPlugins>(&policy_from_file(file), false));
    }
}

#[test]
fn openshift_installs_into_var_lib_cni_bin() {
    assert_eq!(bin_dir(&golden("openshift", &policy_from_file(SEED), true)), "/var/lib/cni/bin");
}

#[test]
fn a_configured_cni_bin_dir_overrides_the_default() {
    let observed = Observed { cni_bin_dir: Some("/usr/libexec/cni".into()), ..Default::default() };
    assert_eq!(
        bin_dir(&testing::render_observed::<CniPlugins>(&policy_from_file(SEED), true, &observed)),
        "/usr/libexec/cni"
    );
}

#[test]
fn policy_tolerations_affinity_pull_secrets_and_resources_are_applied() {
    let mut policy = policy_from_file(SEED);
    testing::add_cross_cutting(&mut policy, plugins, "cni-plugins");
    let objects = golden("tolerations_affinity_secrets_resources", &policy, false);
    let pod = &objects[0].data["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry-secret");
    assert_eq!(pod["containers"][0]["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(objects[0].metadata.labels.as_ref().unwrap()[state_core::STATE_LABEL], CniPlugins::NAME);
}
