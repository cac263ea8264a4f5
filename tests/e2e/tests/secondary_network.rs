//! The four secondary-network binaries (`multus-controller`, `cni-plugins-controller`,
//! `ipoib-controller`, `whereabouts-controller`) against a real API server: each deploys its
//! DaemonSet on every node, is ready once the pods run (the test plays the kubelet), and prunes
//! everything and says `ignore` when its section goes. Multus refuses a broken config without
//! touching what runs; Whereabouts' CRDs come from `crds/`, and a user's IPPool survives the
//! section's removal and the policy's deletion; the old IP-reconciler CronJob is deleted once.

use api::whereabouts::{IPPool, IPPoolSpec};
use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{confirm_deletions, create_node, run_pods};
use e2e::{TestEnv, WAIT, eventually, fresh_policy, install_crd_files, seed_policy, unique_name, wait_for_entry};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::time::Instant;

/// One binary under test.
struct Case {
    binary: &'static str,
    state: &'static str,
    /// The key under `spec.secondaryNetwork`.
    key: &'static str,
    daemon_set: &'static str,
    pods: &'static str,
}

const MULTUS: Case = Case {
    binary: "multus-controller",
    state: "state-multus-cni",
    key: "multus",
    daemon_set: "kube-multus-ds",
    pods: "name=multus",
};
const CNI_PLUGINS: Case = Case {
    binary: "cni-plugins-controller",
    state: "state-container-networking-plugins",
    key: "cniPlugins",
    daemon_set: "cni-plugins-ds",
    pods: "name=cni-plugins",
};
const IPOIB: Case = Case {
    binary: "ipoib-controller",
    state: "state-ipoib-cni",
    key: "ipoib",
    daemon_set: "kube-ipoib-cni-ds",
    pods: "name=ipoib-cni",
};
const WHEREABOUTS: Case = Case {
    binary: "whereabouts-controller",
    state: "state-whereabouts-cni",
    key: "ipamPlugin",
    daemon_set: "whereabouts",
    pods: "name=whereabouts",
};

/// The seed policy (Multus with `config: ''`, CNI plugins, Whereabouts) plus IPoIB.
fn policy() -> NicClusterPolicy {
    let mut policy = seed_policy();
    let secondary = policy.spec.secondary_network.as_mut().expect("the seed has secondaryNetwork");
    secondary.ipoib = Some(
        serde_json::from_value(json!({"image": "ipoib-cni", "repository": "ghcr.io/mellanox", "version": "v1.2.0"}))
            .unwrap(),
    );
    policy
}

async fn set_secondary(client: &Client, key: &str, value: Value) {
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(
            POLICY_NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"secondaryNetwork": {key: value}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("setting spec.secondaryNetwork.{key}: {e}"));
}

async fn daemon_set(client: &Client, namespace: &str, name: &str) -> Option<DaemonSet> {
    Api::<DaemonSet>::namespaced(client.clone(), namespace).get_opt(name).await.expect("DaemonSets readable")
}

