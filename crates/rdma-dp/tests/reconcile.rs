//! The real reconcile function against a mock API server: the exact requests it sends.

use api::NicClusterPolicy;
use api::SyncState;
use api::policy::{AppliedState, NicClusterPolicyStatus};
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use rdma_dp::RdmaDevicePlugin;
use serde_json::{Value, json};
use state_core::State;
use state_core::metrics::Metrics;
use state_core::owned::OwnedObjects;
use state_core::reconcile::{Context, Error, reconcile};
use state_core::testing::{ApiServer, NAMESPACE, Received, mock_client, policy_from_file};
use std::sync::Arc;
use tokio::task::JoinHandle;

const SEED: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml";
const CONFIG_MAP: &str = "/api/v1/namespaces/nvidia-network-operator/configmaps/rdma-devices";
const DAEMON_SET: &str = "/apis/apps/v1/namespaces/nvidia-network-operator/daemonsets/rdma-shared-dp-ds";
const STATUS: &str = "/apis/mellanox.com/v1alpha1/nicclusterpolicies/nic-cluster-policy/status";
const MANAGER: &str = "network-operator%2Frdma-dp";

fn policy() -> NicClusterPolicy {
    let mut policy = policy_from_file(SEED);
    policy.metadata.uid = Some("6a1e4d1c-9a57-4a44-9d6a-0f1e2d3c4b5a".into());
    policy.metadata.generation = Some(1);
    policy
}

/// What the API server returns for a status write: the policy.
fn policy_json() -> Value {
    serde_json::to_value(policy()).unwrap()
}

fn with_entry(mut policy: NicClusterPolicy, state: SyncState, message: Option<&str>) -> NicClusterPolicy {
    policy.status = Some(NicClusterPolicyStatus {
        applied_states: Some(vec![AppliedState {
            name: RdmaDevicePlugin::NAME.into(),
            state,
            message: message.map(String::from),
            observed_generation: policy.metadata.generation,
        }]),
        ..Default::default()
    });
    policy
}

fn start(policy: NicClusterPolicy, live: Vec<DynamicObject>) -> (ApiServer, JoinHandle<Result<Action, Error>>) {
    let (client, server) = mock_client();
    let owned = OwnedObjects::from_objects(RdmaDevicePlugin::kinds(), live);
    let ctx = Arc::new(Context::new(client, NAMESPACE.into(), false, owned, Metrics::new()));
    let task = tokio::spawn(reconcile::<RdmaDevicePlugin>(Arc::new(policy), ctx));
    (server, task)
}

/// What the API server returns for an apply: the object, with server fields.
fn applied(request: &Received, status: Value) -> Value {
    let mut object = request.body.clone();
    object["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000001");
    object["metadata"]["resourceVersion"] = json!("1");
    object["metadata"]["generation"] = json!(1);
    if !status.is_null() {
        object["status"] = status;
    }
    object
}

fn available() -> Value {
    json!({"observedGeneration": 1, "desiredNumberScheduled": 2, "numberAvailable": 2, "updatedNumberScheduled": 2})
}

fn live(request: &Received, status: Value) -> DynamicObject {
    serde_json::from_value(applied(request, status)).unwrap()
}

fn assert_is_apply(request: &Received) {
    assert!(request.has_query("fieldManager", MANAGER), "{}", request.uri);
    assert!(request.has_query("force", "true"), "{}", request.uri);
}

/// The first reconcile of a fresh cluster; returns the two applied objects' requests.
async fn first_reconcile(server: &mut ApiServer) -> (Received, Received) {
    server.expect_absent(CONFIG_MAP).await;
    let config_map = server.handle("PATCH", CONFIG_MAP, |r| (200, applied(r, Value::Null))).await;
    server.expect_absent(DAEMON_SET).await;
    let daemon_set = server.handle("PATCH", DAEMON_SET, |r| (200, applied(r, Value::Null))).await;
    (config_map, daemon_set)
}

/// A whole first reconcile on a fresh cluster; returns the two applies (what is now live).
async fn applied_once() -> (Received, Received) {
    let (mut server, task) = start(policy(), vec![]);
    let applies = first_reconcile(&mut server).await;
    server.expect("PATCH", STATUS, 200, policy_json()).await;
    task.await.unwrap().unwrap();
    applies
}

