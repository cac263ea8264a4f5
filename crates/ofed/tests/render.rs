//! Golden renders of the OFED driver state for the cases that matter, each object round-tripped
//! through its type, plus the inputs that must stop it.

use api::NicClusterPolicy;
use api::policy::{ConfigMapNameReference, OfedDriverSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::core::DynamicObject;
use ofed::OfedDriver;
use ofed::pools::{ARCH_LABEL, KERNEL_LABEL, OS_LABEL, OS_VERSION_LABEL, OSTREE_LABEL};
use serde_json::{Value, json};
use state_core::nodes::{NodeFacts, facts};
use state_core::testing::{self, assert_round_trips, policy_from_file, to_yaml};
use state_core::{ImageTags, Observed, RenderContext, render_state};
use std::sync::Arc;

const SEED: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml";
const REPOSITORY: &str = "nvcr.io/nvidia/mellanox/mofed";

fn seed() -> NicClusterPolicy {
    policy_from_file(SEED)
}

fn ofed(policy: &mut NicClusterPolicy) -> &mut OfedDriverSpec {
    policy.spec.ofed_driver.as_mut().expect("the seed deploys OFED")
}

fn node(name: &str, os: &str, version: &str, kernel: &str, arch: &str) -> Arc<NodeFacts> {
    let node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {
        "feature.node.kubernetes.io/pci-15b3.present": "true",
        OS_LABEL: os, OS_VERSION_LABEL: version, KERNEL_LABEL: kernel, ARCH_LABEL: arch}}}))
    .unwrap();
    Arc::new(facts(node, None))
}

fn ubuntu(name: &str) -> Arc<NodeFacts> {
    node(name, "ubuntu", "22.04", "5.15.0-78-generic", "amd64")
}

fn observed(nodes: Vec<Arc<NodeFacts>>) -> Observed {
    let mut observed = Observed { nodes, ..Default::default() };
    observed.image_tags.insert(REPOSITORY.into(), ImageTags::Listed(Default::default()));
    observed
}

fn render(policy: &NicClusterPolicy, openshift: bool, observed: &Observed) -> Result<Vec<DynamicObject>, String> {
    let ctx = RenderContext { namespace: testing::NAMESPACE, openshift, policy, observed };
    render_state::<OfedDriver>(&ctx).map(|o| o.expect("section present")).map_err(|e| e.to_string())
}

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool, observed: &Observed) -> Vec<DynamicObject> {
    let objects = render(policy, openshift, observed).unwrap_or_else(|e| panic!("{e}"));
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn daemon_sets(objects: &[DynamicObject]) -> Vec<&DynamicObject> {
    objects.iter().filter(|o| o.types.as_ref().unwrap().kind == "DaemonSet").collect()
}

fn container(ds: &DynamicObject) -> &Value {
    &ds.data["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn seed_policy_on_ubuntu_nodes_gives_one_pool_with_the_source_image() {
    let objects = golden("seed_ubuntu_2204", &seed(), false, &observed(vec![ubuntu("n1"), ubuntu("n2")]));
    let ds = daemon_sets(&objects);
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].metadata.name.as_deref(), Some("mofed-ubuntu22.04-54669c9886-ds"));
    assert_eq!(container(ds[0])["image"], "nvcr.io/nvidia/mellanox/mofed:23.04-0.5.3.3.1-ubuntu22.04-amd64");
    assert_eq!(ds[0].data["spec"]["updateStrategy"]["type"], "OnDelete");
    assert_eq!(ds[0].data["spec"]["template"]["spec"]["nodeSelector"][ARCH_LABEL], "amd64");
}

