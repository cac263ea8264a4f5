//! The aggregator's reconcile against a mock API server: exact writes, no writes when
//! nothing changed, an Event on transitions.

use aggregator::controller::{Context, reconcile};
use api::policy::{AppliedState, NicClusterPolicyStatus};
use api::state::names;
use api::{NicClusterPolicy, SyncState};
use serde_json::{Value, json};
use state_core::metrics::Metrics;
use state_core::testing::{ApiServer, mock_client, policy_from_file};
use std::sync::Arc;

const SEED: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml";
const STATUS: &str = "/apis/mellanox.com/v1alpha1/nicclusterpolicies/nic-cluster-policy/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

/// The seed policy (OFED, RDMA, multus, CNI plugins, whereabouts) with every state `state`.
fn policy_with_every_state(state: SyncState) -> NicClusterPolicy {
    let mut policy = policy_from_file(SEED);
    policy.metadata.generation = Some(4);
    policy.metadata.uid = Some("7d9f2c1a-0000-4000-8000-000000000001".into());
    let entries = [names::MULTUS, names::CNI_PLUGINS, names::WHEREABOUTS, names::OFED, names::RDMA_DP]
        .iter()
        .map(|name| AppliedState { name: (*name).into(), state, message: None, observed_generation: Some(4) })
        .collect();
    policy.status = Some(NicClusterPolicyStatus { applied_states: Some(entries), ..Default::default() });
    policy
}

fn start(
    policy: NicClusterPolicy,
) -> (
    ApiServer,
    tokio::task::JoinHandle<Result<kube::runtime::controller::Action, aggregator::controller::Error>>,
    Metrics,
) {
    let (client, server) = mock_client();
    let metrics = Metrics::new();
    let ctx = Arc::new(Context::new(client, metrics.clone()));
    (server, tokio::spawn(reconcile(Arc::new(policy), ctx)), metrics)
}

fn echo(body: &Value) -> Value {
    let mut object = body.clone();
    object["metadata"]["name"] = json!("event");
    object["metadata"]["namespace"] = json!("default");
    object
}

