//! One upgrade pass, run at the end of every OFED reconcile: read the inputs ([`super::observe`]),
//! decide ([`super::decide`]), and carry the actions out: node writes (one merge patch each,
//! waited for until the node watch shows it, so the next pass decides from it), an Event on
//! the node for each transition, driver pod deletions, and drains in tasks of their own; in
//! requestor mode, the `NodeMaintenance` objects requested and released.

use super::decide::{self, Action, Managed, NodeView, Progress, Snapshot, Update, decide};
use super::maintenance::{self, Maintenance, Release, Request, Requestor};
use super::observe::{self, managed, newest_revision_hash, node_view};
use super::{DrainSettings, NodeState, STATE_LABEL, Settings, WaitFor, drain};
use crate::OfedDriver;
use crate::pod::Pod;
use api::policy::OfedDriverSpec;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use prometheus::{IntCounter, IntGaugeVec, Opts};
use serde_json::{Value, json};
use state_core::apply::describe;
use state_core::events::{Event, EventType, Recorder, Reporter};
use state_core::metrics::Metrics;
use state_core::nodes::NIC_LABEL;
use state_core::reconcile::field_manager;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How soon a pass looks again while something waits on time (pods to complete, a timeout).
pub const RECHECK: Duration = Duration::from_secs(10);
/// How long a write waits to show up in the node watch.
const WATCH_LAG: Duration = Duration::from_secs(10);

/// The upgrade metrics: `network_operator_ofed_upgrade_nodes{state}` (summed over the policies
/// with a driver: the NicClusterPolicy and each NicNodePolicy count their own nodes) and
/// `network_operator_ofed_upgrade_failures_total`.
#[derive(Clone)]
pub struct UpgradeMetrics {
    nodes: IntGaugeVec,
    failures: IntCounter,
    /// Nodes per state of each policy's last pass (`""`: the NicClusterPolicy).
    by_policy: Arc<Mutex<BTreeMap<String, BTreeMap<NodeState, usize>>>>,
}

impl UpgradeMetrics {
    /// Registers the upgrade metrics with the process's.
    pub fn register(metrics: &Metrics) -> Self {
        let nodes = IntGaugeVec::new(
            Opts::new("network_operator_ofed_upgrade_nodes", "Nodes running a driver pod, by upgrade state"),
            &["state"],
        )
        .expect("valid metric");
        let failures =
            IntCounter::new("network_operator_ofed_upgrade_failures_total", "Nodes whose driver upgrade failed")
                .expect("valid metric");
        metrics.register(Box::new(nodes.clone()));
        metrics.register(Box::new(failures.clone()));
        Self { nodes, failures, by_policy: Arc::default() }
    }

    /// Records the progress of `policy`'s last pass and shows the sum over every policy.
    pub fn show(&self, policy: &str, progress: &Progress) {
        let mut by_policy = self.by_policy.lock().unwrap_or_else(|e| e.into_inner());
        by_policy.insert(policy.to_string(), progress.counts.clone());
        for state in NodeState::ALL {
            let label = if state == NodeState::Unknown { "unknown" } else { state.as_str() };
            let count: usize = by_policy.values().filter_map(|counts| counts.get(&state)).sum();
            self.nodes.with_label_values(&[label]).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
}

/// The nodes one policy's upgrades may touch, by name: the NicClusterPolicy's are every NIC node
/// but those of NicNodePolicies with a driver; a NicNodePolicy's are those it selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NodeSet {
    /// Every node.
    #[default]
    All,
    /// Only these.
    Only(BTreeSet<String>),
    /// Every node but these.
    Except(BTreeSet<String>),
}

impl NodeSet {
    /// Whether the node named `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            NodeSet::All => true,
            NodeSet::Only(names) => names.contains(name),
            NodeSet::Except(names) => !names.contains(name),
        }
    }

    fn of(&self, nodes: Vec<Arc<Node>>) -> Vec<Arc<Node>> {
        nodes.into_iter().filter(|node| self.contains(&node.name_any())).collect()
    }
}

