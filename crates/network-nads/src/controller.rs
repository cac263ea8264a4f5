//! Reconcile of one network CR: apply its NAD when it changed, delete the NAD it left in a
//! previous namespace, report `status`. Bad input never touches the existing NAD.

use crate::render::{Network, NetworkStatus, render};
use api::NetworkAttachmentDefinition;
use api::networks::MacvlanNetwork;
use api::networks::{HostDeviceNetwork, IPoIBNetwork, NetworkState};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::core::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use state_core::apply::{self, Applied, ApplyError};
use state_core::metrics::Metrics;
use state_core::objects::{Kind, ObjectKey};
use state_core::owned::OwnedObjects;
use state_core::run::{Process, drive, run_marking_ready, shutdown_signal};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The controller's server-side-apply field manager.
pub const FIELD_MANAGER: &str = "network-operator/network-nads";
/// Requeue delay once ready: a periodic resync.
const RESYNC: Duration = Duration::from_secs(300);
/// How long events for one network are collected into one reconcile (its NAD's apply and its
/// own status write arrive together).
const DEBOUNCE: Duration = Duration::from_millis(300);
/// First retry while not ready (e.g. the namespace is missing); doubles up to a minute.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The kind of the objects this controller writes.
pub fn nad_kind() -> Kind {
    Kind::namespaced::<NetworkAttachmentDefinition>()
}

/// What every reconcile of one network kind shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Live copies of the NADs of this kind (by state label, every namespace).
    pub nads: OwnedObjects,
    /// The process's metrics.
    pub metrics: Metrics,
    retries: Mutex<HashMap<String, u32>>,
    /// Per network (uid): the resourceVersion it had when we last wrote its status, and what we
    /// wrote; while the cache still shows that version, the write has not come back yet.
    written: Mutex<HashMap<String, (String, NetworkStatus)>>,
}

impl Context {
    /// A context over `nads`, the live NADs of one network kind.
    pub fn new(client: Client, nads: OwnedObjects, metrics: Metrics) -> Self {
        Self { client, nads, metrics, retries: Mutex::new(HashMap::new()), written: Mutex::new(HashMap::new()) }
    }

    fn retry_after(&self, name: &str) -> Duration {
        let mut retries = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        let count = retries.entry(name.to_string()).or_insert(0);
        let delay = (RETRY_FIRST * 2u32.pow((*count).min(4))).min(RETRY_MAX);
        *count += 1;
        delay
    }

    fn reset_retries(&self, name: &str) {
        self.retries.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }
}

/// A failed status write; retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("writing the status of {kind} {name}: {}", apply::describe(.source))]
pub struct Error {
    kind: String,
    name: String,
    source: kube::Error,
}

/// Reconciles one network CR.
pub async fn reconcile<N: Network>(network: Arc<N>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = network.name_any();
    if network.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change()); // its NAD goes with it (owner reference)
    }
    let (status, action) = sync(&*network, &ctx).await;
    let kind = N::kind(&()).to_string();
    match status.state {
        NetworkState::Ready => {
            tracing::info!(%kind, %name, reference = status.reference.as_deref().unwrap_or(""), "ready")
        }
        state => {
            tracing::warn!(%kind, %name, state = state_name(state), reason = status.reason.as_deref().unwrap_or(""), "not ready")
        }
    }
    ctx.metrics.reconcile_total.with_label_values(&[N::STATE, state_name(status.state)]).inc();
    report(&*network, &ctx, &status).await?;
    Ok(action)
}

fn state_name(state: NetworkState) -> &'static str {
    match state {
        NetworkState::Ready => "ready",
        NetworkState::NotReady => "notReady",
        NetworkState::Error => "error",
    }
}

async fn sync<N: Network>(network: &N, ctx: &Context) -> (NetworkStatus, Action) {
    let name = network.name_any();
    let not_ready = |reason: String| {
        let status = NetworkStatus { state: NetworkState::NotReady, reason: Some(reason), reference: None };
        (status, Action::requeue(ctx.retry_after(&name)))
    };
    let nad = match render(network) {
        Ok(nad) => nad,
        Err(e) => {
            let status = NetworkStatus { state: NetworkState::Error, reason: Some(e.to_string()), reference: None };
            return (status, Action::await_change());
        }
    };
    let key = ObjectKey::of(&nad);
    let namespace = network.network_namespace().to_string();
    match apply::apply_if_changed(&ctx.client, ctx.nads.get(&key), &nad_kind(), nad, FIELD_MANAGER).await {
        Ok(Applied::Unchanged(_)) => {}
        Ok(Applied::Written(_)) => {
            tracing::info!(nad = %key, "applied");
            ctx.metrics.objects_applied.with_label_values(&[N::STATE]).inc();
        }
        Err(ApplyError::Api { source: kube::Error::Api(status), .. }) if status.code == 404 => {
            return not_ready(format!("namespace {namespace} does not exist; retrying"));
        }
        Err(e) if e.is_input_error() => {
            let status = NetworkStatus { state: NetworkState::Error, reason: Some(e.to_string()), reference: None };
            return (status, Action::await_change());
        }
        Err(e) => return not_ready(e.to_string()),
    }
    // A NAD this CR owns in another namespace was left by a networkNamespace change.
    let uid = network.meta().uid.clone().unwrap_or_default();
    for (kind, old) in ctx.nads.all() {
        let old_key = ObjectKey::of(&old);
        let owned_by_this = old.owner_references().iter().any(|o| o.uid == uid && !uid.is_empty());
        if !owned_by_this || old_key == key || old.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Err(e) = apply::delete(&ctx.client, &kind, &old_key).await {
            return not_ready(format!("deleting {old_key} left by a networkNamespace change: {}", apply::describe(&e)));
        }
        tracing::info!(nad = %old_key, "deleted: networkNamespace changed");
    }
    ctx.reset_retries(&name);
    let reference = format!("k8s.cni.cncf.io/v1/namespaces/{namespace}/NetworkAttachmentDefinition/{name}");
    (NetworkStatus { state: NetworkState::Ready, reason: None, reference: Some(reference) }, Action::requeue(RESYNC))
}

