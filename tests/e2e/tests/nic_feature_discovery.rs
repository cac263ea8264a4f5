//! `nic-feature-discovery-controller` against a real API server: its DaemonSet on every node,
//! ready once the played kubelet runs its pods, pruned when the section goes.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{create_node, run_pods};
use e2e::{TestEnv, WAIT, eventually, fresh_policy, seed_policy, unique_name, wait_for_entry};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::time::Duration;

const STATE: &str = "state-nic-feature-discovery";

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn the_binary_runs_discovery_on_every_node_and_cleans_up() {
    let Some(env) = TestEnv::new("netop-e2e-nfd").await else { return };
    let client = env.client.clone();
    create_node(&env, &unique_name("netop-any"), &[]).await;
    let mut policy = seed_policy();
    policy.spec.nic_feature_discovery = Some(
        serde_json::from_value(
            json!({"image": "nic-feature-discovery", "repository": "ghcr.io/mellanox", "version": "v0.0.1"}),
        )
        .unwrap(),
    );
    fresh_policy(&env, &policy).await;
    let mut controller = ControllerProcess::start("nic-feature-discovery-controller", &env.namespace, &[]);
    controller.wait_ready().await;

    wait_for_entry(&client, STATE, "notReady").await;
    eventually("the discovery pod to run", WAIT, || async {
        match run_pods(&client, &env.namespace, "name=nic-feature-discovery", None).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, STATE, "ready").await;

    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"nicFeatureDiscovery": null}})))
        .await
        .unwrap();
    wait_for_entry(&client, STATE, "ignore").await;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &env.namespace);
    assert!(daemon_sets.get_opt("nic-feature-discovery-ds").await.unwrap().is_none());
    let (status, _) = controller.terminate(Duration::from_secs(5)).await;
    assert!(status.success());
}
