//! The OFED controller: state-core's reconcile of the driver objects, with the image tags
//! listed in the background, a readiness message per pool, and the mofed.wait node label.
//!
//! Watches: the policy, the state's objects, the NIC nodes (slim), the driver pods (slim), and
//! answers from registries.

use crate::images::repository;
use crate::mofed_wait;
use crate::pools::{Pool, pools, some_of};
use crate::registry::{Registry, TagCache};
use crate::{DRIVER_LABEL, OfedDriver};
use api::{NicClusterPolicy, SyncState};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus, Secret};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use state_core::ImageTags;
use state_core::State;
use state_core::metrics::Metrics;
use state_core::nodes::NodeCache;
use state_core::objects::ObjectKey;
use state_core::owned::OwnedObjects;
use state_core::readiness;
use state_core::reconcile::{self, Context, Error, Outcome, field_manager};
use state_core::run::{Process, drive, is_openshift, run_marking_ready, shutdown_signal};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every reconcile of the OFED controller shares.
pub struct OfedContext {
    /// state-core's context: client, namespace, owned objects, NIC nodes, metrics.
    pub core: Context,
    /// The driver pods (slim: node and readiness).
    pub pods: Store<Pod>,
    /// Tags of driver image repositories.
    pub tags: TagCache,
}

