//! The NicNodePolicies of a state whose section they may hold ([`State::NODE_POLICIES`]): one
//! more controller in the state's process, beside the NicClusterPolicy's, sharing its cache of
//! the state's objects.
//!
//! Each NicNodePolicy renders its own objects ([`crate::scope`]) once it passes the checks the
//! original makes: the section is not also in the NicClusterPolicy, and no earlier
//! NicNodePolicy selects any of its nodes (re-checked whenever a node's labels, a policy or
//! the cluster policy change). A policy that fails them is `error` naming the field and the
//! nodes, and nothing of it is applied or deleted until it passes.

use crate::reconcile::{self, Context, Error, Outcome};
use crate::scope::Scope;
use crate::state::{Observed, State};
use api::node_policy::{self, NicNodePolicy};
use api::{FieldError, NicClusterPolicy, SyncState};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// What the NicNodePolicy reconcile reads besides the policy.
pub struct NodePolicyContext {
    /// The state's reconcile context (client, namespace, the state's objects, metrics).
    pub core: Context,
    /// The NicClusterPolicy, for section exclusivity and the driver gate.
    pub cluster: Store<NicClusterPolicy>,
    /// Every NicNodePolicy, for the node overlap check.
    pub node_policies: Store<NicNodePolicy>,
    /// Every node's labels.
    pub nodes: Store<PartialObjectMeta<Node>>,
}

/// Why `policy` may not render state `S` now, as an `error` outcome naming the field: its own
/// fields, the section also in `cluster`, or nodes that earlier policies of `others` select.
/// `None` when it may (or when it does not hold the section: its objects are then removed).
pub fn refusal<'a, S: State>(
    policy: &NicNodePolicy,
    cluster: Option<&NicClusterPolicy>,
    others: impl IntoIterator<Item = &'a NicNodePolicy>,
    nodes: &[(String, BTreeMap<String, String>)],
) -> Option<Outcome> {
    if !policy.has_section(S::NAME) {
        return None;
    }
    let field = S::field_path();
    let mut errors = node_policy::validate(policy);
    errors.extend(node_policy::section_conflicts(policy, cluster).into_iter().filter(|e| e.path == field));
    errors.extend(node_policy::overlap_error(&node_policy::overlaps(policy, others, nodes)));
    FieldError::join(errors).map(|error| Outcome::new(SyncState::Error, error.to_string()))
}

/// Reconciles state `S` for one NicNodePolicy and reports its entry in that policy's status.
pub async fn reconcile<S: State>(policy: Arc<NicNodePolicy>, ctx: Arc<NodePolicyContext>) -> Result<Action, Error> {
    let started = Instant::now();
    let cluster = ctx.cluster.get(&ObjectRef::new(api::POLICY_NAME));
    let others = ctx.node_policies.state();
    let nodes = if policy.has_section(S::NAME) { labelled(&ctx.nodes.state()) } else { Vec::new() };
    // Without the section the view takes nothing from the cluster policy: the state is ignored.
    let view = if policy.has_section(S::NAME) { policy.view(cluster.as_deref()) } else { policy.view(None) };
    let scope = Scope::Node(&policy);
    let peers = peers::<S>(&others);
    let outcome = match refusal::<S>(&policy, cluster.as_deref(), others.iter().map(Arc::as_ref), &nodes) {
        Some(refused) => refused,
        None => match reconcile::observe_in::<S>(&view, &scope, &ctx.core).await {
            Ok(observed) => {
                let observed = Observed { peers: peers.clone(), ..observed };
                let outcome = reconcile::sync_with_in::<S>(&view, &scope, &ctx.core, &observed).await;
                match peers.is_empty() {
                    true => with_shared_pruned::<S>(outcome, &ctx.core).await,
                    false => outcome,
                }
            }
            Err(outcome) => outcome,
        },
    };
    reconcile::finish_in::<S>(&view, &scope, &ctx.core, outcome, started).await
}

/// Each of `nodes` by name with its labels, as [`refusal`] and the overlap checks take them.
pub fn labelled<K: kube::Resource>(
    nodes: &[impl std::ops::Deref<Target = K>],
) -> Vec<(String, BTreeMap<String, String>)> {
    nodes.iter().map(|node| (node.name_any(), node.labels().clone())).collect()
}

/// The NicNodePolicies among `all` that hold the section of state `S`, oldest first.
pub fn peers<S: State>(all: &[Arc<NicNodePolicy>]) -> Vec<Arc<NicNodePolicy>> {
    let mut peers: Vec<Arc<NicNodePolicy>> = all.iter().filter(|p| p.has_section(S::NAME)).cloned().collect();
    peers.sort_by_key(|p| (p.metadata.creation_timestamp.clone().map(|t| t.0), p.name_any()));
    peers
}

