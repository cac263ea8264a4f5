//! The aggregator and the rdma-dp controller together against the seed policy: the global
//! status follows the DaemonSet, and `kubectl get nicclusterpolicy` shows it.

use api::{NicClusterPolicy, POLICY_NAME, SyncState};
use e2e::{
    client, delete_if_present, eventually, exclusive, fresh_policy, install_crds, mark_daemonset_available,
    seed_policy, unique_namespace,
};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use state_core::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The sections of the seed policy whose controllers are not part of this test.
const OTHER_STATES: [&str; 4] =
    ["state-multus-cni", "state-container-networking-plugins", "state-whereabouts-cni", "state-OFED"];

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
async fn the_policy_becomes_ready_when_the_rdma_daemonset_is_available() {
    let Some(client) = client().await else { return };
    let _guard = exclusive().await;
    install_crds(&client).await;
    let namespace = unique_namespace(&client, "netop-e2e-agg").await;
    let created = fresh_policy(&client, &seed_policy()).await;
    let generation = created.metadata.generation.unwrap_or(1);

    let rdma = tokio::spawn(state_core::run::run_controller::<rdma_dp::RdmaDevicePlugin>(
        client.clone(),
        namespace.clone(),
        false,
        Metrics::new(),
        Arc::new(AtomicBool::new(false)),
    ));
    let aggregator = tokio::spawn(aggregator::controller::run_controller(
        client.clone(),
        Metrics::new(),
        Arc::new(AtomicBool::new(false)),
    ));

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

    // Only the RDMA plugin holds the policy back once every stand-in entry has been folded in.
    // (Where a DaemonSet controller runs, the plugin matches no node and is ready at once.)
    eventually("the policy to be held back by the RDMA plugin alone", WAIT, || async {
        match global(&client).await? {
            (SyncState::NotReady, Some(reason))
                if reason.contains("state-RDMA-device-plugin") && !OTHER_STATES.iter().any(|s| reason.contains(s)) =>
            {
                Ok(())
            }
            (SyncState::Ready, None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    mark_daemonset_available(&client, &namespace, "rdma-shared-dp-ds").await;
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

    rdma.abort();
    aggregator.abort();
    delete_if_present(&policies, POLICY_NAME).await;
    delete_if_present(&Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()), &namespace).await;
}
