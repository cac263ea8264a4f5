//! The upgrade decision, a pure function: the nodes running a driver pod, as one pass sees
//! them ([`Snapshot`]), and the [`Settings`] → the [`Action`]s of this pass.
//!
//! Each node moves at most one state per pass (the next pass starts when the node's change
//! comes back through the watch), following the original's table with three deliberate
//! changes: `upgrade-failed` nodes count as unavailable, not as in progress, so they do not
//! hold a parallel slot forever; `maxUnavailable` limits how many more nodes may be taken
//! (the original only compared it with the nodes already unavailable); the original's disabled
//! pod-deletion step is skipped (a node in it still moves on).
//!
//! In requestor mode ([`Settings::requestor`]) a node taking a slot requests its
//! `NodeMaintenance` instead of being cordoned, and holds the slot until it is released: unlike
//! the original, which requests every waiting node's maintenance at once, `maxParallelUpgrades`
//! and `maxUnavailable` bound the requests.

use super::maintenance::Maintenance;
use super::{
    DRAIN_START_ANNOTATION, FAILURE_ANNOTATION, INITIAL_STATE_ANNOTATION, LEGACY_STATE_ANNOTATION, NodeState,
    REQUESTED_ANNOTATION, REQUESTOR_MODE_ANNOTATION, Settings, WAIT_START_ANNOTATION,
};
use crate::SAFE_LOAD_ANNOTATION;
use std::collections::{BTreeMap, BTreeSet};

/// What a user does about a failed node, said in its Warning Event: the node stays cordoned
/// (it counts against `maxUnavailable`) until its driver pod is current and Ready.
pub const RETRY_HINT: &str = "the node stays cordoned: once the cause is fixed, delete its driver pod \
     (kubectl delete pod -l nvidia.com/ofed-driver --field-selector spec.nodeName=<node> in the operands' namespace) \
     and the upgrade loads the new driver and uncordons it";

/// A node as a pass sees it: its upgrade keys, cordon and readiness.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// Its upgrade state.
    pub state: NodeState,
    /// Skip label `"true"`.
    pub skip: bool,
    /// Upgrade-requested annotation `"true"`.
    pub requested: bool,
    /// The driver waits for a safe load (annotation set and not empty).
    pub safe_load: bool,
    /// It was cordoned before its upgrade began.
    pub initially_unschedulable: bool,
    /// It is cordoned.
    pub unschedulable: bool,
    /// Its Ready condition is True.
    pub ready: bool,
    /// When the wait for `waitForCompletion` pods began (Unix seconds).
    pub wait_started: Option<i64>,
    /// When its drain began (Unix seconds).
    pub drain_started: Option<i64>,
    /// Why its upgrade failed.
    pub failure: Option<String>,
    /// It carries the annotation of old releases.
    pub legacy: bool,
    /// Its upgrade goes through a `NodeMaintenance` (requestor mode).
    pub requestor_mode: bool,
}

/// How a driver pod relates to its DaemonSet's current template.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Revision {
    /// Made from the current template.
    #[default]
    Current,
    /// Made from an older template.
    Outdated,
    /// Owned by no DaemonSet (left by a migration): always replaced.
    Orphan,
}

/// The driver pod of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverPod {
    /// Its name.
    pub name: String,
    /// Its template revision.
    pub revision: Revision,
    /// Running, with every container Ready.
    pub running: bool,
    /// Why it is crash-looping (a container not Ready after more than 10 restarts).
    pub crash_loop: Option<String>,
    /// Being deleted.
    pub terminating: bool,
}

impl DriverPod {
    /// Current and running: the node has its new driver.
    pub fn ready(&self) -> bool {
        self.revision == Revision::Current && self.running
    }
}

/// A node that runs a driver pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Managed {
    /// The node.
    pub node: NodeView,
    /// Its driver pod.
    pub pod: DriverPod,
}

/// Everything one pass decides from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The nodes running a driver pod, by name.
    pub nodes: Vec<Managed>,
    /// Nodes in the middle of an upgrade (a state other than unknown or done) that run no driver
    /// pod right now (it was deleted and its successor is not bound yet): nothing is decided for
    /// them, but each holds its slot and counts as unavailable.
    pub podless: Vec<NodeView>,
    /// Nodes where pods of `waitForCompletion` are Running or Pending.
    pub jobs_running: BTreeSet<String>,
    /// Nodes being drained now (by a task of this process).
    pub draining: BTreeSet<String>,
    /// Requestor mode: the `NodeMaintenance` of each node that has one, by node name.
    pub maintenance: BTreeMap<String, Maintenance>,
    /// Now, in Unix seconds.
    pub now: i64,
}