/// `outcome`, after deleting the objects the NicNodePolicies shared (none holds the section any
/// more); `notReady` when that fails.
pub async fn with_shared_pruned<S: State>(outcome: Outcome, core: &Context) -> Outcome {
    match reconcile::prune_shared::<S>(core).await {
        Ok(()) => outcome,
        Err(message) => Outcome::new(SyncState::NotReady, message),
    }
}

/// What to do after a failed reconcile of a NicNodePolicy: retry soon.
pub fn error_policy<S: State>(_policy: Arc<NicNodePolicy>, error: &Error, ctx: Arc<NodePolicyContext>) -> Action {
    reconcile::on_error::<S>(error, &ctx.core)
}

/// The NicNodePolicy controller of state `S`: a future that resolves once its caches hold
/// their first lists, and the controller itself, which runs until shutdown. `core` is its own
/// context on the state's shared object cache; `owned_changes` yields when one of the state's
/// objects changes. Every policy is reconciled again when a node, a NicNodePolicy, the cluster
/// policy or an object of the state changes (overlap and exclusivity depend on all of them).
pub fn controller<S: State>(
    core: Context,
    owned_changes: impl Stream<Item = ()> + Send + 'static,
) -> (impl Future<Output = ()> + Send + 'static, impl Future<Output = ()> + Send + 'static) {
    let client = core.client.clone();
    let (cluster, cluster_changes) = cluster_policy(&client);
    let (nodes, node_changes) = node_labels(&client);
    let controller = Controller::new(Api::<NicNodePolicy>::all(client.clone()), watcher::Config::default())
        .with_config(controller::Config::default().debounce(crate::run::DEBOUNCE));
    let node_policies = controller.store();
    let policy_changes = node_policy_changes(&client);
    let stores = (cluster.clone(), nodes.clone(), node_policies.clone());
    let synced = async move {
        let _ = stores.0.wait_until_ready().await;
        let _ = stores.1.wait_until_ready().await;
        let _ = stores.2.wait_until_ready().await;
    };
    let changes = futures::stream::select_all([
        owned_changes.boxed(),
        cluster_changes.boxed(),
        node_changes.boxed(),
        policy_changes.boxed(),
    ]);
    let ctx = Arc::new(NodePolicyContext { core, cluster, node_policies, nodes });
    let run = async move {
        tracing::info!(state = S::NAME, "starting the NicNodePolicy controller");
        let results = controller.reconcile_all_on(changes).graceful_shutdown_on(crate::run::shutdown_signal()).run(
            reconcile::<S>,
            error_policy::<S>,
            ctx,
        );
        crate::run::drive(results).await;
    };
    (synced, run)
}

/// A cache of the NicClusterPolicy and a stream that yields when its spec changes (its
/// generation) or it comes or goes; its status writes do not concern the NicNodePolicies.
pub fn cluster_policy(client: &Client) -> (Store<NicClusterPolicy>, impl Stream<Item = ()> + Send + 'static) {
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().fields(&format!("metadata.name={}", api::POLICY_NAME));
    let events = reflector::reflector(writer, watcher(Api::<NicClusterPolicy>::all(client.clone()), config));
    (
        reader,
        changes_of(crate::owned::backoff_on_failure(events), |policy| policy.metadata.generation.unwrap_or(0) as u64),
    )
}

/// A stream that yields when a NicNodePolicy comes, goes or its spec changes (metadata only).
pub fn node_policy_changes(client: &Client) -> impl Stream<Item = ()> + Send + 'static {
    let events = watcher(Api::<PartialObjectMeta<NicNodePolicy>>::all(client.clone()), watcher::Config::default());
    changes_of(crate::owned::backoff_on_failure(events), |policy| policy.metadata.generation.unwrap_or(0) as u64)
}

/// A cache of every node's labels (metadata only, without managed fields and annotations) and
/// a stream that yields when a node comes, goes or its labels change (not on its status
/// updates).
pub fn node_labels(client: &Client) -> (Store<PartialObjectMeta<Node>>, impl Stream<Item = ()> + Send + 'static) {
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().page_size(100);
    let events = watcher(Api::<PartialObjectMeta<Node>>::all(client.clone()), config).modify(|node| {
        node.metadata.managed_fields = None;
        node.metadata.annotations = None;
    });
    let events = crate::owned::backoff_on_failure(reflector::reflector(writer, events));
    (reader, changes_of(events, |node| hash_of(node.labels())))
}