/// What a pass reports to the OFED state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Progress (while upgrading) or a problem, for the state's message.
    pub message: Option<String>,
    /// Look again after [`RECHECK`].
    pub recheck: bool,
    /// Upgrades cannot go on as configured (the state is `error` with this message).
    pub error: Option<String>,
}

/// Requestor mode: the requestor options of the controller and its watch of the
/// `NodeMaintenance` objects in the requestor namespace.
pub struct MaintenanceWatch {
    requestor: Requestor,
    store: Store<DynamicObject>,
    /// The API server was seen serving `NodeMaintenance`.
    served: AtomicBool,
}

impl MaintenanceWatch {
    /// Watches the `NodeMaintenance` objects of `requestor`'s namespace; the stream yields on
    /// every change and must be polled (while the API is not installed, its list fails and is
    /// retried with a back-off).
    pub fn new(client: &Client, requestor: Requestor) -> (Self, impl Stream<Item = ()> + Send + 'static) {
        let writer = reflector::store::Writer::new(maintenance::api_resource());
        let store = writer.as_reader();
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &requestor.namespace, &maintenance::api_resource());
        let changes = state_core::owned::backoff_on_failure(reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).modify(|object: &mut DynamicObject| {
                object.metadata.managed_fields = None;
            }),
        ))
        .filter_map(|event| async move {
            matches!(event, Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone))
                .then_some(())
        });
        (Self { requestor, store, served: AtomicBool::new(false) }, changes)
    }

    /// The `NodeMaintenance` named `name`, as the watch last saw it.
    fn get(&self, name: &str) -> Option<Maintenance> {
        self.store
            .get(&ObjectRef::new_with(name, maintenance::api_resource()).within(&self.requestor.namespace))
            .map(|object| Maintenance::of(&object))
    }
}

/// The upgrade machinery of one OFED controller.
pub struct Upgrades {
    client: Client,
    namespace: String,
    nodes: Store<Node>,
    recorder: Recorder,
    metrics: UpgradeMetrics,
    manager: String,
    /// Nodes being drained, with their tasks.
    draining: Mutex<BTreeMap<String, tokio::task::AbortHandle>>,
    /// Newest template hash per driver DaemonSet uid, with the generation it was read for.
    hashes: Mutex<BTreeMap<String, (i64, String)>>,
    /// Requestor mode, when the controller runs in it.
    maintenance: Option<MaintenanceWatch>,
}

/// Watches the NIC nodes for upgrades (kept slim, see [`observe::slim_node`]); the stream yields
/// on every change and must be polled.
pub fn watch_nodes(client: &Client) -> (Store<Node>, impl Stream<Item = ()> + Send + 'static) {
    let writer = reflector::store::Writer::default();
    let store = writer.as_reader();
    let config = watcher::Config::default().labels(&format!("{NIC_LABEL}=true")).page_size(100);
    let changes = state_core::owned::backoff_on_failure(reflector::reflector(
        writer,
        watcher(Api::<Node>::all(client.clone()), config).modify(observe::slim_node),
    ))
    .filter_map(|event| async move {
        matches!(event, Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone))
            .then_some(())
    });
    (store, changes)
}

