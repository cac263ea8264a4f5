//! `rdma-dp-controller` against a real API server: its objects, readiness from the DaemonSet's
//! pods on NIC nodes (the test plays the kubelet), cleanup when the section goes, garbage
//! collection when the policy goes, and the binary's own health, metrics and shutdown.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{self, create_node, nic_node_labels, run_pods, target_node};
use e2e::{TestEnv, WAIT, applied_state, eventually, fresh_policy, seed_policy, unique_name, wait_for_entry};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use state_core::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const STATE: &str = "state-RDMA-device-plugin";
const DAEMON_SET: &str = "rdma-shared-dp-ds";
const PODS: &str = "app=rdma-shared-dp";

/// Waits until the plugin's DaemonSet and ConfigMap both exist (`present`) or are both gone.
async fn objects_become(client: &kube::Client, namespace: &str, present: bool, what: &str) {
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    eventually(what, WAIT, || async {
        let ds = daemon_sets.get_opt(DAEMON_SET).await.map_err(|e| e.to_string())?;
        let cm = config_maps.get_opt("rdma-devices").await.map_err(|e| e.to_string())?;
        if ds.is_some() == present && cm.is_some() == present { Ok(()) } else { Err(format!("{ds:?} {cm:?}")) }
    })
    .await;
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn the_binary_deploys_the_plugin_is_ready_once_its_pods_run_and_cleans_up() {
    let Some(env) = TestEnv::new("netop-e2e-rdma").await else { return };
    let client = env.client.clone();
    let nic_nodes = [unique_name("netop-nic"), unique_name("netop-nic")];
    for node in &nic_nodes {
        create_node(&env, node, &nic_node_labels()).await;
    }
    let plain_node = unique_name("netop-plain");
    create_node(&env, &plain_node, &[]).await;
    fresh_policy(&env, &seed_policy()).await;

    let mut controller = ControllerProcess::start("rdma-dp-controller", &env.namespace, &[]);
    controller.wait_ready().await;

    // The objects, with the fields that matter.
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &env.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &env.namespace);
    let ds = eventually("the DaemonSet", WAIT, || async {
        daemon_sets.get_opt(DAEMON_SET).await.map_err(|e| e.to_string())?.ok_or("absent".to_string())
    })
    .await;
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers[0].name, "rdma-shared-dp");
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("ghcr.io/mellanox/k8s-rdma-shared-dev-plugin:sha-fe7f371c7e1b8315bf900f71cd25cfc1251dc775")
    );
    let selector = pod.node_selector.clone().unwrap_or_default();
    assert_eq!(selector.get(kubelet::NIC_LABEL).map(String::as_str), Some("true"));
    assert_eq!(selector.get(kubelet::MOFED_WAIT_LABEL).map(String::as_str), Some("false"));
    assert_eq!(ds.metadata.labels.as_ref().unwrap()["nvidia.network-operator.state"], STATE);
    let owner = &ds.metadata.owner_references.as_ref().expect("owner reference")[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("NicClusterPolicy", POLICY_NAME));
    let config = config_maps.get("rdma-devices").await.expect("the ConfigMap exists");
    assert!(config.data.as_ref().unwrap()["config.json"].contains("rdma_shared_device_a"));

    // The DaemonSet controller creates one pod per NIC node and none on the plain node; while
    // they are pending the state is notReady.
    let pods = eventually("one plugin pod per NIC node", WAIT, || async {
        let pods = kubelet::pods(&client, &env.namespace, PODS).await;
        let mut nodes: Vec<String> = pods.iter().filter_map(target_node).collect();
        nodes.sort();
        let mut wanted = nic_nodes.to_vec();
        wanted.sort();
        if nodes == wanted { Ok(pods) } else { Err(format!("pods on {nodes:?}")) }
    })
    .await;
    assert_eq!(pods.len(), 2);
    let message = wait_for_entry(&client, STATE, "notReady").await.unwrap_or_default();
    assert!(message.starts_with(&format!("DaemonSet {DAEMON_SET}:")), "{message}");

    // Play the kubelet: the pods run and are Ready, so the state is ready.
    eventually("the plugin pods to run", WAIT, || async {
        match run_pods(&client, &env.namespace, PODS, None).await {
            2 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, STATE, "ready").await;
    let metrics = controller.metrics().await;
    assert!(metrics.contains(&format!(r#"network_operator_state{{state="{STATE}",value="ready"}} 1"#)), "{metrics}");
    assert!(metrics.contains("network_operator_leader 1"), "{metrics}");
    let build = r#"network_operator_build_info{commit="#;
    assert!(metrics.contains(build) && metrics.contains(r#"component="rdma-dp""#), "{metrics}");
    assert!(metrics.contains("process_cpu_seconds_total ") && metrics.contains("process_open_fds "), "{metrics}");

    // Remove the section: the objects go, the entry says ignore.
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"rdmaSharedDevicePlugin": null}})))
        .await
        .expect("section removed");
    objects_become(&client, &env.namespace, false, "the DaemonSet and ConfigMap to be deleted").await;
    wait_for_entry(&client, STATE, "ignore").await;

    let (status, took) = controller.terminate(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn deleting_the_policy_garbage_collects_the_plugins_objects() {
    let Some(env) = TestEnv::new("netop-e2e-rdma-gc").await else { return };
    let client = env.client.clone();
    fresh_policy(&env, &seed_policy()).await;
    let controller = tokio::spawn(state_core::run::run_controller::<rdma_dp::RdmaDevicePlugin>(
        client.clone(),
        env.namespace.clone(),
        false,
        Metrics::new(),
        Arc::new(AtomicBool::new(false)),
    ));
    objects_become(&client, &env.namespace, true, "the DaemonSet and ConfigMap").await;
    eventually("a first entry", WAIT, || applied_state(&client, STATE)).await;
    // Stop the controller: what follows is the garbage collector's work alone.
    controller.abort();
    let _ = controller.await;
    Api::<NicClusterPolicy>::all(client.clone())
        .delete(POLICY_NAME, &DeleteParams::default())
        .await
        .expect("policy deleted");
    objects_become(&client, &env.namespace, false, "the garbage collector to delete the DaemonSet and ConfigMap").await;
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_plugin_whose_nodes_all_wait_for_the_driver_is_not_ready_and_says_so() {
    let Some(env) = TestEnv::new("netop-e2e-rdma-wait").await else { return };
    let client = env.client.clone();
    let node = unique_name("netop-nic");
    create_node(&env, &node, &[(kubelet::NIC_LABEL, "true"), (kubelet::MOFED_WAIT_LABEL, "true")]).await;
    fresh_policy(&env, &seed_policy()).await; // with an ofedDriver section: the plugin waits for it
    let _controller = ControllerProcess::start("rdma-dp-controller", &env.namespace, &[]);
    let message = eventually("the state to say it waits for the driver", WAIT, || async {
        match applied_state(&client, STATE).await? {
            (state, Some(message)) if state == "notReady" && message.starts_with("waiting for the driver") => {
                Ok(message)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(message, format!("waiting for the driver on 1 node(s): {node}"));

    // The driver is ready on the node: the plugin's pod comes, runs, and the state is ready.
    let ready = json!({"metadata": {"labels": {kubelet::MOFED_WAIT_LABEL: "false"}}});
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .patch(&node, &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    eventually("the plugin pod to run", WAIT, || async {
        match run_pods(&client, &env.namespace, PODS, None).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, STATE, "ready").await;
}
