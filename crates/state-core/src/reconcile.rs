//! Reconcile, implemented once for every state:
//! render → apply what changed → prune what is no longer rendered → readiness → report.

use crate::apply::{self, Applied};
use crate::metrics::Metrics;
use crate::nodes::NodeCache;
use crate::objects::{Kind, ObjectKey};
use crate::owned::OwnedObjects;
use crate::readiness;
use crate::render::render_state;
use crate::state::{Observed, RenderContext, RenderError, State};
use api::policy::AppliedState;
use api::{NicClusterPolicy, SyncState};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Requeue delay once ready (or ignored): a periodic resync.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Requeue delay while the input is invalid: the policy watch brings the fix sooner.
pub const ERROR_RETRY: Duration = Duration::from_secs(60);
/// First requeue delay while not ready; doubles up to [`NOT_READY_MAX`].
pub const NOT_READY_FIRST: Duration = Duration::from_secs(5);
/// Longest requeue delay while not ready.
pub const NOT_READY_MAX: Duration = Duration::from_secs(60);
/// How long a reconcile waits for the owned-object caches to fill before going ahead.
const CACHE_WAIT: Duration = Duration::from_secs(30);

/// Everything reconcile needs, shared by every reconcile of one controller.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Namespace of the operands.
    pub namespace: String,
    /// The cluster is OpenShift.
    pub openshift: bool,
    /// Live copies of this state's objects.
    pub owned: OwnedObjects,
    /// The process's metrics.
    pub metrics: Metrics,
    /// The NIC nodes, for states that render from them ([`State::NODE_LABELS`]).
    pub nodes: Option<NodeCache>,
    /// The nodes' CNI binary directory, when the controller was given one (`--cni-bin-dir`).
    pub cni_bin_dir: Option<String>,
    not_ready_streak: AtomicU32,
}

impl Context {
    /// A context for one controller.
    pub fn new(client: Client, namespace: String, openshift: bool, owned: OwnedObjects, metrics: Metrics) -> Self {
        Self {
            client,
            namespace,
            openshift,
            owned,
            metrics,
            nodes: None,
            cni_bin_dir: None,
            not_ready_streak: AtomicU32::new(0),
        }
    }

    /// The same context, rendering with the CNI binary directory `dir` (`None`: the cluster
    /// type's default).
    pub fn with_cni_bin_dir(mut self, dir: Option<String>) -> Self {
        self.cni_bin_dir = dir;
        self
    }

    /// The same context, rendering from the nodes of `nodes`.
    pub fn with_nodes(mut self, nodes: NodeCache) -> Self {
        self.nodes = Some(nodes);
        self
    }
}

/// A failure of reconcile itself (the status could not be written); retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing this state's status entry failed.
    #[error("writing the status of {state}: {}", apply::describe(.source))]
    Status {
        /// The state name.
        state: &'static str,
        /// The API error.
        source: kube::Error,
    },
}

/// What one sync concluded: the state's value and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The state's value.
    pub state: SyncState,
    /// Why, when there is something to say.
    pub message: Option<String>,
}

impl Outcome {
    /// An outcome with `state` and `message`.
    pub fn new(state: SyncState, message: impl Into<Option<String>>) -> Self {
        Self { state, message: message.into() }
    }
}

/// The field manager of state `S`: `network-operator/<component>`.
pub fn field_manager<S: State>() -> String {
    format!("{}/{}", crate::FIELD_MANAGER_PREFIX, S::COMPONENT)
}

/// Reconciles state `S` for one policy and reports its status entry.
pub async fn reconcile<S: State>(policy: Arc<NicClusterPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    if policy.name_any() != api::POLICY_NAME {
        return Ok(Action::await_change()); // the aggregator reports why it is ignored
    }
    let started = Instant::now();
    let outcome = sync::<S>(&policy, &ctx).await;
    finish::<S>(&policy, &ctx, outcome, started).await
}

