//! Property test of the upgrade decision: thousands of random clusters (1-50 nodes, random
//! limits, slow pod binding, drains that fail, controller restarts, version bumps, upgrades
//! turned off and on, nodes going NotReady) played pass by pass through [`decide`], with every
//! write applied as the controller applies it (its merge patch, read back as a [`NodeView`]).
//! After every pass: the nodes upgrading stay within `maxParallelUpgrades`, a node is only taken
//! while the unavailable ones stay within `maxUnavailable`, and turning upgrades off leaves no
//! node cordoned and no upgrade state. Half the clusters run in requestor mode, the test playing
//! the Maintenance Operator (cordon, then `Ready` after a while; uncordon on release): there the
//! `NodeMaintenance` objects of nodes not failed stay within `maxParallelUpgrades` too. A seeded
//! generator: a failure names its seed.

use super::decide::{
    Action, DriverPod, Managed, NodeView, Revision, Snapshot, decide, drain_failed, drained, turn_off,
};
use super::maintenance::{Maintenance, Requestor};
use super::observe::node_view;
use super::pass::patch_of;
use super::{DrainSettings, NodeState, Settings};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// xorshift64*: a small seeded generator, so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A driver pod of the simulation.
struct SimPod {
    name: String,
    revision: Revision,
    running: bool,
}

/// A node: its object (as the API server holds the upgrade's keys), its view, its driver pod or
/// the passes until the DaemonSet's replacement is bound.
struct SimNode {
    object: Value,
    view: NodeView,
    pod: Option<SimPod>,
    bound_in: u64,
}

