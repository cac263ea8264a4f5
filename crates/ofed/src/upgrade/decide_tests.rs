//! The decision table: one test per row of the original's table (spec §3.4), the counters,
//! turning upgrades off, and the progress line.

use super::*;
use crate::upgrade::{DrainSettings, WaitFor};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn node(name: &str, state: NodeState) -> Managed {
    Managed {
        node: NodeView { name: name.into(), state, ready: true, ..Default::default() },
        pod: DriverPod { name: format!("mofed-{name}"), running: true, ..Default::default() },
    }
}

fn with(mut managed: Managed, edit: impl FnOnce(&mut NodeView, &mut DriverPod)) -> Managed {
    edit(&mut managed.node, &mut managed.pod);
    managed
}

fn outdated(managed: Managed) -> Managed {
    with(managed, |_, pod| pod.revision = Revision::Outdated)
}

fn settings() -> Settings {
    Settings { max_parallel: 1, ..Default::default() }
}

fn snapshot(nodes: Vec<Managed>) -> Snapshot {
    Snapshot { nodes, now: 1_000, ..Default::default() }
}

fn plan_of(settings: &Settings, snapshot: &Snapshot) -> Plan {
    decide(settings, snapshot)
}

fn updates(plan: &Plan) -> Vec<&Update> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::Update(u) => Some(u),
            _ => None,
        })
        .collect()
}

/// Per node, the state it moves to (`None`: no move).
fn moves(plan: &Plan) -> Vec<(String, Option<NodeState>)> {
    updates(plan).into_iter().map(|u| (u.node.clone(), u.to)).collect()
}

fn only_update(plan: &Plan) -> &Update {
    let found = updates(plan);
    assert_eq!(found.len(), 1, "{plan:?}");
    found[0]
}

// Row 1: unknown and upgrade-done.

#[test]
fn an_unknown_node_with_a_current_driver_is_labelled_done_without_an_event() {
    let plan = plan_of(&settings(), &snapshot(vec![node("n1", NodeState::Unknown)]));
    assert_eq!(moves(&plan), [("n1".to_string(), Some(NodeState::UpgradeDone))]);
    assert_eq!(only_update(&plan).note, None, "no Event: nothing happened to the node");
}

#[test]
fn a_done_node_with_a_current_driver_is_left_alone() {
    assert_eq!(plan_of(&settings(), &snapshot(vec![node("n1", NodeState::UpgradeDone)])), Plan::default());
}

#[test]
fn an_outdated_driver_pod_requires_an_upgrade_from_unknown_or_done() {
    for state in [NodeState::Unknown, NodeState::UpgradeDone] {
        let plan = plan_of(&settings(), &snapshot(vec![outdated(node("n1", state))]));
        assert_eq!(moves(&plan), [("n1".to_string(), Some(NodeState::UpgradeRequired))], "{state:?}");
        assert!(only_update(&plan).annotations.is_empty());
    }
}

#[test]
fn a_driver_waiting_for_a_safe_load_or_a_request_requires_an_upgrade() {
    let waiting = with(node("n1", NodeState::UpgradeDone), |n, _| n.safe_load = true);
    let requested = with(node("n2", NodeState::UpgradeDone), |n, _| n.requested = true);
    let plan = plan_of(&settings(), &snapshot(vec![waiting, requested]));
    assert_eq!(
        moves(&plan),
        [("n1".to_string(), Some(NodeState::UpgradeRequired)), ("n2".to_string(), Some(NodeState::UpgradeRequired))]
    );
}

#[test]
fn an_orphan_driver_pod_alone_does_not_start_an_upgrade() {
    let orphan = with(node("n1", NodeState::Unknown), |_, pod| pod.revision = Revision::Orphan);
    let plan = plan_of(&settings(), &snapshot(vec![orphan]));
    assert_eq!(moves(&plan), [("n1".to_string(), Some(NodeState::UpgradeDone))]);
}

