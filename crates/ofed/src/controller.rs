//! The OFED controller: state-core's reconcile of the driver objects, with the image tags
//! listed in the background, a readiness message per pool, and the mofed.wait node label.
//!
//! After each sync it runs an [`upgrade`](crate::upgrade) pass.
//!
//! Watches: the policy, the state's objects, the NIC nodes (twice, slim: labels for pools,
//! upgrade keys for upgrades), the driver pods (slim), and answers from registries.

use crate::images::repository;
use crate::mofed_wait;
use crate::pod::Pod;
use crate::pools::{Pool, legacy_daemon_sets, pools, some_of};
use crate::registry::{Registry, TagCache};
use crate::upgrade::{self, pass::NodeSet, pass::PassReport, pass::Upgrades};
use crate::{DRIVER_LABEL, OfedDriver};
use api::{NicClusterPolicy, NicNodePolicy, SyncState};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::core::PartialObjectMeta;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use state_core::State;
use state_core::metrics::Metrics;
use state_core::nodes::{NodeCache, NodeFacts, RUNTIME_LABEL, container_runtime, facts};
use state_core::objects::ObjectKey;
use state_core::owned::OwnedObjects;
use state_core::readiness;
use state_core::reconcile::{self, Context, Error, Outcome, field_manager};
use state_core::run::{Process, drive, is_openshift, run_marking_ready, shutdown_signal};
use state_core::scope::Scope;
use state_core::{ImageTags, Observed, OpenShiftFacts};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// What every reconcile of the OFED controller shares.
pub struct OfedContext {
    /// state-core's context: client, namespace, owned objects, NIC nodes, metrics.
    pub core: Context,
    /// The driver pods (slim: node and readiness).
    pub pods: Store<Pod>,
    /// Tags of driver image repositories.
    pub tags: TagCache,
    /// Container runtimes of the nodes read so far (see [`add_rhel_runtimes`]).
    pub runtimes: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Driver upgrades.
    pub upgrades: Arc<Upgrades>,
    /// The NicNodePolicies (those with a driver take their nodes out of the cluster policy's).
    pub node_policies: Store<NicNodePolicy>,
    /// Every node's labels, to tell which nodes a NicNodePolicy selects.
    pub node_labels: Store<PartialObjectMeta<Node>>,
}

impl OfedContext {
    /// The nodes NicNodePolicy `policy` selects, by name.
    pub fn selected_by(&self, policy: &NicNodePolicy) -> BTreeSet<String> {
        self.node_labels.state().iter().filter(|n| policy.selects(n.labels())).map(|n| n.name_any()).collect()
    }

    /// The nodes of the cluster policy's driver: every node when it deploys one (a NicNodePolicy
    /// with a driver is refused then), else every node but those of NicNodePolicies with a
    /// driver (their mofed.wait labels and upgrades are theirs).
    pub fn cluster_nodes(&self, policy: &NicClusterPolicy) -> NodeSet {
        if policy.spec.ofed_driver.is_some() {
            return NodeSet::All;
        }
        let theirs = self
            .node_policies
            .state()
            .iter()
            .filter(|p| p.spec.ofed_driver.is_some())
            .flat_map(|p| self.selected_by(p))
            .collect();
        NodeSet::Except(theirs)
    }
}

