//! Objects that older releases of a state created and that it no longer renders (e.g. the
//! Whereabouts IP-reconciler CronJob): the controller deletes each once at start-up, as the
//! original operator did, but only when it is the operator's (it carries the state label or an
//! owner reference to a NicClusterPolicy), so a user's object of the same name is never touched.
//!
//! Some of them hold the user's data (e.g. the old NVIDIA IPAM ConfigMap its controller turns
//! into pools): those are [released](release) instead, i.e. they lose the state label and the
//! policy's owner reference, so no prune and no deletion of the policy ever removes them.

use crate::STATE_LABEL;
use crate::apply::{self, api_for};
use crate::objects::Kind;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};

/// One object an older release created: its kind and name (namespaced kinds live in the
/// operands' namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: &'static str,
}

impl Leftover {
    /// The CustomResourceDefinition `name` (e.g. one the original rendered with a state, owned
    /// by the policy, that ships in `crds/` now).
    pub fn crd(name: &'static str) -> Self {
        Self { kind: Kind::cluster::<CustomResourceDefinition>(), name }
    }
}

/// What happened to one leftover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was there and is deleted now.
    Deleted,
    /// It was there and is the user's now (no state label, no policy owner reference).
    Released,
    /// It was not there.
    Absent,
    /// An object of that name exists but is not the operator's: left alone.
    NotOurs,
    /// The API failed; why (logged, not retried: the migration is best-effort, as the original's).
    Failed(String),
}

/// Whether `owner` is a NicClusterPolicy.
fn is_policy(owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    owner.kind == "NicClusterPolicy" && owner.api_version.starts_with("mellanox.com/")
}

/// Whether `object` is one the operator created: the state label of `state`, or an owner
/// reference to a NicClusterPolicy.
pub fn is_operators(object: &kube::core::DynamicObject, state: &str) -> bool {
    object.labels().get(STATE_LABEL).is_some_and(|s| s == state) || object.owner_references().iter().any(is_policy)
}

/// The live `leftover` if it exists and is the operator's; otherwise what that means.
async fn operators(
    api: &kube::Api<kube::core::DynamicObject>,
    leftover: &Leftover,
    state: &str,
) -> Result<kube::core::DynamicObject, Outcome> {
    match api.get_opt(leftover.name).await {
        Ok(Some(live)) if is_operators(&live, state) => Ok(live),
        Ok(Some(_)) => Err(Outcome::NotOurs),
        Ok(None) => Err(Outcome::Absent),
        Err(e) => Err(Outcome::Failed(apply::describe(&e))),
    }
}

/// Releases `leftover` of state `state` in `namespace` if it exists and is the operator's:
/// one merge patch removes the state label and every NicClusterPolicy owner reference (other
/// owners are kept), guarded by the resourceVersion that was read.
pub async fn release(client: &Client, namespace: &str, state: &str, leftover: &Leftover) -> Outcome {
    let api = api_for(client, &leftover.kind, Some(namespace));
    let live = match operators(&api, leftover, state).await {
        Ok(live) => live,
        Err(outcome) => return outcome,
    };
    release_object(&api, &live).await
}

/// Releases `live`, an object of the operator's: one merge patch removes the state label and
/// every NicClusterPolicy owner reference (other owners are kept), guarded by its
/// resourceVersion.
pub async fn release_object(api: &kube::Api<kube::core::DynamicObject>, live: &kube::core::DynamicObject) -> Outcome {
    let owners: Vec<_> = live.owner_references().iter().filter(|o| !is_policy(o)).cloned().collect();
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": live.resource_version(),
        "labels": {STATE_LABEL: null},
        "ownerReferences": owners,
    }});
    match api.patch(&live.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Outcome::Released,
        Err(kube::Error::Api(status)) if status.code == 404 => Outcome::Absent,
        Err(e) => Outcome::Failed(apply::describe(&e)),
    }
}

/// Releases every object of `released` of state `state` once (see [`release`]), logging what
/// happened.
pub async fn release_all(client: &Client, namespace: &str, state: &str, released: &[Leftover]) {
    for leftover in released {
        let what = format!("{} {namespace}/{}", leftover.kind.resource.kind, leftover.name);
        match release(client, namespace, state, leftover).await {
            Outcome::Released => {
                tracing::info!(state, object = %what, "released an older release's object: it is the user's now")
            }
            Outcome::Failed(why) => tracing::warn!(state, object = %what, error = %why, "could not release an object"),
            // Absent, or released before (no label, no policy owner): nothing to do.
            _ => {}
        }
    }
}

/// Deletes `leftover` of state `state` in `namespace` if it exists and is the operator's. The
/// delete carries the uid that was read, so an object re-created in between is not deleted.
pub async fn delete(client: &Client, namespace: &str, state: &str, leftover: &Leftover) -> Outcome {
    let api = api_for(client, &leftover.kind, Some(namespace));
    let live = match operators(&api, leftover, state).await {
        Ok(live) => live,
        Err(outcome) => return outcome,
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: live.uid(), resource_version: None }),
        ..Default::default()
    };
    match api.delete(leftover.name, &params).await {
        Ok(_) => Outcome::Deleted,
        Err(kube::Error::Api(status)) if status.code == 404 => Outcome::Absent,
        Err(e) => Outcome::Failed(apply::describe(&e)),
    }
}

