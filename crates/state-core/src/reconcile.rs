//! Reconcile, implemented once for every state:
//! render → apply what changed → prune what is no longer rendered → readiness → report.

use crate::adopt;
use crate::apply::{self, Applied, ApplyError};
use crate::metrics::Metrics;
use crate::nodes::NodeCache;
use crate::objects::{Kind, ObjectKey};
use crate::owned::OwnedObjects;
use crate::readiness;
use crate::scope::Scope;
use crate::state::{Observed, RenderContext, RenderError, State};
use api::policy::AppliedState;
use api::{NicClusterPolicy, NicNodePolicy, SyncState};
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
    finish_in::<S>(policy, &Scope::Cluster, ctx, outcome, started).await
}

/// [`finish`] for the policy of `scope` (`policy` is its view): the state series are the
/// NicClusterPolicy's; a NicNodePolicy's entry goes to its own status.
pub async fn finish_in<S: State>(
    policy: &NicClusterPolicy,
    scope: &Scope<'_>,
    ctx: &Context,
    outcome: Outcome,
    started: Instant,
) -> Result<Action, Error> {
    if let Scope::Node(node_policy) = scope {
        log_node_policy_outcome(S::NAME, node_policy, policy, &outcome);
    } else {
        log_outcome(S::NAME, policy, &outcome);
    }
    report::<S>(policy, scope, ctx, &outcome).await?;
    if matches!(scope, Scope::Cluster) {
        ctx.metrics.set_state(S::NAME, outcome.state);
    }
    ctx.metrics.reconcile_total.with_label_values(&[S::NAME, outcome.state.as_str()]).inc();
    ctx.metrics.reconcile_duration.with_label_values(&[S::NAME]).observe(started.elapsed().as_secs_f64());
    Ok(requeue(ctx, outcome.state))
}

/// Logs the outcome of a reconcile of `state`: at info when it changes the state's entry in
/// `policy` (value, message or generation), at debug when it says again what the entry says; an
/// error at warn the first time. Fields: `state`, `value`, `detail` (plain text, empty when there
/// is nothing to say).
pub fn log_outcome(state: &str, policy: &NicClusterPolicy, outcome: &Outcome) {
    let detail = outcome.message.as_deref().unwrap_or("");
    let value = outcome.state.as_str();
    let unchanged = policy.applied_state(state).is_some_and(|entry| {
        entry.state == outcome.state
            && entry.message == outcome.message
            && entry.observed_generation == policy.metadata.generation
    });
    match (outcome.state, unchanged) {
        (_, true) => tracing::debug!(state, value, detail, "reconciled; nothing changed"),
        (SyncState::Error, false) => tracing::warn!(state, value, detail, "state error"),
        (_, false) => tracing::info!(state, value, detail, "reconciled"),
    }
}

/// [`log_outcome`] for the view of a NicNodePolicy, naming the policy.
fn log_node_policy_outcome(state: &str, node_policy: &NicNodePolicy, view: &NicClusterPolicy, outcome: &Outcome) {
    let span = tracing::info_span!("node_policy", policy = %node_policy.name_any());
    span.in_scope(|| log_outcome(state, view, outcome));
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
    sync_in::<S>(policy, &Scope::Cluster, ctx).await
}

/// [`sync`] for the policy of `scope`, `policy` being its view.
pub async fn sync_in<S: State>(policy: &NicClusterPolicy, scope: &Scope<'_>, ctx: &Context) -> Outcome {
    match observe_in::<S>(policy, scope, ctx).await {
        Ok(observed) => sync_with_in::<S>(policy, scope, ctx, &observed).await,
        Err(outcome) => outcome,
    }
}

/// What rendering state `S` reads from the cluster: which of its optional kinds the API server
/// serves (discovery), the NIC nodes (from the cache) and the ConfigMaps its section names (read
/// now; a missing one is simply absent). Waits for the caches' first lists, at most a while.
pub async fn observe<S: State>(policy: &NicClusterPolicy, ctx: &Context) -> Result<Observed, Outcome> {
    observe_in::<S>(policy, &Scope::Cluster, ctx).await
}