/// What an Event on the node says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// A Warning (else Normal).
    pub warning: bool,
    /// The Event's reason (Events of one node and reason are counted as a series, so each
    /// state has its own).
    pub reason: &'static str,
    /// The Event's message.
    pub message: String,
}

/// Writes on one node, sent as one merge patch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// The node.
    pub node: String,
    /// Its new state, if it changes.
    pub to: Option<NodeState>,
    /// Annotations to set (`Some`) or remove (`None`).
    pub annotations: BTreeMap<&'static str, Option<String>>,
    /// Cordon (`true`) or uncordon (`false`).
    pub unschedulable: Option<bool>,
    /// The Event to record once written.
    pub note: Option<Note>,
}

impl Update {
    fn of(node: &NodeView) -> Self {
        Self { node: node.name.clone(), ..Default::default() }
    }

    /// Moves `node` to `to` (dropping the annotations that belong to the states it leaves),
    /// with a Normal Event saying `why`.
    fn moving(node: &NodeView, to: NodeState, why: impl Into<String>) -> Self {
        let mut update = Self::of(node);
        update.to = Some(to);
        let stale = [
            (WAIT_START_ANNOTATION, node.wait_started.is_some() && to != NodeState::WaitForJobsRequired),
            (DRAIN_START_ANNOTATION, node.drain_started.is_some() && to != NodeState::DrainRequired),
            (FAILURE_ANNOTATION, node.failure.is_some() && to != NodeState::UpgradeFailed),
        ];
        for (key, _) in stale.into_iter().filter(|(_, stale)| *stale) {
            update.annotations.insert(key, None);
        }
        let message = format!("OFED driver upgrade: {} → {}: {}", shown(node.state), to.as_str(), why.into());
        update.note = Some(Note { warning: false, reason: to.reason(), message });
        update
    }

    fn failing(node: &NodeView, reason: &str) -> Self {
        let mut update = Self::moving(node, NodeState::UpgradeFailed, reason);
        update.annotations.insert(FAILURE_ANNOTATION, Some(reason.to_string()));
        if let Some(note) = &mut update.note {
            note.warning = true;
            note.message = format!("{}; {RETRY_HINT}", note.message);
        }
        update
    }

    /// Sets (`Some`) or removes (`None`) annotation `key`.
    pub fn annotate(mut self, key: &'static str, value: Option<String>) -> Self {
        self.annotations.insert(key, value);
        self
    }

    fn cordon(mut self, unschedulable: bool) -> Self {
        self.unschedulable = Some(unschedulable);
        self
    }

    fn is_empty(&self) -> bool {
        self.to.is_none() && self.annotations.is_empty() && self.unschedulable.is_none()
    }
}

fn shown(state: NodeState) -> &'static str {
    if state == NodeState::Unknown { "(none)" } else { state.as_str() }
}

/// One thing a pass does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write on a node.
    Update(Update),
    /// Start draining a node (in a task; it moves the node on when done).
    Drain {
        /// The node.
        node: String,
    },
    /// Requestor mode: request the node's `NodeMaintenance` (create it, or join another
    /// requestor's), then write `then`.
    RequestMaintenance {
        /// The node.
        node: String,
        /// The write once it is requested.
        then: Update,
    },
    /// Requestor mode: release the node's `NodeMaintenance` (delete it if ours, else leave its
    /// additional requestors), then write `then`.
    ReleaseMaintenance {
        /// The node.
        node: String,
        /// The write once it is released.
        then: Update,
    },
    /// Delete a node's outdated driver pod, so its DaemonSet starts a current one.
    RestartDriver {
        /// The node.
        node: String,
        /// The pod.
        pod: String,
    },
}

/// What a pass does, and whether it must look again after a while (something waits on time,
/// not on a watched change).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The actions, node by node.
    pub actions: Vec<Action>,
    /// Look again soon.
    pub recheck: bool,
}

/// How many nodes may start upgrading in this pass: within `maxParallelUpgrades` (nodes between
/// cordon and uncordon hold a slot, whatever their pods do) and `maxUnavailable` (cordoned, not
/// Ready, failed while cordoned, and driverless nodes count against it).
pub fn slots(settings: &Settings, snapshot: &Snapshot) -> usize {
    let limits = Limits::of(settings, snapshot);
    limits.parallel.min(limits.headroom)
}

