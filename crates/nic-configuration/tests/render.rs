//! Golden renders of the NIC configuration operator state, from the original's v26.4.1 full
//! example; the firmware-storage PVC rules.

use api::NicClusterPolicy;
use nic_configuration::NicConfiguration;
use serde_json::json;
use state_core::testing::{self, assert_round_trips, find, policy_from_file, to_yaml};

const EXAMPLE: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full-v26.4.1.yaml";

fn golden(name: &str, policy: &NicClusterPolicy, openshift: bool) -> Vec<kube::core::DynamicObject> {
    let objects = testing::render::<NicConfiguration>(policy, openshift);
    assert_round_trips(&objects);
    insta::assert_snapshot!(name, to_yaml(&objects));
    objects
}

fn kinds(objects: &[kube::core::DynamicObject]) -> Vec<&str> {
    objects.iter().map(|o| o.types.as_ref().unwrap().kind.as_str()).collect()
}

fn pod<'a>(objects: &'a [kube::core::DynamicObject], kind: &str, name: &str) -> &'a serde_json::Value {
    &find(objects, kind, name).data["spec"]["template"]["spec"]
}

#[test]
fn the_v26_example_renders_the_operator_the_daemon_and_an_unowned_firmware_pvc() {
    let objects = golden("v26_example", &policy_from_file(EXAMPLE), false);
    assert_eq!(
        kinds(&objects),
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "PersistentVolumeClaim",
            "Deployment",
            "DaemonSet"
        ]
    );
    let pvc = find(&objects, "PersistentVolumeClaim", "nic-fw-storage-pvc");
    assert_eq!(pvc.data["spec"]["storageClassName"], "nic-fw-storage-class");
    assert_eq!(pvc.data["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert!(pvc.metadata.owner_references.is_none(), "no owner: the policy's deletion must not collect it");
    assert!(!pvc.metadata.labels.as_ref().unwrap().contains_key(state_core::STATE_LABEL), "never pruned");
    let operator = pod(&objects, "Deployment", "nic-configuration-operator");
    assert_eq!(
        operator["containers"][0]["image"],
        "nvcr.io/nvidia/mellanox/nic-configuration-operator:network-operator-v26.4.1"
    );
    assert_eq!(operator["containers"][0]["env"], json!([{"name": "LOG_LEVEL", "value": "info"}]));
    assert_eq!(operator["volumes"][0]["persistentVolumeClaim"]["claimName"], "nic-fw-storage-pvc");
    let daemon = pod(&objects, "DaemonSet", "nic-configuration-daemon");
    assert_eq!(
        daemon["containers"][0]["image"],
        "nvcr.io/nvidia/mellanox/nic-configuration-operator-daemon:network-operator-v26.4.1"
    );
    assert_eq!(daemon["nodeSelector"]["network.nvidia.com/operator.mofed.wait"], "false", "after the driver");
    assert_eq!(
        daemon["containers"][0]["volumeMounts"][4],
        json!({"name": "firmware-cache", "mountPath": "/nic-firmware", "readOnly": true})
    );
    let firmware = find(&objects, "ConfigMap", "nic-configuration-operator-supported-nic-firmware");
    assert_eq!(firmware.data["data"]["Nvidia_mlx5_ConnectX-7-26.04"], "1021 26.04-0.8.6 28.49.1014");
    assert_eq!(firmware.data["data"].as_object().unwrap().len(), 26);
}

#[test]
fn an_existing_pvc_is_mounted_not_created_and_without_storage_nothing_is_mounted() {
    let mut policy = policy_from_file(EXAMPLE);
    let section = policy.spec.nic_configuration_operator.as_mut().unwrap();
    section.nic_firmware_storage.as_mut().unwrap().create = Some(false);
    let objects = testing::render::<NicConfiguration>(&policy, false);
    assert!(!kinds(&objects).contains(&"PersistentVolumeClaim"));
    assert_eq!(
        pod(&objects, "Deployment", "nic-configuration-operator")["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "nic-fw-storage-pvc"
    );

    policy.spec.nic_configuration_operator.as_mut().unwrap().nic_firmware_storage = None;
    let objects = testing::render::<NicConfiguration>(&policy, false);
    assert!(pod(&objects, "Deployment", "nic-configuration-operator").get("volumes").is_none());
    let mounts = &pod(&objects, "DaemonSet", "nic-configuration-daemon")["containers"][0]["volumeMounts"];
    assert_eq!(mounts.as_array().unwrap().len(), 4, "{mounts}");
}

#[test]
fn env_and_debug_logs_reach_both_containers_after_log_level() {
    let mut policy = policy_from_file(EXAMPLE);
    let section = policy.spec.nic_configuration_operator.as_mut().unwrap();
    section.log_level = Some("debug".into());
    section.env =
        Some(vec![serde_json::from_value(json!({"name": "FW_RESET_AFTER_CONFIG_UPDATE", "value": "true"})).unwrap()]);
    let objects = testing::render::<NicConfiguration>(&policy, false);
    let operator_env = &pod(&objects, "Deployment", "nic-configuration-operator")["containers"][0]["env"];
    assert_eq!(
        operator_env,
        &json!([{"name": "LOG_LEVEL", "value": "debug"}, {"name": "FW_RESET_AFTER_CONFIG_UPDATE", "value": "true"}])
    );
    let daemon_env = pod(&objects, "DaemonSet", "nic-configuration-daemon")["containers"][0]["env"].as_array().unwrap();
    let names: Vec<&str> = daemon_env.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, ["NODE_NAME", "NAMESPACE", "LOG_LEVEL", "FW_RESET_AFTER_CONFIG_UPDATE"]);
}

#[test]
fn each_workload_gets_the_pull_secrets_of_its_own_image_and_resources_by_container() {
    let mut policy = policy_from_file(EXAMPLE);
    testing::add_cross_cutting(
        &mut policy,
        |p| &mut p.spec.nic_configuration_operator.as_mut().unwrap().configuration_daemon,
        "nic-configuration-daemon",
    );
    let section = policy.spec.nic_configuration_operator.as_mut().unwrap();
    section.operator.image_pull_secrets = Some(vec!["operator-secret".into()]);
    policy.spec.deployment_tolerations =
        Some(vec![serde_json::from_value(json!({"key": "infra", "operator": "Exists"})).unwrap()]);
    let objects = golden("openshift_cross_cutting", &policy, true);
    find(&objects, "Role", "nic-configuration-operator");
    let operator = pod(&objects, "Deployment", "nic-configuration-operator");
    let daemon = pod(&objects, "DaemonSet", "nic-configuration-daemon");
    assert_eq!(operator["imagePullSecrets"], json!([{"name": "operator-secret"}]));
    assert_eq!(daemon["imagePullSecrets"], json!([{"name": "registry-secret"}]));
    assert_eq!(daemon["containers"][0]["resources"]["requests"]["cpu"], "200m");
    assert_eq!(operator["containers"][0]["resources"]["limits"]["memory"], "5Gi", "the default stays");
    assert_eq!(operator["tolerations"][0]["key"], "infra");
    assert_eq!(daemon["tolerations"][0]["key"], "dedicated");
}

#[test]
fn bad_storage_or_log_level_is_an_error_naming_the_field() {
    type Break = fn(&mut api::policy::NicConfigurationOperatorSpec);
    let cases: [(&str, Break); 4] = [
        ("spec.nicConfigurationOperator.nicFirmwareStorage.pvcName", |s| {
            s.nic_firmware_storage.as_mut().unwrap().pvc_name = Some("Not_A_Name".into())
        }),
        ("spec.nicConfigurationOperator.nicFirmwareStorage.availableStorageSize", |s| {
            s.nic_firmware_storage.as_mut().unwrap().available_storage_size = Some("1GB".into())
        }),
        ("spec.nicConfigurationOperator.logLevel", |s| s.log_level = Some("trace".into())),
        ("spec.nicConfigurationOperator.configurationDaemon.image", |s| s.configuration_daemon.image.clear()),
    ];
    for (field, break_it) in cases {
        let mut policy = policy_from_file(EXAMPLE);
        break_it(policy.spec.nic_configuration_operator.as_mut().unwrap());
        let error = testing::render_error::<NicConfiguration>(&policy);
        assert!(error.starts_with(field), "{field}: {error}");
    }
}

#[test]
fn the_crds_are_never_rendered_and_the_originals_are_released() {
    let objects = testing::render::<NicConfiguration>(&policy_from_file(EXAMPLE), false);
    assert!(!kinds(&objects).contains(&"CustomResourceDefinition"));
    let released: Vec<&str> = <NicConfiguration as state_core::State>::released().iter().map(|l| l.name).collect();
    assert_eq!(released, nic_configuration::CRDS);
}
