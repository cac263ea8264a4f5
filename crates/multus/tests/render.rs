//! Golden renders of Multus, and the configurations it must refuse.

use api::NicClusterPolicy;
use api::policy::MultusSpec;
use multus::Multus;
use state_core::testing::{self, assert_round_trips, find, policy_from_file, render_error, to_yaml};
use state_core::{Observed, State};

const SEED: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml";
const EVERY_SECTION: &str = "example/crs/nicclusterpolicy_every-section.yaml";

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool) -> Vec<kube::core::DynamicObject> {
    let objects = testing::render::<Multus>(policy, openshift);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn multus(policy: &mut NicClusterPolicy) -> &mut MultusSpec {
    policy.spec.secondary_network.as_mut().and_then(|s| s.multus.as_mut()).expect("the policy has multus")
}

fn pod(objects: &[kube::core::DynamicObject]) -> serde_json::Value {
    find(objects, "DaemonSet", "kube-multus-ds").data["spec"]["template"].clone()
}

#[test]
fn an_empty_config_as_in_the_upstream_examples_means_auto_and_no_config_map() {
    let objects = golden("seed_policy", &policy_from_file(SEED), false);
    assert!(!objects.iter().any(|o| o.types.as_ref().unwrap().kind == "ConfigMap"));
    let template = pod(&objects);
    assert_eq!(template["spec"]["containers"][0]["args"][1], "--multus-conf-file=auto");
    assert!(template["metadata"]["annotations"].is_null(), "no config hash without a config");
}

#[test]
fn the_full_and_ipoib_examples_render_the_same_auto_multus() {
    for file in [
        "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full.yaml",
        "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-ipoib.yaml",
    ] {
        let objects = testing::render::<Multus>(&policy_from_file(file), false);
        assert_round_trips(&objects);
        assert_eq!(pod(&objects)["spec"]["containers"][0]["args"][1], "--multus-conf-file=auto", "{file}");
    }
}

#[test]
fn a_missing_or_blank_config_means_auto() {
    for config in [None, Some("  \n".to_string())] {
        let mut policy = policy_from_file(SEED);
        multus(&mut policy).config = config;
        let objects = testing::render::<Multus>(&policy, false);
        assert_eq!(objects.len(), 4);
        assert_eq!(pod(&objects)["spec"]["containers"][0]["args"][1], "--multus-conf-file=auto");
    }
}

#[test]
fn an_explicit_config_is_stored_byte_for_byte_and_mounted() {
    let policy = policy_from_file(EVERY_SECTION);
    let objects = golden("explicit_config", &policy, false);
    let config_map = find(&objects, "ConfigMap", "multus-cni-config");
    let mut policy = policy;
    assert_eq!(config_map.data["data"]["cni-conf.json"].as_str(), multus(&mut policy).config.as_deref());
    assert_eq!(config_map.metadata.labels.as_ref().unwrap()["app"], "multus");
    let template = pod(&objects);
    assert_eq!(template["spec"]["containers"][0]["args"][1], "--multus-conf-file=/tmp/multus-conf/00-multus.conf");
    assert_eq!(template["spec"]["volumes"][2]["configMap"]["items"][0]["path"], "00-multus.conf");
}

#[test]
fn a_config_change_changes_the_pod_template_so_pods_roll() {
    let hash = |policy: &NicClusterPolicy| {
        pod(&testing::render::<Multus>(policy, false))["metadata"]["annotations"]["nvidia.network-operator.config-hash"]
            .clone()
    };
    let original = policy_from_file(EVERY_SECTION);
    let mut changed = original.clone();
    multus(&mut changed).config =
        Some(r#"{"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus"}"#.into());
    assert!(hash(&original).is_string());
    assert_ne!(hash(&original), hash(&changed));
}

#[test]
fn invalid_config_json_is_an_error_naming_the_field() {
    let mut policy = policy_from_file(SEED);
    multus(&mut policy).config = Some("{\"name\": ".into());
    let message = render_error::<Multus>(&policy);
    assert!(message.starts_with("spec.secondaryNetwork.multus.config: invalid JSON: EOF"), "{message}");
}

#[test]
fn a_config_that_is_not_a_json_object_is_an_error_naming_the_field() {
    let mut policy = policy_from_file(SEED);
    multus(&mut policy).config = Some("[1, 2]".into());
    assert_eq!(
        render_error::<Multus>(&policy),
        "spec.secondaryNetwork.multus.config: must be a JSON object (a Multus CNI configuration), or empty for auto"
    );
}

#[test]
fn a_config_with_a_duplicate_key_is_an_error_naming_the_field() {
    let mut policy = policy_from_file(SEED);
    multus(&mut policy).config = Some(r#"{"cniVersion": "0.3.1", "delegates": [{"name": "a", "name": "b"}]}"#.into());
    let message = render_error::<Multus>(&policy);
    assert!(
        message.starts_with("spec.secondaryNetwork.multus.config: invalid JSON: duplicate key \"name\""),
        "{message}"
    );
}

#[test]
fn openshift_mounts_the_openshift_cni_bin_dir() {
    let objects = golden("openshift", &policy_from_file(SEED), true);
    assert_eq!(pod(&objects)["spec"]["volumes"][1]["hostPath"]["path"], "/var/lib/cni/bin");
}

#[test]
fn a_configured_cni_bin_dir_overrides_the_default() {
    let observed = Observed { cni_bin_dir: Some("/usr/libexec/cni".into()), ..Default::default() };
    for openshift in [false, true] {
        let objects = testing::render_observed::<Multus>(&policy_from_file(SEED), openshift, &observed);
        assert_eq!(pod(&objects)["spec"]["volumes"][1]["hostPath"]["path"], "/usr/libexec/cni");
    }
}

#[test]
fn policy_tolerations_affinity_pull_secrets_and_resources_are_applied() {
    let mut policy = policy_from_file(SEED);
    testing::add_cross_cutting(&mut policy, |p| &mut multus(p).image, "kube-multus");
    let objects = golden("tolerations_affinity_secrets_resources", &policy, false);
    let template = pod(&objects);
    assert_eq!(template["spec"]["containers"][0]["resources"]["requests"]["cpu"], "200m");
    assert!(template["spec"]["nodeSelector"].is_null(), "Multus runs on every node");
}

#[test]
fn every_object_carries_the_state_label() {
    for object in testing::render::<Multus>(&policy_from_file(EVERY_SECTION), false) {
        assert_eq!(object.metadata.labels.as_ref().unwrap()[state_core::STATE_LABEL], Multus::NAME);
    }
}