/// The two limits on starting upgrades in one pass, and what they were counted from.
struct Limits {
    /// Slots left by `maxParallelUpgrades`.
    parallel: usize,
    /// Slots left by `maxUnavailable`.
    headroom: usize,
    /// Nodes between cordon and uncordon.
    in_progress: usize,
    /// The unavailable nodes (cordoned, not Ready, driverless, failed), by name.
    unavailable: Vec<String>,
    /// Nodes about to be cordoned.
    cordoning: usize,
    /// `maxUnavailable` resolved against the node count.
    max_unavailable: usize,
    /// Nodes with a driver pod, or that should have one.
    total: usize,
}

impl Limits {
    fn of(settings: &Settings, snapshot: &Snapshot) -> Self {
        let views = || snapshot.nodes.iter().map(|m| &m.node).chain(&snapshot.podless);
        let count = |state: NodeState| views().filter(|n| n.state == state).count();
        let in_progress = views()
            .filter(|n| {
                !matches!(
                    n.state,
                    NodeState::Unknown | NodeState::UpgradeDone | NodeState::UpgradeRequired | NodeState::UpgradeFailed
                )
            })
            .count();
        let driverless: BTreeSet<&str> = snapshot.podless.iter().map(|n| n.name.as_str()).collect();
        let unavailable: Vec<String> = views()
            .filter(|n| {
                n.unschedulable
                    || !n.ready
                    || driverless.contains(n.name.as_str())
                    || n.state == NodeState::UpgradeFailed
            })
            .map(|n| n.name.clone())
            .collect();
        let parallel = match settings.max_parallel {
            0 => count(NodeState::UpgradeRequired),
            max => max.saturating_sub(in_progress),
        };
        let total = snapshot.nodes.len() + snapshot.podless.len();
        let max_unavailable = settings.max_unavailable_of(total);
        // A requested maintenance is a cordon to come.
        let requested = views().filter(|n| n.state == NodeState::NodeMaintenanceRequired && !n.unschedulable).count();
        let cordoning = count(NodeState::CordonRequired) + requested;
        let headroom = max_unavailable.saturating_sub(unavailable.len() + cordoning);
        Limits { parallel, headroom, in_progress, unavailable, cordoning, max_unavailable, total }
    }
}

/// Why nodes that need an upgrade wait in this pass, naming the limit and the nodes it counts:
/// `None` when a slot is free or no node waits.
pub fn holding(settings: &Settings, snapshot: &Snapshot) -> Option<String> {
    let waiting = snapshot
        .nodes
        .iter()
        .any(|m| m.node.state == NodeState::UpgradeRequired && !m.node.skip && needs_slot(settings, &m.node));
    let limits = Limits::of(settings, snapshot);
    if !waiting || limits.parallel.min(limits.headroom) > 0 {
        return None;
    }
    if limits.headroom == 0 {
        let named = limits.unavailable.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more = limits.unavailable.len().saturating_sub(5);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        let cordoning =
            if limits.cordoning > 0 { format!(", {} being cordoned", limits.cordoning) } else { String::new() };
        return Some(format!(
            "held by maxUnavailable: {} of {} nodes unavailable ({named}{more}){cordoning}; it allows {}",
            limits.unavailable.len(),
            limits.total,
            limits.max_unavailable
        ));
    }
    Some(format!("held by maxParallelUpgrades: {} of {} upgrading", limits.in_progress, settings.max_parallel))
}

/// Whether starting `node`'s upgrade takes a slot: a cordoned node takes no availability, so it
/// needs none; a maintenance request always takes one.
fn needs_slot(settings: &Settings, node: &NodeView) -> bool {
    settings.requestor.is_some() || !node.unschedulable
}

