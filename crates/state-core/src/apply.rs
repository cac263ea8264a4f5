//! Writing objects: server-side apply only when the live copy lacks something, never over an
//! object the operator does not manage, and deletes that treat "already gone" as done.

use crate::STATE_LABEL;
use crate::adopt;
use crate::edits::REVISION_ANNOTATION;
use crate::objects::{Kind, ObjectKey, hash, to_value};
use crate::subset::is_subset;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::{Api, Client, ResourceExt};
use std::sync::Arc;

/// What [`apply_if_changed`] did.
#[derive(Clone, Debug)]
pub enum Applied {
    /// The live copy already held every field: nothing was written.
    Unchanged(Arc<DynamicObject>),
    /// The object was written; this is the server's answer (with status).
    Written(Arc<DynamicObject>),
}

/// Why an object was not written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// An object with the rendered name exists but is not the operator's (no state label, or
    /// no owner reference to the policy or CR): it is never taken over.
    #[error("{key} exists and is not managed by the operator; rename or delete it")]
    NotManaged {
        /// The object.
        key: ObjectKey,
    },
    /// The API server refused or failed the request.
    #[error("applying {key}: {}", describe(.source))]
    Api {
        /// The object.
        key: ObjectKey,
        /// What the API server said.
        source: kube::Error,
    },
}

impl ApplyError {
    /// The input, not the cluster, is at fault (a foreign object, an object the API server finds
    /// invalid or too large): retrying will not help until the input changes.
    pub fn is_input_error(&self) -> bool {
        match self {
            Self::NotManaged { .. } => true,
            Self::Api { source: kube::Error::Api(status), .. } => matches!(status.code, 400 | 413 | 422),
            Self::Api { .. } => false,
        }
    }
}

/// An API error as one line a person can act on: the server's own message and reason, not a
/// debug dump.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            let reason = if status.reason.is_empty() { String::new() } else { format!("{}, ", status.reason) };
            format!("{} ({reason}HTTP {})", status.message, status.code)
        }
        kube::Error::Api(status) => format!("the API server answered HTTP {} {}", status.code, status.reason),
        other => other.to_string(),
    }
}

/// A watch failure as one line: the API server's message and reason, not a debug dump.
pub fn describe_watch(error: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error;
    match error {
        Error::InitialListFailed(e) => format!("listing failed: {}", describe(e)),
        Error::WatchStartFailed(e) => format!("starting the watch failed: {}", describe(e)),
        Error::WatchFailed(e) => format!("the watch failed: {}", describe(e)),
        Error::WatchError(status) => {
            format!("the watch failed: {} ({}, HTTP {})", status.message, status.reason, status.code)
        }
        Error::NoResourceVersion => error.to_string(),
    }
}

/// Whether `live` is the operator's own copy of `desired`: its controller owner reference names
/// an owner of `desired` (the policy or CR), or it carries the same state label and, when
/// `desired` names owners, an owner reference to one of them. Everything the original operator
/// created qualifies (some of its objects, e.g. OpenShift's trusted-CA ConfigMap, carry no state
/// label), so it is adopted.
pub fn is_managed(live: &DynamicObject, desired: &DynamicObject) -> bool {
    let owners = desired.owner_references();
    let owned_by = |controller_only: bool| {
        live.owner_references()
            .iter()
            .filter(|o| !controller_only || o.controller == Some(true))
            .any(|o| owners.iter().any(|d| d.uid == o.uid))
    };
    let same_state = live.labels().get(STATE_LABEL).is_some_and(|s| desired.labels().get(STATE_LABEL) == Some(s));
    owned_by(true) || (same_state && (owners.is_empty() || owned_by(false)))
}

/// The API for objects of `kind` in `namespace` (cluster-wide for cluster-scoped kinds).
pub fn api_for(client: &Client, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &kind.resource),
        _ => Api::all_with(client.clone(), &kind.resource),
    }
}

/// A stable hash of what we want, stored on the object so that fields we stop rendering are
/// removed (a subset check alone cannot see them).
pub fn revision(object: &DynamicObject) -> String {
    hash(&serde_json::to_string(&to_value(object)).unwrap_or_default())
}

/// What applying `object` sends given `live` (its copy in the cluster, if any): adopted from a
/// workload of the original operator, with the revision annotation; `None` when `live` is not
/// the operator's ([`is_managed`]) and must be left alone.
pub fn to_apply(mut object: DynamicObject, live: Option<&DynamicObject>) -> Option<DynamicObject> {
    if let Some(live) = live {
        if !is_managed(live, &object) {
            return None;
        }
        object = adopt::adopted(object, live);
    }
    let revision = revision(&object);
    object.annotations_mut().insert(REVISION_ANNOTATION.to_string(), revision);
    Some(object)
}

/// Whether `live` already holds every field of `applied` (see [`to_apply`]): applying it would
/// change nothing.
pub fn holds(live: &DynamicObject, applied: &DynamicObject) -> bool {
    is_subset(&to_value(applied), &to_value(live))
}