/// The node watch is metadata only (it keeps thousands of nodes in little memory), so it has
/// no container runtime; RHEL pools need it (subscription mounts, unless CRI-O), so the first
/// node of each RHEL pool is read, once.
async fn add_rhel_runtimes(ctx: &OfedContext, nodes: &mut [Arc<NodeFacts>]) -> Result<(), String> {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(ctx.core.client.clone());
    let mut seen = BTreeSet::new();
    for node in nodes.iter_mut() {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if labels.get(crate::pools::OS_LABEL).map(String::as_str) != Some("rhel") {
            continue;
        }
        let key: Vec<Option<&String>> = crate::pools::POOL_LABELS.iter().map(|k| labels.get(*k)).collect();
        if !seen.insert(format!("{key:?}")) {
            continue;
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        let known = ctx.runtimes.lock().unwrap_or_else(|e| e.into_inner()).get(&name).cloned();
        let runtime = match known {
            Some(runtime) => runtime,
            None => {
                let full = api
                    .get(&name)
                    .await
                    .map_err(|e| format!("reading node {name}: {}", state_core::apply::describe(&e)))?;
                let runtime = container_runtime(&facts(full, None)).unwrap_or_default().to_string();
                ctx.runtimes.lock().unwrap_or_else(|e| e.into_inner()).insert(name, runtime.clone());
                runtime
            }
        };
        let mut with_runtime = (**node).clone();
        with_runtime.metadata.labels.get_or_insert_with(Default::default).insert(RUNTIME_LABEL.to_string(), runtime);
        *node = Arc::new(with_runtime);
    }
    Ok(())
}

/// Reconciles the driver objects and the node labels for the policy, and reports.
pub async fn reconcile(policy: Arc<NicClusterPolicy>, ctx: Arc<OfedContext>) -> Result<Action, Error> {
    if policy.name_any() != api::POLICY_NAME {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    // The driver image completed from `spec.global`: the registry's tags are listed for it.
    let policy = match policy.with_global_defaults() {
        Cow::Borrowed(_) => policy,
        Cow::Owned(resolved) => Arc::new(resolved),
    };
    let nodes = ctx.cluster_nodes(&policy);
    let (outcome, report) = sync_and_upgrade(&policy, &Scope::Cluster, &nodes, Vec::new(), &ctx).await;
    let action = reconcile::finish::<OfedDriver>(&policy, &ctx.core, outcome, started).await?;
    Ok(if report.recheck { Action::requeue(upgrade::pass::RECHECK) } else { action })
}

/// The driver of the policy of `scope` (`policy` is its view) on the nodes of `nodes`: observe,
/// render, apply, label, then one upgrade pass; the outcome (with the upgrade's progress) and
/// the pass's report. `peers` are the NicNodePolicies sharing the driver's RBAC objects.
pub async fn sync_and_upgrade(
    policy: &NicClusterPolicy,
    scope: &Scope<'_>,
    nodes: &NodeSet,
    peers: Vec<Arc<NicNodePolicy>>,
    ctx: &OfedContext,
) -> (Outcome, PassReport) {
    let core = &ctx.core;
    let outcome = match reconcile::observe_in::<OfedDriver>(policy, scope, core).await {
        Err(outcome) => outcome,
        Ok(mut observed) => {
            observed.nodes.retain(|node| nodes.contains(&node.name_any()));
            observed.peers = peers;
            if core.openshift && OfedDriver::spec(policy).is_some() {
                match openshift_facts(&core.client).await {
                    Ok(facts) => {
                        observed.openshift = facts;
                        sync(policy, scope, ctx, observed).await
                    }
                    Err(message) => Outcome::new(SyncState::NotReady, message),
                }
            } else {
                sync(policy, scope, ctx, observed).await
            }
        }
    };
    let report = upgrade(policy, scope, nodes, ctx).await;
    (with_upgrade(outcome, &report), report)
}

/// One upgrade pass over the driver DaemonSets of the policy of `scope` and the driver pods the
/// caches hold, on the nodes of `nodes`.
async fn upgrade(policy: &NicClusterPolicy, scope: &Scope<'_>, nodes: &NodeSet, ctx: &OfedContext) -> PassReport {
    let daemon_sets: Vec<Arc<DynamicObject>> = ctx
        .core
        .owned
        .all()
        .into_iter()
        .filter(|(kind, object)| kind.resource.kind == "DaemonSet" && scope.contains(object))
        .map(|(_, object)| object)
        .collect();
    let key = match scope {
        Scope::Cluster => String::new(),
        Scope::Node(node_policy) => node_policy.name_any(),
    };
    ctx.upgrades.pass(&key, OfedDriver::spec(policy), &daemon_sets, &ctx.pods.state(), nodes).await
}

/// The outcome with the upgrade's progress added to its message; `error` when upgrades
/// cannot go on as configured.
fn with_upgrade(mut outcome: Outcome, report: &PassReport) -> Outcome {
    if let Some(error) = &report.error {
        return Outcome::new(SyncState::Error, error.clone());
    }
    if let Some(progress) = report.message.clone() {
        outcome.message = Some(match outcome.message.take() {
            Some(message) => format!("{message}; {progress}"),
            None => progress,
        });
    }
    outcome
}

/// The driver-toolkit images (ImageStream `openshift/driver-toolkit`) and the cluster-wide
/// proxy (`Proxy/cluster`) of an OpenShift cluster; what does not exist is simply absent.
async fn openshift_facts(client: &Client) -> Result<OpenShiftFacts, String> {
    let mut facts = OpenShiftFacts::default();
    let gvk = |group: &str, kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
    };
    let streams: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "openshift", &gvk("image.openshift.io", "ImageStream", "imagestreams"));
    let absent = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
    match streams.get_opt("driver-toolkit").await {
        Ok(stream) => {
            for tag in stream.iter().flat_map(|s| s.data["spec"]["tags"].as_array().cloned().unwrap_or_default()) {
                if let (Some(name), Some(image)) = (tag["name"].as_str(), tag["from"]["name"].as_str()) {
                    facts.driver_toolkit.insert(name.to_string(), image.to_string());
                }
            }
        }
        Err(e) if absent(&e) => {}
        Err(e) => {
            return Err(format!("reading ImageStream openshift/driver-toolkit: {}", state_core::apply::describe(&e)));
        }
    }
    let proxies: Api<DynamicObject> = Api::all_with(client.clone(), &gvk("config.openshift.io", "Proxy", "proxies"));
    match proxies.get_opt("cluster").await {
        Ok(Some(proxy)) => {
            facts.proxy = proxy_env(&proxy);
            facts.trusted_ca = proxy.data["spec"]["trustedCA"]["name"].as_str().is_some_and(|n| !n.is_empty());
        }
        Ok(None) => {}
        Err(e) if absent(&e) => {}
        Err(e) => {
            let message = format!(
                "failed to read the OpenShift cluster-wide proxy settings: {}",
                state_core::apply::describe(&e)
            );
            return Err(message);
        }
    }
    Ok(facts)
}