/// The end of every reconcile of state `S`: log the outcome, report it as this state's status
/// entry, update the metrics, and say when to come back.
pub async fn finish<S: State>(
    policy: &NicClusterPolicy,
    ctx: &Context,
    outcome: Outcome,
    started: Instant,
) -> Result<Action, Error> {
    match outcome.state {
        SyncState::Error => {
            tracing::warn!(state = S::NAME, message = ?outcome.message, "state error")
        }
        state => {
            tracing::info!(state = S::NAME, value = %state, message = ?outcome.message, "reconciled")
        }
    }
    report::<S>(policy, ctx, &outcome).await?;
    ctx.metrics.set_state(S::NAME, outcome.state);
    ctx.metrics.reconcile_total.with_label_values(&[S::NAME, outcome.state.as_str()]).inc();
    ctx.metrics.reconcile_duration.with_label_values(&[S::NAME]).observe(started.elapsed().as_secs_f64());
    Ok(requeue(ctx, outcome.state))
}

/// What to do after a failed reconcile: retry soon.
pub fn error_policy<S: State>(_policy: Arc<NicClusterPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    on_error::<S>(error, &ctx)
}

/// Logs and counts a failed reconcile of state `S`; retry soon.
pub fn on_error<S: State>(error: &Error, ctx: &Context) -> Action {
    tracing::warn!(state = S::NAME, %error, "reconcile failed; retrying");
    ctx.metrics.reconcile_total.with_label_values(&[S::NAME, "failed"]).inc();
    Action::requeue(NOT_READY_FIRST)
}

fn requeue(ctx: &Context, state: SyncState) -> Action {
    match state {
        SyncState::NotReady => {
            let streak = ctx.not_ready_streak.fetch_add(1, Ordering::Relaxed).min(4);
            Action::requeue((NOT_READY_FIRST * 2u32.pow(streak)).min(NOT_READY_MAX))
        }
        SyncState::Error => {
            ctx.not_ready_streak.store(0, Ordering::Relaxed);
            Action::requeue(ERROR_RETRY)
        }
        SyncState::Ready | SyncState::Ignore => {
            ctx.not_ready_streak.store(0, Ordering::Relaxed);
            Action::requeue(RESYNC)
        }
    }
}

/// Reads what rendering depends on, renders, applies, prunes and checks readiness; never
/// fails, it concludes.
pub async fn sync<S: State>(policy: &NicClusterPolicy, ctx: &Context) -> Outcome {
    match observe::<S>(policy, ctx).await {
        Ok(observed) => sync_with::<S>(policy, ctx, &observed).await,
        Err(outcome) => outcome,
    }
}

/// What rendering state `S` reads from the cluster: the NIC nodes (from the cache) and the
/// ConfigMaps its section names (read now; a missing one is simply absent). Waits for the
/// caches' first lists, at most a while.
pub async fn observe<S: State>(policy: &NicClusterPolicy, ctx: &Context) -> Result<Observed, Outcome> {
    let caches = async {
        ctx.owned.synced().await;
        if let Some(nodes) = &ctx.nodes {
            nodes.synced().await;
        }
    };
    if tokio::time::timeout(CACHE_WAIT, caches).await.is_err() {
        tracing::warn!(state = S::NAME, "caches not filled yet; going ahead");
    }
    let mut observed = Observed {
        nodes: ctx.nodes.as_ref().map(NodeCache::nodes).unwrap_or_default(),
        cni_bin_dir: ctx.cni_bin_dir.clone(),
        ..Default::default()
    };
    let names = S::spec(policy).map(S::referenced_config_maps).unwrap_or_default();
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    for name in names {
        match config_maps.get_opt(&name).await {
            Ok(Some(config_map)) => {
                observed.config_maps.insert(name, config_map);
            }
            Ok(None) => {}
            Err(e) => {
                let message = format!("reading ConfigMap {}/{name}: {}", ctx.namespace, apply::describe(&e));
                return Err(Outcome::new(SyncState::NotReady, message));
            }
        }
    }
    Ok(observed)
}