/// The actions of one pass.
pub fn decide(settings: &Settings, snapshot: &Snapshot) -> Plan {
    let mut plan = Plan::default();
    let mut slots = slots(settings, snapshot);
    // A drain's clock starts as its node enters drain-required (one write, not two).
    let to_drain = |update: Update| match &settings.drain {
        Some(_) => update.annotate(DRAIN_START_ANNOTATION, Some(snapshot.now.to_string())),
        None => update,
    };
    for Managed { node, pod } in &snapshot.nodes {
        let mut update = Update::of(node);
        match node.state {
            NodeState::Unknown | NodeState::UpgradeDone => {
                let why = if pod.revision == Revision::Outdated {
                    Some(format!("driver pod {} is not of its DaemonSet's current template", pod.name))
                } else if node.safe_load {
                    Some("the driver waits for a safe load".to_string())
                } else if node.requested {
                    Some(format!("{REQUESTED_ANNOTATION} is \"true\""))
                } else {
                    None
                };
                match why {
                    Some(why) => {
                        update = Update::moving(node, NodeState::UpgradeRequired, why);
                        if node.unschedulable {
                            update = update.annotate(INITIAL_STATE_ANNOTATION, Some("true".into()));
                        }
                    }
                    None if node.state == NodeState::Unknown => {
                        // Only the label: nothing happened to the node, so no Event (a first
                        // install would otherwise record one per node).
                        update = Update::moving(node, NodeState::UpgradeDone, "the driver is current");
                        update.note = None;
                    }
                    None => {}
                }
            }
            NodeState::UpgradeRequired => {
                if node.requested {
                    update = update.annotate(REQUESTED_ANNOTATION, None);
                }
                if node.skip || (slots == 0 && needs_slot(settings, node)) {
                    // Skipped, or waiting for a slot (freed by another node's change).
                } else {
                    let requested = update.annotations.clone();
                    slots = slots.saturating_sub(1);
                    match &settings.requestor {
                        None => {
                            update = Update::moving(node, NodeState::CordonRequired, "a parallel upgrade slot is free");
                            update.annotations.extend(requested);
                        }
                        Some(requestor) => {
                            let why = format!(
                                "a parallel upgrade slot is free: NodeMaintenance {}/{} requested",
                                requestor.namespace,
                                requestor.object_name(&node.name)
                            );
                            let mut then = Update::moving(node, NodeState::NodeMaintenanceRequired, why)
                                .annotate(REQUESTOR_MODE_ANNOTATION, Some("true".into()));
                            then.annotations.extend(requested);
                            plan.actions.push(Action::RequestMaintenance { node: node.name.clone(), then });
                            update = Update::of(node);
                        }
                    }
                }
            }
            NodeState::CordonRequired => {
                update = Update::moving(node, NodeState::WaitForJobsRequired, "cordoned").cordon(true);
            }
            NodeState::WaitForJobsRequired => match &settings.wait_for {
                None => {
                    let why = "no waitForCompletion pods to wait for";
                    update = to_drain(Update::moving(node, NodeState::DrainRequired, why));
                }
                Some(wait) if !snapshot.jobs_running.contains(&node.name) => {
                    let why = format!("no pod matching {:?} runs on the node", wait.selector);
                    update = to_drain(Update::moving(node, NodeState::DrainRequired, why));
                }
                Some(wait) => {
                    plan.recheck = true;
                    match node.wait_started {
                        _ if wait.timeout_seconds == 0 => {}
                        None => update = update.annotate(WAIT_START_ANNOTATION, Some(snapshot.now.to_string())),
                        Some(start) if snapshot.now > start + wait.timeout_seconds => {
                            let why = format!(
                                "waited {}s for pods matching {:?}; going on",
                                wait.timeout_seconds, wait.selector
                            );
                            update = to_drain(Update::moving(node, NodeState::DrainRequired, why));
                        }
                        Some(_) => {}
                    }
                }
            },
            NodeState::PodDeletionRequired => {
                update = to_drain(Update::moving(node, NodeState::DrainRequired, "pod deletion is not used"));
            }
            NodeState::DrainRequired => match &settings.drain {
                None => update = Update::moving(node, NodeState::PodRestartRequired, "drain is not enabled"),
                Some(_) if snapshot.draining.contains(&node.name) => {}
                Some(_) => plan.actions.push(Action::Drain { node: node.name.clone() }),
            },
            NodeState::NodeMaintenanceRequired => {
                let maintenance = snapshot.maintenance.get(&node.name);
                match (&settings.requestor, maintenance) {
                    (None, _) => {
                        let why = "the Maintenance Operator's requestor mode is off: the node upgrades in place";
                        update = Update::moving(node, NodeState::UpgradeRequired, why)
                            .annotate(REQUESTOR_MODE_ANNOTATION, None);
                    }
                    (Some(requestor), Some(m)) if m.holds(&requestor.id) => {
                        if m.ready {
                            let why = format!("NodeMaintenance {} is Ready", m.name);
                            update = Update::moving(node, NodeState::PodRestartRequired, why);
                        }
                    }
                    (Some(requestor), _) => {
                        let why = format!(
                            "NodeMaintenance {}/{} is gone or no longer held by {}: requested again",
                            requestor.namespace,
                            requestor.object_name(&node.name),
                            requestor.id
                        );
                        update = Update::moving(node, NodeState::UpgradeRequired, why);
                    }
                }
            }
            NodeState::PodRestartRequired | NodeState::PostMaintenanceRequired | NodeState::ValidationRequired => {
                match pod.revision {
                    Revision::Outdated | Revision::Orphan if !pod.terminating => {
                        plan.actions.push(Action::RestartDriver { node: node.name.clone(), pod: pod.name.clone() });
                    }
                    Revision::Outdated | Revision::Orphan => {}
                    Revision::Current if node.safe_load => {
                        update = update.annotate(SAFE_LOAD_ANNOTATION, None);
                    }
                    Revision::Current if pod.ready() => update = upgraded(node),
                    Revision::Current => {
                        if let Some(crash) = &pod.crash_loop {
                            update =
                                Update::failing(node, &format!("driver pod {} is crash-looping: {crash}", pod.name));
                        }
                    }
                }
            }
            NodeState::UpgradeFailed if pod.ready() => update = upgraded(node),
            NodeState::UpgradeFailed => {}
            NodeState::UncordonRequired if node.requestor_mode && settings.requestor.is_some() => {
                let why = "NodeMaintenance released: the Maintenance Operator uncordons the node";
                let then = Update::moving(node, NodeState::UpgradeDone, why).annotate(REQUESTOR_MODE_ANNOTATION, None);
                plan.actions.push(Action::ReleaseMaintenance { node: node.name.clone(), then });
            }
            NodeState::UncordonRequired => {
                update = Update::moving(node, NodeState::UpgradeDone, "uncordoned");
                if node.requestor_mode {
                    // Begun in requestor mode, which is off now: finished in place.
                    update = update.annotate(REQUESTOR_MODE_ANNOTATION, None);
                }
                update = if node.initially_unschedulable {
                    update.annotate(INITIAL_STATE_ANNOTATION, None)
                } else {
                    update.cordon(false)
                };
            }
        }
        if node.legacy {
            update = update.annotate(LEGACY_STATE_ANNOTATION, None);
        }
        if !update.is_empty() {
            plan.actions.push(Action::Update(update));
        }
    }
    plan
}