#[tokio::test]
async fn first_reconcile_applies_every_object_then_reports_not_ready() {
    let (mut server, task) = start(policy(), vec![]);
    let (config_map, daemon_set) = first_reconcile(&mut server).await;
    assert_is_apply(&config_map);
    assert_is_apply(&daemon_set);
    assert_eq!(config_map.body["kind"], "ConfigMap");
    assert_eq!(daemon_set.body["metadata"]["labels"]["nvidia.network-operator.state"], "state-RDMA-device-plugin");
    assert_eq!(daemon_set.body["metadata"]["ownerReferences"][0]["kind"], "NicClusterPolicy");
    assert!(daemon_set.body["metadata"]["annotations"]["nvidia.network-operator.revision"].is_string());

    let status = server.expect("PATCH", STATUS, 200, policy_json()).await;
    assert_is_apply(&status);
    assert_eq!(
        status.body["status"],
        json!({"appliedStates": [{
            "name": "state-RDMA-device-plugin",
            "state": "notReady",
            "message": "DaemonSet rdma-shared-dp-ds: status not yet observed for generation 1",
            "observedGeneration": 1,
        }]})
    );
    assert_eq!(status.body["kind"], "NicClusterPolicy");
    server.expect_no_more().await;
    assert!(task.await.unwrap().is_ok());
}