/// Writes the CR's status by server-side apply, unless it already reads exactly so.
async fn report<N: Network>(network: &N, ctx: &Context, status: &NetworkStatus) -> Result<(), Error> {
    let current = network.status();
    // Keep the last known reference while not ready: the NAD it names still exists.
    let reference = status.reference.clone().or_else(|| current.as_ref().and_then(|c| c.reference.clone()));
    let desired = NetworkStatus { reference, ..status.clone() };
    if current.as_ref() == Some(&desired) {
        return Ok(());
    }
    // Our previous write of this very status may not be in the cache yet (the reconcile ran
    // before its watch event): the cache still shows the version we wrote over.
    let uid = network.uid().unwrap_or_default();
    let version = network.resource_version().unwrap_or_default();
    {
        let mut written = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
        match written.get(&uid) {
            Some((seen, status)) if *seen == version && *status == desired => return Ok(()),
            // The cache has moved on: the memo has served.
            Some(_) => {
                written.remove(&uid);
            }
            None => {}
        }
    }
    let mut body = json!({ "state": desired.state });
    if let Some(reason) = &desired.reason {
        body["reason"] = json!(reason);
    }
    if let Some(reference) = &desired.reference {
        body[N::REFERENCE_FIELD] = json!(reference);
    }
    let patch = json!({
        "apiVersion": N::api_version(&()),
        "kind": N::kind(&()),
        "metadata": { "name": network.name_any() },
        "status": body,
    });
    Api::<N>::all(ctx.client.clone())
        .patch_status(&network.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error { kind: N::kind(&()).to_string(), name: network.name_any(), source })?;
    ctx.metrics.status_writes.with_label_values(&[N::STATE]).inc();
    let mut written = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
    if written.len() > 10_000 {
        written.clear(); // entries of deleted networks; a memo, not a record
    }
    written.insert(uid, (version, desired));
    Ok(())
}

/// Retry a failed status write soon.
pub fn error_policy<N: Network>(_network: Arc<N>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed; retrying");
    ctx.metrics.reconcile_total.with_label_values(&[N::STATE, "failed"]).inc();
    Action::requeue(RETRY_FIRST)
}

/// The networks of kind `N` that own `nad` (by owner reference).
pub fn owners_of<N: Network>(nad: &DynamicObject) -> Vec<ObjectRef<N>> {
    let kind = N::kind(&());
    nad.owner_references().iter().filter(|o| o.kind == kind).map(|o| ObjectRef::new(&o.name)).collect()
}

/// The controller of network kind `N`: a future that runs it until SIGTERM, and one that
/// resolves once its watches have their first lists.
///
/// A network is reconciled when it changes, when a NAD it owns changes (and only that network),
/// and when the namespace it targets appears, so a network waiting for its namespace is ready
/// within moments of its creation.
pub fn controller<N: Network>(
    client: Client,
    metrics: Metrics,
) -> (impl Future<Output = ()>, impl Future<Output = ()>) {
    let (nads, nad_changes) = OwnedObjects::watch(&client, vec![nad_kind()], N::STATE, None);
    let ctx = Arc::new(Context::new(client.clone(), nads.clone(), metrics));
    tracing::info!(kind = N::kind(&()).as_ref(), "starting controller");
    let controller = Controller::new(Api::<N>::all(client.clone()), watcher::Config::default())
        .with_config(controller::Config::default().debounce(DEBOUNCE));
    let networks = controller.store();
    let owners = nad_changes.flat_map(|nad| futures::stream::iter(nad.map(|n| owners_of::<N>(&n)).unwrap_or_default()));
    let waiting = networks.clone();
    let namespaces = state_core::owned::backoff_on_failure(watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client),
        watcher::Config::default(),
    ))
    .applied_objects()
    .filter_map(|namespace| futures::future::ready(namespace.ok().map(|n| n.name_any())))
    .flat_map(move |namespace| {
        let targeting: Vec<ObjectRef<N>> = waiting
            .state()
            .iter()
            .filter(|network| network.network_namespace() == namespace)
            .map(|network| ObjectRef::from_obj(network.as_ref()))
            .collect();
        futures::stream::iter(targeting)
    });
    let synced = async move {
        let _ = networks.wait_until_ready().await;
        nads.synced().await;
    };
    let results = controller.reconcile_on(owners).reconcile_on(namespaces).graceful_shutdown_on(shutdown_signal()).run(
        reconcile::<N>,
        error_policy::<N>,
        ctx,
    );
    (drive(results), synced)
}

/// The three controllers of the process, until SIGTERM.
pub async fn run(process: Process) {
    run_all(process.client, process.metrics, process.ready).await;
}

/// The controllers of the three network kinds side by side, until SIGTERM; `ready` is set once
/// all three have their first lists.
pub async fn run_all(client: Client, metrics: Metrics, ready: Arc<AtomicBool>) {
    let (macvlan, macvlan_synced) = controller::<MacvlanNetwork>(client.clone(), metrics.clone());
    let (host_device, host_device_synced) = controller::<HostDeviceNetwork>(client.clone(), metrics.clone());
    let (ipoib, ipoib_synced) = controller::<IPoIBNetwork>(client, metrics);
    let work = async {
        tokio::join!(macvlan, host_device, ipoib);
    };
    let synced = async {
        tokio::join!(macvlan_synced, host_device_synced, ipoib_synced);
    };
    run_marking_ready(work, synced, &ready).await;
}