#[test]
fn a_node_cordoned_before_its_upgrade_is_remembered_as_such() {
    let cordoned = outdated(with(node("n1", NodeState::UpgradeDone), |n, _| n.unschedulable = true));
    let plan = plan_of(&settings(), &snapshot(vec![cordoned]));
    assert_eq!(only_update(&plan).annotations.get(INITIAL_STATE_ANNOTATION), Some(&Some("true".to_string())));
}

// Row 2: upgrade-required.

#[test]
fn an_upgrade_required_node_takes_a_free_slot_and_its_request_is_cleared() {
    let requested = with(node("n1", NodeState::UpgradeRequired), |n, _| n.requested = true);
    let plan = plan_of(&settings(), &snapshot(vec![requested]));
    let update = only_update(&plan);
    assert_eq!(update.to, Some(NodeState::CordonRequired));
    assert_eq!(update.annotations.get(REQUESTED_ANNOTATION), Some(&None));
}

#[test]
fn without_a_slot_a_node_waits_unless_it_is_already_cordoned() {
    let busy = node("busy", NodeState::DrainRequired);
    let waiting = with(node("n1", NodeState::UpgradeRequired), |n, _| n.requested = true);
    let cordoned = with(node("n2", NodeState::UpgradeRequired), |n, _| n.unschedulable = true);
    let plan = plan_of(
        &Settings { drain: Some(DrainSettings::default()), ..settings() },
        &Snapshot { draining: ["busy".to_string()].into(), ..snapshot(vec![busy, waiting, cordoned]) },
    );
    assert_eq!(
        moves(&plan),
        [("n1".to_string(), None), ("n2".to_string(), Some(NodeState::CordonRequired))],
        "n1 only loses its request annotation"
    );
}

#[test]
fn a_skipped_node_stays_upgrade_required_and_does_not_take_the_slot() {
    let skipped = with(node("a-skipped", NodeState::UpgradeRequired), |n, _| n.skip = true);
    let plan = plan_of(&settings(), &snapshot(vec![skipped, node("b", NodeState::UpgradeRequired)]));
    assert_eq!(moves(&plan), [("b".to_string(), Some(NodeState::CordonRequired))]);
}

// Row 3: cordon-required.

#[test]
fn a_cordon_required_node_is_cordoned_and_waits_for_jobs() {
    let plan = plan_of(&settings(), &snapshot(vec![node("n1", NodeState::CordonRequired)]));
    let update = only_update(&plan);
    assert_eq!((update.to, update.unschedulable), (Some(NodeState::WaitForJobsRequired), Some(true)));
}

// Row 4: wait-for-jobs-required.

fn waiting_for(timeout_seconds: i64) -> Settings {
    Settings { wait_for: Some(WaitFor { selector: "app=train".into(), timeout_seconds }), ..settings() }
}

#[test]
fn without_a_wait_selector_the_node_goes_to_drain() {
    let plan = plan_of(&settings(), &snapshot(vec![node("n1", NodeState::WaitForJobsRequired)]));
    assert_eq!(moves(&plan), [("n1".to_string(), Some(NodeState::DrainRequired))]);
}

#[test]
fn running_jobs_start_the_wait_clock_then_hold_the_node_until_the_timeout() {
    let jobs = |nodes, now| Snapshot { jobs_running: ["n1".to_string()].into(), now, ..snapshot(nodes) };
    let first = plan_of(&waiting_for(60), &jobs(vec![node("n1", NodeState::WaitForJobsRequired)], 1_000));
    let update = only_update(&first);
    assert_eq!((update.to, update.annotations.get(WAIT_START_ANNOTATION)), (None, Some(&Some("1000".to_string()))));
    assert!(first.recheck);

    let started = with(node("n1", NodeState::WaitForJobsRequired), |n, _| n.wait_started = Some(1_000));
    let within = plan_of(&waiting_for(60), &jobs(vec![started.clone()], 1_060));
    assert_eq!(within.actions, []);
    assert!(within.recheck);
    let after = plan_of(&waiting_for(60), &jobs(vec![started], 1_061));
    let update = only_update(&after);
    assert_eq!(update.to, Some(NodeState::DrainRequired));
    assert_eq!(update.annotations.get(WAIT_START_ANNOTATION), Some(&None));
}

