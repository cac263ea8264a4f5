//! Writes the fold's result on the policy's status (its own field manager, never touching
//! `appliedStates`), only when it changed, and records an Event when the global state changes.

use crate::fold::{Summary, fold};
use crate::liveness;
use api::state::conditions;
use api::{NicClusterPolicy, NicNodePolicy, POLICY_NAME, SyncState};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use state_core::events::{Event, EventType, Recorder, Reporter};
use state_core::metrics::Metrics;
use state_core::run::{Process, drive, forget_states_when_deleted, run_marking_ready, shutdown_signal};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The aggregator's server-side-apply field manager.
pub const FIELD_MANAGER: &str = "network-operator/aggregator";
/// Type of the aggregate condition the aggregator maintains.
pub const READY_CONDITION: &str = conditions::READY;
/// Longest condition message the API accepts.
const MAX_MESSAGE: usize = 32768;
/// Longest Event note the API accepts.
const MAX_NOTE: usize = 1024;

/// What every reconcile of the aggregator shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The process's metrics.
    pub metrics: Metrics,
    /// Records Events on the policy.
    pub recorder: Recorder,
    /// The controllers' leader Leases (empty when not watched, e.g. in unit tests).
    pub leases: Option<Store<Lease>>,
}

impl Context {
    /// A context whose Events are reported as `network-operator-aggregator`.
    pub fn new(client: Client, metrics: Metrics) -> Self {
        let reporter =
            Reporter { controller: "network-operator-aggregator".into(), instance: std::env::var("HOSTNAME").ok() };
        Self { recorder: Recorder::new(client.clone(), reporter), client, metrics, leases: None }
    }

    /// The same context, knowing whose controllers still run from `leases`.
    pub fn with_leases(mut self, leases: Store<Lease>) -> Self {
        self.leases = Some(leases);
        self
    }
}

/// A failed status write; retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("writing the status of {kind} {name}: {}", state_core::apply::describe(.source))]
pub struct Error {
    kind: &'static str,
    name: String,
    source: kube::Error,
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The aggregate `Ready` condition for `summary`, with the original's reasons (`Ignored` for a
/// policy that is not acted on); the message says which sections hold it back and why.
/// `lastTransitionTime` stays as it was while the condition's status does not change.
pub fn ready_condition(
    summary: &Summary,
    generation: Option<i64>,
    previous: Option<&Condition>,
    now: Timestamp,
) -> Condition {
    let status = if summary.state == SyncState::Ready { "True" } else { "False" };
    let reason = match summary.state {
        SyncState::Ready => conditions::ALL_COMPONENTS_READY,
        SyncState::NotReady => conditions::COMPONENTS_NOT_READY,
        SyncState::Error => conditions::COMPONENT_ERROR,
        SyncState::Ignore => "Ignored",
    };
    let message = summary.reason.clone().unwrap_or_else(|| "every enabled state is ready".to_string());
    condition(READY_CONDITION, (status, reason, &message), generation, previous, now)
}

/// One `<Component>Ready` condition per enabled section of `summary`, as the original writes
/// them: True/`ComponentReady`, False/`ComponentNotReady` or False/`ComponentError` with the
/// section's message; none for an absent section.
pub fn component_conditions(
    summary: &Summary,
    generation: Option<i64>,
    previous: impl Fn(&str) -> Option<Condition>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut found = Vec::new();
    for (state, value) in &summary.states {
        let Some(type_) = conditions::component_type(state) else { continue };
        let (status, reason) = match value {
            SyncState::Ignore => continue,
            SyncState::Ready => ("True", conditions::COMPONENT_READY),
            SyncState::NotReady => ("False", conditions::COMPONENT_NOT_READY),
            SyncState::Error => ("False", conditions::COMPONENT_ERROR),
        };
        let message = summary.messages.get(state).map_or("", String::as_str);
        found.push(condition(type_, (status, reason, message), generation, previous(type_).as_ref(), now));
    }
    found
}

/// A condition of `type_` with `(status, reason, message)`; `lastTransitionTime` stays as it was
/// in `previous` while the status does not change.
fn condition(
    type_: &str,
    (status, reason, message): (&str, &str, &str),
    generation: Option<i64>,
    previous: Option<&Condition>,
    now: Timestamp,
) -> Condition {
    let last_transition_time =
        previous.filter(|c| c.status == status).map(|c| c.last_transition_time.clone()).unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: truncate(message, MAX_MESSAGE),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Type of the condition saying whether every NIC node gets what the ready states deploy.
pub const NODES_SERVED_CONDITION: &str = "NodesServed";

/// The `NodesServed` condition for `summary`: False, naming the nodes, while a ready state leaves
/// nodes out (e.g. NIC nodes without the labels the driver needs); `lastTransitionTime` as for
/// [`ready_condition`].
pub fn nodes_served_condition(
    summary: &Summary,
    generation: Option<i64>,
    previous: Option<&Condition>,
    now: Timestamp,
) -> Condition {
    let (status, reason, message) = match summary.left_out.as_slice() {
        [] => ("True", "AllNodesServed", "no ready state leaves a node out".to_string()),
        notes => ("False", "NodesLeftOut", notes.join("; ")),
    };
    condition(NODES_SERVED_CONDITION, (status, reason, &message), generation, previous, now)
}

/// Folds one policy and writes its global status when it changed.
pub async fn reconcile(policy: Arc<NicClusterPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    aggregate(&policy, PolicyKind::Cluster, policy.object_ref(&()), &ctx).await
}

/// Folds one NicNodePolicy (its sections' entries) and writes its global status when it changed.
pub async fn reconcile_node_policy(policy: Arc<NicNodePolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    aggregate(&policy.view(None), PolicyKind::Node, policy.object_ref(&()), &ctx).await
}

/// The kind of policy an aggregation writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PolicyKind {
    Cluster,
    Node,
}

impl PolicyKind {
    fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Cluster => "NicClusterPolicy",
            PolicyKind::Node => "NicNodePolicy",
        }
    }
}