/// Server-side applies `object` with `manager` (forcing conflicts) unless `live` (the watched
/// copy) already holds every field of it, including the revision annotation.
///
/// Without a watched copy the object is read first: one that exists but is not managed by the
/// operator ([`is_managed`]) is left untouched and reported. A workload of the original
/// operator keeps its live pod template ([`adopt::adopted`]).
pub async fn apply_if_changed(
    client: &Client,
    live: Option<Arc<DynamicObject>>,
    kind: &Kind,
    object: DynamicObject,
    manager: &str,
) -> Result<Applied, ApplyError> {
    let key = ObjectKey::of(&object);
    let api = api_for(client, kind, key.namespace.as_deref());
    let live = match live {
        Some(live) => Some(live),
        None => {
            api.get_opt(&key.name).await.map_err(|source| ApplyError::Api { key: key.clone(), source })?.map(Arc::new)
        }
    };
    let object = match to_apply(object, live.as_deref()) {
        Some(object) => object,
        None => return Err(ApplyError::NotManaged { key }),
    };
    if let Some(live) = live
        && holds(&live, &object)
    {
        return Ok(Applied::Unchanged(live));
    }
    let applied = api
        .patch(&key.name, &PatchParams::apply(manager).force(), &Patch::Apply(&object))
        .await
        .map_err(|source| ApplyError::Api { key, source })?;
    Ok(Applied::Written(Arc::new(applied)))
}

/// Creates `object` (of a [kept kind](crate::State::KEPT_KINDS)) when it is missing; one that
/// exists is never changed, but for being released when it is the operator's (labelled with
/// `state` or owned by a policy: the original's), so nothing ever deletes it.
pub async fn create_if_missing(
    client: &Client,
    kind: &Kind,
    object: DynamicObject,
    manager: &str,
    state: &str,
) -> Result<Applied, ApplyError> {
    let key = ObjectKey::of(&object);
    let api = api_for(client, kind, key.namespace.as_deref());
    let failed = |source| ApplyError::Api { key: key.clone(), source };
    match api.get_opt(&key.name).await.map_err(failed)? {
        Some(live) if crate::leftovers::is_operators(&live, state) => {
            match crate::leftovers::release_object(&api, &live).await {
                crate::leftovers::Outcome::Failed(why) => {
                    tracing::warn!(state, object = %key, error = %why, "could not release a kept object");
                }
                _ => tracing::info!(state, object = %key, "released: it holds the user's data, nothing deletes it"),
            }
            Ok(Applied::Unchanged(Arc::new(live)))
        }
        Some(live) => Ok(Applied::Unchanged(Arc::new(live))),
        None => {
            let params = kube::api::PostParams { field_manager: Some(manager.to_string()), ..Default::default() };
            match api.create(&params, &object).await {
                Ok(created) => Ok(Applied::Written(Arc::new(created))),
                // Created in between (by the user): theirs.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    api.get(&key.name).await.map(|live| Applied::Unchanged(Arc::new(live))).map_err(failed)
                }
                Err(source) => Err(failed(source)),
            }
        }
    }
}

/// Deletes the object `key` of `kind`; an object already gone counts as deleted.
pub async fn delete(client: &Client, kind: &Kind, key: &ObjectKey) -> Result<(), kube::Error> {
    match api_for(client, kind, key.namespace.as_deref()).delete(&key.name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(labels: serde_json::Value, owners: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ocp-network-operator-trusted-ca", "namespace": "ns", "labels": labels,
                         "ownerReferences": owners}}))
        .unwrap()
    }

    fn policy_owner(uid: &str, controller: bool) -> serde_json::Value {
        json!([{"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy", "name": "nic-cluster-policy",
                "uid": uid, "controller": controller}])
    }

    #[test]
    fn objects_the_policy_controls_or_labelled_and_owned_are_managed_and_others_are_not() {
        let state = json!({STATE_LABEL: "state-OFED"});
        let desired = object(state.clone(), policy_owner("u1", true));
        let cases = [
            (object(state.clone(), policy_owner("u1", true)), true, "labelled and controlled"),
            (
                object(json!({}), policy_owner("u1", true)),
                true,
                "controlled by the policy, no label (the original's trusted-CA ConfigMap)",
            ),
            (object(state.clone(), policy_owner("u1", false)), true, "labelled and owned"),
            (object(json!({}), policy_owner("u1", false)), false, "owned but not controlled, no label"),
            (object(state.clone(), json!([])), false, "labelled, no owner"),
            (object(json!({}), policy_owner("other", true)), false, "controlled by another policy"),
            (object(json!({STATE_LABEL: "state-X"}), policy_owner("other", false)), false, "another state's"),
        ];
        for (live, managed, case) in cases {
            assert_eq!(is_managed(&live, &desired), managed, "{case}");
        }
    }
}