#[test]
fn without_a_timeout_running_jobs_hold_the_node_forever() {
    let snapshot = Snapshot {
        jobs_running: ["n1".to_string()].into(),
        ..snapshot(vec![node("n1", NodeState::WaitForJobsRequired)])
    };
    let plan = plan_of(&waiting_for(0), &snapshot);
    assert_eq!(plan.actions, []);
    assert!(plan.recheck);
}

#[test]
fn once_the_jobs_are_gone_the_node_goes_to_drain_and_the_clock_is_removed() {
    let started = with(node("n1", NodeState::WaitForJobsRequired), |n, _| n.wait_started = Some(1_000));
    let plan = plan_of(&waiting_for(600), &snapshot(vec![started]));
    let update = only_update(&plan);
    assert_eq!(update.to, Some(NodeState::DrainRequired));
    assert_eq!(update.annotations.get(WAIT_START_ANNOTATION), Some(&None));
}

// Row 5: pod-deletion-required (the original's disabled step).

#[test]
fn a_node_left_in_pod_deletion_goes_to_drain() {
    let plan = plan_of(&settings(), &snapshot(vec![node("n1", NodeState::PodDeletionRequired)]));
    assert_eq!(moves(&plan), [("n1".to_string(), Some(NodeState::DrainRequired))]);
}

// Row 6: drain-required.

#[test]
fn without_drain_the_node_goes_straight_to_the_driver_restart() {
    let plan = plan_of(&settings(), &snapshot(vec![node("n1", NodeState::DrainRequired)]));
    assert_eq!(moves(&plan), [("n1".to_string(), Some(NodeState::PodRestartRequired))]);
}

#[test]
fn with_drain_the_drain_clock_starts_as_the_node_enters_drain_required() {
    let draining = Settings { drain: Some(DrainSettings::default()), ..settings() };
    let plan = plan_of(&draining, &snapshot(vec![node("n1", NodeState::WaitForJobsRequired)]));
    let update = only_update(&plan);
    assert_eq!(update.to, Some(NodeState::DrainRequired));
    assert_eq!(update.annotations.get(DRAIN_START_ANNOTATION), Some(&Some("1000".to_string())));
}

#[test]
fn with_drain_one_drain_starts_per_node_and_not_twice() {
    let draining = Settings { drain: Some(DrainSettings::default()), ..settings() };
    let nodes = vec![node("n1", NodeState::DrainRequired), node("n2", NodeState::DrainRequired)];
    let plan = plan_of(&draining, &Snapshot { draining: ["n2".to_string()].into(), ..snapshot(nodes) });
    assert_eq!(plan.actions, [Action::Drain { node: "n1".into() }]);
}

#[test]
fn a_finished_drain_moves_on_and_a_failed_one_fails_with_a_warning() {
    let view =
        NodeView { name: "n1".into(), state: NodeState::DrainRequired, drain_started: Some(5), ..Default::default() };
    let done = drained(&view, 2);
    assert_eq!(done.to, Some(NodeState::PodRestartRequired));
    assert_eq!(done.annotations.get(DRAIN_START_ANNOTATION), Some(&None));
    let failed = drain_failed(&view, "timed out after 5s; still on the node: work/web (eviction refused: pdb)");
    assert_eq!(failed.to, Some(NodeState::UpgradeFailed));
    let reason = failed.annotations.get(FAILURE_ANNOTATION).cloned().flatten().unwrap();
    assert!(reason.starts_with("drain failed: timed out after 5s"), "{reason}");
    let note = failed.note.unwrap();
    assert!(note.warning && note.message.contains("work/web"), "{note:?}");
    assert_eq!(note.reason, "UpgradeFailed");
    assert_eq!(drain_started(&view, 9).annotations.get(DRAIN_START_ANNOTATION), Some(&Some("9".to_string())));
}

