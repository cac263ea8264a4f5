//! NicNodePolicies against a real API server, with the real `rdma-dp-controller` and
//! `aggregator` binaries (the test plays the kubelet): two policies on disjoint node groups get
//! their own DaemonSets on their own nodes; a relabel that makes both select a node turns the
//! later one `error` naming the node and changes nothing, and undoing it recovers; the section
//! also in the NicClusterPolicy is `error`; deleting a policy garbage-collects its objects only.

use api::{NicClusterPolicy, NicNodePolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{self, create_node, nic_node_labels, run_pods};
use e2e::{TestEnv, WAIT, eventually, fresh_policy, unique_name};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;

const STATE: &str = "state-RDMA-device-plugin";

/// A NicNodePolicy `name` holding `section` (`spec`) for the nodes labelled `key`.
fn node_policy(name: &str, key: &str, section: &str, spec: serde_json::Value) -> NicNodePolicy {
    serde_json::from_value(json!({
        "apiVersion": "mellanox.com/v1alpha1",
        "kind": "NicNodePolicy",
        "metadata": {"name": name},
        "spec": {"nodeSelector": {key: "true"}, section: spec}
    }))
    .expect("a NicNodePolicy")
}

/// A NicNodePolicy `name` deploying the RDMA shared device plugin on the nodes labelled `key`.
fn rdma_policy(name: &str, key: &str) -> NicNodePolicy {
    let config = json!({"configList": [{"resourceName": "rdma_shared_device_a", "rdmaHcaMax": 63,
                                          "selectors": {"vendors": ["15b3"]}}]});
    let spec = json!({"image": "k8s-rdma-shared-dev-plugin", "repository": "ghcr.io/mellanox", "version": "v1.5.1",
                      "config": config.to_string()});
    node_policy(name, key, "rdmaSharedDevicePlugin", spec)
}

/// Waits until NicNodePolicy `name`'s RDMA entry (for its generation) reads `wanted`; returns
/// its message.
async fn wait_for_node_policy_entry(client: &Client, name: &str, wanted: &str) -> String {
    wait_for_entry_of(client, name, STATE, wanted).await
}

/// Waits until NicNodePolicy `name`'s entry of `state` (for its generation) reads `wanted`;
/// returns its message.
async fn wait_for_entry_of(client: &Client, name: &str, state: &str, wanted: &str) -> String {
    let policies: Api<NicNodePolicy> = Api::all(client.clone());
    eventually(&format!("{name}'s {state} to be {wanted}"), WAIT, || async {
        let policy = policies.get(name).await.map_err(|e| e.to_string())?;
        let entry = policy.applied_state(state).ok_or("no entry yet")?;
        if entry.state.to_string() == wanted && entry.observed_generation == policy.metadata.generation {
            Ok(entry.message.clone().unwrap_or_default())
        } else {
            Err(format!("{} ({:?})", entry.state, entry.message))
        }
    })
    .await
}

/// Waits until the aggregator says NicNodePolicy `name` is `wanted` as a whole.
async fn wait_for_node_policy_state(client: &Client, name: &str, wanted: &str) {
    let policies: Api<NicNodePolicy> = Api::all(client.clone());
    eventually(&format!("{name} to be {wanted}"), WAIT, || async {
        let policy = policies.get(name).await.map_err(|e| e.to_string())?;
        let status = policy.status.unwrap_or_default();
        match status.state {
            Some(state) if state.to_string() == wanted => Ok(()),
            other => Err(format!("{other:?} ({:?})", status.reason)),
        }
    })
    .await;
}

async fn label_node(client: &Client, node: &str, key: &str, value: Option<&str>) {
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"labels": {key: value}}})))
        .await
        .unwrap_or_else(|e| panic!("relabelling {node}: {e}"));
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn node_policies_deploy_per_node_group_and_refuse_overlap_and_shared_sections() {
    let Some(env) = TestEnv::new("netop-e2e-nnp").await else { return };
    let client = env.client.clone();
    let suffix = unique_name("g");
    let (gpu_key, storage_key) = (format!("netop-e2e/gpu-{suffix}"), format!("netop-e2e/storage-{suffix}"));
    let (gpu_node, storage_node) = (unique_name("netop-gpu"), unique_name("netop-storage"));
    let mut labels = nic_node_labels();
    labels.push((&gpu_key, "true"));
    create_node(&env, &gpu_node, &labels).await;
    let mut labels = nic_node_labels();
    labels.push((&storage_key, "true"));
    create_node(&env, &storage_node, &labels).await;
    env.cleanup.node_labels(&gpu_node, &[&storage_key]);
    fresh_policy(&env, &NicClusterPolicy::new(POLICY_NAME, Default::default())).await;

    let node_policies: Api<NicNodePolicy> = Api::all(client.clone());
    let (pool_a, pool_b) = (unique_name("pool-a"), unique_name("pool-b"));
    for (name, key) in [(&pool_a, &gpu_key), (&pool_b, &storage_key)] {
        env.cleanup.cluster_resource::<NicNodePolicy>(name);
        node_policies.create(&PostParams::default(), &rdma_policy(name, key)).await.expect("NicNodePolicy created");
        // The later policy is later by creation time (seconds).
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let mut controller = ControllerProcess::start("rdma-dp-controller", &env.namespace, &[]);
    let mut aggregator = ControllerProcess::start("aggregator", &env.namespace, &[]);
    controller.wait_ready().await;
    aggregator.wait_ready().await;

    // Each policy has its own DaemonSet and ConfigMap, selecting its own nodes.
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &env.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &env.namespace);
    let mut uids = Vec::new();
    for (name, key, node) in [(&pool_a, &gpu_key, &gpu_node), (&pool_b, &storage_key, &storage_node)] {
        let ds_name = format!("rdma-shared-dp-ds-{name}");
        let ds = eventually(&format!("DaemonSet {ds_name}"), WAIT, || async {
            daemon_sets.get_opt(&ds_name).await.map_err(|e| e.to_string())?.ok_or("absent".to_string())
        })
        .await;
        let owner = &ds.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("NicNodePolicy", name.as_str()));
        assert_eq!(ds.metadata.labels.as_ref().unwrap()["ds-owner"], format!("nnp-{name}"));
        let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.node_selector.as_ref().unwrap()[key.as_str()], "true");
        config_maps.get(&format!("rdma-devices-{name}")).await.expect("its own ConfigMap");
        uids.push(ds.metadata.uid.clone());
        let selector = format!("ds-owner=nnp-{name}");
        eventually(&format!("{name}'s pod to run on {node}"), WAIT, || async {
            let pods = kubelet::pods(&client, &env.namespace, &selector).await;
            let nodes: Vec<String> = pods.iter().filter_map(kubelet::target_node).collect();
            if nodes != [node.to_string()] {
                return Err(format!("pods on {nodes:?}"));
            }
            match run_pods(&client, &env.namespace, &selector, None).await {
                1 => Ok(()),
                n => Err(format!("{n} running")),
            }
        })
        .await;
        wait_for_node_policy_entry(&client, name, "ready").await;
        wait_for_node_policy_state(&client, name, "ready").await;
        // The conditions, as on the cluster policy: Ready and the section's own.
        let conditions =
            node_policies.get(name).await.unwrap().status.unwrap_or_default().conditions.unwrap_or_default();
        for type_ in ["Ready", "RDMASharedDevicePluginReady"] {
            let condition = conditions.iter().find(|c| c.type_ == type_);
            assert_eq!(condition.map(|c| c.status.as_str()), Some("True"), "{type_} of {name}: {conditions:?}");
        }
        assert!(!conditions.iter().any(|c| c.type_ == "OFEDDriverReady"), "no condition for an absent section");
    }

    // A relabel makes both select the GPU node: the later policy is error naming the node, and
    // nothing of it changes; the earlier one stays ready.
    label_node(&client, &gpu_node, &storage_key, Some("true")).await;
    let message = wait_for_node_policy_entry(&client, &pool_b, "error").await;
    assert!(
        message.starts_with(&format!("spec.nodeSelector: node(s) {gpu_node} also selected by NicNodePolicy {pool_a}")),
        "{message}"
    );
    wait_for_node_policy_state(&client, &pool_b, "error").await;
    wait_for_node_policy_entry(&client, &pool_a, "ready").await;
    let ds_b = daemon_sets.get(&format!("rdma-shared-dp-ds-{pool_b}")).await.expect("pool-b's DaemonSet stays");
    assert_eq!(ds_b.metadata.uid, uids[1]);
    assert_eq!(
        ds_b.spec.as_ref().unwrap().template.spec.as_ref().unwrap().node_selector.as_ref().unwrap()
            [storage_key.as_str()],
        "true",
        "unchanged"
    );
    // (The DaemonSet itself, unchanged, selects the relabelled node meanwhile: the kubelet plays
    // its pod there, and the pod's deletion once the label goes.)
    label_node(&client, &gpu_node, &storage_key, None).await;
    let selector_b = format!("ds-owner=nnp-{pool_b}");
    eventually("pool-b back to its own node", WAIT, || async {
        kubelet::confirm_deletions(&client, &env.namespace).await;
        run_pods(&client, &env.namespace, &selector_b, None).await;
        let pods = kubelet::pods(&client, &env.namespace, &selector_b).await;
        let nodes: Vec<String> = pods.iter().filter_map(kubelet::target_node).collect();
        if nodes == [storage_node.clone()] { Ok(()) } else { Err(format!("pods on {nodes:?}")) }
    })
    .await;
    wait_for_node_policy_entry(&client, &pool_b, "ready").await;

    // The section also in the NicClusterPolicy: both node policies are error, their objects stay.
    let seed = e2e::seed_policy();
    let rdma = serde_json::to_value(&seed.spec.rdma_shared_device_plugin).unwrap();
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"rdmaSharedDevicePlugin": rdma}})))
        .await
        .expect("section added to the cluster policy");
    for name in [&pool_a, &pool_b] {
        let message = wait_for_node_policy_entry(&client, name, "error").await;
        assert!(
            message.starts_with("spec.rdmaSharedDevicePlugin: also set in NicClusterPolicy nic-cluster-policy"),
            "{message}"
        );
    }
    for (name, uid) in [(&pool_a, &uids[0]), (&pool_b, &uids[1])] {
        let ds = daemon_sets.get(&format!("rdma-shared-dp-ds-{name}")).await.expect("still there");
        assert_eq!(&ds.metadata.uid, uid);
    }
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"rdmaSharedDevicePlugin": null}})))
        .await
        .expect("section removed from the cluster policy");
    for name in [&pool_a, &pool_b] {
        wait_for_node_policy_entry(&client, name, "ready").await;
    }

    // Deleting one policy garbage-collects its objects only.
    node_policies.delete(&pool_b, &DeleteParams::foreground()).await.expect("pool-b deleted");
    eventually("pool-b's objects to be collected", WAIT, || async {
        let ds = daemon_sets.get_opt(&format!("rdma-shared-dp-ds-{pool_b}")).await.map_err(|e| e.to_string())?;
        let cm = config_maps.get_opt(&format!("rdma-devices-{pool_b}")).await.map_err(|e| e.to_string())?;
        kubelet::confirm_deletions(&client, &env.namespace).await;
        if ds.is_none() && cm.is_none() { Ok(()) } else { Err("still there".to_string()) }
    })
    .await;
    let ds_a = daemon_sets.get(&format!("rdma-shared-dp-ds-{pool_a}")).await.expect("pool-a's DaemonSet stays");
    assert_eq!(ds_a.metadata.uid, uids[0]);
    config_maps.get(&format!("rdma-devices-{pool_a}")).await.expect("pool-a's ConfigMap stays");

    for process in [&mut controller, &mut aggregator] {
        let (status, _) = process.terminate(std::time::Duration::from_secs(5)).await;
        assert!(status.success(), "exit status {status:?}");
    }
}

