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

/// The policy's condition of `type_` as (status, reason, message), if it has one.
async fn condition(client: &Client, type_: &str) -> Result<Option<(String, String, String)>, String> {
    let policy = Api::<NicClusterPolicy>::all(client.clone()).get(POLICY_NAME).await.map_err(|e| e.to_string())?;
    let conditions = policy.status.and_then(|s| s.conditions).unwrap_or_default();
    Ok(conditions.into_iter().find(|c| c.type_ == type_).map(|c| (c.status, c.reason, c.message)))
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

/// Writes a `ready` entry for generation `generation` as the controller of each of `states`
/// would (its own field manager), with the message `message_of` gives it.
async fn stand_in(client: &Client, states: &[&str], generation: i64, message_of: impl Fn(&str) -> String) {
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    for state in states {
        let message = message_of(state);
        let patch = json!({
            "apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy", "metadata": {"name": POLICY_NAME},
            "status": {"appliedStates": [{"name": state, "state": "ready", "message": message, "observedGeneration": generation}]},
        });
        policies
            .patch_status(POLICY_NAME, &PatchParams::apply(&format!("e2e/{state}")).force(), &Patch::Apply(&patch))
            .await
            .expect("stand-in entry written");
    }
}

/// Waits until the policy is `ready` with nothing to say.
async fn policy_ready(client: &Client) {
    eventually("the policy to be ready", WAIT, || async {
        match global(client).await? {
            (SyncState::Ready, None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Plays the kubelet for the RDMA plugin's one pod until it runs.
async fn run_the_plugin_pod(client: &Client, namespace: &str) {
    eventually("the plugin pod to run", WAIT, || async {
        match run_pods(client, namespace, "app=rdma-shared-dp", None).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
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
    stand_in(&client, &OTHER_STATES, generation, |_| String::new()).await;

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
    run_the_plugin_pod(&client, &env.namespace).await;
    policy_ready(&client).await;
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
    let section = format!(r#"network_operator_policy_section_state{{state="{RDMA}",value="ready"}} 1"#);
    assert!(metrics.contains(&section), "{metrics}");
    assert!(!metrics.contains("network_operator_state{"), "one exporter per series: {metrics}");
    let own = rdma.metrics().await;
    assert!(own.contains(&format!(r#"network_operator_state{{state="{RDMA}",value="ready"}} 1"#)), "{own}");

    // The policy deleted: neither process goes on exporting a state, as after a restart.
    policies.delete(POLICY_NAME, &Default::default()).await.unwrap();
    for process in [&aggregator, &rdma] {
        eventually("the state series to be withdrawn", WAIT, || async {
            let metrics = process.metrics().await;
            let stale = metrics
                .lines()
                .any(|l| l.starts_with("network_operator_state{") || l.starts_with("network_operator_policy_"));
            if stale { Err(metrics) } else { Ok(()) }
        })
        .await;
    }

    for process in [&mut aggregator, &mut rdma] {
        let (status, took) = process.terminate(Duration::from_secs(5)).await;
        assert!(status.success(), "exit status {status:?} after {took:?}");
    }
}

/// `kubectl get events` about the policy with `uid`, oldest first: (reason, message) rows.
fn kubectl_events(uid: &str) -> Option<Vec<(String, String)>> {
    let kubeconfig = e2e::kubeconfig_path()?;
    let output = std::process::Command::new("kubectl")
        .args(["get", "events", "--namespace", "default", "--kubeconfig", &kubeconfig])
        .args(["--field-selector", &format!("involvedObject.uid={uid}"), "--sort-by", ".metadata.creationTimestamp"])
        .args(["--output", "custom-columns=REASON:.reason,MESSAGE:.message", "--no-headers"])
        .output()
        .ok()?;
    assert!(output.status.success(), "kubectl: {}", String::from_utf8_lossy(&output.stderr));
    let rows = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(char::is_whitespace))
        .map(|(reason, message)| (reason.to_string(), message.trim().to_string()))
        .collect();
    Some(rows)
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn each_transition_of_the_policy_reads_as_itself_in_kubectl_get_events() {
    let Some(env) = TestEnv::new("netop-e2e-events").await else { return };
    if std::process::Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        eprintln!("skipping: no kubectl on the PATH (hack/e2e.sh installs one)");
        return;
    }
    let client = env.client.clone();
    create_node(&env, &unique_name("netop-nic"), &nic_node_labels()).await;
    let mut policy = seed_policy();
    policy.spec.rdma_shared_device_plugin.as_mut().unwrap().config = Some("[]".into());
    let created = fresh_policy(&env, &policy).await;
    let uid = created.metadata.uid.clone().unwrap_or_default();
    let generation = created.metadata.generation.unwrap_or(1);
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    stand_in(&client, &OTHER_STATES, generation, |_| String::new()).await;
    let _aggregator = ControllerProcess::start("aggregator", &env.namespace, &[]);
    let _rdma = ControllerProcess::start("rdma-dp-controller", &env.namespace, &[]);

    // error (a config the plugin refuses) -> notReady (fixed; its pod pending) -> ready.
    eventually("the policy in error", WAIT, || async {
        match global(&client).await? {
            (SyncState::Error, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The section's own condition says why, as the original's; the aggregate names the reason.
    eventually("RDMASharedDevicePluginReady False with ComponentError", WAIT, || async {
        match condition(&client, "RDMASharedDevicePluginReady").await? {
            Some((s, r, m)) if s == "False" && r == "ComponentError" && m.contains("config") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let ready = condition(&client, "Ready").await.unwrap().expect("a Ready condition");
    assert_eq!((ready.0.as_str(), ready.1.as_str()), ("False", "ComponentError"), "{ready:?}");
    let config =
        r#"{"configList": [{"resourceName": "rdma_shared_device_a", "rdmaHcaMax": 63, "devices": ["mlx5_0"]}]}"#;
    policies
        .patch(
            POLICY_NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"rdmaSharedDevicePlugin": {"config": config}}})),
        )
        .await
        .unwrap();
    // The other entries follow the new generation.
    stand_in(&client, &OTHER_STATES, generation + 1, |_| String::new()).await;
    eventually("the policy notReady", WAIT, || async {
        match global(&client).await? {
            (SyncState::NotReady, Some(reason)) if reason.contains(RDMA) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    run_the_plugin_pod(&client, &env.namespace).await;
    let rows = eventually("the three transitions in kubectl get events", WAIT, || async {
        let rows = kubectl_events(&uid).ok_or("kubectl did not run")?;
        let reasons: Vec<&str> = rows.iter().map(|(reason, _)| reason.as_str()).collect();
        if reasons.ends_with(&["StateError", "StateNotReady", "StateReady"]) {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    let last = &rows[rows.len() - 3..];
    assert!(last[0].1.contains("-> error:") && last[0].1.contains("spec.rdmaSharedDevicePlugin.config"), "{rows:?}");
    assert!(last[1].1.starts_with("error -> notReady:"), "the notReady Event says this transition: {rows:?}");
    assert_eq!(last[2].1, "notReady -> ready", "{rows:?}");
    let ready = condition(&client, "Ready").await.unwrap().expect("a Ready condition");
    assert_eq!((ready.0.as_str(), ready.1.as_str()), ("True", "AllComponentsReady"), "{ready:?}");
    let rdma = condition(&client, "RDMASharedDevicePluginReady").await.unwrap();
    assert_eq!(rdma.map(|c| (c.0, c.1)), Some(("True".into(), "ComponentReady".into())));

    // The section removed: its condition goes (the aggregator's apply no longer holds it).
    policies
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"rdmaSharedDevicePlugin": null}})))
        .await
        .unwrap();
    stand_in(&client, &OTHER_STATES, generation + 2, |_| String::new()).await;
    eventually("RDMASharedDevicePluginReady removed", WAIT, || async {
        match condition(&client, "RDMASharedDevicePluginReady").await? {
            None => Ok(()),
            Some(c) => Err(format!("still {c:?}")),
        }
    })
    .await;
    // The other sections' conditions stay (True once their entries follow the new generation).
    for type_ in ["OFEDDriverReady", "MultusCNIReady", "CNIPluginsReady", "WhereaboutsCNIReady"] {
        eventually("the other sections' conditions True", WAIT, || async {
            match condition(&client, type_).await? {
                Some((s, _, _)) if s == "True" => Ok(()),
                other => Err(format!("{type_}: {other:?}")),
            }
        })
        .await;
    }
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_ready_entry_whose_controller_stopped_reads_as_no_controller_once_its_lease_expires() {
    let Some(env) = TestEnv::new("netop-e2e-stopped").await else { return };
    let client = env.client.clone();
    create_node(&env, &unique_name("netop-nic"), &nic_node_labels()).await;
    let created = fresh_policy(&env, &seed_policy()).await;
    let generation = created.metadata.generation.unwrap_or(1);
    stand_in(&client, &OTHER_STATES, generation, |_| String::new()).await;
    // As the chart runs them: leader election in the release's namespace, short leases.
    let elect = [
        ("LEADER_ELECT", "true"),
        ("LEASE_NAMESPACE", env.namespace.as_str()),
        ("LEASE_DURATION", "3"),
        ("RENEW_DEADLINE", "2"),
        ("RETRY_PERIOD", "1"),
    ];
    let _aggregator = ControllerProcess::start("aggregator", &env.namespace, &elect);
    let mut rdma = ControllerProcess::start("rdma-dp-controller", &env.namespace, &elect);
    wait_for_entry(&client, RDMA, "notReady").await;
    run_the_plugin_pod(&client, &env.namespace).await;
    policy_ready(&client).await;

    // Its chart uninstalled: the controller stops; its entry still says ready.
    let (status, _) = rdma.terminate(Duration::from_secs(5)).await;
    assert!(status.success());
    let reason = eventually("the policy to say the RDMA controller is gone", Duration::from_secs(90), || async {
        match global(&client).await? {
            (SyncState::NotReady, Some(reason)) if reason.contains("no controller has reported") => Ok(reason),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        reason
            .starts_with(&format!("{RDMA}: no controller has reported; is its chart enabled? (its controller's Lease")),
        "{reason}"
    );
    assert_eq!(
        Some("ready"),
        e2e::applied_state(&client, RDMA).await.ok().map(|(s, _)| s).as_deref(),
        "the entry itself is left as it was"
    );
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_ready_policy_whose_driver_leaves_nodes_out_says_so_in_its_reason_and_a_condition() {
    let Some(env) = TestEnv::new("netop-e2e-leftout").await else { return };
    let client = env.client.clone();
    let created = fresh_policy(&env, &seed_policy()).await;
    let generation = created.metadata.generation.unwrap_or(1);
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    let left_out = "left out: 1 NIC node(s) without NFD labels get no driver: n3 (missing feature.node.kubernetes.io/kernel-version.full)";
    let states: Vec<&str> = OTHER_STATES.iter().copied().chain([RDMA]).collect();
    stand_in(&client, &states, generation, |state| match state {
        "state-OFED" => format!("1 pool(s) ready on 2 node(s); {left_out}"),
        _ => String::new(),
    })
    .await;
    let _aggregator = ControllerProcess::start("aggregator", &env.namespace, &[]);
    let reason = eventually("the ready policy to name the node left out", WAIT, || async {
        match global(&client).await? {
            (SyncState::Ready, Some(reason)) => Ok(reason),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(reason, format!("state-OFED: {left_out}"));
    let policy = policies.get(POLICY_NAME).await.unwrap();
    let conditions = policy.status.unwrap().conditions.unwrap();
    let served = conditions.iter().find(|c| c.type_ == "NodesServed").expect("a NodesServed condition");
    assert_eq!((served.status.as_str(), served.reason.as_str()), ("False", "NodesLeftOut"));
    assert!(served.message.contains("n3"), "{served:?}");
}
