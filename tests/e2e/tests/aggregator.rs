//! `aggregator` and `rdma-dp-controller`, both as binaries, against the seed policy: the global
//! status follows the RDMA plugin's pods, and `kubectl get nicclusterpolicy` shows it.

use api::{NicClusterPolicy, POLICY_NAME, SyncState};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{create_node, nic_node_labels, run_pods};
use e2e::{TestEnv, WAIT, eventually, fresh_policy, seed_policy, unique_name, wait_for_entry};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::time::Duration;

/// The sections of the seed policy whose controllers are not part of this test.
const OTHER_STATES: [&str; 4] =
    ["state-multus-cni", "state-container-networking-plugins", "state-whereabouts-cni", "state-OFED"];
const RDMA: &str = "state-RDMA-device-plugin";

async fn global(client: &Client) -> Result<(SyncState, Option<String>), String> {
    let policy = Api::<NicClusterPolicy>::all(client.clone()).get(POLICY_NAME).await.map_err(|e| e.to_string())?;
    let status = policy.status.unwrap_or_default();
    status.state.map(|s| (s, status.reason)).ok_or_else(|| "no global state yet".to_string())
}

/// What `kubectl get nicclusterpolicy` prints in the Status column (the server-side table).
async fn status_column(client: &Client) -> Result<String, String> {
    let request = http::Request::get(format!("/apis/mellanox.com/v1alpha1/nicclusterpolicies/{POLICY_NAME}"))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let table: Value = client.request(request).await.map_err(|e| e.to_string())?;
    let columns = table["columnDefinitions"].as_array().ok_or("no columns")?;
    let index = columns.iter().position(|c| c["name"] == "Status").ok_or("no Status column")?;
    Ok(table["rows"][0]["cells"][index].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn the_policy_becomes_ready_when_the_rdma_plugin_pods_run() {
    let Some(env) = TestEnv::new("netop-e2e-agg").await else { return };
    let client = env.client.clone();
    let node = unique_name("netop-nic");
    create_node(&env, &node, &nic_node_labels()).await;
    let created = fresh_policy(&env, &seed_policy()).await;
    let generation = created.metadata.generation.unwrap_or(1);

    let mut aggregator = ControllerProcess::start("aggregator", &env.namespace, &[]);
    let mut rdma = ControllerProcess::start("rdma-dp-controller", &env.namespace, &[]);
    aggregator.wait_ready().await;

    // Stand in for the controllers of the seed's other sections: each owns its own entry.
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    for state in OTHER_STATES {
        let patch = json!({
            "apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy", "metadata": {"name": POLICY_NAME},
            "status": {"appliedStates": [{"name": state, "state": "ready", "observedGeneration": generation}]},
        });
        policies
            .patch_status(POLICY_NAME, &PatchParams::apply(&format!("e2e/{state}")).force(), &Patch::Apply(&patch))
            .await
            .expect("stand-in entry written");
    }

    // The plugin's pod is pending: its entry is notReady, its DaemonSet exists, and it alone
    // holds the policy back.
    wait_for_entry(&client, RDMA, "notReady").await;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &env.namespace);
    assert!(daemon_sets.get_opt("rdma-shared-dp-ds").await.unwrap().is_some());
    eventually("the policy to be held back by the RDMA plugin alone", WAIT, || async {
        match global(&client).await? {
            (SyncState::NotReady, Some(reason))
                if reason.contains(RDMA)
                    && !reason.contains("no controller has reported")
                    && !OTHER_STATES.iter().any(|s| reason.contains(s)) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Play the kubelet for the plugin's pod.
    eventually("the plugin pod to run", WAIT, || async {
        match run_pods(&client, &env.namespace, "app=rdma-shared-dp", None).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    eventually("the policy to be ready", WAIT, || async {
        match global(&client).await? {
            (SyncState::Ready, None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let policy = policies.get(POLICY_NAME).await.unwrap();
    let ready = policy.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.observed_generation), ("True", Some(generation)));
    eventually("the Status column to show ready", WAIT, || async {
        let shown = status_column(&client).await?;
        if shown == "ready" { Ok(()) } else { Err(format!("Status column shows {shown:?}")) }
    })
    .await;
    let metrics = aggregator.metrics().await;
    assert!(metrics.contains(r#"network_operator_policy_state{value="ready"} 1"#), "{metrics}");
    assert!(metrics.contains(&format!(r#"network_operator_state{{state="{RDMA}",value="ready"}} 1"#)), "{metrics}");

    for process in [&mut aggregator, &mut rdma] {
        let (status, took) = process.terminate(Duration::from_secs(5)).await;
        assert!(status.success(), "exit status {status:?} after {took:?}");
    }
}
