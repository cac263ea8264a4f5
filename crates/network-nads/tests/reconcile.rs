//! The network controller's reconcile against a mock API server: the exact requests.

use api::networks::{MacvlanNetwork, MacvlanNetworkStatus, NetworkState};
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use network_nads::controller::{Context, Error, nad_kind, reconcile};
use network_nads::render::{Network, render};
use serde_json::{Value, json};
use state_core::metrics::Metrics;
use state_core::owned::OwnedObjects;
use state_core::testing::{ApiServer, Received, mock_client, status_error};
use std::sync::Arc;
use tokio::task::JoinHandle;

const NAD_IN_DEFAULT: &str =
    "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/example-macvlannetwork";
const NAD_IN_TEAM: &str =
    "/apis/k8s.cni.cncf.io/v1/namespaces/team/network-attachment-definitions/example-macvlannetwork";
const STATUS: &str = "/apis/mellanox.com/v1alpha1/macvlannetworks/example-macvlannetwork/status";
const REFERENCE: &str = "k8s.cni.cncf.io/v1/namespaces/default/NetworkAttachmentDefinition/example-macvlannetwork";

fn network(namespace: &str, ipam: &str) -> MacvlanNetwork {
    serde_json::from_value(json!({
        "apiVersion": "mellanox.com/v1alpha1", "kind": "MacvlanNetwork",
        "metadata": {"name": "example-macvlannetwork", "uid": "5f0c1d7e-1111-4222-8333-444455556666",
                     "annotations": {"team.example.com/owner": "hpc"}},
        "spec": {"networkNamespace": namespace, "master": "ens2f0", "mode": "bridge", "mtu": 1500, "ipam": ipam},
    }))
    .unwrap()
}

const IPAM: &str = r#"{"type": "nv-ipam", "poolName": "my-pool"}"#;

fn with_status(
    mut n: MacvlanNetwork,
    state: NetworkState,
    reason: Option<&str>,
    reference: Option<&str>,
) -> MacvlanNetwork {
    n.status = Some(MacvlanNetworkStatus {
        state,
        reason: reason.map(String::from),
        macvlan_network_attachment_def: reference.map(String::from),
    });
    n
}

fn start(network: MacvlanNetwork, live: Vec<DynamicObject>) -> (ApiServer, JoinHandle<Result<Action, Error>>) {
    let (client, server) = mock_client();
    let nads = OwnedObjects::from_objects(vec![nad_kind()], live);
    let ctx = Arc::new(Context::new(client, nads, Metrics::new()));
    (server, tokio::spawn(reconcile(Arc::new(network), ctx)))
}

fn echo(request: &Received) -> Value {
    let mut object = request.body.clone();
    object["metadata"]["resourceVersion"] = json!("1");
    object
}

fn cr_json(n: &MacvlanNetwork) -> Value {
    serde_json::to_value(n).unwrap()
}

/// The NAD as the API server holds it after our apply.
async fn live_nad(n: &MacvlanNetwork) -> DynamicObject {
    let (mut server, task) = start(n.clone(), vec![]);
    server.expect_absent(&nad_path(n)).await;
    let applied = server.handle("PATCH", &nad_path(n), |r| (200, echo(r))).await;
    server.expect("PATCH", STATUS, 200, cr_json(n)).await;
    task.await.unwrap().unwrap();
    serde_json::from_value(echo(&applied)).unwrap()
}

fn nad_path(n: &MacvlanNetwork) -> String {
    format!(
        "/apis/k8s.cni.cncf.io/v1/namespaces/{}/network-attachment-definitions/example-macvlannetwork",
        n.network_namespace()
    )
}

