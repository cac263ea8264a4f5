//! The scheduler and kubelet, played fast: a watch on the operands' pods binds each new pod
//! (to its DaemonSet's node, else to any node) and reports it Running and Ready as soon as it
//! is seen, and confirms deletions at once, many at a time. It records when it last acted, so
//! the operator's own reaction (last pod Ready → policy `ready`) is measured apart from it.

use e2e::kubelet::{is_ready, running_status, target_node};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;

/// How many pods it handles at once.
const CONCURRENCY: usize = 64;

/// The played kubelet, running until dropped.
pub struct Kubelet {
    task: tokio::task::JoinHandle<()>,
    actions: Arc<Mutex<Vec<Instant>>>,
}

impl Kubelet {
    /// Starts playing for the pods of `namespace`.
    pub fn start(client: Client, namespace: &str, any_node: String) -> Self {
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let actions = Arc::new(Mutex::new(Vec::new()));
        let recorded = actions.clone();
        let task = tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(CONCURRENCY));
            let mut events = watcher(api.clone(), watcher::Config::default()).applied_objects().boxed();
            while let Some(event) = events.next().await {
                let Ok(pod) = event else { continue };
                if !needs_playing(&pod) {
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let (api, node, recorded) = (api.clone(), any_node.clone(), recorded.clone());
                tokio::spawn(async move {
                    if play(&api, &pod, &node).await {
                        recorded.lock().unwrap_or_else(|e| e.into_inner()).push(Instant::now());
                    }
                    drop(permit);
                });
            }
        });
        Self { task, actions }
    }

    /// When it last reported a pod Ready or confirmed a deletion, before `until`.
    pub fn last_action_before(&self, until: Instant) -> Option<Instant> {
        self.actions.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().filter(|t| *t <= until).max()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pod being deleted (to confirm) or not yet Ready (to run).
fn needs_playing(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() || !is_ready(pod)
}

/// Plays one pod: confirms its deletion, or binds it and reports it Running and Ready. Whether
/// that took (a pod gone meanwhile does not).
async fn play(api: &Api<Pod>, pod: &Pod, any_node: &str) -> bool {
    let name = pod.name_any();
    if pod.metadata.deletion_timestamp.is_some() {
        let confirm = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        return api.delete(&name, &confirm).await.is_ok();
    }
    if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
        let node = target_node(pod).unwrap_or_else(|| any_node.to_string());
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                             "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let bound: Result<serde_json::Value, _> =
            api.create_subresource("binding", &name, &PostParams::default(), &binding).await;
        if bound.is_err() {
            return false;
        }
    }
    let status = running_status(pod);
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.is_ok()
}