/// Folds `policy` (a NicNodePolicy's view for [`PolicyKind::Node`]) and writes the global status
/// of the policy of `kind` when it changed; Events go to `object`.
async fn aggregate(
    policy: &NicClusterPolicy,
    kind: PolicyKind,
    object: k8s_openapi::api::core::v1::ObjectReference,
    ctx: &Context,
) -> Result<Action, Error> {
    let name = policy.name_any();
    let now = Timestamp::now();
    let expiries = liveness::expiries(&ctx.leases.as_ref().map(Store::state).unwrap_or_default());
    let stopped = liveness::stopped(&expiries, now);
    let summary = match kind {
        PolicyKind::Cluster => fold(policy, &stopped, now),
        PolicyKind::Node => crate::fold::fold_sections(policy, &stopped, now),
    };
    // Nothing announces a controller that stops renewing its Lease, or the end of a new policy's
    // grace: fold again when either would change the result.
    let grace_ends = policy.metadata.creation_timestamp.as_ref().map(|t| t.0 + crate::fold::FIRST_REPORT_GRACE);
    let requeue = liveness::next_check(&expiries, now)
        .into_iter()
        .chain(grace_ends.filter(|at| *at > now))
        .min()
        .and_then(|at| Duration::try_from(at.duration_since(now)).ok())
        .map_or(state_core::reconcile::RESYNC, |wait| {
            wait.clamp(Duration::from_secs(1), state_core::reconcile::RESYNC)
        });
    if kind == PolicyKind::Cluster && name == POLICY_NAME {
        ctx.metrics.set_policy_state(summary.state);
        for (state, value) in &summary.states {
            ctx.metrics.set_section_state(state, *value);
        }
    }
    let status = policy.status.clone().unwrap_or_default();
    let existing = status.conditions.clone().unwrap_or_default();
    let previous = |type_: &str| existing.iter().find(|c| c.type_ == type_).cloned();
    let mut conditions = vec![
        ready_condition(&summary, policy.metadata.generation, previous(READY_CONDITION).as_ref(), now),
        nodes_served_condition(&summary, policy.metadata.generation, previous(NODES_SERVED_CONDITION).as_ref(), now),
    ];
    conditions.extend(component_conditions(&summary, policy.metadata.generation, previous, now));
    let unchanged = status.state == Some(summary.state)
        && status.reason == summary.reason
        && same_conditions(&existing, &conditions);
    if unchanged {
        return Ok(Action::requeue(requeue));
    }
    let mut new_status = json!({ "state": summary.state, "conditions": conditions });
    if let Some(reason) = &summary.reason {
        new_status["reason"] = json!(reason);
    }
    let patch = json!({
        "apiVersion": format!("{}/{}", api::GROUP, api::VERSION),
        "kind": kind.as_str(),
        "metadata": { "name": name },
        "status": new_status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(&patch);
    let written = match kind {
        PolicyKind::Cluster => {
            Api::<NicClusterPolicy>::all(ctx.client.clone()).patch_status(&name, &params, &patch).await.map(drop)
        }
        PolicyKind::Node => {
            Api::<NicNodePolicy>::all(ctx.client.clone()).patch_status(&name, &params, &patch).await.map(drop)
        }
    };
    written.map_err(|source| Error { kind: kind.as_str(), name: name.clone(), source })?;
    ctx.metrics.status_writes.with_label_values(&["aggregator"]).inc();
    // Its own outcome (a status written), not the policy's state: the states count theirs.
    ctx.metrics.reconcile_total.with_label_values(&["aggregator", "written"]).inc();
    let old = status.state.map_or("unknown".to_string(), |s| s.to_string());
    if status.state != Some(summary.state) {
        tracing::info!(kind = kind.as_str(), policy = %name, from = %old, to = %summary.state, reason = summary.reason.as_deref().unwrap_or(""), "global state changed");
        let note = match &summary.reason {
            Some(reason) => format!("{old} -> {}: {reason}", summary.state),
            None => format!("{old} -> {}", summary.state),
        };
        let event = Event {
            type_: if summary.state == SyncState::Error { EventType::Warning } else { EventType::Normal },
            reason: event_reason(summary.state).into(),
            note: Some(truncate(&note, MAX_NOTE)),
            action: "Aggregate".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &object).await {
            tracing::warn!(policy = %name, error = %state_core::apply::describe(&e), "could not record the state-change Event");
        }
    }
    Ok(Action::requeue(requeue))
}

/// Whether `existing` holds exactly the `wanted` conditions among the types the aggregator
/// writes (in any order); conditions of other types, another writer's, are not compared.
fn same_conditions(existing: &[Condition], wanted: &[Condition]) -> bool {
    let ours = |c: &&Condition| {
        [READY_CONDITION, NODES_SERVED_CONDITION].contains(&c.type_.as_str())
            || conditions::component_types().any(|t| t == c.type_)
    };
    let written: Vec<&Condition> = existing.iter().filter(ours).collect();
    written.len() == wanted.len() && wanted.iter().all(|w| written.contains(&w))
}

/// The reason of the Event announcing a change to `state`: one per state, so each transition
/// reads as itself in `kubectl get events`.
pub fn event_reason(state: SyncState) -> &'static str {
    match state {
        SyncState::Ready => "StateReady",
        SyncState::NotReady => "StateNotReady",
        SyncState::Error => "StateError",
        SyncState::Ignore => "StateIgnored",
    }
}

/// Retry a failed status write soon.
pub fn error_policy<K>(_policy: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "aggregation failed; retrying");
    ctx.metrics.reconcile_total.with_label_values(&["aggregator", "failed"]).inc();
    Action::requeue(Duration::from_secs(5))
}