/// A stream that yields when an object of `events` appears or goes, when what `key` reads of it
/// changes, and after each full list.
pub fn changes_of<K, S>(events: S, key: fn(&K) -> u64) -> impl Stream<Item = ()> + Send + 'static
where
    K: kube::Resource + Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    events.filter_map(move |event| {
        let changed = match event {
            Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                let name = object.meta().name.clone().unwrap_or_default();
                seen.insert(name, key(&object)) != Some(key(&object))
            }
            Ok(watcher::Event::Delete(object)) => {
                seen.remove(&object.meta().name.clone().unwrap_or_default()).is_some()
            }
            Ok(watcher::Event::InitDone) => true,
            Ok(watcher::Event::Init) | Err(_) => false,
        };
        std::future::ready(changed.then_some(()))
    })
}

/// A hash of `labels`.
fn hash_of(labels: &BTreeMap<String, String>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Kind;
    use crate::state::{RenderContext, RenderError};
    use api::NicNodePolicySpec;
    use api::policy::DevicePluginSpec;
    use kube::core::DynamicObject;

    /// A state of the RDMA section that renders nothing.
    struct TestState;

    impl State for TestState {
        const NAME: &'static str = api::state::names::RDMA_DP;
        const COMPONENT: &'static str = "test";
        const NEEDS_DRIVER: bool = true;
        const NODE_POLICIES: bool = true;
        type Spec = DevicePluginSpec;
        fn spec(policy: &NicClusterPolicy) -> Option<&DevicePluginSpec> {
            policy.spec.rdma_shared_device_plugin.as_ref()
        }
        fn image(spec: &DevicePluginSpec) -> &api::ImageSpec {
            &spec.image
        }
        fn field_path() -> &'static str {
            "spec.rdmaSharedDevicePlugin"
        }
        fn kinds() -> Vec<Kind> {
            Vec::new()
        }
        fn render(_: &DevicePluginSpec, _: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
            Ok(Vec::new())
        }
    }

    fn with_section(name: &str, selector: &[(&str, &str)]) -> NicNodePolicy {
        NicNodePolicy::new(
            name,
            NicNodePolicySpec {
                rdma_shared_device_plugin: Some(DevicePluginSpec::default()),
                node_selector: Some(selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
        )
    }

    #[tokio::test]
    async fn changes_are_arrivals_departures_and_changes_of_the_key_not_every_write() {
        let node = |name: &str, pool: &str, version: &str| {
            let mut node = PartialObjectMeta::<Node>::default();
            node.metadata.name = Some(name.into());
            node.metadata.labels = Some([("pool".to_string(), pool.to_string())].into());
            node.metadata.resource_version = Some(version.into());
            node
        };
        let events = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(node("n1", "a", "1"))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(node("n1", "a", "2"))), // a status update: same labels
            Ok(watcher::Event::Apply(node("n1", "b", "3"))), // relabelled
            Ok(watcher::Event::Apply(node("n2", "a", "4"))), // a new node
            Ok(watcher::Event::Delete(node("n2", "a", "5"))),
        ];
        let triggers: Vec<()> =
            changes_of(futures::stream::iter(events), |node: &PartialObjectMeta<Node>| hash_of(node.labels()))
                .collect()
                .await;
        assert_eq!(triggers.len(), 5, "listed (first object, end of list), relabelled, new, gone");
    }

    #[test]
    fn a_node_policy_is_refused_for_a_shared_section_or_node_and_left_alone_without_its_section() {
        let nodes = vec![("n1".to_string(), BTreeMap::from([("pool".to_string(), "a".to_string())]))];
        let a = with_section("a", &[("pool", "a")]);
        assert_eq!(refusal::<TestState>(&a, None, [&a], &nodes), None);

        let mut cluster = NicClusterPolicy::new(api::POLICY_NAME, Default::default());
        cluster.spec.rdma_shared_device_plugin = Some(DevicePluginSpec::default());
        let refused = refusal::<TestState>(&a, Some(&cluster), [&a], &nodes).unwrap();
        assert_eq!(refused.state, SyncState::Error);
        assert!(refused.message.unwrap().starts_with("spec.rdmaSharedDevicePlugin: also set in NicClusterPolicy"));

        let mut b = with_section("b", &[]);
        b.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        ));
        let refused = refusal::<TestState>(&b, None, [&a, &b], &nodes).unwrap();
        assert!(refused.message.unwrap().starts_with("spec.nodeSelector: node(s) n1 also selected by NicNodePolicy a"));

        let without = NicNodePolicy::new("c", Default::default());
        assert_eq!(refusal::<TestState>(&without, Some(&cluster), [&a, &without], &nodes), None);
    }
}