/// Reconciles the driver objects and the node labels for the policy, and reports.
pub async fn reconcile(policy: Arc<NicClusterPolicy>, ctx: Arc<OfedContext>) -> Result<Action, Error> {
    if policy.name_any() != api::POLICY_NAME {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let core = &ctx.core;
    let outcome = match reconcile::observe::<OfedDriver>(&policy, core).await {
        Err(outcome) => outcome,
        Ok(mut observed) => {
            let mut registry_note = None;
            if let Some(spec) = OfedDriver::spec(&policy) {
                let repository = repository(spec);
                let tags = ctx.tags.tags(&repository, spec.image.image_pull_secrets.as_deref().unwrap_or_default());
                if let ImageTags::Failed(e) = &tags {
                    registry_note = Some(format!("precompiled images not checked ({e}); pools use the source image"));
                }
                observed.image_tags.insert(repository.clone(), tags);
            }
            let (pools, unpooled) = pools(&observed.nodes);
            let pending = observed.image_tags.values().any(|t| *t == ImageTags::Pending);
            let mut outcome = if pending && !pools.is_empty() {
                // Wait for the registry's answer rather than roll out an image and change it.
                Outcome::new(SyncState::NotReady, "listing the driver image's tags for precompiled images".to_string())
            } else {
                let outcome = reconcile::sync_with::<OfedDriver>(&policy, core, &observed).await;
                summarize(outcome, &pools, core)
            };
            let mut notes: Vec<String> = outcome.message.take().into_iter().collect();
            notes.extend(registry_note.filter(|_| !pools.is_empty()));
            if !unpooled.is_empty() {
                let names: Vec<String> = unpooled.iter().map(|u| u.node.clone()).collect();
                let missing: BTreeSet<&str> = unpooled.iter().flat_map(|u| u.missing.iter().copied()).collect();
                notes.push(format!(
                    "{} NIC node(s) without NFD labels get no driver: {} (missing {})",
                    names.len(),
                    some_of(&names, 3),
                    missing.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
            let errors = label_nodes(&policy, &ctx, &observed.nodes, &pools).await;
            if !errors.is_empty() && outcome.state != SyncState::Error {
                outcome.state = SyncState::NotReady;
            }
            notes.extend(errors);
            outcome.message = (!notes.is_empty()).then(|| notes.join("; "));
            outcome
        }
    };
    reconcile::finish::<OfedDriver>(&policy, core, outcome, started).await
}

/// Replaces the message of a rendered outcome by one about the pools: `2/3 pools ready;
/// mofed-...-ds: 3 of 5 pods available`.
fn summarize(mut outcome: Outcome, pools: &[Pool], core: &Context) -> Outcome {
    if pools.is_empty() || !matches!(outcome.state, SyncState::Ready | SyncState::NotReady) {
        return outcome;
    }
    let mut ready = 0;
    let mut first_problem = None;
    for pool in pools {
        let key = ObjectKey {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            namespace: Some(core.namespace.clone()),
            name: pool.daemon_set(),
        };
        match core.owned.get(&key).map(|ds| readiness::of(&ds)) {
            Some(r) if r.ready => ready += 1,
            Some(r) => {
                first_problem
                    .get_or_insert(r.message.unwrap_or_else(|| format!("DaemonSet {} not ready", pool.daemon_set())));
            }
            None => {
                first_problem.get_or_insert(format!("DaemonSet {} not created yet", pool.daemon_set()));
            }
        }
    }
    let nodes: usize = pools.iter().map(|p| p.nodes.len()).sum();
    outcome.message = Some(match (outcome.state, first_problem) {
        (SyncState::NotReady, Some(problem)) => format!("{ready}/{} pools ready; {problem}", pools.len()),
        (SyncState::NotReady, None) => outcome.message.unwrap_or_default(),
        _ => format!("{} pool(s) ready on {nodes} node(s)", pools.len()),
    });
    outcome
}

/// Brings the mofed.wait labels of the NIC nodes up to date; the errors, one line each.
async fn label_nodes(
    policy: &NicClusterPolicy,
    ctx: &OfedContext,
    nodes: &[Arc<k8s_openapi::api::core::v1::Node>],
    pools: &[Pool],
) -> Vec<String> {
    let pooled: BTreeSet<String> = pools.iter().flat_map(|p| p.nodes.iter().cloned()).collect();
    let changes = mofed_wait::changes(OfedDriver::spec(policy).is_some(), nodes, &pooled, &ctx.pods.state());
    if changes.is_empty() {
        return Vec::new();
    }
    mofed_wait::write(&ctx.core.client, &field_manager::<OfedDriver>(), &changes).await
}

/// Retry a failed reconcile soon.
pub fn error_policy(_policy: Arc<NicClusterPolicy>, error: &Error, ctx: Arc<OfedContext>) -> Action {
    reconcile::on_error::<OfedDriver>(error, &ctx.core)
}

/// Keeps of a driver pod what the label needs: its node and readiness.
fn slim_pod(pod: &mut Pod) {
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .map(|conditions| conditions.into_iter().filter(|c| c.type_ == "Ready").collect::<Vec<_>>());
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    pod.spec = Some(PodSpec { node_name, ..Default::default() });
    pod.status = Some(PodStatus { conditions: ready, ..Default::default() });
}

/// The OFED controller until SIGTERM.
pub async fn run(process: Process) {
    let client = process.client.clone();
    let openshift = is_openshift(&client, process.flags.cluster_type).await;
    run_controller(client, process.flags.namespace, openshift, process.metrics, &process.ready).await;
}

/// The OFED controller for operands in `namespace`, until SIGTERM; `ready` is set once its
/// watches are synced.
pub async fn run_controller(
    client: Client,
    namespace: String,
    openshift: bool,
    metrics: Metrics,
    ready: &std::sync::atomic::AtomicBool,
) {
    let (owned, owned_changes) = OwnedObjects::watch(&client, OfedDriver::kinds(), OfedDriver::NAME, Some(&namespace));
    let (nodes, node_changes) = NodeCache::watch(&client, OfedDriver::NODE_LABELS);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pod_writer = reflector::store::Writer::default();
    let pods = pod_writer.as_reader();
    let pod_changes = reflector::reflector(
        pod_writer,
        watcher(pods_api, watcher::Config::default().labels(DRIVER_LABEL)).modify(slim_pod),
    )
    .default_backoff()
    .filter_map(|event| async move {
        matches!(event, Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))).then_some(())
    });
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let (tags, tag_changes) = TagCache::new(Registry::new(), Some(secrets));
    let refresher = tokio::spawn(tags.clone().refresh_forever());
    let core =
        Context::new(client.clone(), namespace.clone(), openshift, owned.clone(), metrics).with_nodes(nodes.clone());
    let ctx = Arc::new(OfedContext { core, pods: pods.clone(), tags });
    tracing::info!(state = OfedDriver::NAME, %namespace, openshift, "starting controller");
    let policies: Api<NicClusterPolicy> = Api::all(client);
    let controller =
        Controller::new(policies, watcher::Config::default().fields(&format!("metadata.name={}", api::POLICY_NAME)))
            .with_config(controller::Config::default().debounce(Duration::from_millis(500)));
    let policy_store = controller.store();
    let synced = async move {
        let _ = policy_store.wait_until_ready().await;
        owned.synced().await;
        nodes.synced().await;
        let _ = pods.wait_until_ready().await;
    };
    let changes = futures::stream::select_all([
        owned_changes.map(|_| ()).boxed(),
        node_changes.boxed(),
        pod_changes.boxed(),
        tag_changes.boxed(),
    ]);
    let results =
        controller.reconcile_all_on(changes).graceful_shutdown_on(shutdown_signal()).run(reconcile, error_policy, ctx);
    run_marking_ready(drive(results), synced, ready).await;
    refresher.abort();
}
