//! The rdma-dp controller, run in-process against a real API server: objects, status entry,
//! readiness from the DaemonSet status, and cleanup when the section is removed.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::{
    client, delete_if_present, eventually, exclusive, fresh_policy, install_crds, mark_daemonset_available,
    seed_policy, unique_namespace,
};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use state_core::metrics::Metrics;
use state_core::run::run_controller;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn entry(client: &Client) -> Result<(String, Option<String>), String> {
    let policy = Api::<NicClusterPolicy>::all(client.clone()).get(POLICY_NAME).await.map_err(|e| e.to_string())?;
    let entry = policy.applied_state("state-RDMA-device-plugin").ok_or("no entry for state-RDMA-device-plugin yet")?;
    Ok((entry.state.to_string(), entry.message.clone()))
}

async fn entry_is(client: &Client, wanted: &str) -> Result<Option<String>, String> {
    let (state, message) = entry(client).await?;
    if state == wanted { Ok(message) } else { Err(format!("state is {state} ({message:?})")) }
}

#[tokio::test]
async fn rdma_dp_deploys_reports_and_cleans_up() {
    let Some(client) = client().await else { return };
    let _guard = exclusive().await;
    install_crds(&client).await;
    let namespace = unique_namespace(&client, "netop-e2e-rdma").await;
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    fresh_policy(&client, &seed_policy()).await;

    let controller = tokio::spawn(run_controller::<rdma_dp::RdmaDevicePlugin>(
        client.clone(),
        namespace.clone(),
        false,
        Metrics::new(),
        Arc::new(AtomicBool::new(false)),
    ));

    // Objects exist with the expected fields.
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let ds = eventually("the DaemonSet", WAIT, || async {
        daemon_sets.get_opt("rdma-shared-dp-ds").await.map_err(|e| e.to_string())?.ok_or("absent".to_string())
    })
    .await;
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers[0].name, "rdma-shared-dp");
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("ghcr.io/mellanox/k8s-rdma-shared-dev-plugin:sha-fe7f371c7e1b8315bf900f71cd25cfc1251dc775")
    );
    let selector = pod.node_selector.clone().unwrap_or_default();
    assert_eq!(selector.get("feature.node.kubernetes.io/pci-15b3.present").map(String::as_str), Some("true"));
    assert_eq!(selector.get("network.nvidia.com/operator.mofed.wait").map(String::as_str), Some("false"));
    assert_eq!(ds.metadata.labels.as_ref().unwrap()["nvidia.network-operator.state"], "state-RDMA-device-plugin");
    let owner = &ds.metadata.owner_references.as_ref().expect("owner reference")[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("NicClusterPolicy", POLICY_NAME));
    let config_map = config_maps.get("rdma-devices").await.expect("the ConfigMap exists");
    let config = &config_map.data.as_ref().unwrap()["config.json"];
    assert!(config.contains("rdma_shared_device_a"), "{config}");

    // With only an API server the DaemonSet has no status, so the state is notReady. (Where a
    // DaemonSet controller runs, no node carries the NIC label: ready, "no node matches".)
    let (state, message) = eventually("a first entry", WAIT, || async {
        match entry(&client).await? {
            (state, message) if state == "notReady" => Ok((state, message)),
            (state, Some(message)) if state == "ready" && message.contains("no node matches") => {
                Ok((state, Some(message)))
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    if state == "notReady" {
        let message = message.unwrap_or_default();
        assert!(message.starts_with("DaemonSet rdma-shared-dp-ds:"), "{message}");
    } else {
        eprintln!("a DaemonSet controller runs in this cluster: {message:?}");
    }

    // Play the DaemonSet controller: every desired pod available and updated.
    mark_daemonset_available(&client, &namespace, "rdma-shared-dp-ds").await;
    eventually("the entry to be ready", WAIT, || entry_is(&client, "ready")).await;

    // Remove the section: the objects go, the entry says ignore.
    policies
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"rdmaSharedDevicePlugin": null}})))
        .await
        .expect("section removed");
    eventually("the DaemonSet and ConfigMap to be deleted", WAIT, || async {
        let ds = daemon_sets.get_opt("rdma-shared-dp-ds").await.map_err(|e| e.to_string())?;
        let cm = config_maps.get_opt("rdma-devices").await.map_err(|e| e.to_string())?;
        if ds.is_none() && cm.is_none() { Ok(()) } else { Err("still present".to_string()) }
    })
    .await;
    eventually("the entry to be ignore", WAIT, || entry_is(&client, "ignore")).await;

    controller.abort();
    delete_if_present(&policies, POLICY_NAME).await;
    delete_if_present(&Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()), &namespace).await;
}
