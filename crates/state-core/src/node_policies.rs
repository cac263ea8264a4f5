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
    let nodes: Vec<(String, BTreeMap<String, String>)> =
        ctx.nodes.state().iter().map(|node| (node.name_any(), node.labels().clone())).collect();
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
    let policy_changes =
        watcher(Api::<PartialObjectMeta<NicNodePolicy>>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .touched_objects()
            .filter_map(|event| std::future::ready(event.ok().map(drop)));
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

/// A cache of the NicClusterPolicy and a stream that yields when it changes.
pub fn cluster_policy(client: &Client) -> (Store<NicClusterPolicy>, impl Stream<Item = ()> + Send + 'static) {
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().fields(&format!("metadata.name={}", api::POLICY_NAME));
    let stream = reflector::reflector(writer, watcher(Api::<NicClusterPolicy>::all(client.clone()), config))
        .default_backoff()
        .touched_objects()
        .filter_map(|event| std::future::ready(event.ok().map(drop)));
    (reader, stream)
}

/// A cache of every node's labels (metadata only, without managed fields and annotations) and
/// a stream that yields when one changes.
pub fn node_labels(client: &Client) -> (Store<PartialObjectMeta<Node>>, impl Stream<Item = ()> + Send + 'static) {
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().page_size(100);
    let stream = watcher(Api::<PartialObjectMeta<Node>>::all(client.clone()), config)
        .default_backoff()
        .modify(|node| {
            node.metadata.managed_fields = None;
            node.metadata.annotations = None;
        })
        .reflect(writer)
        .touched_objects()
        .filter_map(|event| std::future::ready(event.ok().map(drop)));
    (reader, stream)
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