/// RFC 7386 merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().expect("an object");
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl SimNode {
    fn new(name: &str, pod: String) -> Self {
        let object = json!({"metadata": {"name": name}, "spec": {},
                            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let view = node_view(&serde_json::from_value(object.clone()).expect("a Node"));
        Self { object, view, pod: Some(SimPod { name: pod, revision: Revision::Current, running: true }), bound_in: 0 }
    }

    fn write(&mut self, patch: &Value) {
        merge(&mut self.object, patch);
        self.view = node_view(&serde_json::from_value(self.object.clone()).expect("a Node"));
    }

    fn set_ready(&mut self, ready: bool) {
        let status = if ready { "True" } else { "False" };
        self.write(&json!({"status": {"conditions": [{"type": "Ready", "status": status}]}}));
    }
}

/// Nodes between cordon and driver restart that were not cordoned before: each holds a slot.
fn upgrading(nodes: &[SimNode]) -> usize {
    // From cordon-required to validation-required, in the order of an upgrade.
    let holding = &NodeState::ALL[2..10];
    nodes.iter().filter(|n| holding.contains(&n.view.state) && !n.view.initially_unschedulable).count()
}

/// Nodes that count against `maxUnavailable`: cordoned (or about to be), not Ready, failed, or
/// mid-upgrade without a driver pod.
fn unavailable(nodes: &[SimNode]) -> usize {
    nodes
        .iter()
        .filter(|n| {
            let mid_upgrade = !matches!(n.view.state, NodeState::Unknown | NodeState::UpgradeDone);
            n.view.unschedulable
                || !n.view.ready
                || matches!(
                    n.view.state,
                    NodeState::UpgradeFailed | NodeState::CordonRequired | NodeState::NodeMaintenanceRequired
                )
                || (n.pod.is_none() && mid_upgrade)
        })
        .count()
}

fn settings(rng: &mut Rng) -> Settings {
    let max_unavailable = match rng.below(6) {
        0 => None,
        1 => Some(IntOrString::Int(1)),
        2 => Some(IntOrString::Int(2)),
        3 => Some(IntOrString::String("25%".into())),
        4 => Some(IntOrString::String("50%".into())),
        _ => Some(IntOrString::String("100%".into())),
    };
    let drain = rng.chance(80).then(|| DrainSettings { timeout_seconds: 300, ..Default::default() });
    let requestor = rng.chance(50).then(|| Requestor {
        id: "nvidia.doca-driver-upgrade".into(),
        namespace: "default".into(),
        name_prefix: "network-operator".into(),
    });
    let max_parallel = [0, 1, 1, 2, 3, 5][rng.below(6) as usize];
    Settings { max_parallel, max_unavailable, wait_for: None, drain, requestor }
}

/// Plays one random cluster; panics naming `seed` when an invariant breaks.
fn play(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let count = 1 + rng.below(50) as usize;
    let settings = settings(&mut rng);
    let mut pods = 0u64;
    let mut pod_name = || {
        pods += 1;
        format!("driver-{pods}")
    };
    let mut nodes: Vec<SimNode> = (0..count).map(|i| SimNode::new(&format!("n{i:02}"), pod_name())).collect();
    // Drains running in the controller: node, passes left, whether it fails.
    let mut drains: Vec<(String, u64, bool)> = Vec::new();
    let mut upgrades_on = true;
    // The Maintenance Operator's objects: node → (Ready, passes until Ready).
    let mut maintenances: BTreeMap<String, (bool, u64)> = BTreeMap::new();
    let uncordon = json!({"spec": {"unschedulable": null}});
    let limit = settings.max_unavailable_of(count);
    let fail = |what: &str, nodes: &[SimNode]| -> ! {
        let states: Vec<String> = nodes
            .iter()
            .map(|n| format!("{}:{:?}{}", n.view.name, n.view.state, if n.view.unschedulable { "(c)" } else { "" }))
            .collect();
        panic!("seed {seed}, {settings:?}: {what}; nodes {states:?}")
    };
    for pass in 0..100u64 {
        // The world moves: a new version, a node going NotReady or back, a restart, upgrades
        // turned off or on.
        if pass == 1 || rng.chance(3) {
            for node in nodes.iter_mut() {
                if let Some(pod) = &mut node.pod {
                    pod.revision = Revision::Outdated;
                }
            }
        }
        if rng.chance(4) {
            let i = rng.below(count as u64) as usize;
            let ready = !nodes[i].view.ready || rng.chance(50);
            nodes[i].set_ready(ready);
        }
        if rng.chance(3) {
            drains.clear(); // the controller restarted: its drain tasks are gone, the nodes keep their state
        }
        if rng.chance(2) {
            upgrades_on = !upgrades_on;
            if !upgrades_on {
                drains.clear();
                // The pass releases every NodeMaintenance; the Maintenance Operator uncordons.
                for (name, _) in std::mem::take(&mut maintenances) {
                    nodes.iter_mut().find(|n| n.view.name == name).expect("a node").write(&uncordon);
                }
                let views: Vec<NodeView> = nodes.iter().map(|n| n.view.clone()).collect();
                for update in turn_off(&views) {
                    let node = nodes.iter_mut().find(|n| n.view.name == update.node).expect("a node");
                    node.write(&patch_of(&update));
                }
                if let Some(node) = nodes.iter().find(|n| n.view.unschedulable || n.view.state != NodeState::Unknown) {
                    fail(&format!("turned off, {} is still cordoned or in a state", node.view.name), &nodes);
                }
            }
        }
        // The DaemonSet and the kubelet: replacements bind after a delay, then run.
        for node in nodes.iter_mut() {
            match &mut node.pod {
                Some(pod) if !pod.running => pod.running = rng.chance(60),
                Some(_) => {}
                None if node.bound_in > 0 => node.bound_in -= 1,
                None => node.pod = Some(SimPod { name: pod_name(), revision: Revision::Current, running: false }),
            }
        }
        // Drains finish (or fail) after a while, moving their node on if it still drains.
        let mut finished = Vec::new();
        drains.retain_mut(|(node, left, fails)| {
            *left = left.saturating_sub(1);
            if *left == 0 {
                finished.push((node.clone(), *fails));
            }
            *left > 0
        });
        for (name, fails) in finished {
            let node = nodes.iter_mut().find(|n| n.view.name == name).expect("a node");
            if node.view.state == NodeState::DrainRequired {
                let update = if fails { drain_failed(&node.view, "timed out") } else { drained(&node.view, 1) };
                node.write(&patch_of(&update));
            }
        }
        if !upgrades_on {
            continue;
        }
        // The Maintenance Operator: cordons each requested node (some passes later), then is
        // Ready after a while.
        for (name, (ready, left)) in maintenances.iter_mut() {
            let node = nodes.iter_mut().find(|n| &n.view.name == name).expect("a node");
            if !node.view.unschedulable {
                if rng.chance(50) {
                    node.write(&json!({"spec": {"unschedulable": true}}));
                }
                continue;
            }
            *left = left.saturating_sub(1);
            *ready |= *left == 0;
        }
        // One pass of the controller.
        let managed: Vec<Managed> = nodes
            .iter()
            .filter_map(|n| {
                let pod = n.pod.as_ref()?;
                let driver = DriverPod {
                    name: pod.name.clone(),
                    revision: pod.revision,
                    running: pod.running,
                    ..Default::default()
                };
                Some(Managed { node: n.view.clone(), pod: driver })
            })
            .collect();
        let podless: Vec<NodeView> = nodes
            .iter()
            .filter(|n| n.pod.is_none() && !matches!(n.view.state, NodeState::Unknown | NodeState::UpgradeDone))
            .map(|n| n.view.clone())
            .collect();
        let draining = drains.iter().map(|(n, _, _)| n.clone()).collect();
        let maintenance = maintenances
            .iter()
            .map(|(node, (ready, _))| {
                let found = Maintenance {
                    name: format!("network-operator-{node}"),
                    node: node.clone(),
                    requestor_id: "nvidia.doca-driver-upgrade".into(),
                    ready: *ready,
                    ..Default::default()
                };
                (node.clone(), found)
            })
            .collect();
        let snapshot = Snapshot {
            nodes: managed,
            podless,
            jobs_running: Default::default(),
            draining,
            maintenance,
            now: pass as i64 * 10,
        };
        let plan = decide(&settings, &snapshot);
        let mut taken = false;
        for action in plan.actions {
            match action {
                Action::Update(update) => {
                    let node = nodes.iter_mut().find(|n| n.view.name == update.node).expect("a node");
                    taken |= node.view.state == NodeState::UpgradeRequired
                        && update.to == Some(NodeState::CordonRequired)
                        && !node.view.unschedulable;
                    node.write(&patch_of(&update));
                }
                Action::Drain { node } => {
                    if !drains.iter().any(|(n, _, _)| *n == node) {
                        drains.push((node, 1 + rng.below(4), rng.chance(5)));
                    }
                }
                Action::RequestMaintenance { node, then } => {
                    taken = true;
                    maintenances.insert(node.clone(), (false, rng.below(3)));
                    nodes.iter_mut().find(|n| n.view.name == node).expect("a node").write(&patch_of(&then));
                }
                Action::ReleaseMaintenance { node, then } => {
                    maintenances.remove(&node);
                    let node = nodes.iter_mut().find(|n| n.view.name == node).expect("a node");
                    node.write(&uncordon);
                    node.write(&patch_of(&then));
                }
                Action::RestartDriver { node, .. } => {
                    let node = nodes.iter_mut().find(|n| n.view.name == node).expect("a node");
                    node.pod = None;
                    node.bound_in = rng.below(4);
                }
            }
        }
        if settings.max_parallel > 0 && upgrading(&nodes) > settings.max_parallel {
            fail(&format!("pass {pass}: {} nodes upgrading", upgrading(&nodes)), &nodes);
        }
        let held = nodes
            .iter()
            .filter(|n| maintenances.contains_key(&n.view.name) && n.view.state != NodeState::UpgradeFailed)
            .count();
        if settings.max_parallel > 0 && held > settings.max_parallel {
            fail(&format!("pass {pass}: {held} NodeMaintenance objects held"), &nodes);
        }
        if taken && unavailable(&nodes) > limit {
            fail(&format!("pass {pass}: a node was taken with {} unavailable", unavailable(&nodes)), &nodes);
        }
    }
}

#[test]
fn thousands_of_random_clusters_keep_the_upgrade_within_its_limits() {
    for seed in 0..2_000 {
        play(seed);
    }
}