/// The node's new driver is Ready: uncordon it next (in requestor mode: release its
/// maintenance), or, if it was cordoned before its upgrade, leave it cordoned and be done.
fn upgraded(node: &NodeView) -> Update {
    if node.requestor_mode {
        let update = Update::moving(node, NodeState::UncordonRequired, "the new driver is Ready");
        return if node.initially_unschedulable { update.annotate(INITIAL_STATE_ANNOTATION, None) } else { update };
    }
    if node.initially_unschedulable {
        Update::moving(
            node,
            NodeState::UpgradeDone,
            "the new driver is Ready; the node stays cordoned as it was before",
        )
        .annotate(INITIAL_STATE_ANNOTATION, None)
    } else {
        Update::moving(node, NodeState::UncordonRequired, "the new driver is Ready")
    }
}

/// The node's drain finished: its driver pod is replaced next.
pub fn drained(node: &NodeView, evicted: usize) -> Update {
    Update::moving(node, NodeState::PodRestartRequired, format!("drained ({evicted} pod(s) evicted)"))
}

/// The node's drain failed for `reason`: the node is `upgrade-failed`, with a Warning.
pub fn drain_failed(node: &NodeView, reason: &str) -> Update {
    Update::failing(node, &format!("drain failed: {reason}"))
}

/// Marks the start of the node's drain, so its timeout survives a restart (for a node that
/// entered drain-required without the mark: under the original operator).
pub fn drain_started(node: &NodeView, now: i64) -> Update {
    Update::of(node).annotate(DRAIN_START_ANNOTATION, Some(now.to_string()))
}