const OFED: &str = "state-OFED";
const OLD: &str = "23.04-0.5.3.3.1";
const NEW: &str = "24.01-0.3.3.1";
const STORAGE: &str = "24.04-0.6.6.0";

/// A NicNodePolicy `name` deploying driver `version` from `registry` on the nodes labelled
/// `key`, upgraded automatically one node at a time (no drain).
fn driver_policy(name: &str, key: &str, registry: &str, version: &str) -> NicNodePolicy {
    let spec = json!({"image": "mofed", "repository": format!("{registry}/mellanox"), "version": version,
                      "upgradePolicy": {"autoUpgrade": true, "maxParallelUpgrades": 1, "drain": {"enable": false}}});
    node_policy(name, key, "ofedDriver", spec)
}

/// Node name → (upgrade state, cordoned, mofed.wait).
async fn driver_states(client: &Client, names: &[&String]) -> BTreeMap<String, (String, bool, Option<String>)> {
    let nodes = Api::<Node>::all(client.clone()).list(&Default::default()).await.expect("nodes listable");
    nodes
        .items
        .into_iter()
        .filter(|n| names.iter().any(|name| **name == n.name_any()))
        .map(|n| {
            let labels = n.labels();
            let state = labels.get(ofed::upgrade::STATE_LABEL).cloned().unwrap_or_default();
            let cordoned = n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
            (n.name_any(), (state, cordoned, labels.get(kubelet::MOFED_WAIT_LABEL).cloned()))
        })
        .collect()
}

