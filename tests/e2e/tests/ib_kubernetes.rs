//! `ib-kubernetes-controller` against a real API server: ready only once its Deployment is
//! Available (the test plays scheduler and kubelet for its pod), pruned when the section goes.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{create_node, run_pods};
use e2e::{TestEnv, WAIT, eventually, fresh_policy, seed_policy, unique_name, wait_for_entry};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const STATE: &str = "state-ib-kubernetes";

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn the_binary_is_ready_once_the_deployment_is_available_and_cleans_up() {
    let Some(env) = TestEnv::new("netop-e2e-ib").await else { return };
    let client = env.client.clone();
    let node = unique_name("netop-cp");
    create_node(&env, &node, &[]).await;
    let mut policy = seed_policy();
    policy.spec.ib_kubernetes = Some(
        serde_json::from_value(json!({"image": "ib-kubernetes", "repository": "ghcr.io/mellanox", "version": "v1.0.2",
            "pKeyGUIDPoolRangeStart": "02:00:00:00:00:00:00:00", "pKeyGUIDPoolRangeEnd": "02:FF:FF:FF:FF:FF:FF:FF",
            "ufmSecret": "ufm-secret"}))
        .unwrap(),
    );
    fresh_policy(&env, &policy).await;
    let _controller = ControllerProcess::start("ib-kubernetes-controller", &env.namespace, &[]);
    wait_for_entry(&client, STATE, "notReady").await;
    eventually("the ib-kubernetes pod to run", WAIT, || async {
        match run_pods(&client, &env.namespace, "name=ib-kubernetes", Some(&node)).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, STATE, "ready").await;

    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"ibKubernetes": null}})))
        .await
        .unwrap();
    wait_for_entry(&client, STATE, "ignore").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &env.namespace);
    assert!(deployments.get_opt("ib-kubernetes").await.unwrap().is_none());
}
