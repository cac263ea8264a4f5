//! Objects that older releases of a state created and that it no longer renders (e.g. the
//! Whereabouts IP-reconciler CronJob): the controller deletes each once at start-up, as the
//! original operator did, but only when it is the operator's (it carries the state label or an
//! owner reference to a NicClusterPolicy), so a user's object of the same name is never touched.

use crate::STATE_LABEL;
use crate::apply::{self, api_for};
use crate::objects::Kind;
use kube::api::{DeleteParams, Preconditions};
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

/// What happened to one leftover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was there and is deleted now.
    Deleted,
    /// It was not there.
    Absent,
    /// An object of that name exists but is not the operator's: left alone.
    NotOurs,
    /// The API failed; why (logged, not retried: the migration is best-effort, as the original's).
    Failed(String),
}

/// Whether `object` is one the operator created: the state label of `state`, or an owner
/// reference to a NicClusterPolicy.
fn is_operators(object: &kube::core::DynamicObject, state: &str) -> bool {
    object.labels().get(STATE_LABEL).is_some_and(|s| s == state)
        || object
            .owner_references()
            .iter()
            .any(|o| o.kind == "NicClusterPolicy" && o.api_version.starts_with("mellanox.com/"))
}

/// Deletes `leftover` of state `state` in `namespace` if it exists and is the operator's. The
/// delete carries the uid that was read, so an object re-created in between is not deleted.
pub async fn delete(client: &Client, namespace: &str, state: &str, leftover: &Leftover) -> Outcome {
    let api = api_for(client, &leftover.kind, Some(namespace));
    let live = match api.get_opt(leftover.name).await {
        Ok(Some(live)) => live,
        Ok(None) => return Outcome::Absent,
        Err(e) => return Outcome::Failed(apply::describe(&e)),
    };
    if !is_operators(&live, state) {
        return Outcome::NotOurs;
    }
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
            Outcome::Absent => {}
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