// Rows 7 and 9: pod-restart-required and validation-required.

#[test]
fn an_outdated_or_orphan_driver_pod_is_deleted_once() {
    for state in [NodeState::PodRestartRequired, NodeState::ValidationRequired] {
        let plan = plan_of(&settings(), &snapshot(vec![outdated(node("n1", state))]));
        assert_eq!(plan.actions, [Action::RestartDriver { node: "n1".into(), pod: "mofed-n1".into() }]);
        let orphan = with(node("n1", state), |_, pod| pod.revision = Revision::Orphan);
        assert_eq!(plan_of(&settings(), &snapshot(vec![orphan])).actions.len(), 1);
        let terminating = with(outdated(node("n1", state)), |_, pod| pod.terminating = true);
        assert_eq!(plan_of(&settings(), &snapshot(vec![terminating])).actions, []);
    }
}

#[test]
fn the_new_driver_is_let_load_by_removing_the_safe_load_annotation() {
    let waiting = with(node("n1", NodeState::PodRestartRequired), |n, pod| {
        n.safe_load = true;
        pod.running = false;
    });
    let plan = plan_of(&settings(), &snapshot(vec![waiting]));
    let update = only_update(&plan);
    assert_eq!((update.to, update.annotations.get(SAFE_LOAD_ANNOTATION)), (None, Some(&None)));
}

#[test]
fn a_ready_new_driver_leads_to_uncordon() {
    for state in [NodeState::PodRestartRequired, NodeState::ValidationRequired] {
        let plan = plan_of(&settings(), &snapshot(vec![node("n1", state)]));
        assert_eq!(moves(&plan), [("n1".to_string(), Some(NodeState::UncordonRequired))]);
    }
}

#[test]
fn a_node_cordoned_before_its_upgrade_is_done_and_stays_cordoned() {
    let before = with(node("n1", NodeState::PodRestartRequired), |n, _| {
        n.initially_unschedulable = true;
        n.unschedulable = true;
    });
    let plan = plan_of(&settings(), &snapshot(vec![before]));
    let update = only_update(&plan);
    assert_eq!((update.to, update.unschedulable), (Some(NodeState::UpgradeDone), None));
    assert_eq!(update.annotations.get(INITIAL_STATE_ANNOTATION), Some(&None));
}

#[test]
fn a_new_driver_not_yet_ready_is_waited_for_and_a_crash_looping_one_fails_the_node() {
    let starting = with(node("n1", NodeState::PodRestartRequired), |_, pod| pod.running = false);
    assert_eq!(plan_of(&settings(), &snapshot(vec![starting.clone()])), Plan::default());
    let looping = with(starting, |_, pod| pod.crash_loop = Some("container mofed restarted 11 times".into()));
    let plan = plan_of(&settings(), &snapshot(vec![looping]));
    let update = only_update(&plan);
    assert_eq!(update.to, Some(NodeState::UpgradeFailed));
    assert_eq!(
        update.annotations.get(FAILURE_ANNOTATION),
        Some(&Some("driver pod mofed-n1 is crash-looping: container mofed restarted 11 times".to_string()))
    );
    assert!(update.note.as_ref().unwrap().warning);
}

// Row 8: upgrade-failed.

#[test]
fn a_failed_node_recovers_once_its_driver_is_current_and_ready() {
    let failed = with(node("n1", NodeState::UpgradeFailed), |n, _| n.failure = Some("drain failed".into()));
    let plan = plan_of(&settings(), &snapshot(vec![failed.clone()]));
    let update = only_update(&plan);
    assert_eq!(update.to, Some(NodeState::UncordonRequired));
    assert_eq!(update.annotations.get(FAILURE_ANNOTATION), Some(&None));
    assert_eq!(plan_of(&settings(), &snapshot(vec![outdated(failed)])), Plan::default());
}

// Row 10: uncordon-required.