#[test]
fn each_os_kernel_and_architecture_gets_its_own_pool() {
    let nodes = vec![
        ubuntu("a"),
        node("b", "ubuntu", "20.04", "5.15.0-91-generic", "amd64"),
        node("c", "ubuntu", "22.04", "5.15.0-78-generic", "arm64"),
    ];
    let objects = golden("pools_two_os_and_arm64", &seed(), false, &observed(nodes));
    let names: Vec<(&str, &Value)> =
        daemon_sets(&objects).iter().map(|d| (d.metadata.name.as_deref().unwrap(), &container(d)["image"])).collect();
    assert_eq!(
        names,
        [
            (
                "mofed-ubuntu20.04-6d568d699f-ds",
                &json!("nvcr.io/nvidia/mellanox/mofed:23.04-0.5.3.3.1-ubuntu20.04-amd64")
            ),
            (
                "mofed-ubuntu22.04-54669c9886-arm64-ds",
                &json!("nvcr.io/nvidia/mellanox/mofed:23.04-0.5.3.3.1-ubuntu22.04-arm64")
            ),
            (
                "mofed-ubuntu22.04-54669c9886-ds",
                &json!("nvcr.io/nvidia/mellanox/mofed:23.04-0.5.3.3.1-ubuntu22.04-amd64")
            ),
        ]
    );
}

#[test]
fn a_listed_precompiled_tag_is_used() {
    let mut observed = observed(vec![ubuntu("a")]);
    let tag = "23.04-0.5.3.3.1-5.15.0-78-generic-ubuntu22.04-amd64".to_string();
    observed.image_tags.insert(REPOSITORY.into(), ImageTags::Listed([tag.clone()].into()));
    let objects = golden("precompiled", &seed(), false, &observed);
    assert_eq!(container(daemon_sets(&objects)[0])["image"], format!("{REPOSITORY}:{tag}"));
}

#[test]
fn force_precompiled_without_the_tag_is_an_error_naming_it() {
    let mut policy = seed();
    ofed(&mut policy).force_precompiled = Some(true);
    let err = render(&policy, false, &observed(vec![ubuntu("a")])).unwrap_err();
    assert_eq!(
        err,
        "spec.ofedDriver.forcePrecompiled: precompiled image nvcr.io/nvidia/mellanox/mofed:23.04-0.5.3.3.1-5.15.0-78-generic-ubuntu22.04-amd64 \
         is required for pool mofed-ubuntu22.04-54669c9886-ds, but the registry does not list it"
    );
    let mut failed = observed(vec![ubuntu("a")]);
    failed.image_tags.insert(REPOSITORY.into(), ImageTags::Failed("nvcr.io: HTTP 503".into()));
    let err = render(&policy, false, &failed).unwrap_err();
    assert!(err.ends_with("but the registry could not be asked: nvcr.io: HTTP 503"), "{err}");
}

#[test]
fn cert_and_repo_config_files_are_mounted_one_by_one_and_env_defaults_fill_in() {
    let mut policy = seed();
    let spec = ofed(&mut policy);
    spec.cert_config = Some(ConfigMapNameReference { name: Some("my-certs".into()) });
    spec.repo_config = Some(ConfigMapNameReference { name: Some("my-repos".into()) });
    spec.env = Some(vec![serde_json::from_value(json!({"name": "CREATE_IFNAMES_UDEV", "value": "false"})).unwrap()]);
    let mut observed = observed(vec![ubuntu("a")]);
    for (name, keys) in [("my-certs", vec!["ca.crt", "extra.pem"]), ("my-repos", vec!["mirror.list"])] {
        let data: serde_json::Map<String, Value> = keys.into_iter().map(|k| (k.to_string(), json!("x"))).collect();
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap();
        observed.config_maps.insert(name.into(), cm);
    }
    let objects = golden("cert_repo_env", &policy, false, &observed);
    let container = container(daemon_sets(&objects)[0]);
    let mounts: Vec<&str> =
        container["volumeMounts"].as_array().unwrap().iter().filter_map(|m| m["mountPath"].as_str()).collect();
    assert!(mounts.contains(&"/etc/ssl/certs/extra.pem") && mounts.contains(&"/etc/apt/sources.list.d/mirror.list"));
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        env,
        [("CREATE_IFNAMES_UDEV", "false"), ("NVIDIA_NIC_DRIVERS_INVENTORY_PATH", "/mnt/drivers-inventory")]
    );
}