/// [`observe`] for the policy of `scope`: its live objects only.
pub async fn observe_in<S: State>(
    policy: &NicClusterPolicy,
    scope: &Scope<'_>,
    ctx: &Context,
) -> Result<Observed, Outcome> {
    let caches = async {
        ctx.owned.synced().await;
        if let Some(nodes) = &ctx.nodes {
            nodes.synced().await;
        }
    };
    if tokio::time::timeout(CACHE_WAIT, caches).await.is_err() {
        tracing::warn!(state = S::NAME, "caches not filled yet; going ahead");
    }
    let served =
        discover(&ctx.client, &S::kinds()).await.map_err(|message| Outcome::new(SyncState::NotReady, message))?;
    // The watches of the optional kinds that are served list before anything is compared or pruned.
    let optional_caches = ctx.owned.synced_where(|kind| kind.optional && served.contains(&kind.type_name()));
    if tokio::time::timeout(CACHE_WAIT, optional_caches).await.is_err() {
        tracing::warn!(state = S::NAME, "caches of optional kinds not filled yet; going ahead");
    }
    let mut observed = Observed {
        nodes: ctx.nodes.as_ref().map(NodeCache::nodes).unwrap_or_default(),
        cni_bin_dir: ctx.cni_bin_dir.clone(),
        served,
        owned: ctx.owned.all().into_iter().map(|(_, object)| object).filter(|o| scope.contains(o)).collect(),
        ..Default::default()
    };
    let names = S::spec(policy).map(S::referenced_config_maps).unwrap_or_default();
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    // A name no ConfigMap can have is not asked for (the URL would not name one); the render
    // reports it as an error naming the field.
    for name in names.into_iter().filter(|name| api::pod_spec::object_name("", name).is_ok()) {
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

/// The [optional](Kind::optional) kinds of `kinds` the API server serves, by
/// [`Kind::type_name`]: one discovery request per API group version (a 404 means the API is
/// not installed). An unreachable API is an error message naming the group version.
pub async fn discover(client: &Client, kinds: &[Kind]) -> Result<BTreeSet<String>, String> {
    let mut served = BTreeSet::new();
    let versions: BTreeSet<&str> =
        kinds.iter().filter(|k| k.optional).map(|k| k.resource.api_version.as_str()).collect();
    for api_version in versions {
        let resources = match client.list_api_group_resources(api_version).await {
            Ok(list) => list.resources,
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(e) => return Err(format!("discovering the API {api_version}: {}", apply::describe(&e))),
        };
        for kind in kinds.iter().filter(|k| k.optional && k.resource.api_version == api_version) {
            if resources.iter().any(|r| r.name == kind.resource.plural && r.kind == kind.resource.kind) {
                served.insert(kind.type_name());
            }
        }
    }
    Ok(served)
}

/// Renders from `observed`, applies, prunes and checks readiness; never fails, it concludes.
pub async fn sync_with<S: State>(policy: &NicClusterPolicy, ctx: &Context, observed: &Observed) -> Outcome {
    sync_with_in::<S>(policy, &Scope::Cluster, ctx, observed).await
}

/// [`sync_with`] for the policy of `scope`, `policy` being its view.
pub async fn sync_with_in<S: State>(
    policy: &NicClusterPolicy,
    scope: &Scope<'_>,
    ctx: &Context,
    observed: &Observed,
) -> Outcome {
    let render_ctx = RenderContext { namespace: &ctx.namespace, openshift: ctx.openshift, policy, observed };
    let desired = match crate::render::render_in_scope::<S>(&render_ctx, scope) {
        Err(RenderError::Waiting(reason)) => return Outcome::new(SyncState::NotReady, reason),
        Err(e) => return Outcome::new(SyncState::Error, e.to_string()),
        Ok(None) => {
            return match prune::<S>(ctx, scope, &BTreeSet::new()).await {
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
    let mut keys: BTreeSet<ObjectKey> = desired.iter().map(ObjectKey::of).collect();
    keys.extend(live.iter().flat_map(|object| referenced_keys(object)));
    if let Err(message) = prune::<S>(ctx, scope, &keys).await {
        return Outcome::new(SyncState::NotReady, message);
    }
    if S::NEEDS_DRIVER && policy.spec.ofed_driver.is_some() && live.iter().any(|o| matches_no_node(o)) {
        match nodes_waiting_for_driver(&ctx.client, scope).await {
            Ok(waiting) if !waiting.is_empty() => {
                let named = waiting.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
                let more = if waiting.len() > 5 { format!(" and {} more", waiting.len() - 5) } else { String::new() };
                let message = format!("waiting for the driver on {} node(s): {named}{more}", waiting.len());
                return Outcome::new(SyncState::NotReady, message);
            }
            Ok(_) => {}
            Err(e) => {
                let message = format!("listing the nodes that wait for the driver: {}", apply::describe(&e));
                return Outcome::new(SyncState::NotReady, message);
            }
        }
    }
    let warnings = S::spec(policy).map(S::warnings).unwrap_or_default();
    let mut notes = Vec::new();
    for object in &live {
        let readiness = readiness::of(object);
        if !readiness.ready {
            let message = readiness.message.into_iter().chain(warnings).collect::<Vec<_>>();
            return Outcome::new(SyncState::NotReady, (!message.is_empty()).then(|| message.join("; ")));
        }
        notes.extend(readiness.message);
    }
    notes.extend(warnings);
    Outcome::new(SyncState::Ready, (!notes.is_empty()).then(|| notes.join("; ")))
}

/// Whether `object` is a DaemonSet that runs on no node (its status observed).
fn matches_no_node(object: &DynamicObject) -> bool {
    let kind = object.types.as_ref().map(|t| t.kind.as_str()).unwrap_or_default();
    let status = &object.data["status"];
    kind == "DaemonSet" && status["observedGeneration"].is_i64() && status["desiredNumberScheduled"].as_i64() == Some(0)
}

/// The nodes whose driver is not ready yet (`mofed.wait=true`, set by the OFED controller): a
/// driver-gated workload that runs nowhere may only be waiting for them. One metadata list,
/// only then; of the nodes the policy of `scope` selects.
async fn nodes_waiting_for_driver(client: &Client, scope: &Scope<'_>) -> Result<Vec<String>, kube::Error> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let mut selector = vec![format!("{}=true", crate::edits::MOFED_WAIT_LABEL)];
    selector.extend(scope.node_selector());
    let selector = selector.join(",");
    let list = nodes.list_metadata(&kube::api::ListParams::default().labels(&selector)).await?;
    Ok(list.items.into_iter().filter_map(|n| n.metadata.name).collect())
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
    let applied = if S::KEPT_KINDS.contains(&key.kind.as_str()) {
        apply::create_if_missing(&ctx.client, kind, object, &field_manager::<S>(), S::NAME).await
    } else {
        apply::apply_if_changed(&ctx.client, ctx.owned.get(&key), kind, object, &field_manager::<S>()).await
    };
    match applied {
        Ok(Applied::Unchanged(live)) => Ok(live),
        Ok(Applied::Written(live)) => {
            tracing::info!(state = S::NAME, object = %key, "applied");
            ctx.metrics.objects_applied.with_label_values(&[S::NAME]).inc();
            Ok(live)
        }
        Err(e) => Err(refused(S::field_path(), &e)),
    }
}

/// The outcome of an apply that failed: `error` when the input is at fault, otherwise
/// `notReady` (retried). An object the API server refuses as invalid was rendered from the
/// state's `section`, so the message starts with that policy field: the user reads what to fix
/// (the field paths after it are the rendered object's).
fn refused(section: &str, error: &ApplyError) -> Outcome {
    match error {
        ApplyError::Api { .. } if error.is_input_error() => Outcome::new(
            SyncState::Error,
            format!("{section}: the API server refuses what this section renders: {error}"),
        ),
        _ if error.is_input_error() => Outcome::new(SyncState::Error, error.to_string()),
        _ => Outcome::new(SyncState::NotReady, error.to_string()),
    }
}

/// The objects of the namespace of `workload` that its pod template refers to: never pruned
/// while pods use them (an adopted template may refer to objects we no longer render).
fn referenced_keys(workload: &DynamicObject) -> Vec<ObjectKey> {
    adopt::template_references(workload)
        .into_iter()
        .map(|(kind, name)| ObjectKey {
            api_version: "v1".to_string(),
            kind: kind.to_string(),
            namespace: workload.metadata.namespace.clone(),
            name,
        })
        .collect()
}

fn owned_by_a_policy(object: &DynamicObject, scope: &Scope<'_>) -> bool {
    object.owner_references().iter().any(|o| o.kind == scope.owner_kind() && o.api_version.starts_with("mellanox.com/"))
}

/// Deletes every live object of this state and of the policy of `scope` that is not in `keep`.
/// Objects without an owner reference to a policy of that kind are never deleted, whatever
/// their labels say.
async fn prune<S: State>(ctx: &Context, scope: &Scope<'_>, keep: &BTreeSet<ObjectKey>) -> Result<(), String> {
    for (kind, object) in ctx.owned.all() {
        let key = ObjectKey::of(&object);
        if keep.contains(&key) || object.metadata.deletion_timestamp.is_some() || !scope.contains(&object) {
            continue;
        }
        if S::KEPT_KINDS.contains(&key.kind.as_str()) {
            // The user's data (the original labelled and owned it): released, never deleted.
            let api = apply::api_for(&ctx.client, &kind, key.namespace.as_deref());
            if let crate::leftovers::Outcome::Failed(why) = crate::leftovers::release_object(&api, &object).await {
                return Err(format!("releasing {key}: {why}"));
            }
            tracing::info!(state = S::NAME, object = %key, "released: it holds the user's data, nothing deletes it");
            continue;
        }
        if !owned_by_a_policy(&object, scope) {
            tracing::warn!(state = S::NAME, object = %key, owner = scope.owner_kind(), "carries the state label but no owner of its policy's kind; left alone");
            continue;
        }
        apply::delete(&ctx.client, &kind, &key)
            .await
            .map_err(|e| format!("deleting {key}: {}", apply::describe(&e)))?;
        tracing::info!(state = S::NAME, object = %key, "deleted: no longer rendered");
    }
    Ok(())
}

/// Deletes the objects the NicNodePolicies of state `S` share ([`State::SHARED_KINDS`]): once no
/// NicNodePolicy holds the section any more (their owners' deletion collects them otherwise).
pub async fn prune_shared<S: State>(ctx: &Context) -> Result<(), String> {
    for (kind, object) in ctx.owned.all() {
        let key = ObjectKey::of(&object);
        if !Scope::is_shared(&object) || object.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if !object.owner_references().iter().any(|o| o.kind == "NicNodePolicy") {
            continue;
        }
        apply::delete(&ctx.client, &kind, &key)
            .await
            .map_err(|e| format!("deleting {key}: {}", apply::describe(&e)))?;
        tracing::info!(state = S::NAME, object = %key, "deleted: no NicNodePolicy holds the section any more");
    }
    Ok(())
}

/// Writes this state's `status.appliedStates` entry by server-side apply into the policy of
/// `scope` (`policy` is its view), unless the policy already shows exactly that entry.
async fn report<S: State>(
    policy: &NicClusterPolicy,
    scope: &Scope<'_>,
    ctx: &Context,
    outcome: &Outcome,
) -> Result<(), Error> {
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
        "kind": scope.owner_kind(),
        "metadata": { "name": policy.name_any() },
        "status": { "appliedStates": [entry] },
    });
    let params = PatchParams::apply(&field_manager::<S>()).force();
    let patch = Patch::Apply(&patch);
    let written = match scope {
        Scope::Cluster => Api::<NicClusterPolicy>::all(ctx.client.clone())
            .patch_status(&policy.name_any(), &params, &patch)
            .await
            .map(drop),
        Scope::Node(_) => Api::<NicNodePolicy>::all(ctx.client.clone())
            .patch_status(&policy.name_any(), &params, &patch)
            .await
            .map(drop),
    };
    written.map_err(|source| Error::Status { state: S::NAME, source })?;
    ctx.metrics.status_writes.with_label_values(&[S::NAME]).inc();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{mock_client, status_error};
    use kube::core::ApiResource;
    use serde_json::json;

    fn cert_manager(kind: &str, plural: &str) -> Kind {
        let gvk = kube::core::GroupVersionKind::gvk("cert-manager.io", "v1", kind);
        Kind { resource: ApiResource::from_gvk_with_plural(&gvk, plural), namespaced: true, optional: true }
    }

    #[tokio::test]
    async fn discovery_names_the_optional_kinds_the_api_server_serves() {
        let kinds = vec![
            Kind::namespaced::<ConfigMap>(),
            cert_manager("Issuer", "issuers"),
            cert_manager("Certificate", "certificates"),
        ];
        let (client, mut server) = mock_client();
        let task = tokio::spawn(async move { discover(&client, &kinds).await });
        let list = json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "cert-manager.io/v1",
            "resources": [{"name": "issuers", "singularName": "issuer", "namespaced": true, "kind": "Issuer", "verbs": ["get"]}]});
        server.expect("GET", "/apis/cert-manager.io/v1", 200, list).await;
        server.expect_no_more().await;
        assert_eq!(task.await.unwrap().unwrap(), BTreeSet::from(["cert-manager.io/v1/Issuer".to_string()]));
    }

    #[tokio::test]
    async fn an_api_that_is_not_installed_serves_nothing_and_an_unreachable_one_is_an_error() {
        let kinds = vec![cert_manager("Issuer", "issuers")];
        let (client, mut server) = mock_client();
        let asked = kinds.clone();
        let task = tokio::spawn(async move { discover(&client, &asked).await });
        server.expect("GET", "/apis/cert-manager.io/v1", 404, status_error(404, "NotFound")).await;
        assert_eq!(task.await.unwrap(), Ok(BTreeSet::new()));

        let (client, mut server) = mock_client();
        let task = tokio::spawn(async move { discover(&client, &kinds).await });
        server.expect("GET", "/apis/cert-manager.io/v1", 503, status_error(503, "ServiceUnavailable")).await;
        let err = task.await.unwrap().unwrap_err();
        assert!(err.starts_with("discovering the API cert-manager.io/v1: ServiceUnavailable"), "{err}");
    }

    #[test]
    fn an_object_the_api_server_refuses_is_an_error_starting_with_the_policy_field() {
        const SECTION: &str = "spec.rdmaSharedDevicePlugin";
        let key = ObjectKey {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            namespace: Some("ns".into()),
            name: "x-ds".into(),
        };
        let status = |code: u16, message: &str| {
            let status: kube::core::Status = serde_json::from_value(
                json!({"status": "Failure", "message": message, "reason": "Invalid", "code": code}),
            )
            .unwrap();
            kube::Error::Api(status.into())
        };
        let invalid = ApplyError::Api {
            key: key.clone(),
            source: status(422, "spec.template.spec.containers[0].env[1].name: Invalid value"),
        };
        let outcome = refused(SECTION, &invalid);
        assert_eq!(outcome.state, SyncState::Error);
        let message = outcome.message.unwrap();
        assert!(message.starts_with("spec.rdmaSharedDevicePlugin: the API server refuses"), "{message}");
        assert!(message.contains("env[1].name"), "{message}");

        let unavailable = ApplyError::Api { key: key.clone(), source: status(503, "etcd timeout") };
        assert_eq!(refused(SECTION, &unavailable).state, SyncState::NotReady);
        let foreign = ApplyError::NotManaged { key };
        let outcome = refused(SECTION, &foreign);
        assert_eq!((outcome.state, outcome.message.unwrap()), (SyncState::Error, foreign.to_string()));
    }

    /// The log lines `emit` writes through the binaries' JSON subscriber.
    fn json_log(emit: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = crate::run::subscriber(crate::run::LogFormat::Json, move || writer.clone(), false);
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(String::from).collect()
    }

    #[test]
    fn a_reconcile_logs_one_json_object_with_plain_fields_and_nothing_at_info_when_nothing_changed() {
        let mut policy = NicClusterPolicy::new(api::POLICY_NAME, Default::default());
        policy.metadata.generation = Some(3);
        let outcome = Outcome::new(SyncState::NotReady, "waiting for 2 pods".to_string());
        let lines = json_log(|| log_outcome("state-OFED", &policy, &outcome));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].matches("\"message\"").count(), 1, "one message key: {}", lines[0]);
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["message"], "reconciled");
        assert_eq!(line["level"], "INFO");
        assert_eq!(
            (&line["state"], &line["value"], &line["detail"]),
            (&json!("state-OFED"), &json!("notReady"), &json!("waiting for 2 pods"))
        );

        policy.status = Some(api::policy::NicClusterPolicyStatus {
            applied_states: Some(vec![AppliedState {
                name: "state-OFED".into(),
                state: SyncState::NotReady,
                message: Some("waiting for 2 pods".into()),
                observed_generation: Some(3),
            }]),
            ..Default::default()
        });
        assert_eq!(json_log(|| log_outcome("state-OFED", &policy, &outcome)), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_state_without_optional_kinds_asks_nothing() {
        let (client, mut server) = mock_client();
        assert_eq!(discover(&client, &[Kind::namespaced::<ConfigMap>()]).await, Ok(BTreeSet::new()));
        server.expect_no_more().await;
    }
}
