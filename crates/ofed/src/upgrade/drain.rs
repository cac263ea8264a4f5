//! Draining a node as `kubectl drain` does: every pod on it matching the drain selector is
//! evicted through the Eviction API (so PodDisruptionBudgets are honoured), except DaemonSet
//! pods and mirror pods; pods no controller manages need `force`, pods with emptyDir volumes
//! need `deleteEmptyDir`. Blocked evictions are retried until the drain's timeout.

use super::DrainSettings;
use crate::pod::Pod;
use kube::api::{EvictParams, ListParams};
use kube::{Api, Client, ResourceExt};
use std::time::Duration;

/// How often blocked evictions are retried, and evicted pods looked for.
pub const RETRY: Duration = Duration::from_secs(1);

/// Annotation of mirror pods (static pods of the kubelet), which cannot be evicted.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The pods of a node a drain must see gone (`namespace/name`), or why the drain cannot go
/// ahead at all (pods it may not evict, named).
pub fn targets(pods: &[Pod], settings: &DrainSettings) -> Result<Vec<Pod>, String> {
    let mut out = Vec::new();
    let mut unmanaged = Vec::new();
    let mut local_data = Vec::new();
    for pod in pods {
        let owner = pod.owner_references().iter().find(|o| o.controller == Some(true));
        if owner.is_some_and(|o| o.kind == "DaemonSet") || pod.annotations().contains_key(MIRROR_ANNOTATION) {
            continue;
        }
        let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        if !finished {
            if owner.is_none() && !settings.force {
                unmanaged.push(name(pod));
            }
            let empty_dir = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).any(|v| v.empty_dir.is_some());
            if empty_dir && !settings.delete_empty_dir {
                local_data.push(name(pod));
            }
        }
        out.push(pod.clone());
    }
    let mut problems = Vec::new();
    if !unmanaged.is_empty() {
        problems.push(format!("pods not managed by a controller (set drain.force): {}", unmanaged.join(", ")));
    }
    if !local_data.is_empty() {
        problems.push(format!("pods with emptyDir volumes (set drain.deleteEmptyDir): {}", local_data.join(", ")));
    }
    if problems.is_empty() { Ok(out) } else { Err(format!("cannot evict {}", problems.join("; "))) }
}

/// `namespace/name` of a pod.
pub fn name(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// Drains `node`, begun at `started` (Unix seconds): returns how many pods were evicted, or
/// why it failed (pods it may not evict; the timeout, with the pods still there and what
/// blocked them).
pub async fn drain(client: &Client, node: &str, settings: &DrainSettings, started: i64) -> Result<usize, String> {
    let pods: Api<Pod> = Api::all(client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={node}")).labels(&settings.selector);
    let mut evicted = std::collections::BTreeSet::new();
    loop {
        let listed =
            pods.list(&params).await.map_err(|e| format!("listing the pods: {}", state_core::apply::describe(&e)))?;
        let remaining = targets(&listed.items, settings)?;
        if remaining.is_empty() {
            tracing::info!(%node, evicted = evicted.len(), "drained");
            return Ok(evicted.len());
        }
        let mut blocked = Vec::new();
        for pod in &remaining {
            let shown = name(pod);
            if pod.metadata.deletion_timestamp.is_some() {
                blocked.push(format!("{shown} (terminating)"));
                continue;
            }
            // Eviction is a subresource of k8s-openapi's Pod in kube; it answers a Status, no pod.
            let api: Api<k8s_openapi::api::core::v1::Pod> =
                Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            match api.evict(&pod.name_any(), &EvictParams::default()).await {
                Ok(_) => {
                    tracing::info!(%node, pod = %shown, "evicted");
                    evicted.insert(shown.clone());
                    blocked.push(format!("{shown} (terminating)"));
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(kube::Error::Api(status)) if status.code == 429 => {
                    blocked.push(format!("{shown} (eviction refused: {})", status.message));
                }
                Err(e) => blocked.push(format!("{shown} ({})", state_core::apply::describe(&e))),
            }
        }
        let now = unix_now();
        if settings.timeout_seconds > 0 && now >= started + settings.timeout_seconds {
            let shown: Vec<String> = blocked.iter().take(5).cloned().collect();
            let more = if blocked.len() > 5 { format!(" and {} more", blocked.len() - 5) } else { String::new() };
            return Err(format!(
                "timed out after {}s; still on the node: {}{more}",
                settings.timeout_seconds,
                shown.join(", ")
            ));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, owner: Option<&str>, extra: serde_json::Value) -> Pod {
        let mut value = json!({"metadata": {"name": name, "namespace": "work"}, "spec": {"containers": []}});
        if let Some(kind) = owner {
            value["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": kind, "name": "x", "uid": "u", "controller": true}]);
        }
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        if let (Some(into), serde_json::Value::Object(from)) = (into.as_object_mut(), from.clone()) {
            for (k, v) in from {
                match into.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        into.insert(k, v);
                    }
                }
            }
        }
    }

    fn names(pods: &[Pod]) -> Vec<String> {
        pods.iter().map(name).collect()
    }

    #[test]
    fn daemon_set_and_mirror_pods_stay_and_managed_pods_are_evicted() {
        let pods = [
            pod("web", Some("ReplicaSet"), json!({})),
            pod("agent", Some("DaemonSet"), json!({})),
            pod("static", None, json!({"metadata": {"annotations": {MIRROR_ANNOTATION: "x"}}})),
        ];
        let found = targets(&pods, &DrainSettings::default()).unwrap();
        assert_eq!(names(&found), ["work/web"]);
    }

    #[test]
    fn unmanaged_pods_need_force_and_emptydir_pods_need_delete_empty_dir() {
        let pods = [
            pod("bare", None, json!({})),
            pod("cache", Some("ReplicaSet"), json!({"spec": {"volumes": [{"name": "tmp", "emptyDir": {}}]}})),
        ];
        let error = targets(&pods, &DrainSettings::default()).unwrap_err();
        assert_eq!(
            error,
            "cannot evict pods not managed by a controller (set drain.force): work/bare; \
             pods with emptyDir volumes (set drain.deleteEmptyDir): work/cache"
        );
        let allowed = DrainSettings { force: true, delete_empty_dir: true, ..Default::default() };
        assert_eq!(names(&targets(&pods, &allowed).unwrap()), ["work/bare", "work/cache"]);
    }

    #[test]
    fn finished_pods_are_removed_without_needing_force() {
        let pods = [pod("job-done", None, json!({"status": {"phase": "Succeeded"}}))];
        assert_eq!(names(&targets(&pods, &DrainSettings::default()).unwrap()), ["work/job-done"]);
    }
}