#[test]
fn a_missing_cert_config_is_an_error_naming_the_field() {
    let mut policy = seed();
    ofed(&mut policy).cert_config = Some(ConfigMapNameReference { name: Some("absent".into()) });
    let err = render(&policy, false, &observed(vec![ubuntu("a")])).unwrap_err();
    assert_eq!(
        err,
        "spec.ofedDriver.certConfig.name: ConfigMap absent does not exist in namespace nvidia-network-operator"
    );
}

#[test]
fn a_cert_config_name_no_config_map_can_have_is_an_error_naming_the_field() {
    for name in ["..", "My_Certs", "a/b"] {
        let mut policy = seed();
        ofed(&mut policy).cert_config = Some(ConfigMapNameReference { name: Some(name.into()) });
        let err = render(&policy, false, &observed(vec![ubuntu("a")])).unwrap_err();
        assert!(err.starts_with(&format!("spec.ofedDriver.certConfig.name: {name:?} is not an object name")), "{err}");
    }
}

#[test]
fn a_config_map_whose_name_is_no_volume_name_is_mounted_under_a_volume_name_that_is() {
    let mut policy = seed();
    ofed(&mut policy).cert_config = Some(ConfigMapNameReference { name: Some("corp.ca-bundle".into()) });
    let mut observed = observed(vec![ubuntu("a")]);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "corp.ca-bundle"}, "data": {"ca.crt": "x"}})).unwrap();
    observed.config_maps.insert("corp.ca-bundle".into(), cm);
    let objects = render(&policy, false, &observed).unwrap();
    let pod = &daemon_sets(&objects)[0].data["spec"]["template"]["spec"];
    let volume =
        pod["volumes"].as_array().unwrap().iter().find(|v| v["configMap"]["name"] == "corp.ca-bundle").unwrap();
    assert_eq!(volume["name"], "cert-config", "a DNS label, as the API server requires of a volume name");
}

#[test]
fn env_names_set_twice_are_an_error_naming_the_second() {
    let mut policy = seed();
    ofed(&mut policy).env = Some(
        serde_json::from_value(json!([{"name": "HTTP_PROXY", "value": "a"}, {"name": "HTTP_PROXY", "value": "b"}]))
            .unwrap(),
    );
    let err = render(&policy, false, &observed(vec![ubuntu("a")])).unwrap_err();
    assert_eq!(err, "spec.ofedDriver.env[1].name: \"HTTP_PROXY\" is already set by spec.ofedDriver.env[0]");
}

#[test]
fn a_toleration_the_api_server_would_refuse_is_an_error_naming_the_policy_field() {
    let mut policy = seed();
    policy.spec.tolerations = Some(vec![serde_json::from_value(json!({"key": "a", "operator": "Foo"})).unwrap()]);
    let err = render(&policy, false, &observed(vec![ubuntu("a")])).unwrap_err();
    assert!(err.starts_with("spec.tolerations[0].operator: \"Foo\" is not an operator"), "{err}");
}