#[test]
fn an_uncordon_required_node_is_uncordoned_and_done() {
    let plan = plan_of(&settings(), &snapshot(vec![node("n1", NodeState::UncordonRequired)]));
    let update = only_update(&plan);
    assert_eq!((update.to, update.unschedulable), (Some(NodeState::UpgradeDone), Some(false)));
}

#[test]
fn the_annotation_of_old_releases_is_removed() {
    let legacy = with(node("n1", NodeState::UpgradeDone), |n, _| n.legacy = true);
    let plan = plan_of(&settings(), &snapshot(vec![legacy]));
    assert_eq!(only_update(&plan).annotations.get(LEGACY_STATE_ANNOTATION), Some(&None));
}

// Counters.

fn required(count: usize) -> Vec<Managed> {
    (0..count).map(|i| node(&format!("n{i}"), NodeState::UpgradeRequired)).collect()
}

#[test]
fn max_parallel_upgrades_bounds_the_nodes_in_progress() {
    let mut nodes = required(4);
    nodes.push(node("busy", NodeState::PodRestartRequired));
    assert_eq!(slots(&Settings { max_parallel: 3, ..settings() }, &snapshot(nodes.clone())), 2);
    assert_eq!(slots(&Settings { max_parallel: 1, ..settings() }, &snapshot(nodes.clone())), 0);
}

/// No limit on unavailable nodes: the parallel limit alone decides.
fn any_unavailable() -> Option<IntOrString> {
    Some(IntOrString::String("100%".into()))
}

#[test]
fn zero_max_parallel_upgrades_lets_every_waiting_node_go() {
    let unlimited = Settings { max_parallel: 0, max_unavailable: any_unavailable(), ..settings() };
    let plan = plan_of(&unlimited, &snapshot(required(4)));
    assert_eq!(moves(&plan).iter().filter(|(_, to)| *to == Some(NodeState::CordonRequired)).count(), 4);
}

#[test]
fn failed_nodes_do_not_hold_a_parallel_slot() {
    let mut nodes = required(2);
    nodes.push(outdated(with(node("failed", NodeState::UpgradeFailed), |n, _| n.unschedulable = true)));
    let plan = plan_of(&Settings { max_unavailable: any_unavailable(), ..settings() }, &snapshot(nodes));
    assert_eq!(moves(&plan), [("n0".to_string(), Some(NodeState::CordonRequired))]);
}

#[test]
fn failed_nodes_stop_new_upgrades_once_they_reach_the_unavailable_limit() {
    // One systematic failure (a drain that fails everywhere) must not walk the fleet: with the
    // default 25% of 4 nodes, one failed cordoned node is the limit.
    let mut nodes = required(3);
    nodes.push(outdated(with(node("failed", NodeState::UpgradeFailed), |n, _| n.unschedulable = true)));
    let defaults = Settings { max_parallel: 0, ..settings() };
    assert_eq!(slots(&defaults, &snapshot(nodes.clone())), 0);
    assert_eq!(moves(&plan_of(&defaults, &snapshot(nodes))), []);
}

#[test]
fn max_unavailable_defaults_to_a_quarter_of_the_nodes_rounded_up() {
    let defaults = Settings { max_parallel: 0, ..settings() };
    assert_eq!(slots(&defaults, &snapshot(required(8))), 2);
    assert_eq!(slots(&defaults, &snapshot(required(3))), 1);
}

#[test]
fn a_node_whose_driver_pod_is_gone_still_holds_its_slot_and_counts_as_unavailable() {
    // Its outdated pod was deleted and the new one is not bound yet: it is not in `nodes`.
    let restarting = with(node("restarting", NodeState::PodRestartRequired), |n, _| n.unschedulable = true).node;
    let limited = Settings { max_parallel: 1, max_unavailable: any_unavailable(), ..settings() };
    let snapshot = Snapshot { podless: vec![restarting.clone()], ..snapshot(required(2)) };
    assert_eq!(slots(&limited, &snapshot), 0, "its parallel slot is still taken");
    assert_eq!(moves(&plan_of(&limited, &snapshot)), []);
    let by_availability = Settings { max_parallel: 0, max_unavailable: Some(IntOrString::Int(1)), ..settings() };
    let uncordoned = Snapshot { podless: vec![NodeView { unschedulable: false, ..restarting }], ..snapshot };
    assert_eq!(slots(&by_availability, &uncordoned), 0, "a node without a driver is unavailable");
}

