//! The OFED state's objects against a mock API server as nodes come and go: a pool per kernel,
//! the pool left by the last node of a kernel pruned, and nothing written in steady state.

use api::NicClusterPolicy;
use k8s_openapi::api::core::v1::Node;
use kube::core::DynamicObject;
use ofed::OfedDriver;
use ofed::pools::{ARCH_LABEL, KERNEL_LABEL, OS_LABEL, OS_VERSION_LABEL};
use serde_json::{Value, json};
use state_core::metrics::Metrics;
use state_core::owned::OwnedObjects;
use state_core::reconcile::{Context, sync_with};
use state_core::testing::{NAMESPACE, Received, mock_client, policy_from_file, status_error};
use state_core::{ImageTags, Observed, State};
use std::sync::Arc;

fn policy() -> NicClusterPolicy {
    let mut policy = policy_from_file("example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml");
    policy.metadata.uid = Some("6a1e4d1c-9a57-4a44-9d6a-0f1e2d3c4b5a".into());
    policy.metadata.generation = Some(1);
    policy
}

fn observed(kernels: &[&str]) -> Observed {
    let nodes = kernels
        .iter()
        .enumerate()
        .map(|(i, kernel)| {
            let node = serde_json::from_value::<Node>(json!({"metadata": {"name": format!("n{i}"), "labels": {
                OS_LABEL: "ubuntu", OS_VERSION_LABEL: "22.04", KERNEL_LABEL: kernel, ARCH_LABEL: "amd64"}}}))
            .unwrap();
            Arc::new(state_core::nodes::facts(node, None))
        })
        .collect();
    let mut observed = Observed { nodes, ..Default::default() };
    observed.image_tags.insert("nvcr.io/nvidia/mellanox/mofed".into(), ImageTags::Listed(Default::default()));
    observed
}

/// What the API server holds after an apply: the object with server fields.
fn stored(request: &Received) -> Value {
    let mut object = request.body.clone();
    object["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000001");
    object["metadata"]["resourceVersion"] = json!("1");
    object["metadata"]["generation"] = json!(1);
    object
}

/// Syncs with `live` objects and `kernels`; answers GETs with 404 and applies by echoing.
async fn sync(live: Vec<DynamicObject>, kernels: &[&str]) -> (Vec<Received>, Vec<DynamicObject>) {
    let (client, mut server) = mock_client();
    let owned = OwnedObjects::from_objects(OfedDriver::kinds(), live.clone());
    let ctx = Context::new(client, NAMESPACE.into(), false, owned, Metrics::new());
    let observed = observed(kernels);
    let task = tokio::spawn(async move { sync_with::<OfedDriver>(&policy(), &ctx, &observed).await });
    let requests = server
        .answer_all(|r| match r.method.as_str() {
            "GET" => (404, status_error(404, "NotFound")),
            "PATCH" => (200, stored(r)),
            _ => (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        })
        .await;
    task.await.unwrap();
    let mut now = live;
    now.extend(requests.iter().filter(|r| r.method == "PATCH").map(|r| serde_json::from_value(stored(r)).unwrap()));
    (requests, now)
}

fn writes(requests: &[Received]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.uri.split('?').next().unwrap().rsplit('/').next().unwrap()))
        .collect()
}

#[tokio::test]
async fn pools_follow_the_nodes_and_steady_state_writes_nothing() {
    let (requests, live) = sync(vec![], &["5.15.0-78-generic", "5.15.0-91-generic"]).await;
    let applied = writes(&requests);
    assert!(applied.contains(&"PATCH mofed-ubuntu22.04-54669c9886-ds".to_string()), "{applied:?}");
    assert!(applied.contains(&"PATCH mofed-ubuntu22.04-6d568d699f-ds".to_string()), "{applied:?}");

    let (requests, live) = sync(live, &["5.15.0-78-generic", "5.15.0-91-generic"]).await;
    assert_eq!(writes(&requests), Vec::<String>::new(), "steady state");

    // The node on the old kernel moved to the new one: its pool's DaemonSet goes.
    let (requests, _) = sync(live, &["5.15.0-91-generic", "5.15.0-91-generic"]).await;
    assert_eq!(writes(&requests), ["DELETE mofed-ubuntu22.04-54669c9886-ds"]);
}

#[tokio::test]
async fn without_any_nfd_labelled_node_the_drivers_are_left_alone() {
    let (_, live) = sync(vec![], &["5.15.0-78-generic"]).await;
    let (requests, _) = sync(live, &[]).await;
    assert_eq!(writes(&requests), Vec::<String>::new(), "no prune while NFD is missing");
}