#[tokio::test]
async fn a_new_network_gets_its_nad_then_a_ready_status() {
    let n = network("default", IPAM);
    let (mut server, task) = start(n.clone(), vec![]);
    server.expect_absent(NAD_IN_DEFAULT).await;
    let apply = server.handle("PATCH", NAD_IN_DEFAULT, |r| (200, echo(r))).await;
    assert!(apply.has_query("fieldManager", "network-operator%2Fnetwork-nads"), "{}", apply.uri);
    assert!(apply.has_query("force", "true"));
    assert_eq!(apply.body["spec"]["config"], render(&n).unwrap().data["spec"]["config"]);
    assert_eq!(apply.body["metadata"]["ownerReferences"][0]["uid"], "5f0c1d7e-1111-4222-8333-444455556666");
    let status = server.expect("PATCH", STATUS, 200, cr_json(&n)).await;
    assert_eq!(status.body["status"], json!({"state": "ready", "macvlanNetworkAttachmentDef": REFERENCE}));
    assert!(status.body["metadata"].get("annotations").is_none(), "the user's annotations are never written");
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn steady_state_makes_zero_writes() {
    let n = network("default", IPAM);
    let live = live_nad(&n).await;
    let (mut server, task) = start(with_status(n, NetworkState::Ready, None, Some(REFERENCE)), vec![live]);
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_changed_ipam_is_applied_again() {
    let n = network("default", IPAM);
    let live = live_nad(&n).await;
    let changed = with_status(
        network("default", r#"{"type": "nv-ipam", "poolName": "other"}"#),
        NetworkState::Ready,
        None,
        Some(REFERENCE),
    );
    let (mut server, task) = start(changed, vec![live]);
    let apply = server.handle("PATCH", NAD_IN_DEFAULT, |r| (200, echo(r))).await;
    assert!(apply.body["spec"]["config"].as_str().unwrap().contains("\"poolName\":\"other\""));
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn moving_the_network_namespace_applies_the_new_nad_and_deletes_the_old() {
    let old = network("default", IPAM);
    let live = live_nad(&old).await;
    let moved = with_status(network("team", IPAM), NetworkState::Ready, None, Some(REFERENCE));
    let (mut server, task) = start(moved.clone(), vec![live.clone()]);
    server.expect_absent(NAD_IN_TEAM).await;
    server.handle("PATCH", NAD_IN_TEAM, |r| (200, echo(r))).await;
    server.expect("DELETE", NAD_IN_DEFAULT, 200, serde_json::to_value(&live).unwrap()).await;
    let status = server.expect("PATCH", STATUS, 200, cr_json(&moved)).await;
    assert_eq!(
        status.body["status"]["macvlanNetworkAttachmentDef"],
        "k8s.cni.cncf.io/v1/namespaces/team/NetworkAttachmentDefinition/example-macvlannetwork"
    );
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn invalid_ipam_reports_error_and_leaves_the_nad_alone() {
    let n = network("default", IPAM);
    let live = live_nad(&n).await;
    let broken = with_status(network("default", "{\"type\": "), NetworkState::Ready, None, Some(REFERENCE));
    let (mut server, task) = start(broken.clone(), vec![live]);
    let status = server.expect("PATCH", STATUS, 200, cr_json(&broken)).await;
    assert_eq!(status.body["status"]["state"], "error");
    assert!(
        status.body["status"]["reason"].as_str().unwrap().starts_with("spec.ipam: invalid JSON"),
        "{}",
        status.body
    );
    server.expect_no_more().await;
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
}

#[tokio::test]
async fn the_reason_is_cleared_once_fixed() {
    let n = network("default", IPAM);
    let live = live_nad(&n).await;
    let fixed = with_status(n, NetworkState::Error, Some("spec.ipam: invalid JSON"), Some(REFERENCE));
    let (mut server, task) = start(fixed.clone(), vec![live]);
    let status = server.expect("PATCH", STATUS, 200, cr_json(&fixed)).await;
    assert_eq!(status.body["status"], json!({"state": "ready", "macvlanNetworkAttachmentDef": REFERENCE}));
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_namespace_is_not_ready_and_retried() {
    let n = network("nowhere", IPAM);
    let (mut server, task) = start(n.clone(), vec![]);
    let path = "/apis/k8s.cni.cncf.io/v1/namespaces/nowhere/network-attachment-definitions/example-macvlannetwork";
    server.expect_absent(path).await;
    server.expect("PATCH", path, 404, status_error(404, "namespaces \"nowhere\" not found")).await;
    let status = server.expect("PATCH", STATUS, 200, cr_json(&n)).await;
    assert_eq!(
        status.body["status"],
        json!({"state": "notReady", "reason": "namespace nowhere does not exist; retrying"})
    );
    server.expect_no_more().await;
    let action = task.await.unwrap().unwrap();
    assert_ne!(action, Action::await_change(), "retried");
}

#[tokio::test]
async fn a_users_nad_with_the_same_name_is_never_taken_over() {
    let n = network("default", IPAM);
    let (mut server, task) = start(n.clone(), vec![]);
    let users = json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "example-macvlannetwork", "namespace": "default", "resourceVersion": "3"},
        "spec": {"config": "{}"}});
    server.expect("GET", NAD_IN_DEFAULT, 200, users).await;
    let status = server.expect("PATCH", STATUS, 200, cr_json(&n)).await;
    assert_eq!(
        status.body["status"],
        json!({"state": "error", "reason": "NetworkAttachmentDefinition default/example-macvlannetwork exists and is not managed by the operator; rename or delete it"})
    );
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_network_being_deleted_is_left_to_garbage_collection() {
    let mut n = network("default", IPAM);
    n.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff_now()));
    let (mut server, task) = start(n, vec![]);
    server.expect_no_more().await;
    task.await.unwrap().unwrap();
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap()
}