#[test]
fn max_unavailable_counts_nodes_already_unavailable_and_those_about_to_be_cordoned() {
    let unlimited = Settings { max_parallel: 0, max_unavailable: any_unavailable(), ..settings() };
    let limit = |value: IntOrString| Settings { max_unavailable: Some(value), ..unlimited.clone() };
    let mut nodes = required(6);
    nodes.push(with(node("not-ready", NodeState::UpgradeDone), |n, _| n.ready = false));
    nodes.push(node("cordoning", NodeState::CordonRequired));
    // 8 nodes: 1 unavailable, 1 about to be cordoned.
    assert_eq!(slots(&unlimited, &snapshot(nodes.clone())), 6);
    assert_eq!(slots(&limit(IntOrString::Int(3)), &snapshot(nodes.clone())), 1);
    assert_eq!(slots(&limit(IntOrString::String("50%".into())), &snapshot(nodes.clone())), 2);
    assert_eq!(slots(&limit(IntOrString::String("25%".into())), &snapshot(nodes.clone())), 0);
    assert_eq!(slots(&limit(IntOrString::Int(1)), &snapshot(nodes.clone())), 0);
}

#[test]
fn a_failed_node_counts_as_unavailable() {
    let mut nodes = required(2);
    nodes.push(node("failed", NodeState::UpgradeFailed));
    let settings = Settings { max_parallel: 0, max_unavailable: Some(IntOrString::Int(2)), ..settings() };
    assert_eq!(slots(&settings, &snapshot(nodes.clone())), 1);
}

// Turning upgrades off.

#[test]
fn turning_upgrades_off_removes_our_keys_and_uncordons_only_what_we_cordoned() {
    let view = |name: &str, state, unschedulable, before| NodeView {
        name: name.into(),
        state,
        unschedulable,
        initially_unschedulable: before,
        ..Default::default()
    };
    let nodes = [
        view("draining", NodeState::DrainRequired, true, false),
        view("cordoned-before", NodeState::DrainRequired, true, true),
        view("waiting", NodeState::UpgradeRequired, false, false),
        view("done", NodeState::UpgradeDone, false, false),
        view("plain", NodeState::Unknown, false, false),
        NodeView {
            name: "failed".into(),
            state: NodeState::UpgradeFailed,
            unschedulable: true,
            failure: Some("x".into()),
            ..Default::default()
        },
    ];
    let updates = turn_off(&nodes);
    let shown: Vec<(&str, Option<bool>, usize)> =
        updates.iter().map(|u| (u.node.as_str(), u.unschedulable, u.annotations.len())).collect();
    assert_eq!(
        shown,
        [
            ("draining", Some(false), 0),
            ("cordoned-before", None, 1),
            ("waiting", None, 0),
            ("done", None, 0),
            ("failed", Some(false), 1),
        ]
    );
    assert!(updates.iter().all(|u| u.to == Some(NodeState::Unknown)));
}

// Progress.

#[test]
fn progress_is_shown_only_while_a_node_is_not_done() {
    let done = [node("a", NodeState::UpgradeDone), node("b", NodeState::Unknown)];
    assert_eq!(Progress::of(&done).message(), None);
    let nodes = [
        node("a", NodeState::UpgradeDone),
        node("b", NodeState::UpgradeDone),
        node("c", NodeState::UpgradeRequired),
        with(node("d", NodeState::UpgradeRequired), |n, _| n.skip = true),
        node("e", NodeState::CordonRequired),
        node("f", NodeState::DrainRequired),
        with(node("g", NodeState::UpgradeFailed), |n, _| n.failure = Some("drain failed: timed out".into())),
    ];
    assert_eq!(
        Progress::of(&nodes).message().as_deref(),
        Some(
            "upgrading: 2/7 done, 1 waiting, 1 in progress, 1 draining, 1 skipped, 1 failed (g: drain failed: timed out); \
             to retry a failed node once its cause is fixed, delete its driver pod"
        )
    );
}