#[tokio::test]
async fn a_change_is_written_once_without_applied_states_and_announced_by_an_event() {
    let policy = policy_with_every_state(SyncState::Ready);
    let (mut server, task, metrics) = start(policy.clone());
    let write = server.expect("PATCH", STATUS, 200, serde_json::to_value(&policy).unwrap()).await;
    assert!(write.has_query("fieldManager", "network-operator%2Faggregator"), "{}", write.uri);
    assert!(write.has_query("force", "true"), "{}", write.uri);
    let status = &write.body["status"];
    assert_eq!(status["state"], "ready");
    assert!(status.get("reason").is_none(), "{status}");
    assert!(status.get("appliedStates").is_none(), "the aggregator never touches appliedStates: {status}");
    let condition = &status["conditions"][0];
    assert_eq!(
        (&condition["type"], &condition["status"], &condition["reason"], &condition["observedGeneration"]),
        (&json!("Ready"), &json!("True"), &json!("AllComponentsReady"), &json!(4))
    );
    let served = &status["conditions"][1];
    assert_eq!((&served["type"], &served["status"]), (&json!("NodesServed"), &json!("True")), "{status}");
    // Then one condition per enabled section, each True/ComponentReady.
    let components: Vec<&Value> = status["conditions"].as_array().unwrap()[2..].iter().collect();
    assert_eq!(components.len(), 5, "the seed policy's five sections: {status}");
    assert!(components.iter().all(|c| c["status"] == "True" && c["reason"] == "ComponentReady"), "{status}");
    assert!(components.iter().any(|c| c["type"] == "OFEDDriverReady"), "{status}");
    let event = server.handle("POST", EVENTS, |r| (201, echo(&r.body))).await;
    assert_eq!(event.body["reason"], "StateReady");
    assert_eq!(event.body["note"], "unknown -> ready");
    assert_eq!(event.body["regarding"]["kind"], "NicClusterPolicy");
    server.expect_no_more().await;
    task.await.unwrap().unwrap();

    let text = metrics.encode();
    assert!(text.contains(r#"network_operator_policy_state{value="ready"} 1"#), "{text}");
    assert!(text.contains(r#"network_operator_policy_section_state{state="state-OFED",value="ready"} 1"#), "{text}");
    assert!(
        text.contains(r#"network_operator_policy_section_state{state="state-SRIOV-device-plugin",value="ignore"} 1"#),
        "{text}"
    );
    assert!(!text.contains("network_operator_state{"), "each state's own controller exports that one: {text}");
}

#[tokio::test]
async fn an_unchanged_global_status_makes_zero_writes() {
    let policy = policy_with_every_state(SyncState::Ready);
    let (mut server, task, _) = start(policy.clone());
    let write = server.expect("PATCH", STATUS, 200, serde_json::to_value(&policy).unwrap()).await;
    server.handle("POST", EVENTS, |r| (201, echo(&r.body))).await;
    task.await.unwrap().unwrap();

    // The policy as the API server now holds it: our status applied on top.
    let mut written = policy.clone();
    let status = written.status.as_mut().unwrap();
    status.state = Some(SyncState::Ready);
    status.conditions = serde_json::from_value(write.body["status"]["conditions"].clone()).unwrap();
    let (mut server, task, _) = start(written);
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_new_reason_without_a_state_change_is_written_without_an_event() {
    let mut policy = policy_with_every_state(SyncState::NotReady);
    let status = policy.status.as_mut().unwrap();
    status.state = Some(SyncState::NotReady);
    status.reason = Some("an older reason".into());
    let (mut server, task, _) = start(policy.clone());
    let write = server.expect("PATCH", STATUS, 200, serde_json::to_value(&policy).unwrap()).await;
    assert_eq!(write.body["status"]["state"], "notReady");
    assert!(write.body["status"]["reason"].as_str().unwrap().starts_with("state-multus-cni: not ready"));
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_error_is_announced_by_a_warning_event() {
    let mut policy = policy_with_every_state(SyncState::Ready);
    let entries = policy.status.as_mut().unwrap().applied_states.as_mut().unwrap();
    entries[4] = AppliedState {
        name: names::RDMA_DP.into(),
        state: SyncState::Error,
        message: Some("spec.rdmaSharedDevicePlugin.config: invalid JSON".into()),
        observed_generation: Some(4),
    };
    policy.status.as_mut().unwrap().state = Some(SyncState::Ready);
    let (mut server, task, _) = start(policy.clone());
    let write = server.expect("PATCH", STATUS, 200, serde_json::to_value(&policy).unwrap()).await;
    assert_eq!(write.body["status"]["state"], "error");
    let event = server.handle("POST", EVENTS, |r| (201, echo(&r.body))).await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(
        event.body["note"],
        "ready -> error: state-RDMA-device-plugin: spec.rdmaSharedDevicePlugin.config: invalid JSON"
    );
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_policy_with_another_name_gets_ignore_and_the_originals_reason() {
    let mut policy = policy_with_every_state(SyncState::Ready);
    policy.metadata.name = Some("other".into());
    policy.status = None;
    let (mut server, task, metrics) = start(policy.clone());
    let write = server
        .expect(
            "PATCH",
            "/apis/mellanox.com/v1alpha1/nicclusterpolicies/other/status",
            200,
            serde_json::to_value(&policy).unwrap(),
        )
        .await;
    assert_eq!(write.body["status"]["state"], "ignore");
    assert_eq!(
        write.body["status"]["reason"],
        "Unsupported NicClusterPolicy instance other. Only instance with name nic-cluster-policy is supported"
    );
    server.handle("POST", EVENTS, |r| (201, echo(&r.body))).await;
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
    assert!(!metrics.encode().contains("network_operator_policy_state{"), "other policies do not drive the gauge");
}
