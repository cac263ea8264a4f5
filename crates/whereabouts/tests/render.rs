//! Golden renders of Whereabouts: never its CRDs, always its RBAC, config and DaemonSet.

use api::{ImageSpec, NicClusterPolicy};
use state_core::testing::{self, assert_round_trips, find, policy_from_file, to_yaml};
use state_core::{Observed, State};
use whereabouts::Whereabouts;

const SEED: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml";

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool) -> Vec<kube::core::DynamicObject> {
    let objects = testing::render::<Whereabouts>(policy, openshift);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn ipam(policy: &mut NicClusterPolicy) -> &mut ImageSpec {
    policy.spec.secondary_network.as_mut().and_then(|s| s.ipam_plugin.as_mut()).expect("the policy has ipamPlugin")
}

fn pod(objects: &[kube::core::DynamicObject]) -> serde_json::Value {
    find(objects, "DaemonSet", "whereabouts").data["spec"]["template"]["spec"].clone()
}

#[test]
fn the_seed_policy_renders_rbac_config_and_daemonset_but_no_crd() {
    let objects = golden("seed_policy", &policy_from_file(SEED), false);
    let kinds: Vec<&str> = objects.iter().map(|o| o.types.as_ref().unwrap().kind.as_str()).collect();
    assert_eq!(kinds, ["ClusterRole", "ServiceAccount", "ClusterRoleBinding", "ConfigMap", "DaemonSet"]);
    assert!(!Whereabouts::kinds().iter().any(|k| k.resource.kind == "CustomResourceDefinition"), "never owns its CRDs");
    assert_eq!(find(&objects, "ConfigMap", "whereabouts-config").data["data"]["cron-expression"], "30 4 * * *");
    let pod = pod(&objects);
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/opt/cni/bin");
    assert_eq!(pod["volumes"][2]["configMap"]["defaultMode"], 0o744);
    assert_eq!(pod["containers"][0]["resources"]["limits"]["memory"], "200Mi");
}

#[test]
fn every_upstream_example_with_the_section_renders() {
    for file in [
        "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full.yaml",
        "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-ipoib.yaml",
    ] {
        assert_round_trips(&testing::render::<Whereabouts>(&policy_from_file(file), false));
    }
}

#[test]
fn openshift_only_changes_the_cni_bin_dir() {
    let objects = golden("openshift", &policy_from_file(SEED), true);
    assert_eq!(objects.len(), 5, "no SCC objects, as the original");
    assert_eq!(pod(&objects)["volumes"][0]["hostPath"]["path"], "/var/lib/cni/bin");
}

#[test]
fn a_configured_cni_bin_dir_overrides_the_default() {
    let observed = Observed { cni_bin_dir: Some("/usr/libexec/cni".into()), ..Default::default() };
    let objects = testing::render_observed::<Whereabouts>(&policy_from_file(SEED), true, &observed);
    assert_eq!(pod(&objects)["volumes"][0]["hostPath"]["path"], "/usr/libexec/cni");
}

#[test]
fn policy_tolerations_affinity_pull_secrets_and_resources_are_applied() {
    let mut policy = policy_from_file(SEED);
    testing::add_cross_cutting(&mut policy, ipam, "whereabouts");
    let objects = golden("tolerations_affinity_secrets_resources", &policy, false);
    let pod = pod(&objects);
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry-secret");
    assert_eq!(pod["containers"][0]["resources"]["limits"], serde_json::json!({"memory": "128Mi"}));
}

#[test]
fn the_old_ip_reconciler_cron_job_is_a_leftover_its_controller_may_read_and_delete_by_name() {
    let leftovers = Whereabouts::leftovers();
    assert_eq!(leftovers.len(), 1);
    assert_eq!((leftovers[0].kind.resource.kind.as_str(), leftovers[0].name), ("CronJob", "whereabouts-ip-reconciler"));
    let rbac = state_core::rbac::state_rbac::<Whereabouts>(&policy_from_file(SEED), &Observed::default());
    let rule = rbac
        .operands
        .to_policy_rules()
        .into_iter()
        .find(|r| r.resources.as_deref() == Some(&["cronjobs".to_string()][..]))
        .expect("a rule on cronjobs");
    assert_eq!(rule.resource_names.as_deref(), Some(&["whereabouts-ip-reconciler".to_string()][..]));
    assert_eq!(rule.verbs, ["get", "delete"]);
}