#[tokio::test]
async fn steady_state_makes_zero_writes() {
    let (config_map, daemon_set) = applied_once().await;

    let live_objects = vec![live(&config_map, Value::Null), live(&daemon_set, available())];
    let (mut server, task) = start(with_entry(policy(), SyncState::Ready, None), live_objects);
    server.expect_no_more().await;
    assert!(task.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_ready_daemonset_is_reported_ready_once() {
    let (config_map, daemon_set) = applied_once().await;

    let live_objects = vec![live(&config_map, Value::Null), live(&daemon_set, available())];
    let (mut server, task) = start(with_entry(policy(), SyncState::NotReady, Some("old")), live_objects);
    let status = server.expect("PATCH", STATUS, 200, policy_json()).await;
    assert_eq!(status.body["status"]["appliedStates"][0]["state"], "ready");
    assert!(status.body["status"]["appliedStates"][0].get("message").is_none());
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_object_edited_by_someone_else_is_applied_again() {
    let (config_map, daemon_set) = applied_once().await;

    let mut edited = live(&daemon_set, available());
    edited.data["spec"]["template"]["spec"]["containers"][0]["image"] = json!("someone/else:latest");
    let live_objects = vec![live(&config_map, Value::Null), edited];
    let (mut server, task) = start(with_entry(policy(), SyncState::Ready, None), live_objects);
    let reapplied = server.handle("PATCH", DAEMON_SET, |r| (200, applied(r, available()))).await;
    assert_is_apply(&reapplied);
    assert_eq!(
        reapplied.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/mellanox/k8s-rdma-shared-dev-plugin:sha-fe7f371c7e1b8315bf900f71cd25cfc1251dc775"
    );
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_stale_observed_generation_is_not_ready() {
    let (config_map, daemon_set) = applied_once().await;

    let mut stale = live(&daemon_set, available());
    stale.metadata.generation = Some(2);
    let (mut server, task) =
        start(with_entry(policy(), SyncState::Ready, None), vec![live(&config_map, Value::Null), stale]);
    let status = server.expect("PATCH", STATUS, 200, policy_json()).await;
    assert_eq!(status.body["status"]["appliedStates"][0]["state"], "notReady");
    assert_eq!(
        status.body["status"]["appliedStates"][0]["message"],
        "DaemonSet rdma-shared-dp-ds: status not yet observed for generation 2"
    );
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn removing_the_section_deletes_the_objects_and_reports_ignore() {
    let (config_map, daemon_set) = applied_once().await;

    let mut without = with_entry(policy(), SyncState::Ready, None);
    without.spec.rdma_shared_device_plugin = None;
    without.metadata.generation = Some(2);
    let live_objects = vec![live(&config_map, Value::Null), live(&daemon_set, available())];
    let (mut server, task) = start(without, live_objects);
    server.expect("DELETE", DAEMON_SET, 200, applied(&daemon_set, Value::Null)).await;
    server.expect("DELETE", CONFIG_MAP, 200, applied(&config_map, Value::Null)).await;
    let status = server.expect("PATCH", STATUS, 200, policy_json()).await;
    assert_eq!(
        status.body["status"]["appliedStates"],
        json!([{"name": "state-RDMA-device-plugin", "state": "ignore", "observedGeneration": 2}])
    );
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn invalid_config_reports_error_and_neither_applies_nor_deletes() {
    let (config_map, daemon_set) = applied_once().await;

    let mut broken = with_entry(policy(), SyncState::Ready, None);
    broken.spec.rdma_shared_device_plugin.as_mut().unwrap().config = Some("{not json".into());
    let live_objects = vec![live(&config_map, Value::Null), live(&daemon_set, available())];
    let (mut server, task) = start(broken, live_objects);
    let status = server.expect("PATCH", STATUS, 200, policy_json()).await;
    let entry = &status.body["status"]["appliedStates"][0];
    assert_eq!(entry["state"], "error");
    assert!(
        entry["message"].as_str().unwrap().starts_with("spec.rdmaSharedDevicePlugin.config: invalid JSON"),
        "{entry}"
    );
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn labelled_objects_without_a_policy_owner_are_never_deleted() {
    let mut foreign: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "users-own", "namespace": NAMESPACE,
                     "labels": {"nvidia.network-operator.state": "state-RDMA-device-plugin"}},
    }))
    .unwrap();
    foreign.metadata.uid = Some("u".into());
    let mut without = with_entry(policy(), SyncState::Ignore, None);
    without.spec.rdma_shared_device_plugin = None;
    let (mut server, task) = start(without, vec![foreign]);
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_apply_failure_is_reported_not_ready_with_the_error() {
    let (mut server, task) = start(policy(), vec![]);
    server.expect_absent(CONFIG_MAP).await;
    server
        .expect(
            "PATCH",
            CONFIG_MAP,
            404,
            state_core::testing::status_error(404, "namespaces \"nvidia-network-operator\" not found"),
        )
        .await;
    let status = server.expect("PATCH", STATUS, 200, policy_json()).await;
    let entry = &status.body["status"]["appliedStates"][0];
    assert_eq!(entry["state"], "notReady");
    assert!(
        entry["message"].as_str().unwrap().starts_with("applying ConfigMap nvidia-network-operator/rdma-devices:"),
        "{entry}"
    );
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_object_the_api_server_finds_invalid_is_an_error_naming_the_section_with_the_servers_message() {
    let (mut server, task) = start(policy(), vec![]);
    server.expect_absent(CONFIG_MAP).await;
    let too_long = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid",
        "message": "ConfigMap \"rdma-devices\" is invalid: []: Too long: must have at most 1048576 bytes"});
    server.expect("PATCH", CONFIG_MAP, 422, too_long).await;
    let status = server.expect("PATCH", STATUS, 200, policy_json()).await;
    let entry = &status.body["status"]["appliedStates"][0];
    assert_eq!(entry["state"], "error");
    assert_eq!(
        entry["message"],
        "spec.rdmaSharedDevicePlugin: the API server refuses what this section renders: applying ConfigMap nvidia-network-operator/rdma-devices: ConfigMap \"rdma-devices\" is invalid: []: Too long: must have at most 1048576 bytes (Invalid, HTTP 422)"
    );
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_users_object_with_a_rendered_name_is_never_taken_over() {
    let (mut server, task) = start(policy(), vec![]);
    let users = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"mine": "yes"},
        "metadata": {"name": "rdma-devices", "namespace": NAMESPACE, "resourceVersion": "9"}});
    server.expect("GET", CONFIG_MAP, 200, users).await;
    let status = server.expect("PATCH", STATUS, 200, policy_json()).await;
    let entry = &status.body["status"]["appliedStates"][0];
    assert_eq!(entry["state"], "error");
    assert_eq!(
        entry["message"],
        "ConfigMap nvidia-network-operator/rdma-devices exists and is not managed by the operator; rename or delete it"
    );
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_labelled_object_owned_by_something_else_is_never_taken_over() {
    let labelled_elsewhere: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rdma-devices", "namespace": NAMESPACE, "uid": "cm",
                     "labels": {"nvidia.network-operator.state": "state-RDMA-device-plugin"},
                     "ownerReferences": [{"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
                                          "name": "nic-cluster-policy", "uid": "another-policy"}]},
    }))
    .unwrap();
    let (mut server, task) = start(policy(), vec![labelled_elsewhere]);
    let status = server.expect("PATCH", STATUS, 200, policy_json()).await;
    assert_eq!(status.body["status"]["appliedStates"][0]["state"], "error");
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn objects_of_the_original_operator_are_adopted() {
    // The original labels its objects and owns them by the same policy, without our revision.
    let originals = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"config.json": "{}"},
        "metadata": {"name": "rdma-devices", "namespace": NAMESPACE, "resourceVersion": "9",
                     "labels": {"nvidia.network-operator.state": "state-RDMA-device-plugin"},
                     "ownerReferences": [{"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
                                          "name": "nic-cluster-policy", "uid": "6a1e4d1c-9a57-4a44-9d6a-0f1e2d3c4b5a",
                                          "controller": true, "blockOwnerDeletion": true}]}});
    let (mut server, task) = start(policy(), vec![]);
    server.expect("GET", CONFIG_MAP, 200, originals).await;
    let adopted = server.handle("PATCH", CONFIG_MAP, |r| (200, applied(r, Value::Null))).await;
    assert_is_apply(&adopted);
    server.expect_absent(DAEMON_SET).await;
    server.handle("PATCH", DAEMON_SET, |r| (200, applied(r, Value::Null))).await;
    let status = server.expect("PATCH", STATUS, 200, policy_json()).await;
    assert_eq!(status.body["status"]["appliedStates"][0]["state"], "notReady");
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_policy_with_another_name_is_left_to_the_aggregator() {
    let mut other = policy();
    other.metadata.name = Some("other".into());
    let (mut server, task) = start(other, vec![]);
    server.expect_no_more().await;
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
}
