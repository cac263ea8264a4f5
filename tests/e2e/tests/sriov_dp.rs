//! `sriov-dp-controller` against a real API server: ready once its pods run on the NIC nodes,
//! an invalid config is an error that leaves the running DaemonSet untouched, and removing the
//! section prunes it.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{create_node, nic_node_labels, run_pods};
use e2e::{TestEnv, WAIT, eventually, fresh_policy, seed_policy, unique_name, wait_for_entry};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const STATE: &str = "state-SRIOV-device-plugin";
const CONFIG: &str =
    r#"{"resourceList": [{"resourceName": "hostdev", "selectors": {"vendors": ["15b3"], "isRdma": true}}]}"#;

async fn set_config(client: &kube::Client, config: &str) {
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(
            POLICY_NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"sriovDevicePlugin": {"config": config}}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn an_invalid_config_leaves_the_running_plugin_untouched() {
    let Some(env) = TestEnv::new("netop-e2e-sriov").await else { return };
    let client = env.client.clone();
    create_node(&env, &unique_name("netop-nic"), &nic_node_labels()).await;
    let mut policy = seed_policy();
    policy.spec.sriov_device_plugin = Some(
        serde_json::from_value(
            json!({"image": "sriov-network-device-plugin", "repository": "ghcr.io/k8snetworkplumbingwg",
            "version": "v3.7.0", "config": CONFIG}),
        )
        .unwrap(),
    );
    fresh_policy(&env, &policy).await;
    let _controller = ControllerProcess::start("sriov-dp-controller", &env.namespace, &[]);
    eventually("the plugin pod to run", WAIT, || async {
        match run_pods(&client, &env.namespace, "name=sriov-device-plugin", None).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, STATE, "ready").await;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &env.namespace);
    let before = daemon_sets.get("sriov-device-plugin").await.unwrap();

    set_config(&client, r#"{"resourceList": [{"resourceName": "host-dev", "selectors": {"vendors": ["15b3"]}}]}"#)
        .await;
    let message = wait_for_entry(&client, STATE, "error").await.unwrap_or_default();
    assert!(message.starts_with("spec.sriovDevicePlugin.config.resourceList[0].resourceName:"), "{message}");
    let after = daemon_sets.get("sriov-device-plugin").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(after.metadata.generation, before.metadata.generation, "the DaemonSet's spec was written");

    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"sriovDevicePlugin": null}})))
        .await
        .unwrap();
    wait_for_entry(&client, STATE, "ignore").await;
    assert!(daemon_sets.get_opt("sriov-device-plugin").await.unwrap().is_none());
}
