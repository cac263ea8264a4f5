//! Driver upgrades by the real `ofed-controller` against a real API server, the test playing
//! scheduler and kubelet: a version bump rolls through the nodes one at a time, workloads are
//! evicted through the Eviction API, a PodDisruptionBudget that allows nothing fails its node
//! (with a Warning Event naming the pod) without stalling the others, the node recovers once its
//! driver is replaced by hand; a skipped node is left alone, and turning upgrades off uncordons
//! the node caught mid-upgrade. Through the Maintenance Operator (played by the test), three
//! nodes upgrade with one NodeMaintenance at a time, and turning upgrades off releases it.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{MOFED_WAIT_LABEL, create_node, run_pods};
use e2e::{
    TestEnv, WAIT, applied_state, create_namespace, delete_if_present, eventually, fresh_policy, seed_policy,
    unique_name,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ofed::pools::{ARCH_LABEL, KERNEL_LABEL, OS_LABEL, OS_VERSION_LABEL};
use ofed::upgrade::{REQUESTOR_MODE_ANNOTATION, SKIP_LABEL, STATE_LABEL, maintenance};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const STATE: &str = "state-OFED";
const KERNEL: &str = "5.15.0-78-generic";
const NEW_VERSION: &str = "24.01-0.3.3.1";
const NEWER_VERSION: &str = "24.04-0.6.6.0";

/// An Ubuntu NIC node with the NFD labels of one pool, plus `extra`.
async fn nic_node(env: &TestEnv, name: &str, extra: &[(&str, &str)]) {
    let mut labels = vec![
        ("feature.node.kubernetes.io/pci-15b3.present", "true"),
        (OS_LABEL, "ubuntu"),
        (OS_VERSION_LABEL, "22.04"),
        (KERNEL_LABEL, KERNEL),
        (ARCH_LABEL, "amd64"),
    ];
    labels.extend_from_slice(extra);
    create_node(env, name, &labels).await;
}

/// The seed policy with a local registry and `upgrade_policy`.
async fn policy_with(upgrade_policy: serde_json::Value) -> NicClusterPolicy {
    let tags = vec!["23.04-0.5.3.3.1-ubuntu22.04-amd64".to_string()];
    let registry = e2e::registry::serve("mellanox/mofed", tags).await;
    let mut policy = seed_policy();
    let ofed = policy.spec.ofed_driver.as_mut().expect("the seed has ofedDriver");
    ofed.image.repository = format!("{registry}/mellanox");
    ofed.upgrade_policy = Some(serde_json::from_value(upgrade_policy).expect("a valid upgradePolicy"));
    policy
}

/// Node name → (upgrade state, cordoned).
async fn node_states(client: &Client, names: &[String]) -> BTreeMap<String, (String, bool)> {
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.expect("nodes listable");
    nodes
        .items
        .into_iter()
        .filter(|n| names.contains(&n.name_any()))
        .map(|n| {
            let state = n.labels().get(STATE_LABEL).cloned().unwrap_or_default();
            let cordoned = n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
            (n.name_any(), (state, cordoned))
        })
        .collect()
}

/// Plays the kubelet for the driver pods: confirms deletions, runs new pods.
async fn play_driver_kubelet(client: &Client, namespace: &str) {
    e2e::kubelet::confirm_deletions(client, namespace).await;
    run_pods(client, namespace, ofed::DRIVER_LABEL, None).await;
}

/// The driver pod bound to `node` and not being deleted.
async fn driver_pod_on(client: &Client, namespace: &str, node: &str) -> Option<Pod> {
    let pods = e2e::kubelet::pods(client, namespace, ofed::DRIVER_LABEL).await;
    pods.into_iter().find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
}

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
}

/// Sum of the controller's API writes (create, update, patch, delete), by resource.
fn writes(metrics: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("network_operator_api_requests_total{")) {
        let verb = line.split("verb=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
        let kind = line.split("resource=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        if matches!(verb, "create" | "update" | "patch" | "delete") {
            *out.entry(kind.to_string()).or_default() += value;
        }
    }
    out
}