/// Starts the case's binary on a policy with every section and two plain nodes, plays the
/// kubelet until the state is ready; returns the running controller.
async fn ready(env: &TestEnv, case: &Case) -> ControllerProcess {
    let client = &env.client;
    let nodes = [unique_name("netop-cni"), unique_name("netop-cni")];
    for node in &nodes {
        create_node(env, node, &[]).await;
    }
    fresh_policy(env, &policy()).await;
    let started = Instant::now();
    let controller = ControllerProcess::start(case.binary, &env.namespace, &[]);
    let ds = eventually(&format!("DaemonSet {}", case.daemon_set), WAIT, || async {
        daemon_set(client, &env.namespace, case.daemon_set).await.ok_or("absent".to_string())
    })
    .await;
    let pod = ds.spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert!(pod.node_selector.is_none(), "{}: runs on every node", case.daemon_set);
    let cni_bin = pod.volumes.iter().flatten().find(|v| v.name == "cnibin").and_then(|v| v.host_path.clone());
    assert_eq!(cni_bin.map(|h| h.path).as_deref(), Some("/opt/cni/bin"));
    eventually("a pod per node to run", WAIT, || async {
        match run_pods(client, &env.namespace, case.pods, None).await {
            2 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(client, case.state, "ready").await;
    eprintln!("{}: ready {:?} after start", case.binary, started.elapsed());
    controller
}

/// Removes the case's section: the state says `ignore` and its DaemonSet is gone.
async fn removed(env: &TestEnv, case: &Case) {
    set_secondary(&env.client, case.key, Value::Null).await;
    wait_for_entry(&env.client, case.state, "ignore").await;
    eventually("the DaemonSet to be pruned", WAIT, || async {
        match daemon_set(&env.client, &env.namespace, case.daemon_set).await {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    confirm_deletions(&env.client, &env.namespace).await;
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn multus_is_ready_refuses_a_broken_config_without_touching_it_and_cleans_up() {
    let Some(env) = TestEnv::new("netop-e2e-multus").await else { return };
    let client = env.client.clone();
    let _controller = ready(&env, &MULTUS).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &env.namespace);
    assert!(config_maps.get_opt("multus-cni-config").await.unwrap().is_none(), "config: '' means auto, no ConfigMap");
    let before = daemon_set(&client, &env.namespace, "kube-multus-ds").await.unwrap();

    set_secondary(&client, "multus", json!({"config": "{\"cniVersion\": "})).await;
    let message = wait_for_entry(&client, MULTUS.state, "error").await.unwrap_or_default();
    assert!(message.starts_with("spec.secondaryNetwork.multus.config: invalid JSON"), "{message}");
    let after = daemon_set(&client, &env.namespace, "kube-multus-ds").await.unwrap();
    assert_eq!(after.metadata.generation, before.metadata.generation, "nothing applied");

    let config = r#"{"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus", "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig", "delegates": [{"type": "bridge", "name": "cni0"}]}"#;
    set_secondary(&client, "multus", json!({"config": config})).await;
    let stored = eventually("the Multus ConfigMap", WAIT, || async {
        config_maps.get_opt("multus-cni-config").await.map_err(|e| e.to_string())?.ok_or("absent".to_string())
    })
    .await;
    assert_eq!(stored.data.unwrap()["cni-conf.json"], config);
    eventually("the pods to roll", WAIT, || async {
        let ds = daemon_set(&client, &env.namespace, "kube-multus-ds").await.unwrap();
        let args = ds.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap_or_default();
        if args.contains(&"--multus-conf-file=/tmp/multus-conf/00-multus.conf".to_string()) {
            Ok(())
        } else {
            Err(format!("{args:?}"))
        }
    })
    .await;

    removed(&env, &MULTUS).await;
    assert!(config_maps.get_opt("multus-cni-config").await.unwrap().is_none(), "the ConfigMap was pruned");
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn cni_plugins_are_ready_and_cleaned_up() {
    let Some(env) = TestEnv::new("netop-e2e-cni").await else { return };
    let _controller = ready(&env, &CNI_PLUGINS).await;
    removed(&env, &CNI_PLUGINS).await;
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn ipoib_is_ready_and_cleaned_up() {
    let Some(env) = TestEnv::new("netop-e2e-ipoib").await else { return };
    let _controller = ready(&env, &IPOIB).await;
    removed(&env, &IPOIB).await;
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn whereabouts_never_deletes_ip_allocations_and_deletes_the_old_cron_job_once() {
    let Some(env) = TestEnv::new("netop-e2e-whereabouts").await else { return };
    let client = env.client.clone();
    install_crd_files(
        &client,
        &["ippools.whereabouts.cni.cncf.io.yaml", "overlappingrangeipreservations.whereabouts.cni.cncf.io.yaml"],
    )
    .await;

    // A user's pool with an allocation.
    let pools: Api<IPPool> = Api::namespaced(client.clone(), &env.namespace);
    let mut pool = IPPool::new(
        "192.168.2.224-28",
        IPPoolSpec {
            range: "192.168.2.224/28".into(),
            allocations: [(
                "1".to_string(),
                api::whereabouts::IPAllocation {
                    id: "c0ffee".into(),
                    podref: Some("default/pod-a".into()),
                    ifname: Some("net1".into()),
                },
            )]
            .into(),
        },
    );
    pool.metadata.namespace = Some(env.namespace.clone());
    pools.create(&PostParams::default(), &pool).await.expect("the IPPool is accepted");

    // The CronJob an older release left, with the state label.
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), &env.namespace);
    let cron_job: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "whereabouts-ip-reconciler", "labels": {"nvidia.network-operator.state": "state-whereabouts-cni"}},
        "spec": {"schedule": "30 4 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
            "containers": [{"name": "whereabouts", "image": "ghcr.io/k8snetworkplumbingwg/whereabouts:v0.6.1"}]}}}}}
    }))
    .unwrap();
    cron_jobs.create(&PostParams::default(), &cron_job).await.unwrap();

    let _controller = ready(&env, &WHEREABOUTS).await;
    eventually("the old CronJob to be deleted", WAIT, || async {
        match cron_jobs.get_opt("whereabouts-ip-reconciler").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;

    removed(&env, &WHEREABOUTS).await;
    let kept = pools.get("192.168.2.224-28").await.expect("the IPPool survives the section's removal");
    assert_eq!(kept.spec.allocations["1"].id, "c0ffee");

    // The section back, then the policy deleted: the garbage collector takes the operands only.
    set_secondary(
        &client,
        "ipamPlugin",
        json!({"image": "whereabouts", "repository": "ghcr.io/k8snetworkplumbingwg", "version": "v0.7.0"}),
    )
    .await;
    eventually("the DaemonSet again", WAIT, || async {
        daemon_set(&client, &env.namespace, "whereabouts").await.map(|_| ()).ok_or("absent".to_string())
    })
    .await;
    Api::<NicClusterPolicy>::all(client.clone()).delete(POLICY_NAME, &DeleteParams::default()).await.unwrap();
    eventually("the garbage collector to delete the DaemonSet", WAIT, || async {
        match daemon_set(&client, &env.namespace, "whereabouts").await {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    let kept = pools.get("192.168.2.224-28").await.expect("the IPPool survives the policy's deletion");
    assert_eq!(kept.spec.range, "192.168.2.224/28");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    assert!(crds.get_opt("ippools.whereabouts.cni.cncf.io").await.unwrap().is_some(), "the CRD is never deleted");
}
