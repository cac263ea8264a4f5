//! `doca-telemetry-controller` against a real API server: the user's ConfigMap must exist (the
//! state waits for it, and never owns or changes it), the service runs on NIC nodes, and
//! removing the section removes the service but not the user's ConfigMap.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{create_node, nic_node_labels, run_pods};
use e2e::{TestEnv, WAIT, eventually, fresh_policy, seed_policy, unique_name, wait_for_entry};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const STATE: &str = "state-doca-telemetry-service";

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn the_service_waits_for_the_users_config_map_runs_and_leaves_it_alone() {
    let Some(env) = TestEnv::new("netop-e2e-dts").await else { return };
    let client = env.client.clone();
    create_node(&env, &unique_name("netop-nic"), &nic_node_labels()).await;
    let mut policy = seed_policy();
    policy.spec.doca_telemetry_service = Some(
        serde_json::from_value(json!({"image": "doca_telemetry", "repository": "nvcr.io/nvidia/doca",
            "version": "1.16.5-doca2.6.0-host", "config": {"fromConfigMap": "my-dts-config"}}))
        .unwrap(),
    );
    fresh_policy(&env, &policy).await;
    let _controller = ControllerProcess::start("doca-telemetry-controller", &env.namespace, &[]);
    let message = wait_for_entry(&client, STATE, "notReady").await.unwrap_or_default();
    assert!(message.contains("my-dts-config") && message.contains("does not exist"), "{message}");

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &env.namespace);
    let users: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "my-dts-config"}, "data": {"dts_config_map.ini": "port=0"}}),
    )
    .unwrap();
    let created = config_maps.create(&PostParams::default(), &users).await.unwrap();
    eventually("the service to run", WAIT, || async {
        match run_pods(&client, &env.namespace, "app.kubernetes.io/name=doca-telemetry", None).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, STATE, "ready").await;

    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"docaTelemetryService": null}})))
        .await
        .unwrap();
    wait_for_entry(&client, STATE, "ignore").await;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &env.namespace);
    assert!(daemon_sets.get_opt("doca-telemetry-service").await.unwrap().is_none());
    let after = config_maps.get("my-dts-config").await.expect("the user's ConfigMap stays");
    assert_eq!(after.resource_version(), created.resource_version());
}