/// The driver container's proxy variables from OpenShift's `Proxy/cluster`: its `status`, the
/// values the cluster resolved and its own operators use (`noProxy` there adds the cluster's
/// and service networks, the API server and the node subnets, which the user's `spec.noProxy`
/// leaves out: with the spec alone the driver would send in-cluster traffic to the proxy); a
/// field the status does not have yet (not reconciled) falls back to the `spec`. The original
/// read the spec only.
pub fn proxy_env(proxy: &DynamicObject) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (name, field) in [("HTTPS_PROXY", "httpsProxy"), ("HTTP_PROXY", "httpProxy"), ("NO_PROXY", "noProxy")] {
        let status = proxy.data["status"][field].as_str().filter(|v| !v.is_empty());
        let value = status.or(proxy.data["spec"][field].as_str()).unwrap_or_default();
        if !value.is_empty() {
            env.push((name.to_string(), value.to_string()));
        }
    }
    env
}

/// Lists tags, renders, applies and labels from `observed` (the nodes of the policy of `scope`);
/// the outcome, with a message about the pools, nodes without NFD labels and registry failures.
async fn sync(policy: &NicClusterPolicy, scope: &Scope<'_>, ctx: &OfedContext, mut observed: Observed) -> Outcome {
    let core = &ctx.core;
    if let Err(message) = add_rhel_runtimes(ctx, &mut observed.nodes).await {
        return Outcome::new(SyncState::NotReady, message);
    }
    let (pools, unpooled) = pools(&observed.nodes, &legacy_daemon_sets(&observed.owned));
    let mut registry_note = None;
    // Pools that need the registry's answer: those that do not run a candidate image yet.
    let mut choosing = 0;
    if let Some(spec) = OfedDriver::spec(policy).filter(|_| crate::settings().precompiled_lookup) {
        let repository = repository(spec);
        let tags = ctx.tags.tags(&repository, spec.image.image_pull_secrets.as_deref().unwrap_or_default());
        choosing = pools
            .iter()
            .filter(|pool| crate::images::kept(spec, pool, crate::live_image_in(&observed.owned, pool)).is_none())
            .count();
        // Only when it changes an image: pools that keep theirs need no answer (the failure
        // is logged where the registry is asked).
        if let ImageTags::Failed(e) = &tags
            && choosing > 0
        {
            registry_note = Some(format!("precompiled images not checked ({e}); new pools use the source image"));
        }
        observed.image_tags.insert(repository.clone(), tags);
    }
    let pending = observed.image_tags.values().any(|t| *t == ImageTags::Pending);
    let mut outcome = if pending && choosing > 0 {
        // Wait for the registry's answer rather than roll out an image and change it.
        Outcome::new(SyncState::NotReady, "listing the driver image's tags for precompiled images".to_string())
    } else {
        let outcome = reconcile::sync_with_in::<OfedDriver>(policy, scope, core, &observed).await;
        let auto_upgrade = matches!(upgrade::Settings::of(OfedDriver::spec(policy)), Ok(Some(_)));
        summarize(outcome, &pools, core, scope, auto_upgrade)
    };
    let mut notes: Vec<String> = outcome.message.take().into_iter().collect();
    notes.extend(registry_note.filter(|_| !pools.is_empty()));
    if !unpooled.is_empty() {
        let names: Vec<String> = unpooled.iter().map(|u| u.node.clone()).collect();
        let missing: BTreeSet<&str> = unpooled.iter().flat_map(|u| u.missing.iter().copied()).collect();
        notes.push(format!(
            "{}{} NIC node(s) without NFD labels get no driver: {} (missing {})",
            api::state::LEFT_OUT_NOTE,
            names.len(),
            some_of(&names, 3),
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    // One view of the driver pods for the labels and for whether they caught up.
    let pooled: BTreeSet<String> = pools.iter().flat_map(|p| p.nodes.iter().cloned()).collect();
    let pods = ctx.pods.state();
    let errors = label_nodes(policy, ctx, &observed.nodes, &pooled, &pods).await;
    if !errors.is_empty() && outcome.state != SyncState::Error {
        outcome.state = SyncState::NotReady;
    }
    notes.extend(errors);
    if outcome.state == SyncState::Ready {
        let available = pools
            .iter()
            .filter_map(|pool| core.owned.get(&pool_daemon_set(core, pool, scope)))
            .map(|ds| ds.data["status"]["numberAvailable"].as_i64().unwrap_or(0))
            .sum();
        if let Some(note) = mofed_wait::labels_behind(available, &pooled, &pods) {
            outcome.state = SyncState::NotReady;
            notes.push(note);
        }
    }
    outcome.message = (!notes.is_empty()).then(|| notes.join("; "));
    outcome
}

/// What to do when driver pods run an older template and nothing replaces them: the driver
/// DaemonSets update `OnDelete`, as the original's, so that no driver reloads by surprise.
pub const MANUAL_UPGRADE_HINT: &str = "the driver DaemonSets update on delete: delete the driver pods node by node \
     (each node's driver reloads), or set spec.ofedDriver.upgradePolicy.autoUpgrade: true";

/// Whether the DaemonSet `ds` has pods on an older template.
fn has_outdated_pods(ds: &DynamicObject) -> bool {
    let int = |key: &str| ds.data["status"][key].as_i64().unwrap_or(0);
    int("updatedNumberScheduled") < int("desiredNumberScheduled")
}

/// Replaces the message of a rendered outcome by one about the pools: `2/3 pools ready;
/// mofed-...-ds: 3 of 5 pods available`; when pods run an older driver and upgrades are not
/// automatic (`auto_upgrade` false), what to do about it.
fn summarize(mut outcome: Outcome, pools: &[Pool], core: &Context, scope: &Scope<'_>, auto_upgrade: bool) -> Outcome {
    if pools.is_empty() || !matches!(outcome.state, SyncState::Ready | SyncState::NotReady) {
        return outcome;
    }
    let mut ready = 0;
    let mut first_problem = None;
    let mut outdated = false;
    for pool in pools {
        let key = pool_daemon_set(core, pool, scope);
        let live = core.owned.get(&key);
        outdated |= live.as_ref().is_some_and(|ds| has_outdated_pods(ds));
        match live.map(|ds| readiness::of(&ds)) {
            Some(r) if r.ready => ready += 1,
            Some(r) => {
                first_problem.get_or_insert(r.message.unwrap_or_else(|| format!("DaemonSet {} not ready", key.name)));
            }
            None => {
                first_problem.get_or_insert(format!("DaemonSet {} not created yet", key.name));
            }
        }
    }
    let nodes: usize = pools.iter().map(|p| p.nodes.len()).sum();
    let hint = if outdated && !auto_upgrade { format!("; {MANUAL_UPGRADE_HINT}") } else { String::new() };
    outcome.message = Some(match (outcome.state, first_problem) {
        (SyncState::NotReady, Some(problem)) => format!("{ready}/{} pools ready; {problem}{hint}", pools.len()),
        (SyncState::NotReady, None) => outcome.message.unwrap_or_default(),
        _ => format!("{} pool(s) ready on {nodes} node(s)", pools.len()),
    });
    outcome
}

/// The key of `pool`'s driver DaemonSet of the policy of `scope` in the owned objects' cache.
fn pool_daemon_set(core: &Context, pool: &Pool, scope: &Scope<'_>) -> ObjectKey {
    let name = match scope {
        Scope::Cluster => pool.daemon_set(),
        Scope::Node(policy) => OfedDriver::scoped_name(&pool.daemon_set(), &policy.name_any()),
    };
    ObjectKey { api_version: "apps/v1".into(), kind: "DaemonSet".into(), namespace: Some(core.namespace.clone()), name }
}

/// Brings the mofed.wait labels of the NIC nodes up to date; the errors, one line each.
async fn label_nodes(
    policy: &NicClusterPolicy,
    ctx: &OfedContext,
    nodes: &[Arc<NodeFacts>],
    pooled: &BTreeSet<String>,
    pods: &[Arc<Pod>],
) -> Vec<String> {
    let changes = mofed_wait::changes(OfedDriver::spec(policy).is_some(), nodes, pooled, pods);
    if changes.is_empty() {
        return Vec::new();
    }
    mofed_wait::write(&ctx.core.client, &field_manager::<OfedDriver>(), &changes).await
}

/// Retry a failed reconcile soon.
pub fn error_policy(_policy: Arc<NicClusterPolicy>, error: &Error, ctx: Arc<OfedContext>) -> Action {
    reconcile::on_error::<OfedDriver>(error, &ctx.core)
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
    let pod_changes = state_core::owned::backoff_on_failure(reflector::reflector(
        pod_writer,
        watcher(pods_api, watcher::Config::default().labels(DRIVER_LABEL)).modify(upgrade::observe::slim_driver_pod),
    ))
    .filter_map(|event| async move {
        matches!(event, Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))).then_some(())
    });
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let (tags, tag_changes) = TagCache::new(Registry::new(), Some(secrets));
    let refresher = tokio::spawn({
        let tags = tags.clone();
        async move {
            if crate::settings().precompiled_lookup {
                tags.refresh_forever().await;
            } else {
                tracing::info!("precompiled-image lookup is off: no registry is asked");
            }
        }
    });
    let (upgrade_nodes, upgrade_node_changes) = upgrade::pass::watch_nodes(&client);
    let (node_labels, node_label_changes) = state_core::node_policies::node_labels(&client);
    let (cluster, cluster_changes) = state_core::node_policies::cluster_policy(&client);
    let node_policy_controller = Controller::new(Api::<NicNodePolicy>::all(client.clone()), watcher::Config::default())
        .with_config(controller::Config::default().debounce(state_core::run::DEBOUNCE));
    let node_policies = node_policy_controller.store();
    let (maintenance, maintenance_changes) = match crate::settings().maintenance.clone() {
        Some(requestor) => {
            tracing::info!(requestor = %requestor.id, namespace = %requestor.namespace, "driver upgrades go through the Maintenance Operator");
            let (watch, changes) = upgrade::pass::MaintenanceWatch::new(&client, requestor);
            (Some(watch), changes.boxed())
        }
        None => (None, futures::stream::pending().boxed()),
    };
    let upgrades = Upgrades::new(client.clone(), namespace.clone(), upgrade_nodes, &metrics, maintenance);
    let core =
        Context::new(client.clone(), namespace.clone(), openshift, owned.clone(), metrics).with_nodes(nodes.clone());
    let ctx = Arc::new(OfedContext {
        core,
        pods: pods.clone(),
        tags,
        runtimes: Default::default(),
        upgrades: upgrades.clone(),
        node_policies: node_policies.clone(),
        node_labels: node_labels.clone(),
    });
    tracing::info!(state = OfedDriver::NAME, %namespace, openshift, "starting controller");
    let policies: Api<NicClusterPolicy> = Api::all(client);
    let controller =
        Controller::new(policies, watcher::Config::default().fields(&format!("metadata.name={}", api::POLICY_NAME)))
            .with_config(controller::Config::default().debounce(state_core::run::DEBOUNCE));
    let policy_store = controller.store();
    let stores = (node_policies.clone(), node_labels.clone(), cluster.clone());
    let synced = async move {
        let _ = policy_store.wait_until_ready().await;
        owned.synced().await;
        nodes.synced().await;
        let _ = pods.wait_until_ready().await;
        upgrades.synced().await;
        let _ = stores.0.wait_until_ready().await;
        let _ = stores.1.wait_until_ready().await;
        let _ = stores.2.wait_until_ready().await;
    };
    // Every change reconciles both the cluster policy and every NicNodePolicy: which nodes are
    // whose, and the driver pods' readiness, concern them all.
    let changes = futures::stream::select_all([
        owned_changes.map(|_| ()).boxed(),
        node_changes.boxed(),
        upgrade_node_changes.boxed(),
        maintenance_changes,
        pod_changes.boxed(),
        tag_changes.boxed(),
        state_core::run::config_map_changes(&ctx.core.client, &namespace).boxed(),
        node_label_changes.boxed(),
        cluster_changes.boxed(),
        state_core::node_policies::node_policy_changes(&ctx.core.client).boxed(),
    ]);
    let (changes, node_policy_triggers) = state_core::run::fan_out(changes);
    let node_policy_ctx = Arc::new(crate::node_policies::NodePolicyContext { ofed: ctx.clone(), cluster });
    let cleaner = tokio::spawn(clean_up_deleted_policies(Api::all(ctx.core.client.clone()), ctx.clone()));
    let node_policy_cleaner = tokio::spawn(crate::node_policies::clean_up_deleted(node_policy_ctx.clone()));
    let results =
        controller.reconcile_all_on(changes).graceful_shutdown_on(shutdown_signal()).run(reconcile, error_policy, ctx);
    let node_policy_results = node_policy_controller
        .reconcile_all_on(node_policy_triggers)
        .graceful_shutdown_on(shutdown_signal())
        .run(crate::node_policies::reconcile, crate::node_policies::error_policy, node_policy_ctx);
    let work = async {
        futures::future::join(drive(results), drive(node_policy_results)).await;
    };
    run_marking_ready(work, synced, ready).await;
    cleaner.abort();
    node_policy_cleaner.abort();
    refresher.abort();
}

/// What the state leaves on the nodes when the policy is deleted (no reconcile runs then): the
/// upgrade stops its drains and removes its keys and cordons, and the mofed.wait label goes,
/// as when the OFED section is removed.
async fn clean_up_deleted_policies(policies: Api<NicClusterPolicy>, ctx: Arc<OfedContext>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={}", api::POLICY_NAME));
    let mut deletions = std::pin::pin!(
        state_core::owned::backoff_on_failure(watcher(policies, config))
            .filter_map(|event| async move { matches!(event, Ok(watcher::Event::Delete(_))).then_some(()) })
    );
    while deletions.next().await.is_some() {
        tracing::info!(state = OfedDriver::NAME, "the policy was deleted: stopping upgrades, cleaning the nodes");
        let scope = ctx.cluster_nodes(&NicClusterPolicy::new(api::POLICY_NAME, Default::default()));
        let report = ctx.upgrades.policy_deleted("", &scope).await;
        let mut nodes = ctx.core.nodes.as_ref().map(NodeCache::nodes).unwrap_or_default();
        nodes.retain(|node| scope.contains(&node.name_any()));
        let changes = mofed_wait::changes(false, &nodes, &BTreeSet::new(), &ctx.pods.state());
        let errors = mofed_wait::write(&ctx.core.client, &field_manager::<OfedDriver>(), &changes).await;
        for error in report.message.into_iter().chain(errors) {
            tracing::warn!(state = OfedDriver::NAME, %error, "cleaning the nodes after the policy's deletion");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn proxy(spec: serde_json::Value, status: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "config.openshift.io/v1", "kind": "Proxy",
            "metadata": {"name": "cluster"}, "spec": spec, "status": status}))
        .unwrap()
    }

    #[test]
    fn the_proxy_variables_are_the_clusters_resolved_ones_else_the_spec() {
        let spec = json!({"httpProxy": "http://spec:3128", "httpsProxy": "http://spec:3128", "noProxy": "example.com"});
        let status = json!({"httpProxy": "http://spec:3128", "httpsProxy": "http://spec:3128",
                            "noProxy": ".cluster.local,.svc,10.128.0.0/14,172.30.0.0/16,api-int.x,example.com,localhost"});
        let env = proxy_env(&proxy(spec.clone(), status));
        assert_eq!(
            env,
            [
                ("HTTPS_PROXY".to_string(), "http://spec:3128".to_string()),
                ("HTTP_PROXY".to_string(), "http://spec:3128".to_string()),
                (
                    "NO_PROXY".to_string(),
                    ".cluster.local,.svc,10.128.0.0/14,172.30.0.0/16,api-int.x,example.com,localhost".to_string()
                ),
            ],
            "the status, with the cluster's own networks in NO_PROXY"
        );
        let not_yet = proxy_env(&proxy(spec, json!({})));
        assert_eq!(not_yet[2], ("NO_PROXY".to_string(), "example.com".to_string()), "the spec until resolved");
        assert!(proxy_env(&proxy(json!({}), json!({}))).is_empty(), "no proxy: no variables");
    }
}