#[test]
fn progress_is_reported_as_it_is_once_the_pass_is_done() {
    let nodes = [node("a", NodeState::UncordonRequired), outdated(node("b", NodeState::UpgradeDone))];
    let plan = plan_of(&settings(), &snapshot(nodes.to_vec()));
    assert_eq!(
        Progress::of(&after(&nodes, &plan.actions)).message().as_deref(),
        Some("upgrading: 1/2 done, 1 waiting")
    );
}

#[test]
fn a_waiting_upgrade_says_which_limit_holds_it_and_names_the_nodes() {
    let not_ready = |name: &str| with(outdated(node(name, NodeState::UpgradeRequired)), |n, _| n.ready = false);
    let nodes = vec![not_ready("a"), not_ready("b")];
    let held = holding(&settings(), &snapshot(nodes)).expect("held");
    assert_eq!(held, "held by maxUnavailable: 2 of 2 nodes unavailable (a, b); it allows 1");

    let busy = with(node("c", NodeState::DrainRequired), |n, _| n.unschedulable = true);
    let waiting = outdated(node("d", NodeState::UpgradeRequired));
    let all = Settings { max_unavailable: Some(IntOrString::String("100%".into())), ..settings() };
    let held = holding(&all, &snapshot(vec![busy, waiting])).expect("held");
    assert_eq!(held, "held by maxParallelUpgrades: 1 of 1 upgrading");

    let free = outdated(node("e", NodeState::UpgradeRequired));
    assert_eq!(holding(&all, &snapshot(vec![free])), None, "a slot is free");
}

// Requestor mode: the Maintenance Operator cordons, waits and drains.

fn requestor_settings() -> Settings {
    let requestor = crate::upgrade::maintenance::Requestor {
        id: "nvidia.doca-driver-upgrade".into(),
        namespace: "default".into(),
        name_prefix: "network-operator".into(),
    };
    Settings { requestor: Some(requestor), ..settings() }
}

fn in_requestor_mode(managed: Managed) -> Managed {
    with(managed, |n, _| n.requestor_mode = true)
}

fn maintenance_of(node: &str, ready: bool) -> (String, Maintenance) {
    let found = Maintenance {
        name: format!("network-operator-{node}"),
        node: node.into(),
        requestor_id: "nvidia.doca-driver-upgrade".into(),
        ready,
        ..Default::default()
    };
    (node.to_string(), found)
}

#[test]
fn in_requestor_mode_a_node_taking_a_slot_requests_its_maintenance_instead_of_being_cordoned() {
    let nodes = vec![
        with(outdated(node("a", NodeState::UpgradeRequired)), |n, _| n.requested = true),
        outdated(node("b", NodeState::UpgradeRequired)),
    ];
    let plan = plan_of(&requestor_settings(), &snapshot(nodes));
    let [Action::RequestMaintenance { node, then }] = plan.actions.as_slice() else { panic!("{plan:?}") };
    assert_eq!((node.as_str(), then.to), ("a", Some(NodeState::NodeMaintenanceRequired)));
    assert_eq!(then.unschedulable, None, "the Maintenance Operator cordons");
    assert_eq!(then.annotations[REQUESTOR_MODE_ANNOTATION].as_deref(), Some("true"));
    assert_eq!(then.annotations[REQUESTED_ANNOTATION], None, "the request is cleared in the same write");
    assert!(then.note.as_ref().unwrap().message.contains("NodeMaintenance default/network-operator-a requested"));
}