/// Upgrades are off: every node loses its state label and our annotations, and the nodes we
/// cordoned are uncordoned (not those cordoned before their upgrade began, nor those the
/// Maintenance Operator cordoned: it uncordons them once their maintenance is released).
pub fn turn_off(nodes: &[NodeView]) -> Vec<Update> {
    let mut updates = Vec::new();
    for node in nodes {
        let mut update = Update::of(node);
        let ours = [
            (INITIAL_STATE_ANNOTATION, node.initially_unschedulable),
            (WAIT_START_ANNOTATION, node.wait_started.is_some()),
            (DRAIN_START_ANNOTATION, node.drain_started.is_some()),
            (FAILURE_ANNOTATION, node.failure.is_some()),
            (LEGACY_STATE_ANNOTATION, node.legacy),
            (REQUESTOR_MODE_ANNOTATION, node.requestor_mode),
        ];
        for (key, _) in ours.into_iter().filter(|(_, present)| *present) {
            update.annotations.insert(key, None);
        }
        if node.state.cordoned_by_us() && node.unschedulable && !node.initially_unschedulable && !node.requestor_mode {
            update.unschedulable = Some(false);
            update.note = Some(Note {
                warning: false,
                reason: "UpgradesTurnedOff",
                message: format!("OFED driver upgrades turned off while {}: uncordoned", node.state.as_str()),
            });
        }
        let labelled = node.state != NodeState::Unknown;
        if labelled || !update.is_empty() {
            update.to = Some(NodeState::Unknown);
            updates.push(update);
        }
    }
    updates
}

/// The nodes as they are once `actions` are carried out (the states they move to, and why
/// they failed), for a progress that is current when reported.
pub fn after(nodes: &[Managed], actions: &[Action]) -> Vec<Managed> {
    let mut out = nodes.to_vec();
    for action in actions {
        let update = match action {
            Action::Update(update)
            | Action::RequestMaintenance { then: update, .. }
            | Action::ReleaseMaintenance { then: update, .. } => update,
            Action::Drain { .. } | Action::RestartDriver { .. } => continue,
        };
        let Some(managed) = out.iter_mut().find(|m| m.node.name == update.node) else { continue };
        if let Some(to) = update.to {
            managed.node.state = to;
        }
        if let Some(failure) = update.annotations.get(FAILURE_ANNOTATION) {
            managed.node.failure = failure.clone();
        }
    }
    out
}

/// Where the upgrade stands: nodes per state and the failed ones with their reasons.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Nodes per state.
    pub counts: BTreeMap<NodeState, usize>,
    /// Nodes in `upgrade-required` with the skip label.
    pub skipped: usize,
    /// Failed nodes and why.
    pub failed: Vec<(String, Option<String>)>,
    /// Nodes running a driver pod.
    pub total: usize,
}

impl Progress {
    /// The progress of `nodes`.
    pub fn of(nodes: &[Managed]) -> Self {
        let mut progress = Progress { total: nodes.len(), ..Default::default() };
        for Managed { node, .. } in nodes {
            *progress.counts.entry(node.state).or_default() += 1;
            if node.state == NodeState::UpgradeRequired && node.skip {
                progress.skipped += 1;
            }
            if node.state == NodeState::UpgradeFailed {
                progress.failed.push((node.name.clone(), node.failure.clone()));
            }
        }
        progress
    }

    fn count(&self, state: NodeState) -> usize {
        self.counts.get(&state).copied().unwrap_or(0)
    }

    /// A line for the state's status while any node is not done, e.g. `upgrading: 2/10 done,
    /// 1 draining, 1 failed (node-7: drain failed: ...)`.
    pub fn message(&self) -> Option<String> {
        let settled = self.count(NodeState::Unknown) + self.count(NodeState::UpgradeDone);
        if settled == self.total {
            return None;
        }
        let waiting = self.count(NodeState::UpgradeRequired) - self.skipped;
        let draining = self.count(NodeState::DrainRequired);
        let failed = self.failed.len();
        let busy = self.total - settled - waiting - self.skipped - draining - failed;
        let mut parts = vec![format!("upgrading: {}/{} done", self.count(NodeState::UpgradeDone), self.total)];
        for (n, what) in
            [(waiting, "waiting"), (busy, "in progress"), (draining, "draining"), (self.skipped, "skipped")]
        {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if failed > 0 {
            let named: Vec<String> = self
                .failed
                .iter()
                .take(3)
                .map(|(node, why)| match why {
                    Some(why) => format!("{node}: {why}"),
                    None => node.clone(),
                })
                .collect();
            let more = if failed > 3 { format!("; {} more", failed - 3) } else { String::new() };
            parts.push(format!(
                "{failed} failed ({}{more}); to retry a failed node once its cause is fixed, delete its driver pod",
                named.join("; ")
            ));
        }
        Some(parts.join(", "))
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