#[test]
fn node_affinity_is_merged_with_the_drivers_anti_affinity() {
    let mut policy = seed();
    policy.spec.node_affinity = Some(
        serde_json::from_value(json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node-role.kubernetes.io/worker", "operator": "Exists"}]}]}}))
        .unwrap(),
    );
    policy.spec.tolerations =
        Some(vec![serde_json::from_value(json!({"key": "dedicated", "operator": "Exists"})).unwrap()]);
    ofed(&mut policy).image.container_resources = Some(vec![
        serde_json::from_value(json!({"name": "mofed-container", "requests": {"cpu": "200m", "memory": "1Gi"}}))
            .unwrap(),
    ]);
    let objects = golden("affinity_tolerations_resources", &policy, false, &observed(vec![ubuntu("a")]));
    let pod = &daemon_sets(&objects)[0].data["spec"]["template"]["spec"];
    assert!(pod["affinity"]["podAntiAffinity"].is_object(), "the anti-affinity survives");
    assert!(pod["affinity"]["nodeAffinity"].is_object());
    assert_eq!(pod["containers"][0]["resources"]["requests"]["memory"], "1Gi");
}

fn rhcos() -> Arc<NodeFacts> {
    let mut rhcos = (*node("r", "rhcos", "4.14", "5.14.0-284.43.1.el9_2.x86_64", "amd64")).clone();
    rhcos.metadata.labels.as_mut().unwrap().insert(OSTREE_LABEL.into(), "414.92.202312011602-0".into());
    Arc::new(rhcos)
}

fn openshift_observed() -> Observed {
    let mut observed = observed(vec![rhcos()]);
    observed.openshift.driver_toolkit.insert("414.92.202312011602-0".into(), "quay.io/openshift/dtk@sha256:abc".into());
    observed.openshift.proxy =
        vec![("HTTPS_PROXY".into(), "http://proxy:3128".into()), ("NO_PROXY".into(), ".cluster.local".into())];
    observed
}

#[test]
fn openshift_with_rhcos_nodes_builds_with_the_driver_toolkit_behind_the_cluster_proxy() {
    let objects = golden("openshift_rhcos", &seed(), true, &openshift_observed());
    let ds = daemon_sets(&objects)[0];
    let pod = &ds.data["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][1]["name"], "openshift-driver-toolkit-ctr");
    assert_eq!(pod["containers"][1]["image"], "quay.io/openshift/dtk@sha256:abc");
    assert_eq!(pod["nodeSelector"][OSTREE_LABEL], "414.92.202312011602-0");
    let env: Vec<&str> =
        pod["containers"][0]["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        env,
        [
            "DTK_OCP_DRIVER_BUILD",
            "DTK_OCP_NIC_SHARED_DIR",
            "HTTPS_PROXY",
            "https_proxy",
            "NO_PROXY",
            "no_proxy",
            "CREATE_IFNAMES_UDEV",
            "NVIDIA_NIC_DRIVERS_INVENTORY_PATH"
        ]
    );
    let role = objects.iter().find(|o| o.types.as_ref().unwrap().kind == "Role").unwrap();
    assert!(role.data["rules"].to_string().contains("securitycontextconstraints"));
    assert_eq!(daemon_sets(&objects)[0].metadata.name.as_deref(), Some("mofed-rhcos4.14-687cd9dc94-ds"));
}

#[test]
fn openshift_with_a_proxy_ca_mounts_the_injected_bundle_unless_cert_config_is_set() {
    let mut observed = openshift_observed();
    observed.openshift.trusted_ca = true;
    let objects = render(&seed(), true, &observed).unwrap();
    let ca = objects.iter().find(|o| o.metadata.name.as_deref() == Some("ocp-network-operator-trusted-ca")).unwrap();
    assert_eq!(ca.labels()["config.openshift.io/inject-trusted-cabundle"], "true");
    assert_eq!(ca.data.get("data"), None, "OpenShift fills the data");
    let mounts = container(daemon_sets(&objects)[0])["volumeMounts"].to_string();
    assert!(mounts.contains("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"), "{mounts}");

    let mut policy = seed();
    ofed(&mut policy).cert_config = Some(ConfigMapNameReference { name: Some("mine".into()) });
    observed.config_maps.insert(
        "mine".into(),
        serde_json::from_value(json!({"metadata": {"name": "mine"}, "data": {"a.pem": "x"}})).unwrap(),
    );
    let objects = render(&policy, true, &observed).unwrap();
    assert!(!objects.iter().any(|o| o.metadata.name.as_deref() == Some("ocp-network-operator-trusted-ca")));
}

#[test]
fn an_rhcos_pool_without_a_driver_toolkit_image_waits() {
    let err = render(&seed(), true, &observed(vec![rhcos()])).unwrap_err();
    assert_eq!(err, "no driver-toolkit image for RHCOS 414.92.202312011602-0 in ImageStream openshift/driver-toolkit");
}

#[test]
fn rhel_nodes_mount_the_subscription_unless_cri_o_runs() {
    let rhel = node("r", "rhel", "9.2", "5.14.0-284.43.1.el9_2.x86_64", "amd64");
    let objects = render(&seed(), false, &observed(vec![rhel])).unwrap();
    let mounts = container(daemon_sets(&objects)[0])["volumeMounts"].to_string();
    assert!(mounts.contains("/run/secrets/rhsm"), "{mounts}");
}

#[test]
fn nodes_without_nfd_labels_get_no_pool_and_without_any_pool_nothing_is_rendered() {
    let mut bare = (*ubuntu("bare")).clone();
    bare.metadata.labels.as_mut().unwrap().remove(KERNEL_LABEL);
    let objects =
        golden("one_node_without_nfd_labels", &seed(), false, &observed(vec![ubuntu("a"), Arc::new(bare.clone())]));
    assert_eq!(daemon_sets(&objects).len(), 1);
    let err = render(&seed(), false, &observed(vec![Arc::new(bare)])).unwrap_err();
    assert!(err.starts_with("no NIC node carries the NFD OS/kernel labels"), "{err}");
    let err = render(&seed(), false, &observed(vec![])).unwrap_err();
    assert!(err.starts_with("no node carries feature.node.kubernetes.io/pci-15b3.present=true"), "{err}");
}

#[test]
fn safe_load_turns_the_init_containers_config_on() {
    let mut policy = seed();
    ofed(&mut policy).upgrade_policy =
        Some(serde_json::from_value(json!({"autoUpgrade": true, "safeLoad": true})).unwrap());
    let objects = render(&policy, false, &observed(vec![ubuntu("a")])).unwrap();
    let config = objects.iter().find(|o| o.metadata.name.as_deref() == Some("ofed-init-container-config")).unwrap();
    let config: Value = serde_json::from_str(config.data["data"]["config.json"].as_str().unwrap()).unwrap();
    assert_eq!(config["safeDriverLoad"]["enable"], true);
    assert_eq!(config["safeDriverLoad"]["annotation"], "nvidia.com/ofed-driver-upgrade.driver-wait-for-safe-load");
}

#[test]
fn a_broken_upgrade_pod_selector_is_an_error_naming_the_field_and_nothing_renders() {
    for (policy_json, field) in [
        (json!({"autoUpgrade": true, "drain": {"enable": true, "podSelector": "a in (b"}}), "drain.podSelector"),
        (
            json!({"autoUpgrade": true, "waitForCompletion": {"podSelector": "app=,,x"}}),
            "waitForCompletion.podSelector",
        ),
    ] {
        let mut policy = seed();
        ofed(&mut policy).upgrade_policy = Some(serde_json::from_value(policy_json).unwrap());
        let err = render(&policy, false, &observed(vec![ubuntu("a")])).unwrap_err();
        assert!(err.starts_with(&format!("spec.ofedDriver.upgradePolicy.{field}: ")), "{err}");
    }
}

#[test]
fn a_node_policys_driver_pools_are_named_after_it_on_its_nodes_with_the_shared_rbac() {
    let policy = testing::node_policy_from_file("example/crs/mellanox.com_v1alpha1_nicnodepolicy_cr.yaml", "pool-a");
    let objects = testing::render_node_policy::<OfedDriver>(&policy, &observed(vec![ubuntu("gpu-1")]));
    assert_round_trips(&objects);
    insta::assert_snapshot!("node_policy", to_yaml(&objects));
}