/// Deletes every leftover of state `state` once (see [`delete`]), logging what happened.
pub async fn delete_all(client: &Client, namespace: &str, state: &str, leftovers: &[Leftover]) {
    for leftover in leftovers {
        let what = format!("{} {namespace}/{}", leftover.kind.resource.kind, leftover.name);
        match delete(client, namespace, state, leftover).await {
            Outcome::Deleted => tracing::info!(state, object = %what, "deleted the leftover of an older release"),
            Outcome::Absent | Outcome::Released => {}
            Outcome::NotOurs => {
                tracing::warn!(state, object = %what, "left alone: named like an older release's object, but not the operator's")
            }
            Outcome::Failed(why) => tracing::warn!(state, object = %what, error = %why, "could not delete a leftover"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{mock_client, status_error};
    use k8s_openapi::api::batch::v1::CronJob;
    use serde_json::json;

    const PATH: &str = "/apis/batch/v1/namespaces/ns/cronjobs/whereabouts-ip-reconciler";

    fn leftover() -> Leftover {
        Leftover { kind: Kind::namespaced::<CronJob>(), name: "whereabouts-ip-reconciler" }
    }

    fn cron_job(labels: serde_json::Value, owners: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "whereabouts-ip-reconciler",
            "namespace": "ns", "uid": "u-1", "labels": labels, "ownerReferences": owners}})
    }

    #[tokio::test]
    async fn the_operators_leftover_is_deleted_by_uid() {
        let (client, mut server) = mock_client();
        let task = tokio::spawn(async move { delete(&client, "ns", "state-x", &leftover()).await });
        server.expect("GET", PATH, 200, cron_job(json!({STATE_LABEL: "state-x"}), json!([]))).await;
        let deleted = server.expect("DELETE", PATH, 200, cron_job(json!({}), json!([]))).await;
        assert_eq!(deleted.body["preconditions"]["uid"], "u-1");
        assert_eq!(task.await.unwrap(), Outcome::Deleted);
        server.expect_no_more().await;
    }

    #[tokio::test]
    async fn a_leftover_owned_by_a_policy_is_deleted_too() {
        let (client, mut server) = mock_client();
        let task = tokio::spawn(async move { delete(&client, "ns", "state-x", &leftover()).await });
        let owner = json!([{"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy", "name": "nic-cluster-policy", "uid": "p"}]);
        server.expect("GET", PATH, 200, cron_job(json!({}), owner)).await;
        server.expect("DELETE", PATH, 404, status_error(404, "NotFound")).await;
        assert_eq!(task.await.unwrap(), Outcome::Absent);
    }

    #[tokio::test]
    async fn a_users_object_of_that_name_is_left_alone() {
        let (client, mut server) = mock_client();
        let task = tokio::spawn(async move { delete(&client, "ns", "state-x", &leftover()).await });
        server.expect("GET", PATH, 200, cron_job(json!({"app": "mine"}), json!([]))).await;
        assert_eq!(task.await.unwrap(), Outcome::NotOurs);
        server.expect_no_more().await;
    }

    const CM_PATH: &str = "/api/v1/namespaces/ns/configmaps/old-config";

    fn old_config() -> Leftover {
        Leftover { kind: Kind::namespaced::<k8s_openapi::api::core::v1::ConfigMap>(), name: "old-config" }
    }

    #[tokio::test]
    async fn a_released_object_loses_the_state_label_and_the_policy_owner_only() {
        let (client, mut server) = mock_client();
        let task = tokio::spawn(async move { release(&client, "ns", "state-x", &old_config()).await });
        let owners = json!([
            {"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy", "name": "nic-cluster-policy", "uid": "p"},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "o"},
        ]);
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old-config", "namespace": "ns",
            "resourceVersion": "42", "labels": {STATE_LABEL: "state-x", "app": "mine"}, "ownerReferences": owners},
            "data": {"config": "{}"}});
        server.expect("GET", CM_PATH, 200, live.clone()).await;
        let patched = server.expect("PATCH", CM_PATH, 200, live).await;
        assert_eq!(
            patched.body,
            json!({"metadata": {"resourceVersion": "42", "labels": {STATE_LABEL: null},
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "o"}]}}),
            "nothing else changes, and only the version read is patched"
        );
        assert_eq!(task.await.unwrap(), Outcome::Released);
        server.expect_no_more().await;
    }

    #[tokio::test]
    async fn an_object_released_before_or_a_users_is_not_written() {
        let (client, mut server) = mock_client();
        let task = tokio::spawn(async move { release(&client, "ns", "state-x", &old_config()).await });
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old-config", "namespace": "ns",
            "resourceVersion": "43", "labels": {"app": "mine"}}});
        server.expect("GET", CM_PATH, 200, live).await;
        assert_eq!(task.await.unwrap(), Outcome::NotOurs);
        server.expect_no_more().await;
    }

    #[tokio::test]
    async fn an_absent_leftover_or_an_api_failure_deletes_nothing() {
        let (client, mut server) = mock_client();
        let task = tokio::spawn(async move { delete(&client, "ns", "state-x", &leftover()).await });
        server.expect_absent(PATH).await;
        assert_eq!(task.await.unwrap(), Outcome::Absent);
        let (client, mut server) = mock_client();
        let task = tokio::spawn(async move { delete(&client, "ns", "state-x", &leftover()).await });
        server.expect("GET", PATH, 403, status_error(403, "Forbidden")).await;
        assert!(matches!(task.await.unwrap(), Outcome::Failed(why) if why.contains("403")));
    }
}
