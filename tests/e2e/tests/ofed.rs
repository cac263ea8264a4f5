//! `ofed-controller` against a real API server: a driver DaemonSet per node pool (a precompiled
//! image where the registry, here a local one, lists it), the mofed.wait label following the
//! driver pods, a pool following a node's new kernel, and cleanup when the section goes.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{MOFED_WAIT_LABEL, confirm_deletions, create_node, run_pods_on};
use e2e::{TestEnv, WAIT, eventually, fresh_policy, seed_policy, unique_name, wait_for_entry};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use ofed::pools::{ARCH_LABEL, KERNEL_LABEL, OS_LABEL, OS_VERSION_LABEL, kernel_hash};
use serde_json::json;
use std::collections::BTreeMap;

const STATE: &str = "state-OFED";
const KERNEL_A: &str = "5.15.0-78-generic";
const KERNEL_B: &str = "5.15.0-91-generic";
const KERNEL_C: &str = "5.15.0-100-generic";
/// A later driver version the registry has (from source only).
const NEW_VERSION: &str = "24.01-0.3.3.1";

/// A registry that lists one precompiled driver image: for kernel A.
async fn local_registry() -> String {
    let tags = vec![
        "23.04-0.5.3.3.1-ubuntu22.04-amd64".to_string(),
        format!("23.04-0.5.3.3.1-{KERNEL_A}-ubuntu22.04-amd64"),
        format!("{NEW_VERSION}-ubuntu22.04-amd64"),
    ];
    e2e::registry::serve("mellanox/mofed", tags).await
}

/// The NFD labels of an Ubuntu 22.04 amd64 NIC node with `kernel`.
fn nfd_labels(kernel: &str) -> Vec<(&'static str, String)> {
    vec![
        ("feature.node.kubernetes.io/pci-15b3.present", "true".into()),
        (OS_LABEL, "ubuntu".into()),
        (OS_VERSION_LABEL, "22.04".into()),
        (KERNEL_LABEL, kernel.into()),
        (ARCH_LABEL, "amd64".into()),
    ]
}

fn daemon_set_name(kernel: &str) -> String {
    format!("mofed-ubuntu22.04-{}-ds", kernel_hash(kernel))
}

async fn daemon_sets(client: &Client, namespace: &str) -> BTreeMap<String, DaemonSet> {
    let list = Api::<DaemonSet>::namespaced(client.clone(), namespace).list(&Default::default()).await.unwrap();
    list.items.into_iter().map(|ds| (ds.name_any(), ds)).collect()
}