/// Runs the aggregator's controller until SIGTERM: every NicClusterPolicy is watched (those
/// with another name get `ignore`).
pub async fn run(process: Process) {
    let flags = &process.flags;
    let lease_namespace = flags.lease_namespace.clone().unwrap_or_else(|| flags.namespace.clone());
    run_controller(process.client, process.metrics, process.ready, &lease_namespace).await;
}

/// The aggregator's kube-runtime controller, until SIGTERM; the controllers' Leases are
/// watched in `lease_namespace`.
pub async fn run_controller(client: Client, metrics: Metrics, ready: Arc<AtomicBool>, lease_namespace: &str) {
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    for result in ["written", "failed"] {
        metrics.reconcile_total.with_label_values(&["aggregator", result]);
    }
    let deleted_metrics = metrics.clone();
    let (leases, writer) = reflector::store();
    let lease_watch = state_core::owned::backoff_on_failure(reflector::reflector(writer, watcher(Api::<Lease>::namespaced(client.clone(), lease_namespace), watcher::Config::default())))
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(error = %state_core::apply::describe_watch(&e), "watching the controllers' Leases; retrying");
            }
        });
    let ctx = Arc::new(Context::new(client, metrics).with_leases(leases));
    tracing::info!("starting the aggregator");
    let controller = Controller::new(policies, watcher::Config::default());
    let store = controller.store();
    let deleted = forget_states_when_deleted(controller.store(), deleted_metrics);
    let node_policies = Controller::new(Api::<NicNodePolicy>::all(ctx.client.clone()), watcher::Config::default());
    let node_policy_store = node_policies.store();
    let synced = async move {
        let _ = store.wait_until_ready().await;
        let _ = node_policy_store.wait_until_ready().await;
    };
    let node_policy_results =
        node_policies.graceful_shutdown_on(shutdown_signal()).run(reconcile_node_policy, error_policy, ctx.clone());
    let results = controller.graceful_shutdown_on(shutdown_signal()).run(reconcile, error_policy, ctx);
    let work = async {
        tokio::select! {
            _ = futures::future::join(drive(results), drive(node_policy_results)) => {}
            () = deleted => {}
            () = lease_watch => {}
        }
    };
    run_marking_ready(work, synced, &ready).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(state: SyncState) -> Summary {
        Summary { state, reason: Some("why".into()), states: vec![], messages: Default::default(), left_out: vec![] }
    }

    #[test]
    fn the_transition_time_is_kept_while_the_condition_status_holds() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_100).unwrap();
        let first = ready_condition(&summary(SyncState::NotReady), Some(1), None, t0);
        let same = ready_condition(&summary(SyncState::Error), Some(2), Some(&first), t1);
        assert_eq!(same.last_transition_time, Time(t0), "still False");
        assert_eq!((same.reason.as_str(), same.observed_generation), ("ComponentError", Some(2)));
        let flipped = ready_condition(&summary(SyncState::Ready), Some(2), Some(&same), t1);
        assert_eq!((flipped.status.as_str(), flipped.last_transition_time), ("True", Time(t1)));
    }

    #[test]
    fn ready_reasons_are_the_originals() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let reason = |state| ready_condition(&summary(state), Some(1), None, now).reason;
        assert_eq!(reason(SyncState::Ready), "AllComponentsReady");
        assert_eq!(reason(SyncState::NotReady), "ComponentsNotReady");
        assert_eq!(reason(SyncState::Error), "ComponentError");
    }

    #[test]
    fn each_enabled_section_has_its_component_condition_and_absent_ones_none() {
        use api::state::names;
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_100).unwrap();
        let summary = Summary {
            state: SyncState::Error,
            reason: Some("why".into()),
            states: vec![
                (names::OFED, SyncState::Ready),
                (names::RDMA_DP, SyncState::NotReady),
                (names::NV_IPAM, SyncState::Error),
                (names::WHEREABOUTS, SyncState::Ready),
                (names::MULTUS, SyncState::Ignore),
            ],
            messages: [
                (names::RDMA_DP, "DaemonSet rdma-shared-dp-ds: 1 of 2 pods available".to_string()),
                (names::NV_IPAM, "spec.nvIpam.version: required".to_string()),
            ]
            .into(),
            left_out: vec![],
        };
        let first = component_conditions(&summary, Some(4), |_| None, t0);
        let seen: Vec<(&str, &str, &str, &str)> = first
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str(), c.message.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("OFEDDriverReady", "True", "ComponentReady", ""),
                (
                    "RDMASharedDevicePluginReady",
                    "False",
                    "ComponentNotReady",
                    "DaemonSet rdma-shared-dp-ds: 1 of 2 pods available"
                ),
                ("NVIPAMReady", "False", "ComponentError", "spec.nvIpam.version: required"),
                ("WhereaboutsCNIReady", "True", "ComponentReady", ""),
            ]
        );
        assert!(first.iter().all(|c| c.observed_generation == Some(4)));
        // A later fold keeps each transition time while the status holds.
        let again = component_conditions(&summary, Some(4), |t| first.iter().find(|c| c.type_ == t).cloned(), t1);
        assert!(again.iter().all(|c| c.last_transition_time == Time(t0)));
        assert!(same_conditions(&first, &again));
        assert!(!same_conditions(&first[1..], &again), "a condition to add is a change");
    }

    #[test]
    fn another_writers_condition_is_not_a_change() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let ours = vec![ready_condition(&summary(SyncState::Ready), Some(1), None, now)];
        let mut existing = ours.clone();
        existing.push(Condition { type_: "SomethingElse".into(), ..ours[0].clone() });
        assert!(same_conditions(&existing, &ours));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let text = "é".repeat(20);
        let cut = truncate(&text, 11);
        assert!(cut.ends_with("...") && cut.len() <= 11, "{cut}");
    }
}