/// Renders from `observed`, applies, prunes and checks readiness; never fails, it concludes.
pub async fn sync_with<S: State>(policy: &NicClusterPolicy, ctx: &Context, observed: &Observed) -> Outcome {
    let render_ctx = RenderContext { namespace: &ctx.namespace, openshift: ctx.openshift, policy, observed };
    let desired = match render_state::<S>(&render_ctx) {
        Err(RenderError::Waiting(reason)) => return Outcome::new(SyncState::NotReady, reason),
        Err(e) => return Outcome::new(SyncState::Error, e.to_string()),
        Ok(None) => {
            return match prune::<S>(ctx, &BTreeSet::new()).await {
                Ok(()) => Outcome::new(SyncState::Ignore, None),
                Err(message) => Outcome::new(SyncState::NotReady, message),
            };
        }
        Ok(Some(objects)) => objects,
    };
    let kinds = S::kinds();
    let mut live = Vec::with_capacity(desired.len());
    for object in desired.iter() {
        match apply_if_changed::<S>(ctx, &kinds, object.clone()).await {
            Ok(applied) => live.push(applied),
            Err(outcome) => return outcome,
        }
    }
    let keys: BTreeSet<ObjectKey> = desired.iter().map(ObjectKey::of).collect();
    if let Err(message) = prune::<S>(ctx, &keys).await {
        return Outcome::new(SyncState::NotReady, message);
    }
    let mut notes = Vec::new();
    for object in &live {
        let readiness = readiness::of(object);
        if !readiness.ready {
            return Outcome::new(SyncState::NotReady, readiness.message);
        }
        notes.extend(readiness.message);
    }
    Outcome::new(SyncState::Ready, (!notes.is_empty()).then(|| notes.join("; ")))
}

/// Applies `object` unless its live copy already holds every field; a failure is the outcome
/// of this sync: `error` when the input is at fault (a foreign object in the way, an object
/// the API server finds invalid), otherwise `notReady` (retried), naming the object.
async fn apply_if_changed<S: State>(
    ctx: &Context,
    kinds: &[Kind],
    object: DynamicObject,
) -> Result<Arc<DynamicObject>, Outcome> {
    let key = ObjectKey::of(&object);
    let Some(kind) = kinds.iter().find(|k| k.matches(&object)) else {
        return Err(Outcome::new(SyncState::Error, format!("internal error: {key} is of an undeclared kind")));
    };
    match apply::apply_if_changed(&ctx.client, ctx.owned.get(&key), kind, object, &field_manager::<S>()).await {
        Ok(Applied::Unchanged(live)) => Ok(live),
        Ok(Applied::Written(live)) => {
            tracing::info!(state = S::NAME, object = %key, "applied");
            ctx.metrics.objects_applied.with_label_values(&[S::NAME]).inc();
            Ok(live)
        }
        Err(e) => {
            let state = if e.is_input_error() { SyncState::Error } else { SyncState::NotReady };
            Err(Outcome::new(state, e.to_string()))
        }
    }
}

fn owned_by_a_policy(object: &DynamicObject) -> bool {
    object.owner_references().iter().any(|o| o.kind == "NicClusterPolicy" && o.api_version.starts_with("mellanox.com/"))
}

/// Deletes every live object of this state that is not in `keep`. Objects without an owner
/// reference to a NicClusterPolicy are never deleted, whatever their labels say.
async fn prune<S: State>(ctx: &Context, keep: &BTreeSet<ObjectKey>) -> Result<(), String> {
    for (kind, object) in ctx.owned.all() {
        let key = ObjectKey::of(&object);
        if keep.contains(&key) || object.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if !owned_by_a_policy(&object) {
            tracing::warn!(state = S::NAME, object = %key, "carries the state label but no NicClusterPolicy owner; left alone");
            continue;
        }
        apply::delete(&ctx.client, &kind, &key)
            .await
            .map_err(|e| format!("deleting {key}: {}", apply::describe(&e)))?;
        tracing::info!(state = S::NAME, object = %key, "deleted: no longer rendered");
    }
    Ok(())
}

/// Writes this state's `status.appliedStates` entry by server-side apply, unless the policy
/// already shows exactly that entry.
async fn report<S: State>(policy: &NicClusterPolicy, ctx: &Context, outcome: &Outcome) -> Result<(), Error> {
    let entry = AppliedState {
        name: S::NAME.to_string(),
        state: outcome.state,
        message: outcome.message.clone(),
        observed_generation: policy.metadata.generation,
    };
    if policy.applied_state(S::NAME) == Some(&entry) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": format!("{}/{}", api::GROUP, api::VERSION),
        "kind": "NicClusterPolicy",
        "metadata": { "name": policy.name_any() },
        "status": { "appliedStates": [entry] },
    });
    let params = PatchParams::apply(&field_manager::<S>()).force();
    Api::<NicClusterPolicy>::all(ctx.client.clone())
        .patch_status(&policy.name_any(), &params, &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Status { state: S::NAME, source })?;
    ctx.metrics.status_writes.with_label_values(&[S::NAME]).inc();
    Ok(())
}