async fn wait_labels(client: &Client) -> BTreeMap<String, Option<String>> {
    let nodes = Api::<Node>::all(client.clone()).list(&Default::default()).await.unwrap();
    nodes.items.into_iter().map(|n| (n.name_any(), n.labels().get(MOFED_WAIT_LABEL).cloned())).collect()
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn driver_pools_follow_the_nodes_and_the_wait_label_follows_the_driver_pods() {
    let Some(env) = TestEnv::new("netop-e2e-ofed").await else { return };
    let client = env.client.clone();
    let registry = local_registry().await;
    let [n1, n2, n3] = [unique_name("ofed-a"), unique_name("ofed-a"), unique_name("ofed-b")];
    for (node, kernel) in [(&n1, KERNEL_A), (&n2, KERNEL_A), (&n3, KERNEL_B)] {
        let labels = nfd_labels(kernel);
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        create_node(&env, node, &labels).await;
    }
    let mut policy = seed_policy();
    policy.spec.ofed_driver.as_mut().unwrap().image.repository = format!("{registry}/mellanox");
    fresh_policy(&env, &policy).await;
    let mut controller = ControllerProcess::start("ofed-controller", &env.namespace, &[]);
    controller.wait_ready().await;

    // One DaemonSet per kernel, each selecting its pool's nodes; kernel A's image is precompiled.
    let found = eventually("a DaemonSet per pool", WAIT, || async {
        let found = daemon_sets(&client, &env.namespace).await;
        let names: Vec<&String> = found.keys().collect();
        if names.len() == 2 { Ok(found) } else { Err(format!("{names:?}")) }
    })
    .await;
    let pool_a = &found[&daemon_set_name(KERNEL_A)];
    let pod = pool_a.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let selector = pod.node_selector.clone().unwrap();
    assert_eq!((selector[KERNEL_LABEL].as_str(), selector[ARCH_LABEL].as_str()), (KERNEL_A, "amd64"));
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some(format!("{registry}/mellanox/mofed:23.04-0.5.3.3.1-{KERNEL_A}-ubuntu22.04-amd64").as_str())
    );
    let pool_b = &found[&daemon_set_name(KERNEL_B)];
    let image_b = pool_b.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone();
    assert_eq!(
        image_b.as_deref(),
        Some(format!("{registry}/mellanox/mofed:23.04-0.5.3.3.1-ubuntu22.04-amd64").as_str())
    );

    // Every pooled node waits for its driver; once n1's driver pod is Ready, n1 no longer does.
    eventually("every pooled node to wait for its driver", WAIT, || async {
        let labels = wait_labels(&client).await;
        let waiting = [&n1, &n2, &n3].iter().all(|n| labels.get(*n) == Some(&Some("true".to_string())));
        if waiting { Ok(()) } else { Err(format!("{labels:?}")) }
    })
    .await;
    eventually("n1's driver pod to run", WAIT, || async {
        match run_pods_on(&client, &env.namespace, ofed::DRIVER_LABEL, &n1).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    eventually("n1's label to turn false while the others stay true", WAIT, || async {
        let labels = wait_labels(&client).await;
        let wanted = [(&n1, "false"), (&n2, "true"), (&n3, "true")];
        let right = wanted.iter().all(|(n, v)| labels.get(*n) == Some(&Some(v.to_string())));
        if right { Ok(()) } else { Err(format!("{labels:?}")) }
    })
    .await;
    let message = wait_for_entry(&client, STATE, "notReady").await.unwrap_or_default();
    assert!(message.starts_with("0/2 pools ready;"), "{message}");

    // A new driver version without autoUpgrade: the driver pods stay (OnDelete), and the state
    // says how to roll it out.
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(
            POLICY_NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"ofedDriver": {"version": NEW_VERSION}}})),
        )
        .await
        .unwrap();
    eventually("the state to say how to roll out the new driver", WAIT, || async {
        let (state, message) = e2e::applied_state(&client, STATE).await?;
        let message = message.unwrap_or_default();
        if message.contains(ofed::controller::MANUAL_UPGRADE_HINT) {
            Ok(())
        } else {
            Err(format!("{state}: {message}"))
        }
    })
    .await;

    // n3 boots a new kernel: its pool goes, a new one comes.
    let relabel = json!({"metadata": {"labels": {KERNEL_LABEL: KERNEL_C}}});
    Api::<Node>::all(client.clone()).patch(&n3, &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
    eventually("the pool of kernel B to be replaced by one of kernel C", WAIT, || async {
        confirm_deletions(&client, &env.namespace).await;
        let found = daemon_sets(&client, &env.namespace).await;
        let names: Vec<String> = found.keys().cloned().collect();
        let mut wanted = vec![daemon_set_name(KERNEL_A), daemon_set_name(KERNEL_C)];
        wanted.sort();
        if names == wanted { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await;

    // Remove the section: the DaemonSets go and so do the labels.
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"ofedDriver": null}})))
        .await
        .unwrap();
    eventually("the DaemonSets and labels to be gone", WAIT, || async {
        confirm_deletions(&client, &env.namespace).await;
        let found = daemon_sets(&client, &env.namespace).await;
        let labels = wait_labels(&client).await;
        let labelled: Vec<&String> =
            [&n1, &n2, &n3].into_iter().filter(|n| labels.get(*n).is_some_and(Option::is_some)).collect();
        if found.is_empty() && labelled.is_empty() { Ok(()) } else { Err(format!("{:?} {labelled:?}", found.keys())) }
    })
    .await;
    wait_for_entry(&client, STATE, "ignore").await;
    let (status, _) = controller.terminate(std::time::Duration::from_secs(5)).await;
    assert!(status.success());
}