impl Upgrades {
    /// The upgrades of the driver pods in `namespace`, deciding from `nodes` (see [`watch_nodes`]);
    /// with `maintenance`, in requestor mode.
    pub fn new(
        client: Client,
        namespace: String,
        nodes: Store<Node>,
        metrics: &Metrics,
        maintenance: Option<MaintenanceWatch>,
    ) -> Arc<Self> {
        let reporter = Reporter { controller: "ofed-controller".into(), instance: std::env::var("POD_NAME").ok() };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespace,
            nodes,
            metrics: UpgradeMetrics::register(metrics),
            manager: field_manager::<OfedDriver>(),
            draining: Mutex::default(),
            hashes: Mutex::default(),
            maintenance,
        })
    }

    /// Waits until the node watch holds its first list.
    pub async fn synced(&self) {
        let _ = self.nodes.wait_until_ready().await;
    }

    /// One pass for the OFED section of `policy` (`""`: the NicClusterPolicy, else a
    /// NicNodePolicy's name), its driver DaemonSets and driver pods, on the nodes of `scope` (the
    /// others are other policies').
    pub async fn pass(
        self: &Arc<Self>,
        policy: &str,
        spec: Option<&OfedDriverSpec>,
        daemon_sets: &[Arc<DynamicObject>],
        pods: &[Arc<Pod>],
        scope: &NodeSet,
    ) -> PassReport {
        let nodes = scope.of(self.nodes.state());
        let mut settings = match Settings::of(spec) {
            Ok(Some(settings)) => settings,
            Ok(None) => return self.turn_off(policy, &nodes).await,
            Err(_) => return PassReport::default(), // the render reports it, naming the field
        };
        if let Some(watch) = &self.maintenance {
            let requestor = match watch.requestor.for_policy(policy) {
                Ok(requestor) => requestor,
                Err(message) => return PassReport { error: Some(message), ..Default::default() },
            };
            if let Err(message) = self.maintenance_served(watch).await {
                return PassReport { error: Some(message), recheck: true, ..Default::default() };
            }
            // Right after the API appears, its watch may not have listed yet: decide later.
            if tokio::time::timeout(Duration::from_secs(1), watch.store.wait_until_ready()).await.is_err() {
                let message = "upgrade: waiting for the first list of NodeMaintenance objects".to_string();
                return PassReport { message: Some(message), recheck: true, error: None };
            }
            settings.requestor = Some(requestor);
        }
        let hashes = match self.hashes(daemon_sets).await {
            Ok(hashes) => hashes,
            Err(message) => return PassReport { message: Some(message), recheck: true, error: None },
        };
        let managed = managed(&nodes, pods, &hashes);
        let jobs_running = match &settings.wait_for {
            Some(wait) => match self.jobs_running(wait, &managed).await {
                Ok(found) => found,
                Err(message) => return PassReport { message: Some(message), recheck: true, error: None },
            },
            None => BTreeSet::new(),
        };
        let draining = self.draining.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        let podless = observe::podless(&nodes, &managed);
        let mut maintenance = BTreeMap::new();
        if let (Some(watch), Some(requestor)) = (&self.maintenance, &settings.requestor) {
            for node in managed.iter().map(|m| &m.node.name) {
                if let Some(found) = watch.get(&requestor.object_name(node)) {
                    maintenance.insert(node.clone(), found);
                }
            }
        }
        let snapshot =
            Snapshot { nodes: managed, podless, jobs_running, draining, maintenance, now: drain::unix_now() };
        let plan = decide(&settings, &snapshot);
        let held = decide::holding(&settings, &snapshot);
        let progress = Progress::of(&decide::after(&snapshot.nodes, &plan.actions));
        self.metrics.show(policy, &progress);
        let mut errors = Vec::new();
        for action in plan.actions {
            let result = match action {
                Action::Update(update) => self.write(&update).await,
                Action::Drain { node } => {
                    let view = snapshot.nodes.iter().find(|m| m.node.name == node).map(|m| m.node.clone());
                    if let (Some(view), Some(drain)) = (view, &settings.drain) {
                        self.start_drain(view, drain.clone());
                    }
                    Ok(())
                }
                Action::RestartDriver { node, pod } => self.restart_driver(&node, &pod).await,
                Action::RequestMaintenance { node, then } => match self.request_maintenance(&node, &settings).await {
                    Ok(()) => self.write(&then).await,
                    Err(e) => Err(e),
                },
                Action::ReleaseMaintenance { node, then } => match self.release_maintenance(&node, &settings).await {
                    Ok(()) => self.write(&then).await,
                    Err(e) => Err(e),
                },
            };
            errors.extend(result.err());
        }
        let mut message = match (progress.message(), held) {
            (Some(progress), Some(held)) => Some(format!("{progress}; {held}")),
            (progress, _) => progress,
        };
        if let Some(first) = errors.first() {
            let note = format!("upgrade: {first}");
            message = Some(message.map_or(note.clone(), |m| format!("{m}; {note}")));
        }
        PassReport { message, recheck: plan.recheck || !errors.is_empty(), error: None }
    }

    /// Whether the API server serves `NodeMaintenance` (asked until it does); the error names
    /// the missing API and what to do.
    async fn maintenance_served(&self, watch: &MaintenanceWatch) -> Result<(), String> {
        if watch.served.load(Ordering::Relaxed) {
            return Ok(());
        }
        let kind = maintenance::kind();
        let served = state_core::reconcile::discover(&self.client, std::slice::from_ref(&kind))
            .await
            .map_err(|e| format!("upgrade: {e}"))?;
        if !served.contains(&kind.type_name()) {
            return Err(format!(
                "spec.ofedDriver.upgradePolicy: driver upgrades through the Maintenance Operator \
                 (MAINTENANCE_OPERATOR_ENABLED) need the NodeMaintenance API ({} {}), which this cluster does not serve: \
                 install the Maintenance Operator (or its CRDs), or turn the requestor mode off \
                 (chart value operator.maintenanceOperator.useRequestor); no node is upgraded until then",
                maintenance::API_VERSION,
                maintenance::PLURAL
            ));
        }
        watch.served.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Requests the `NodeMaintenance` of `node` (creates it, or joins another requestor's), and
    /// waits until the watch shows it, so the next pass finds it.
    async fn request_maintenance(&self, node: &str, settings: &Settings) -> Result<(), String> {
        let (Some(watch), Some(requestor)) = (&self.maintenance, &settings.requestor) else { return Ok(()) };
        let name = requestor.object_name(node);
        let api = self.maintenance_api(requestor);
        let written = match maintenance::request(requestor, node, settings, watch.get(&name).as_ref()) {
            None => return Ok(()),
            Some(Request::Create(body)) => {
                let object: DynamicObject = serde_json::from_value(body).map_err(|e| e.to_string())?;
                api.create(
                    &kube::api::PostParams { field_manager: Some(self.manager.clone()), ..Default::default() },
                    &object,
                )
                .await
            }
            Some(Request::Join(patch)) => api.patch(&name, &self.patch_params(), &Patch::Merge(&patch)).await,
        }
        .map_err(|e| format!("requesting NodeMaintenance {}/{name}: {}", requestor.namespace, describe(&e)))?;
        tracing::info!(%node, maintenance = %name, requestor = %requestor.id, "requested node maintenance");
        let wanted = written.resource_version();
        let deadline = Instant::now() + WATCH_LAG;
        while Instant::now() < deadline {
            let seen = watch.store.get(&ObjectRef::from_obj_with(&written, maintenance::api_resource()));
            if seen.is_some_and(|s| s.resource_version() == wanted || Maintenance::of(&s).holds(&requestor.id)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("NodeMaintenance {}/{name} was written but the watch has not shown it yet", requestor.namespace))
    }

    /// Releases the `NodeMaintenance` of `node`: deletes it if this requestor created it, else
    /// leaves its additional requestors.
    async fn release_maintenance(&self, node: &str, settings: &Settings) -> Result<(), String> {
        let (Some(watch), Some(requestor)) = (&self.maintenance, &settings.requestor) else { return Ok(()) };
        match watch.get(&requestor.object_name(node)) {
            Some(found) => self.release(requestor, &found).await,
            None => Ok(()),
        }
    }

    /// Releases `found` for `requestor` (nothing when it does not hold it).
    async fn release(&self, requestor: &Requestor, found: &Maintenance) -> Result<(), String> {
        let api = self.maintenance_api(requestor);
        let result = match maintenance::release(&requestor.id, found) {
            None => return Ok(()),
            Some(Release::Delete) => api.delete(&found.name, &DeleteParams::default()).await.map(|_| ()),
            Some(Release::Leave(patch)) => {
                api.patch(&found.name, &self.patch_params(), &Patch::Merge(&patch)).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(node = %found.node, maintenance = %found.name, requestor = %requestor.id, "released node maintenance");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => {
                Err(format!("releasing NodeMaintenance {}/{}: {}", requestor.namespace, found.name, describe(&e)))
            }
        }
    }

    fn maintenance_api(&self, requestor: &Requestor) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &requestor.namespace, &maintenance::api_resource())
    }

    fn patch_params(&self) -> PatchParams {
        PatchParams { field_manager: Some(self.manager.clone()), ..Default::default() }
    }

    /// `policy` is gone: as when upgrades are turned off, drains stop and every node of `scope`
    /// loses the upgrade's keys and cordons (no reconcile runs for a deleted policy).
    pub async fn policy_deleted(&self, policy: &str, scope: &NodeSet) -> PassReport {
        self.turn_off(policy, &scope.of(self.nodes.state())).await
    }

    /// Upgrades are off: the drains of `nodes` stop, and they lose their upgrade keys (see
    /// [`decide::turn_off`]).
    async fn turn_off(&self, policy: &str, nodes: &[Arc<Node>]) -> PassReport {
        let names: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        {
            let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
            let stopped: Vec<String> = draining.keys().filter(|node| names.contains(*node)).cloned().collect();
            for node in stopped {
                if let Some(task) = draining.remove(&node) {
                    task.abort();
                }
            }
        }
        self.metrics.show(policy, &Progress::default());
        let views: Vec<NodeView> = nodes.iter().map(|n| node_view(n)).collect();
        let mut errors = Vec::new();
        // Every NodeMaintenance this policy's requestor holds is released (the Maintenance
        // Operator uncordons their nodes).
        if let Some(watch) = &self.maintenance
            && let Ok(requestor) = watch.requestor.for_policy(policy)
        {
            let held: Vec<Maintenance> = watch
                .store
                .state()
                .iter()
                .map(|object| Maintenance::of(object))
                .filter(|m| maintenance::release(&requestor.id, m).is_some())
                .collect();
            for found in held {
                errors.extend(self.release(&requestor, &found).await.err());
            }
        }
        for update in decide::turn_off(&views) {
            errors.extend(self.write(&update).await.err());
        }
        PassReport {
            message: errors.first().map(|e| format!("upgrade cleanup: {e}")),
            recheck: !errors.is_empty(),
            error: None,
        }
    }

    /// The newest template hash of each driver DaemonSet (by uid) whose status describes its
    /// current generation (the others' pods are judged in a later pass).
    async fn hashes(&self, daemon_sets: &[Arc<DynamicObject>]) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for ds in daemon_sets {
            let (Some(uid), name) = (ds.metadata.uid.clone(), ds.name_any()) else { continue };
            let generation = ds.metadata.generation.unwrap_or(0);
            if ds.data["status"]["observedGeneration"].as_i64().is_none_or(|o| o < generation) {
                continue;
            }
            let known = self.hashes.lock().unwrap_or_else(|e| e.into_inner()).get(&uid).cloned();
            if let Some((_, hash)) = known.filter(|(seen, _)| *seen == generation) {
                out.insert(uid, hash);
                continue;
            }
            let selector: Vec<String> = ds.data["spec"]["selector"]["matchLabels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            let revisions: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &self.namespace);
            let list = revisions
                .list(&ListParams::default().labels(&selector.join(",")))
                .await
                .map_err(|e| format!("listing the ControllerRevisions of DaemonSet {name}: {}", describe(&e)))?;
            if let Some(hash) = newest_revision_hash(&name, &list.items) {
                self.hashes.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone(), (generation, hash.clone()));
                out.insert(uid, hash);
            }
        }
        self.hashes.lock().unwrap_or_else(|e| e.into_inner()).retain(|uid, _| out.contains_key(uid));
        Ok(out)
    }

    /// The nodes waiting for `waitForCompletion` pods where such pods are Running or Pending.
    async fn jobs_running(&self, wait: &WaitFor, nodes: &[Managed]) -> Result<BTreeSet<String>, String> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let mut out = BTreeSet::new();
        for Managed { node, .. } in nodes.iter().filter(|m| m.node.state == NodeState::WaitForJobsRequired) {
            let params = ListParams::default().fields(&format!("spec.nodeName={}", node.name)).labels(&wait.selector);
            let list = pods.list(&params).await.map_err(|e| {
                format!("listing the pods of {} matching {:?}: {}", node.name, wait.selector, describe(&e))
            })?;
            let busy = list
                .items
                .iter()
                .any(|p| matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running" | "Pending")));
            if busy {
                out.insert(node.name.clone());
            }
        }
        Ok(out)
    }

    /// Writes `update` on its node as one merge patch, waits until the node watch shows it, and
    /// records its Event.
    async fn write(&self, update: &Update) -> Result<(), String> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = nodes
            .patch(
                &update.node,
                &PatchParams { field_manager: Some(self.manager.clone()), ..Default::default() },
                &Patch::Merge(&patch_of(update)),
            )
            .await
            .map_err(|e| format!("updating node {}: {}", update.node, describe(&e)))?;
        self.await_watch(&node).await;
        if let Some(to) = update.to {
            tracing::info!(node = %update.node, state = to.as_str(), "upgrade state changed");
            if to == NodeState::UpgradeFailed {
                self.metrics.failures.inc();
            }
        }
        if let Some(note) = &update.note {
            let event = Event {
                type_: if note.warning { EventType::Warning } else { EventType::Normal },
                reason: note.reason.to_string(),
                note: Some(truncate(&note.message, 1000)),
                action: "Upgrade".into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &node_reference(&node)).await {
                tracing::warn!(node = %update.node, error = %describe(&e), "recording an Event failed");
            }
        }
        Ok(())
    }

    /// Waits (a while) until the node watch holds `written` or a later version of it.
    async fn await_watch(&self, written: &Node) {
        let Some(wanted) = written.resource_version() else { return };
        let key = ObjectRef::new(&written.name_any());
        let deadline = Instant::now() + WATCH_LAG;
        while Instant::now() < deadline {
            let seen = self.nodes.get(&key).and_then(|n| n.resource_version());
            let caught_up = match (seen.as_deref().map(str::parse::<u64>), wanted.parse::<u64>()) {
                (Some(Ok(seen)), Ok(wanted)) => seen >= wanted,
                _ => seen.as_deref() == Some(wanted.as_str()),
            };
            if caught_up {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(node = %written.name_any(), "the node watch has not shown a write yet");
    }

    /// Deletes the node's outdated driver pod, so its DaemonSet starts a current one.
    async fn restart_driver(&self, node: &str, pod: &str) -> Result<(), String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        match pods.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(e) => return Err(format!("deleting driver pod {pod} on {node}: {}", describe(&e))),
        }
        tracing::info!(%node, %pod, "deleted the outdated driver pod");
        let event = Event {
            type_: EventType::Normal,
            reason: "DriverRestart".into(),
            note: Some(format!("OFED driver upgrade: deleted driver pod {pod} so the new driver starts")),
            action: "Upgrade".into(),
            secondary: None,
        };
        if let Some(live) = self.nodes.get(&ObjectRef::new(node))
            && let Err(e) = self.recorder.publish(&event, &node_reference(&live)).await
        {
            tracing::warn!(%node, error = %describe(&e), "recording an Event failed");
        }
        Ok(())
    }

    /// Drains the node in a task of its own, unless one runs; the task moves the node on
    /// (`pod-restart-required`, or `upgrade-failed` with the reason) if it is still
    /// `drain-required` then.
    fn start_drain(self: &Arc<Self>, view: NodeView, settings: DrainSettings) {
        let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        if draining.contains_key(&view.name) {
            return;
        }
        let this = Arc::clone(self);
        let name = view.name.clone();
        let task = tokio::spawn(async move {
            let name = view.name.clone();
            let started = match view.drain_started {
                Some(started) => started,
                None => {
                    let now = drain::unix_now();
                    if let Err(e) = this.write(&decide::drain_started(&view, now)).await {
                        tracing::warn!(node = %name, error = %e, "could not mark the drain's start; retrying later");
                        this.draining.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
                        return;
                    }
                    now
                }
            };
            tracing::info!(node = %name, selector = %settings.selector, timeout = settings.timeout_seconds, "draining");
            let result = drain::drain(&this.client, &name, &settings, started).await;
            let current = this.nodes.get(&ObjectRef::new(&name)).map(|n| node_view(&n));
            match current {
                Some(current) if current.state == NodeState::DrainRequired => {
                    let update = match &result {
                        Ok(evicted) => decide::drained(&current, *evicted),
                        Err(reason) => {
                            tracing::warn!(node = %name, %reason, "drain failed");
                            decide::drain_failed(&current, reason)
                        }
                    };
                    if let Err(e) = this.write(&update).await {
                        tracing::warn!(node = %name, error = %e, "could not record the drain's end; it is retried");
                    }
                }
                _ => tracing::info!(node = %name, "the node left drain-required while draining; result dropped"),
            }
            this.draining.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
        });
        draining.insert(name, task.abort_handle());
    }
}