fn difference(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// Sets the driver version.
async fn bump_version(client: &Client, version: &str) {
    let patch = json!({"spec": {"ofedDriver": {"version": version}}});
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the version bump is accepted");
}

/// Starts the controller, runs the driver pods and waits until every node is `upgrade-done`.
async fn start_settled(env: &TestEnv, nodes: &[String]) -> ControllerProcess {
    let controller = ControllerProcess::start("ofed-controller", &env.namespace, &[]);
    controller.wait_ready().await;
    eventually("every node to be upgrade-done with its first driver", WAIT, || async {
        play_driver_kubelet(&env.client, &env.namespace).await;
        let states = node_states(&env.client, nodes).await;
        let done = states.len() == nodes.len() && states.values().all(|(s, c)| s == "upgrade-done" && !c);
        if done { Ok(()) } else { Err(format!("{states:?}")) }
    })
    .await;
    controller
}

/// A one-replica Deployment `name` running on `node`, with a PodDisruptionBudget.
async fn workload(client: &Client, namespace: &str, name: &str, node: &str) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "work", "image": "registry.k8s.io/pause:3.10"}]}}}
    }))
    .expect("valid Deployment");
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("the Deployment is accepted");
    let budget: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}}
    }))
    .expect("valid PDB");
    Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &budget)
        .await
        .expect("the PDB is accepted");
    run_workload(client, namespace, name, node, 1).await;
}

/// Runs `name`'s pod on `node` and sets its budget to allow `max_unavailable` pods to go;
/// waits until the budget counts the pod.
async fn run_workload(client: &Client, namespace: &str, name: &str, node: &str, max_unavailable: i32) {
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"spec": {"maxUnavailable": max_unavailable}});
    budgets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("the PDB is patched");
    eventually(&format!("{name}'s pod to run on {node} and its budget to count it"), WAIT, || async {
        run_pods(client, namespace, &format!("app={name}"), Some(node)).await;
        let status = budgets.get(name).await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let counted = status.current_healthy == 1 && status.disruptions_allowed == max_unavailable.min(1);
        if counted { Ok(()) } else { Err(format!("{status:?}")) }
    })
    .await;
}

/// A node's (upgrade state, cordoned), by name.
type NodeStateOf<'a> = dyn Fn(&String) -> (String, bool) + 'a;

/// What one rolling upgrade showed.
struct Roll {
    /// From the version bump to the end state.
    took: Duration,
    /// Workloads whose pod was evicted.
    evicted: BTreeSet<String>,
    /// The most nodes upgrading at once.
    most_upgrading: usize,
}