/// The driver pod bound to `node`, not being deleted: (uid, image).
async fn driver_on(client: &Client, namespace: &str, node: &str) -> Option<(String, String)> {
    let pods = kubelet::pods(client, namespace, ofed::DRIVER_LABEL).await;
    let pod = pods.into_iter().find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))?;
    let image = pod.spec.as_ref()?.containers.first()?.image.clone()?;
    Some((pod.uid()?, image))
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn each_node_policy_runs_its_own_driver_and_upgrades_without_touching_the_other_group() {
    let Some(env) = TestEnv::new("netop-e2e-nnp-ofed").await else { return };
    let client = env.client.clone();
    let tags = vec![format!("{OLD}-ubuntu22.04-amd64")];
    let registry = e2e::registry::serve("mellanox/mofed", tags).await;
    let suffix = unique_name("g");
    let (gpu_key, storage_key) = (format!("netop-e2e/gpu-{suffix}"), format!("netop-e2e/storage-{suffix}"));
    let gpu_nodes = [unique_name("netop-gpu"), unique_name("netop-gpu")];
    let storage_node = unique_name("netop-storage");
    for (node, key) in [(&gpu_nodes[0], &gpu_key), (&gpu_nodes[1], &gpu_key), (&storage_node, &storage_key)] {
        let labels = [
            (kubelet::NIC_LABEL, "true"),
            (ofed::pools::OS_LABEL, "ubuntu"),
            (ofed::pools::OS_VERSION_LABEL, "22.04"),
            (ofed::pools::KERNEL_LABEL, "5.15.0-78-generic"),
            (ofed::pools::ARCH_LABEL, "amd64"),
            (key.as_str(), "true"),
        ];
        create_node(&env, node, &labels).await;
    }
    fresh_policy(&env, &NicClusterPolicy::new(POLICY_NAME, Default::default())).await;
    let node_policies: Api<NicNodePolicy> = Api::all(client.clone());
    let (gpus, storage) = (unique_name("gpus"), unique_name("storage"));
    for (name, key, version) in [(&gpus, &gpu_key, OLD), (&storage, &storage_key, STORAGE)] {
        env.cleanup.cluster_resource::<NicNodePolicy>(name);
        let policy = driver_policy(name, key, &registry, version);
        node_policies.create(&PostParams::default(), &policy).await.expect("created");
    }
    let mut controller = ControllerProcess::start("ofed-controller", &env.namespace, &[]);
    controller.wait_ready().await;

    // Each policy runs its own pool DaemonSet and driver version on its own nodes; every node's
    // driver comes up and mofed.wait turns "false".
    let all: Vec<&String> = gpu_nodes.iter().chain([&storage_node]).collect();
    eventually("every node's driver up and upgrade-done", WAIT, || async {
        kubelet::confirm_deletions(&client, &env.namespace).await;
        run_pods(&client, &env.namespace, ofed::DRIVER_LABEL, None).await;
        let states = driver_states(&client, &all).await;
        let settled = states.len() == 3
            && states.values().all(|(s, c, wait)| s == "upgrade-done" && !c && wait.as_deref() == Some("false"));
        if settled { Ok(()) } else { Err(format!("{states:?}")) }
    })
    .await;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &env.namespace);
    let names: Vec<String> =
        daemon_sets.list(&Default::default()).await.unwrap().items.iter().map(|d| d.name_any()).collect();
    for name in [&gpus, &storage] {
        let own: Vec<&String> = names.iter().filter(|d| d.ends_with(&format!("-{name}-ds"))).collect();
        assert_eq!(own.len(), 1, "one pool DaemonSet for {name}: {names:?}");
        assert!(own[0].starts_with("mofed-ubuntu22.04-"), "{own:?}");
        wait_for_entry_of(&client, name, OFED, "ready").await;
    }
    for (node, version) in [(&gpu_nodes[0], OLD), (&gpu_nodes[1], OLD), (&storage_node, STORAGE)] {
        let (_, image) = driver_on(&client, &env.namespace, node).await.expect("a driver pod");
        assert!(image.contains(version), "{node} runs its group's version: {image}");
    }
    let storage_pod = driver_on(&client, &env.namespace, &storage_node).await.expect("storage driver");

    // A driver upgrade of the GPU group: its nodes roll one at a time to the new version; the
    // storage node keeps its driver pod and is never cordoned.
    node_policies
        .patch(&gpus, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"ofedDriver": {"version": NEW}}})))
        .await
        .expect("version bumped");
    eventually("the GPU nodes upgraded", std::time::Duration::from_secs(120), || async {
        kubelet::confirm_deletions(&client, &env.namespace).await;
        run_pods(&client, &env.namespace, ofed::DRIVER_LABEL, None).await;
        let states = driver_states(&client, &all).await;
        let (storage_state, storage_cordoned, _) = states[&storage_node].clone();
        assert_eq!((storage_state.as_str(), storage_cordoned), ("upgrade-done", false), "the other group: {states:?}");
        assert_eq!(driver_on(&client, &env.namespace, &storage_node).await.as_ref(), Some(&storage_pod));
        let cordoned = gpu_nodes.iter().filter(|n| states[*n].1).count();
        assert!(cordoned <= 1, "maxParallelUpgrades 1 within the group: {states:?}");
        let mut upgraded = 0;
        for node in &gpu_nodes {
            if driver_on(&client, &env.namespace, node).await.is_some_and(|(_, image)| image.contains(NEW)) {
                upgraded += 1;
            }
        }
        let done = gpu_nodes.iter().all(|n| states[n].0 == "upgrade-done" && !states[n].1);
        if upgraded == 2 && done { Ok(()) } else { Err(format!("{upgraded} upgraded; {states:?}")) }
    })
    .await;

    // Deleting the storage policy collects its DaemonSet only; its node loses mofed.wait; the
    // shared ServiceAccount stays for the GPU group.
    node_policies.delete(&storage, &DeleteParams::foreground()).await.expect("deleted");
    eventually("the storage group's driver to go", WAIT, || async {
        kubelet::confirm_deletions(&client, &env.namespace).await;
        let names: Vec<String> =
            daemon_sets.list(&Default::default()).await.unwrap().items.iter().map(|d| d.name_any()).collect();
        let states = driver_states(&client, &all).await;
        let gone = !names.iter().any(|d| d.ends_with(&format!("-{storage}-ds")));
        let kept = names.iter().any(|d| d.ends_with(&format!("-{gpus}-ds")));
        let unlabelled = states[&storage_node].2.is_none();
        if gone && kept && unlabelled { Ok(()) } else { Err(format!("{names:?} {states:?}")) }
    })
    .await;
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &env.namespace);
    eventually("the shared ServiceAccount owned by the remaining policy only", WAIT, || async {
        let shared = accounts.get("ofed-driver").await.map_err(|e| format!("the shared ServiceAccount stays: {e}"))?;
        let owners: Vec<String> = shared.owner_references().iter().map(|o| o.name.clone()).collect();
        if owners == std::slice::from_ref(&gpus) { Ok(()) } else { Err(format!("owners {owners:?}")) }
    })
    .await;

    let (status, _) = controller.terminate(std::time::Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status:?}");
}