/// The chart's `OFED_INIT_CONTAINER_IMAGE` for `values` (as `--set` pairs), read back from the
/// ConfigMap the installed release holds for the OFED controller.
async fn init_container_setting(env: &TestEnv, release: &str, values: &[&str]) -> String {
    use k8s_openapi::api::core::v1::ConfigMap;
    let mut args = Vec::new();
    for value in values {
        args.extend(["--set", value]);
    }
    e2e::helm::install(&env.cleanup, release, &env.namespace, &args);
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let settings = config_maps.get(&format!("{release}-ofed-settings")).await.expect("the chart's OFED settings");
    let data = settings.data.unwrap_or_default();
    data.get("OFED_INIT_CONTAINER_IMAGE").cloned().expect("OFED_INIT_CONTAINER_IMAGE")
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn the_charts_init_container_values_shape_the_driver_daemon_sets() {
    let Some(env) = TestEnv::new("netop-e2e-ofed-init").await else { return };
    if e2e::helm::helm().is_none() {
        return;
    }
    let client = env.client.clone();
    let node = unique_name("ofed-init");
    let labels = nfd_labels(KERNEL_A);
    create_node(&env, &node, &labels.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    fresh_policy(&env, &seed_policy()).await;
    let init_image = |ds: &DaemonSet| {
        let pod = ds.spec.as_ref().unwrap().template.spec.clone().unwrap();
        pod.init_containers.unwrap_or_default().iter().map(|c| c.image.clone().unwrap_or_default()).collect::<Vec<_>>()
    };

    // A mirrored registry: the driver pods' init container comes from it.
    let mirrored = init_container_setting(
        &env,
        &unique_name("netop-init"),
        &[
            "ofedDriver.initContainer.repository=registry.local:5000/mellanox",
            "ofedDriver.initContainer.version=v0.0.3",
        ],
    )
    .await;
    assert_eq!(mirrored, "registry.local:5000/mellanox/network-operator-init-container:v0.0.3");
    let mut controller =
        ControllerProcess::start("ofed-controller", &env.namespace, &[("OFED_INIT_CONTAINER_IMAGE", &mirrored)]);
    let wanted = vec![mirrored.clone()];
    eventually("the driver DaemonSet with the mirrored init container", WAIT, || async {
        let found = daemon_sets(&client, &env.namespace).await;
        let images = found.get(&daemon_set_name(KERNEL_A)).map(init_image);
        if images.as_ref() == Some(&wanted) { Ok(()) } else { Err(format!("{images:?}")) }
    })
    .await;
    controller.terminate(std::time::Duration::from_secs(5)).await;

    // enable: false: no init container, and no ConfigMap for it.
    let off =
        init_container_setting(&env, &unique_name("netop-init"), &["ofedDriver.initContainer.enable=false"]).await;
    assert_eq!(off, "");
    let mut controller =
        ControllerProcess::start("ofed-controller", &env.namespace, &[("OFED_INIT_CONTAINER_IMAGE", &off)]);
    eventually("the driver DaemonSet without an init container", WAIT, || async {
        let found = daemon_sets(&client, &env.namespace).await;
        let images = found.get(&daemon_set_name(KERNEL_A)).map(init_image);
        let config_map = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &env.namespace)
            .get_opt(ofed::INIT_CONFIG_MAP)
            .await
            .map_err(|e| e.to_string())?;
        match (&images, config_map) {
            (Some(images), None) if images.is_empty() => Ok(()),
            (_, config_map) => Err(format!("{images:?}, ConfigMap present: {}", config_map.is_some())),
        }
    })
    .await;
    controller.terminate(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_restart_or_a_registry_outage_never_changes_a_driver_template_or_the_status() {
    let Some(env) = TestEnv::new("netop-e2e-ofed-registry").await else { return };
    let client = env.client.clone();
    let tags = vec![
        "23.04-0.5.3.3.1-ubuntu22.04-amd64".to_string(),
        format!("23.04-0.5.3.3.1-{KERNEL_A}-ubuntu22.04-amd64"),
        format!("{NEW_VERSION}-ubuntu22.04-amd64"),
    ];
    let (registry, outage) = e2e::registry::serve_stoppable("mellanox/mofed", tags).await;
    let node = unique_name("ofed-keep");
    let labels = nfd_labels(KERNEL_A);
    create_node(&env, &node, &labels.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    let mut policy = seed_policy();
    let ofed = policy.spec.ofed_driver.as_mut().unwrap();
    ofed.image.repository = format!("{registry}/mellanox");
    ofed.upgrade_policy = Some(serde_json::from_value(json!({"autoUpgrade": true, "maxParallelUpgrades": 1})).unwrap());
    fresh_policy(&env, &policy).await;
    let mut controller = ControllerProcess::start("ofed-controller", &env.namespace, &[]);
    eventually("the driver to run", WAIT, || async {
        run_pods_on(&client, &env.namespace, ofed::DRIVER_LABEL, &node).await;
        wait_for_entry_now(&client).await
    })
    .await;
    let daemon_set =
        || async { daemon_sets(&client, &env.namespace).await.remove(&daemon_set_name(KERNEL_A)).unwrap() };
    let before = daemon_set().await;
    let image = before.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone();
    assert_eq!(image, Some(format!("{registry}/mellanox/mofed:23.04-0.5.3.3.1-{KERNEL_A}-ubuntu22.04-amd64")));
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    let version = policies.get(POLICY_NAME).await.unwrap().metadata.resource_version;

    // A restart finds everything in place: no template change, not one write to the policy.
    controller.kill();
    let mut controller = ControllerProcess::start("ofed-controller", &env.namespace, &[]);
    controller.wait_ready().await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(policies.get(POLICY_NAME).await.unwrap().metadata.resource_version, version, "a status write");

    // The registry goes down, the controller is killed and starts again: the pool keeps its
    // precompiled image, no node is cordoned; the failure is logged, and the state's message,
    // which nothing in it changes, does not carry it.
    outage.abort();
    controller.kill();
    let restarted = ControllerProcess::start("ofed-controller", &env.namespace, &[]);
    eventually("the registry failure in the log", WAIT, || async {
        let log = restarted.log();
        if log.contains("could not list image tags") { Ok(()) } else { Err("not yet".to_string()) }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (state, message) = e2e::applied_state(&client, STATE).await.unwrap();
    assert_eq!(state, "ready", "{message:?}");
    assert!(!message.unwrap_or_default().contains("not checked"), "the registry's failure is not a permanent tail");
    let after = daemon_set().await;
    assert_eq!(after.spec.as_ref().unwrap().template, before.spec.as_ref().unwrap().template);
    assert_eq!(after.metadata.generation, before.metadata.generation);
    let unschedulable = Api::<Node>::all(client.clone()).get(&node).await.unwrap().spec.and_then(|s| s.unschedulable);
    assert_ne!(unschedulable, Some(true), "the node was cordoned");
}

/// `Ok` once state-OFED is ready for the current generation.
async fn wait_for_entry_now(client: &Client) -> Result<(), String> {
    let policy = Api::<NicClusterPolicy>::all(client.clone()).get(POLICY_NAME).await.map_err(|e| e.to_string())?;
    let entry = policy.applied_state(STATE).ok_or("no entry yet")?;
    match (entry.state.to_string().as_str(), entry.observed_generation == policy.metadata.generation) {
        ("ready", true) => Ok(()),
        _ => Err(format!("{} {:?}", entry.state, entry.message)),
    }
}