/// The merge patch of `update`: state label, annotations, cordon.
pub fn patch_of(update: &Update) -> Value {
    let mut patch = json!({"metadata": {}});
    if let Some(to) = update.to {
        let value = if to == NodeState::Unknown { Value::Null } else { json!(to.as_str()) };
        patch["metadata"]["labels"] = json!({ STATE_LABEL: value });
    }
    if !update.annotations.is_empty() {
        patch["metadata"]["annotations"] = update.annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    }
    if let Some(unschedulable) = update.unschedulable {
        patch["spec"] = json!({"unschedulable": if unschedulable { json!(true) } else { Value::Null }});
    }
    patch
}

fn node_reference(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::{FAILURE_ANNOTATION, REQUESTED_ANNOTATION};

    #[test]
    fn the_upgrade_gauge_sums_the_policies_each_counting_its_own_nodes() {
        let metrics = Metrics::new();
        let upgrade = UpgradeMetrics::register(&metrics);
        let progress = |state: NodeState, n: usize| Progress { counts: [(state, n)].into(), ..Default::default() };
        let gauge = |state: &str| {
            let line = format!("network_operator_ofed_upgrade_nodes{{state=\"{state}\"}} ");
            metrics.encode().lines().find_map(|l| l.strip_prefix(&line).map(str::to_string)).unwrap_or_default()
        };
        upgrade.show("", &progress(NodeState::UpgradeDone, 2));
        upgrade.show("pool-a", &progress(NodeState::UpgradeDone, 3));
        upgrade.show("pool-b", &progress(NodeState::UpgradeFailed, 1));
        assert_eq!((gauge("upgrade-done"), gauge("upgrade-failed")), ("5".to_string(), "1".to_string()));
        // A later pass of one policy replaces only its own counts.
        upgrade.show("pool-a", &progress(NodeState::UpgradeDone, 1));
        upgrade.show("pool-b", &Progress::default());
        assert_eq!((gauge("upgrade-done"), gauge("upgrade-failed")), ("3".to_string(), "0".to_string()));
    }

    #[test]
    fn one_merge_patch_carries_the_state_annotations_and_cordon() {
        let update = Update {
            node: "n1".into(),
            to: Some(NodeState::WaitForJobsRequired),
            annotations: [(REQUESTED_ANNOTATION, None), (FAILURE_ANNOTATION, Some("x".into()))].into(),
            unschedulable: Some(true),
            note: None,
        };
        assert_eq!(
            patch_of(&update),
            json!({"metadata": {"labels": {STATE_LABEL: "wait-for-jobs-required"},
                                "annotations": {REQUESTED_ANNOTATION: null, FAILURE_ANNOTATION: "x"}},
                   "spec": {"unschedulable": true}})
        );
        let off = Update {
            node: "n1".into(),
            to: Some(NodeState::Unknown),
            unschedulable: Some(false),
            ..Default::default()
        };
        assert_eq!(
            patch_of(&off),
            json!({"metadata": {"labels": {STATE_LABEL: null}}, "spec": {"unschedulable": null}})
        );
    }

    #[test]
    fn long_event_messages_are_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