#[test]
fn in_requestor_mode_a_requested_maintenance_holds_the_slot_even_on_a_cordoned_node() {
    let holder = in_requestor_mode(outdated(node("a", NodeState::NodeMaintenanceRequired)));
    let cordoned = with(outdated(node("b", NodeState::UpgradeRequired)), |n, _| n.unschedulable = true);
    let all = Settings { max_unavailable: Some(IntOrString::String("100%".into())), ..requestor_settings() };
    let mut snap = snapshot(vec![holder, cordoned]);
    snap.maintenance = [maintenance_of("a", false)].into();
    assert_eq!(plan_of(&all, &snap).actions, vec![], "a waits for its maintenance, b for a slot");
    assert!(holding(&all, &snap).is_some(), "the wait is reported");
}

#[test]
fn a_node_in_maintenance_restarts_its_driver_once_the_maintenance_is_ready() {
    let waiting = in_requestor_mode(outdated(node("a", NodeState::NodeMaintenanceRequired)));
    let mut snap = snapshot(vec![waiting]);
    snap.maintenance = [maintenance_of("a", true)].into();
    assert_eq!(moves(&plan_of(&requestor_settings(), &snap)), [("a".to_string(), Some(NodeState::PodRestartRequired))]);
}

#[test]
fn a_node_whose_maintenance_is_gone_or_whose_mode_is_off_goes_back_to_upgrade_required() {
    let waiting = in_requestor_mode(outdated(node("a", NodeState::NodeMaintenanceRequired)));
    let gone = plan_of(&requestor_settings(), &snapshot(vec![waiting.clone()]));
    assert_eq!(moves(&gone), [("a".to_string(), Some(NodeState::UpgradeRequired))]);
    let mut snap = snapshot(vec![waiting.clone()]);
    let (_, mut theirs) = maintenance_of("a", true);
    theirs.requestor_id = "nvidia.gpu-driver-upgrade".into();
    snap.maintenance = [("a".to_string(), theirs)].into();
    assert_eq!(moves(&plan_of(&requestor_settings(), &snap)), [("a".to_string(), Some(NodeState::UpgradeRequired))]);

    let off = plan_of(&settings(), &snapshot(vec![waiting]));
    let update = only_update(&off);
    assert_eq!(update.to, Some(NodeState::UpgradeRequired));
    assert_eq!(update.annotations[REQUESTOR_MODE_ANNOTATION], None, "then upgraded in place");
}

#[test]
fn in_requestor_mode_the_upgraded_node_releases_its_maintenance_and_is_not_uncordoned_by_us() {
    let restarted = in_requestor_mode(with(node("a", NodeState::PodRestartRequired), |n, _| {
        n.unschedulable = true;
        n.initially_unschedulable = true;
    }));
    let plan = plan_of(&requestor_settings(), &snapshot(vec![restarted]));
    let update = only_update(&plan);
    assert_eq!(update.to, Some(NodeState::UncordonRequired), "its maintenance is released even if cordoned before");
    assert_eq!(update.annotations[INITIAL_STATE_ANNOTATION], None);

    let uncordon = in_requestor_mode(with(node("a", NodeState::UncordonRequired), |n, _| n.unschedulable = true));
    let plan = plan_of(&requestor_settings(), &snapshot(vec![uncordon.clone()]));
    let [Action::ReleaseMaintenance { node, then }] = plan.actions.as_slice() else { panic!("{plan:?}") };
    assert_eq!((node.as_str(), then.to, then.unschedulable), ("a", Some(NodeState::UpgradeDone), None));
    assert_eq!(then.annotations[REQUESTOR_MODE_ANNOTATION], None);

    // Begun in requestor mode, finished in place once the mode is off.
    let plan = plan_of(&settings(), &snapshot(vec![uncordon]));
    assert_eq!(only_update(&plan).unschedulable, Some(false));
}

#[test]
fn turning_upgrades_off_leaves_the_maintenance_operators_cordon_to_it() {
    let mut view = in_requestor_mode(node("a", NodeState::PodRestartRequired)).node;
    view.unschedulable = true;
    let updates = turn_off(&[view]);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].unschedulable, None, "uncordoned by the Maintenance Operator once released");
    assert_eq!(updates[0].annotations[REQUESTOR_MODE_ANNOTATION], None);
}