/// Plays the kubelet (driver pods and evicted workload pods) until, once a node has left
/// `upgrade-done`, `done` holds for the nodes' (state, cordoned), checking at every step that at most one node is upgrading and at most one
/// is cordoned (failed ones aside), and that every workload pod that goes was evicted.
async fn roll(
    client: &Client,
    namespace: &str,
    work: &str,
    nodes: &[String],
    bind_after: Duration,
    done: impl Fn(&NodeStateOf) -> bool,
) -> Roll {
    let started = Instant::now();
    // The played scheduler binds a new driver pod only `bind_after` after it appears.
    let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
    let mut evicted = BTreeSet::new();
    let mut most_upgrading = 0;
    let mut begun = false;
    let work_pods: Api<Pod> = Api::namespaced(client.clone(), work);
    loop {
        assert!(started.elapsed() < Duration::from_secs(180), "the upgrade did not finish in 3 minutes");
        let states = node_states(client, nodes).await;
        let upgrading = states
            .values()
            .filter(|(s, _)| !matches!(s.as_str(), "" | "upgrade-required" | "upgrade-done" | "upgrade-failed"))
            .count();
        let cordoned_not_failed = states.values().filter(|(s, c)| *c && s != "upgrade-failed").count();
        assert!(upgrading <= 1, "maxParallelUpgrades is 1: {states:?}");
        assert!(cordoned_not_failed <= 1, "only one node is cordoned at a time, failed ones aside: {states:?}");
        most_upgrading = most_upgrading.max(upgrading);
        // The kubelet of the workload pods: evicted pods stop.
        for pod in work_pods.list(&ListParams::default()).await.expect("pods listable").items {
            if pod.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            let by_eviction = conditions
                .iter()
                .any(|c| c.type_ == "DisruptionTarget" && c.reason.as_deref() == Some("EvictionByEvictionAPI"));
            assert!(by_eviction, "pod {} was deleted, not evicted: {conditions:?}", pod.name_any());
            evicted.insert(pod.labels().get("app").cloned().unwrap_or_default());
            let _ = work_pods
                .delete(&pod.name_any(), &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
                .await;
        }
        let pending: Vec<String> = e2e::kubelet::pods(client, namespace, ofed::DRIVER_LABEL)
            .await
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
            .map(|p| p.name_any())
            .collect();
        let now = Instant::now();
        if pending.iter().all(|p| now.duration_since(*first_seen.entry(p.clone()).or_insert(now)) >= bind_after) {
            play_driver_kubelet(client, namespace).await;
        } else {
            e2e::kubelet::confirm_deletions(client, namespace).await;
        }
        begun |= states.values().any(|(s, _)| s != "upgrade-done");
        let state = |n: &String| states.get(n).cloned().unwrap_or_default();
        if begun && done(&state) {
            return Roll { took: started.elapsed(), evicted, most_upgrading };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_version_bump_upgrades_one_node_at_a_time_and_a_blocking_budget_fails_only_its_node() {
    let Some(env) = TestEnv::new("netop-e2e-upgrade").await else { return };
    let client = env.client.clone();
    let base = unique_name("upg");
    let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| format!("{base}-{s}")).collect();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    for node in &nodes {
        nic_node(&env, node, &[]).await;
    }
    // Two of three may be unavailable: b's failure (cordoned) does not stop c's upgrade.
    let policy = policy_with(json!({"autoUpgrade": true, "maxParallelUpgrades": 1, "maxUnavailable": 2,
                                    "drain": {"enable": true, "timeoutSeconds": 5}}))
    .await;
    fresh_policy(&env, &policy).await;
    let mut controller = start_settled(&env, &nodes).await;

    let work = unique_name("netop-e2e-work");
    create_namespace(&client, &work).await;
    env.cleanup.namespace(&work);
    for node in &nodes {
        workload(&client, &work, &format!("work-{}", node.rsplit('-').next().unwrap_or_default()), node).await;
    }

    // A clean rolling upgrade: one node at a time, each drained through the Eviction API, even
    // while a node's new driver pod waits 2 s to be bound (its node keeps its slot).
    let before = writes(&controller.metrics().await);
    bump_version(&client, NEW_VERSION).await;
    let first = roll(&client, &env.namespace, &work, &nodes, Duration::from_secs(2), |state: &NodeStateOf| {
        nodes.iter().all(|n| state(n) == ("upgrade-done".into(), false))
    })
    .await;
    let spent = difference(&writes(&controller.metrics().await), &before);
    let per_node: BTreeMap<&String, f64> = spent.iter().map(|(k, v)| (k, v / 3.0)).collect();
    eprintln!("rolling upgrade of 3 nodes: {:?}; API writes per node: {per_node:?}", first.took);
    assert_eq!(first.most_upgrading, 1);
    let all: BTreeSet<String> = ["work-a", "work-b", "work-c"].map(String::from).into();
    assert_eq!(first.evicted, all);

    // The workloads run again; b's budget now allows nothing. The next version upgrades a
    // and c, and fails b on its drain timeout.
    for (node, max_unavailable) in [(a, 1), (b, 0), (c, 1)] {
        let name = format!("work-{}", node.rsplit('-').next().unwrap_or_default());
        run_workload(&client, &work, &name, node, max_unavailable).await;
    }
    let old_image = image_of(&driver_pod_on(&client, &env.namespace, b).await.expect("a driver pod on b"));
    bump_version(&client, NEWER_VERSION).await;
    let second = roll(&client, &env.namespace, &work, &nodes, Duration::ZERO, |state: &NodeStateOf| {
        state(a) == ("upgrade-done".into(), false)
            && state(c) == ("upgrade-done".into(), false)
            && state(b) == ("upgrade-failed".into(), true)
    })
    .await;
    eprintln!("rolling upgrade of 3 nodes, b failing on a 5 s drain timeout: {:?}", second.took);
    assert_eq!(second.most_upgrading, 1);
    let a_and_c: BTreeSet<String> = ["work-a", "work-c"].map(String::from).into();
    assert_eq!(second.evicted, a_and_c, "b's budget allows nothing");

    // a and c run the new driver; b keeps its old one, and says why it failed.
    for node in [a, c] {
        let pod = driver_pod_on(&client, &env.namespace, node).await.expect("a driver pod");
        assert!(image_of(&pod).contains(NEWER_VERSION), "{node}: {}", image_of(&pod));
    }
    let b_pod = driver_pod_on(&client, &env.namespace, b).await.expect("b's driver pod");
    assert_eq!(image_of(&b_pod), old_image);
    let events = Api::<Event>::namespaced(client.clone(), "default").list(&ListParams::default()).await.unwrap();
    let failure = events
        .items
        .iter()
        .find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(b.as_str())
                && e.type_.as_deref() == Some("Warning")
        })
        .expect("a Warning Event on b");
    let note = failure.note.clone().unwrap_or_default();
    assert_eq!(failure.reason.as_deref(), Some("UpgradeFailed"));
    assert!(note.contains("timed out after 5s") && note.contains(&format!("{work}/work-b-")), "{note}");
    let transitions = events
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(a.as_str()))
        .count();
    assert!(transitions >= 8, "every transition of a is an Event: {transitions}");
    let message = eventually("the state to show b's failure", WAIT, || async {
        let (_, message) = applied_state(&client, STATE).await?;
        let message = message.unwrap_or_default();
        if message.contains(&format!("upgrading: 2/3 done, 1 failed ({b}: drain failed: timed out")) {
            Ok(message)
        } else {
            Err(message)
        }
    })
    .await;
    eprintln!("state-OFED: {message}");
    let metrics = controller.metrics().await;
    assert!(metrics.contains("network_operator_ofed_upgrade_failures_total 1"), "{metrics}");
    assert!(metrics.contains("network_operator_ofed_upgrade_nodes{state=\"upgrade-failed\"} 1"), "{metrics}");

    // The documented manual recovery: replace b's driver pod; b is uncordoned and done.
    Api::<Pod>::namespaced(client.clone(), &env.namespace)
        .delete(&b_pod.name_any(), &DeleteParams::default())
        .await
        .expect("b's driver pod deleted");
    eventually("b to recover once its new driver is Ready", WAIT, || async {
        play_driver_kubelet(&client, &env.namespace).await;
        let states = node_states(&client, &nodes).await;
        let done = states.values().all(|(s, c)| s == "upgrade-done" && !c);
        if done { Ok(()) } else { Err(format!("{states:?}")) }
    })
    .await;
    let (status, _) = controller.terminate(Duration::from_secs(5)).await;
    assert!(status.success());
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_skipped_node_keeps_its_driver_and_turning_upgrades_off_uncordons_the_node_mid_upgrade() {
    let Some(env) = TestEnv::new("netop-e2e-upgrade").await else { return };
    let client = env.client.clone();
    let base = unique_name("upg");
    let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| format!("{base}-{s}")).collect();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    nic_node(&env, a, &[]).await;
    nic_node(&env, b, &[(SKIP_LABEL, "true")]).await;
    nic_node(&env, c, &[]).await;
    let policy = policy_with(json!({"autoUpgrade": true, "maxParallelUpgrades": 0, "maxUnavailable": "100%",
                                    "waitForCompletion": {"podSelector": "app=training"}}))
    .await;
    fresh_policy(&env, &policy).await;
    let mut controller = start_settled(&env, &nodes).await;
    // A training job runs on c: its upgrade waits for it (no timeout).
    let work = unique_name("netop-e2e-work");
    create_namespace(&client, &work).await;
    env.cleanup.namespace(&work);
    let job: Pod = serde_json::from_value(json!({
        "metadata": {"name": "training", "labels": {"app": "training"}},
        "spec": {"nodeName": c, "containers": [{"name": "train", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), &work).create(&PostParams::default(), &job).await.unwrap();
    let old_b = image_of(&driver_pod_on(&client, &env.namespace, b).await.expect("b's driver pod"));

    bump_version(&client, NEW_VERSION).await;
    eventually("a upgraded, b skipped, c waiting for its job", WAIT, || async {
        play_driver_kubelet(&client, &env.namespace).await;
        let states = node_states(&client, &nodes).await;
        let state = |n: &String| states.get(n).cloned().unwrap_or_default();
        let wanted = state(a) == ("upgrade-done".into(), false)
            && state(b) == ("upgrade-required".into(), false)
            && state(c) == ("wait-for-jobs-required".into(), true);
        if wanted { Ok(()) } else { Err(format!("{states:?}")) }
    })
    .await;
    let a_pod = driver_pod_on(&client, &env.namespace, a).await.expect("a's driver pod");
    assert!(image_of(&a_pod).contains(NEW_VERSION));
    assert_eq!(image_of(&driver_pod_on(&client, &env.namespace, b).await.expect("b's driver pod")), old_b);
    eventually("the state to show the skipped node", WAIT, || async {
        let (_, message) = applied_state(&client, STATE).await?;
        let message = message.unwrap_or_default();
        if message.contains("upgrading: 1/3 done, 1 in progress, 1 skipped") { Ok(()) } else { Err(message) }
    })
    .await;

    // Upgrades off: the keys go, c (cordoned by the upgrade) is uncordoned.
    let off = json!({"spec": {"ofedDriver": {"upgradePolicy": {"autoUpgrade": false}}}});
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&off))
        .await
        .unwrap();
    eventually("every node without upgrade state and uncordoned", WAIT, || async {
        let states = node_states(&client, &nodes).await;
        let clean = states.values().all(|(s, c)| s.is_empty() && !c);
        if clean { Ok(()) } else { Err(format!("{states:?}")) }
    })
    .await;
    let (status, _) = controller.terminate(Duration::from_secs(5)).await;
    assert!(status.success());
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn deleting_the_policy_during_a_blocked_drain_stops_it_and_leaves_the_node_as_before() {
    let Some(env) = TestEnv::new("netop-e2e-upgrade").await else { return };
    let client = env.client.clone();
    let node = format!("{}-a", unique_name("upg"));
    nic_node(&env, &node, &[]).await;
    let policy = policy_with(json!({"autoUpgrade": true, "maxParallelUpgrades": 1,
                                    "drain": {"enable": true, "timeoutSeconds": 300}}))
    .await;
    fresh_policy(&env, &policy).await;
    let _controller = start_settled(&env, std::slice::from_ref(&node)).await;
    let work = unique_name("netop-e2e-work");
    create_namespace(&client, &work).await;
    env.cleanup.namespace(&work);
    workload(&client, &work, "work-a", &node).await;
    run_workload(&client, &work, "work-a", &node, 0).await; // its budget allows nothing

    bump_version(&client, NEW_VERSION).await;
    eventually("the node to be drained, blocked by the budget", WAIT, || async {
        play_driver_kubelet(&client, &env.namespace).await;
        let states = node_states(&client, std::slice::from_ref(&node)).await;
        match states.get(&node) {
            Some((state, true)) if state == "drain-required" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    Api::<NicClusterPolicy>::all(client.clone())
        .delete(POLICY_NAME, &DeleteParams::default())
        .await
        .expect("the policy is deleted");
    eventually("the node uncordoned, its upgrade keys and mofed.wait label gone", WAIT, || async {
        let live = Api::<Node>::all(client.clone()).get(&node).await.map_err(|e| e.to_string())?;
        let labels = live.labels();
        let ours = labels.keys().chain(live.annotations().keys()).filter(|k| k.starts_with("nvidia.com/ofed-"));
        let left: Vec<&String> = ours.chain(labels.keys().filter(|k| *k == MOFED_WAIT_LABEL)).collect();
        let cordoned = live.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        if !cordoned && left.is_empty() { Ok(()) } else { Err(format!("cordoned {cordoned}, left {left:?}")) }
    })
    .await;
    // The drain stopped: the budget is opened, and still nothing is evicted.
    run_workload(&client, &work, "work-a", &node, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods = Api::<Pod>::namespaced(client.clone(), &work).list(&ListParams::default()).await.unwrap();
    assert!(pods.items.iter().all(|p| p.metadata.deletion_timestamp.is_none()), "a pod was evicted after the deletion");
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_broken_drain_selector_is_an_error_naming_it_and_no_node_is_cordoned() {
    let Some(env) = TestEnv::new("netop-e2e-upgrade").await else { return };
    let client = env.client.clone();
    let node = format!("{}-a", unique_name("upg"));
    nic_node(&env, &node, &[]).await;
    let policy = policy_with(json!({"autoUpgrade": true, "drain": {"enable": true}})).await;
    fresh_policy(&env, &policy).await;
    let _controller = start_settled(&env, std::slice::from_ref(&node)).await;
    // The CRD cannot parse selectors: the policy is accepted, the controller refuses it.
    let patch = json!({"spec": {"ofedDriver": {"version": NEW_VERSION,
                                               "upgradePolicy": {"drain": {"podSelector": "a in (b"}}}}});
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the CRD takes the selector as a string");
    let message = e2e::wait_for_entry(&client, STATE, "error").await.unwrap_or_default();
    assert!(message.starts_with("spec.ofedDriver.upgradePolicy.drain.podSelector: "), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let states = node_states(&client, std::slice::from_ref(&node)).await;
    assert_eq!(states.get(&node), Some(&("upgrade-done".to_string(), false)), "nothing was cordoned");
}

/// The Maintenance Operator's `NodeMaintenance` CRD, as far as the requestor uses it (written
/// here from its API's fields: the real one comes with the Maintenance Operator).
fn node_maintenance_crd() -> CustomResourceDefinition {
    let int = |default: i64| json!({"type": "integer", "format": "int32", "minimum": 0, "default": default});
    let drain = json!({"type": "object", "properties": {
        "force": {"type": "boolean", "default": false},
        "podSelector": {"type": "string"},
        "timeoutSeconds": int(300),
        "deleteEmptyDir": {"type": "boolean", "default": false},
        "podEvictionFilters": {"type": "array", "items": {"type": "object",
            "properties": {"byResourceNameRegex": {"type": "string"}}}}}});
    let spec = json!({"type": "object", "required": ["nodeName", "requestorID"], "properties": {
        "requestorID": {"type": "string", "minLength": 2, "maxLength": 63,
            "pattern": "^([a-z0-9A-Z]([-a-z0-9A-Z]*[a-z0-9A-Z])?(\\.[a-z0-9A-Z]([-a-z0-9A-Z]*[a-z0-9A-Z])?)*)$"},
        "additionalRequestors": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "nodeName": {"type": "string"},
        "cordon": {"type": "boolean", "default": true},
        "waitForPodCompletion": {"type": "object", "properties": {
            "podSelector": {"type": "string"}, "timeoutSeconds": int(0)}},
        "drainSpec": drain}});
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "nodemaintenances.maintenance.nvidia.com"},
        "spec": {"group": "maintenance.nvidia.com", "scope": "Namespaced",
                 "names": {"kind": "NodeMaintenance", "listKind": "NodeMaintenanceList",
                           "plural": "nodemaintenances", "singular": "nodemaintenance"},
                 "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                         "spec": spec,
                         "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    }))
    .expect("a valid CRD")
}

/// What the played Maintenance Operator saw.
#[derive(Default)]
struct Maintained {
    /// Every NodeMaintenance seen, by name, with its spec.
    seen: BTreeMap<String, serde_json::Value>,
    /// The most NodeMaintenance objects at once.
    most_at_once: usize,
    /// Nodes it cordoned and has not uncordoned yet.
    cordoned: BTreeSet<String>,
}

/// One step of the Maintenance Operator, played: each NodeMaintenance's node is cordoned, then
/// the object is `Ready`; the node of a released one is uncordoned. Checks that no node is
/// cordoned by anyone else.
async fn play_maintenance_operator(client: &Client, namespace: &str, nodes: &[String], played: &mut Maintained) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &maintenance::api_resource());
    let list = api.list(&ListParams::default()).await.expect("NodeMaintenance objects listable");
    played.most_at_once = played.most_at_once.max(list.items.len());
    let node_api: Api<Node> = Api::all(client.clone());
    let mut held = BTreeSet::new();
    for object in &list.items {
        let node = object.data["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
        played.seen.insert(object.name_any(), object.data["spec"].clone());
        held.insert(node.clone());
        if played.cordoned.insert(node.clone()) {
            let cordon = json!({"spec": {"unschedulable": true}});
            node_api.patch(&node, &PatchParams::default(), &Patch::Merge(&cordon)).await.expect("node cordoned");
        }
        let ready = object.data["status"]["conditions"].as_array().is_some_and(|c| !c.is_empty());
        if !ready {
            let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                "message": "maintenance operations completed", "lastTransitionTime": "2026-11-30T00:00:00Z"}]}});
            api.patch_status(&object.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("NodeMaintenance status written");
        }
    }
    for node in played.cordoned.clone().into_iter().filter(|n| !held.contains(n)) {
        let uncordon = json!({"spec": {"unschedulable": null}});
        node_api.patch(&node, &PatchParams::default(), &Patch::Merge(&uncordon)).await.expect("node uncordoned");
        played.cordoned.remove(&node);
    }
    for (name, (_, cordoned)) in node_states(client, nodes).await {
        assert!(!cordoned || played.cordoned.contains(&name), "{name} was cordoned, not by the Maintenance Operator");
    }
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn through_the_maintenance_operator_nodes_upgrade_with_one_node_maintenance_at_a_time() {
    let Some(env) = TestEnv::new("netop-e2e-upgrade").await else { return };
    let client = env.client.clone();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_name = "nodemaintenances.maintenance.nvidia.com";
    // Without the Maintenance Operator's API, the setting is an error naming it.
    delete_if_present(&crds, crd_name).await;
    eventually("the NodeMaintenance CRD to be gone", WAIT, || async {
        match crds.get_opt(crd_name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    let requestors = unique_name("netop-e2e-maintenance");
    create_namespace(&client, &requestors).await;
    env.cleanup.namespace(&requestors);
    let base = unique_name("upg");
    let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| format!("{base}-{s}")).collect();
    for node in &nodes {
        nic_node(&env, node, &[]).await;
    }
    let policy = policy_with(json!({"autoUpgrade": true, "maxParallelUpgrades": 1, "maxUnavailable": "100%",
                                    "drain": {"enable": true, "timeoutSeconds": 5}}))
    .await;
    fresh_policy(&env, &policy).await;
    let requestor_env =
        [("MAINTENANCE_OPERATOR_ENABLED", "true"), ("MAINTENANCE_OPERATOR_REQUESTOR_NAMESPACE", requestors.as_str())];
    let mut controller = ControllerProcess::start("ofed-controller", &env.namespace, &requestor_env);
    controller.wait_ready().await;
    let message = e2e::wait_for_entry(&client, STATE, "error").await.unwrap_or_default();
    assert!(
        message.starts_with("spec.ofedDriver.upgradePolicy: driver upgrades through the Maintenance Operator")
            && message.contains("maintenance.nvidia.com/v1alpha1 nodemaintenances"),
        "{message}"
    );
    let states = node_states(&client, &nodes).await;
    assert!(states.values().all(|(s, c)| s.is_empty() && !c), "no node touched: {states:?}");

    // The API installed: the state recovers and the nodes settle.
    crds.create(&PostParams::default(), &node_maintenance_crd()).await.expect("the CRD is accepted");
    e2e::wait_established(&client, crd_name).await;
    eventually("every node to be upgrade-done with its first driver", WAIT, || async {
        play_driver_kubelet(&client, &env.namespace).await;
        let states = node_states(&client, &nodes).await;
        let done = states.len() == nodes.len() && states.values().all(|(s, c)| s == "upgrade-done" && !c);
        if done { Ok(()) } else { Err(format!("{states:?}")) }
    })
    .await;

    // A version bump: one NodeMaintenance at a time, each node through node-maintenance-required.
    bump_version(&client, NEW_VERSION).await;
    let mut played = Maintained::default();
    let mut passed_through = BTreeSet::new();
    let started = Instant::now();
    let node_api: Api<Node> = Api::all(client.clone());
    loop {
        assert!(started.elapsed() < Duration::from_secs(180), "the upgrade did not finish in 3 minutes");
        play_maintenance_operator(&client, &requestors, &nodes, &mut played).await;
        assert!(played.most_at_once <= 1, "maxParallelUpgrades is 1: {:?}", played.seen.keys());
        play_driver_kubelet(&client, &env.namespace).await;
        for node in &nodes {
            let live = node_api.get(node).await.expect("node readable");
            if live.labels().get(STATE_LABEL).map(String::as_str) == Some("node-maintenance-required") {
                let mode = live.annotations().get(REQUESTOR_MODE_ANNOTATION).map(String::as_str);
                assert_eq!(mode, Some("true"), "{node} is marked as upgraded through the Maintenance Operator");
                passed_through.insert(node.clone());
            }
        }
        let states = node_states(&client, &nodes).await;
        let done = states.values().all(|(s, c)| s == "upgrade-done" && !c);
        if done && played.seen.len() == 3 && played.cordoned.is_empty() {
            let left = Api::<DynamicObject>::namespaced_with(client.clone(), &requestors, &maintenance::api_resource())
                .list(&ListParams::default())
                .await
                .expect("listable");
            if left.items.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("3 nodes upgraded through the Maintenance Operator in {:?}", started.elapsed());
    assert_eq!(played.most_at_once, 1);
    let expected: BTreeSet<String> = nodes.iter().map(|n| format!("network-operator-{n}")).collect();
    assert_eq!(played.seen.keys().cloned().collect::<BTreeSet<_>>(), expected, "one per node, the original's names");
    for (name, spec) in &played.seen {
        assert_eq!(spec["requestorID"], "nvidia.doca-driver-upgrade", "{name}");
        assert_eq!(spec["drainSpec"]["timeoutSeconds"], 5, "{name}: the policy's drain");
        assert_eq!(spec["drainSpec"]["podSelector"], "nvidia.com/ofed-driver-upgrade-drain.skip!=true", "{name}");
    }
    assert!(passed_through.len() >= 2, "nodes seen waiting for their maintenance: {passed_through:?}");
    for node in &nodes {
        let pod = driver_pod_on(&client, &env.namespace, node).await.expect("a driver pod");
        assert!(image_of(&pod).contains(NEW_VERSION), "{node}: {}", image_of(&pod));
        let live = node_api.get(node).await.expect("node readable");
        assert!(!live.annotations().contains_key(REQUESTOR_MODE_ANNOTATION), "{node}: the mode annotation is gone");
    }

    // Upgrades turned off mid-maintenance: the NodeMaintenance is deleted, the keys go.
    bump_version(&client, NEWER_VERSION).await;
    let mut played = Maintained::default();
    eventually("a node waiting in node-maintenance-required", WAIT, || async {
        play_driver_kubelet(&client, &env.namespace).await;
        let states = node_states(&client, &nodes).await;
        let waiting = states.values().any(|(s, _)| s == "node-maintenance-required");
        if waiting { Ok(()) } else { Err(format!("{states:?}")) }
    })
    .await;
    play_maintenance_operator(&client, &requestors, &nodes, &mut played).await;
    assert_eq!(played.seen.len(), 1);
    let off = json!({"spec": {"ofedDriver": {"upgradePolicy": {"autoUpgrade": false}}}});
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&off))
        .await
        .unwrap();
    // The test keeps playing the Maintenance Operator (it uncordons the released node).
    let deadline = Instant::now() + WAIT;
    loop {
        let mut step = Maintained { cordoned: played.cordoned.clone(), ..Default::default() };
        play_maintenance_operator(&client, &requestors, &nodes, &mut step).await;
        played.cordoned = step.cordoned;
        let states = node_states(&client, &nodes).await;
        let mut annotated = Vec::new();
        for node in &nodes {
            if node_api.get(node).await.expect("node readable").annotations().contains_key(REQUESTOR_MODE_ANNOTATION) {
                annotated.push(node.clone());
            }
        }
        let left = step.seen.len();
        if left == 0 && annotated.is_empty() && states.values().all(|(s, c)| s.is_empty() && !c) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "turned off: {left} NodeMaintenance left, annotated {annotated:?}, {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, _) = controller.terminate(Duration::from_secs(5)).await;
    assert!(status.success());
}
