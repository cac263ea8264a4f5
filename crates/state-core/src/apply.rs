//! Writing objects: server-side apply only when the live copy lacks something, and deletes
//! that treat "already gone" as done.

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

/// Server-side applies `object` with `manager` (forcing conflicts) unless `live` already holds
/// every field of it, including the revision annotation.
pub async fn apply_if_changed(
    client: &Client,
    live: Option<Arc<DynamicObject>>,
    kind: &Kind,
    mut object: DynamicObject,
    manager: &str,
) -> Result<Applied, kube::Error> {
    let revision = revision(&object);
    object.annotations_mut().insert(REVISION_ANNOTATION.to_string(), revision);
    if let Some(live) = live
        && is_subset(&to_value(&object), &to_value(&live))
    {
        return Ok(Applied::Unchanged(live));
    }
    let key = ObjectKey::of(&object);
    let api = api_for(client, kind, key.namespace.as_deref());
    let applied = api.patch(&key.name, &PatchParams::apply(manager).force(), &Patch::Apply(&object)).await?;
    Ok(Applied::Written(Arc::new(applied)))
}

/// Deletes the object `key` of `kind`; an object already gone counts as deleted.
pub async fn delete(client: &Client, kind: &Kind, key: &ObjectKey) -> Result<(), kube::Error> {
    match api_for(client, kind, key.namespace.as_deref()).delete(&key.name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
