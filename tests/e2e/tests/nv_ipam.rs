//! `nv-ipam-state-controller` against a real API server: the pools' CRDs from `crds/` accept the
//! example IPPool and a CIDRPool; the state is ready only once the node agents run and the
//! controller Deployment is Available (the test plays the kubelet); the webhook without
//! cert-manager is `notReady` saying so and applies nothing of it; the old configuration
//! ConfigMap is released; removing the section and then deleting the policy keeps every pool.

use api::nv_ipam::{CIDRPool, IPPool};
use api::parse::{self, Document};
use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{confirm_deletions, create_node, run_pods};
use e2e::{TestEnv, WAIT, applied_state, eventually, fresh_policy, install_crd_files, unique_name, wait_for_entry};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Instant;

const STATE: &str = "state-nv-ipam-cni";
const EXAMPLE_POLICY: &str =
    include_str!("../../../example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-nvidia-ipam.yaml");
const EXAMPLE_POOL: &str = include_str!("../../../example/crs/nvidia.com_v1alpha1_nv_ipam_ippool_cr.yaml");

fn example_policy() -> NicClusterPolicy {
    match parse::parse_all(EXAMPLE_POLICY).expect("the example parses").remove(0) {
        Document::Policy(policy) => *policy,
        other => panic!("not a policy: {other:?}"),
    }
}

async fn set_nv_ipam(client: &Client, value: Value) {
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"nvIpam": value}})))
        .await
        .unwrap_or_else(|e| panic!("setting spec.nvIpam: {e}"));
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.expect("readable").is_some()
}

async fn gone<K>(api: &Api<K>, name: &str, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(what, WAIT, || async { if exists(api, name).await { Err("still there".to_string()) } else { Ok(()) } })
        .await;
}

/// The user's pools: the example IPPool (in the test's namespace) and a CIDRPool.
async fn create_pools(client: &Client, namespace: &str) {
    let mut pool: IPPool = serde_saphyr::from_str(EXAMPLE_POOL).expect("the example IPPool parses");
    pool.metadata.namespace = Some(namespace.to_string());
    Api::<IPPool>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pool)
        .await
        .expect("the example IPPool is accepted");
    let cidr: CIDRPool = serde_json::from_value(json!({
        "apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "CIDRPool",
        "metadata": {"name": "pool-1", "namespace": namespace},
        "spec": {"cidr": "10.200.0.0/16", "perNodeNetworkPrefix": 24, "gatewayIndex": 1,
            "exclusions": [{"startIP": "10.200.0.10", "endIP": "10.200.0.20"}],
            "staticAllocations": [{"nodeName": "node-33", "prefix": "10.200.33.0/24", "gateway": "10.200.33.10"}]}
    }))
    .unwrap();
    Api::<CIDRPool>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &cidr)
        .await
        .expect("the CIDRPool is accepted");
}

async fn assert_pools_kept(client: &Client, namespace: &str, when: &str) {
    let pool = Api::<IPPool>::namespaced(client.clone(), namespace).get("my-pool").await;
    assert_eq!(pool.unwrap_or_else(|e| panic!("the IPPool is gone {when}: {e}")).spec.subnet, "192.168.0.0/24");
    let cidr = Api::<CIDRPool>::namespaced(client.clone(), namespace).get("pool-1").await;
    assert_eq!(cidr.unwrap_or_else(|e| panic!("the CIDRPool is gone {when}: {e}")).spec.per_node_network_prefix, 24);
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn nv_ipam_is_ready_with_its_controller_needs_cert_manager_for_the_webhook_and_never_deletes_a_pool() {
    let Some(env) = TestEnv::new("netop-e2e-nv-ipam").await else { return };
    let client = env.client.clone();
    let ns = env.namespace.as_str();
    install_crd_files(&client, &["ippools.nv-ipam.nvidia.com.yaml", "cidrpools.nv-ipam.nvidia.com.yaml"]).await;
    create_pools(&client, ns).await;

    let nodes = [unique_name("netop-ipam"), unique_name("netop-ipam")];
    for node in &nodes {
        create_node(&env, node, &[]).await;
    }
    let policy = fresh_policy(&env, &example_policy()).await;
    // The configuration ConfigMap of an older release, labelled and owned as the original left it.
    let old: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "nvidia-k8s-ipam-config", "labels": {"nvidia.network-operator.state": STATE},
            "ownerReferences": [{"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
                "name": POLICY_NAME, "uid": policy.uid().unwrap()}]},
        "data": {"config": "{\"pools\": {\"my-pool\": {\"subnet\": \"192.168.0.0/24\", \"perNodeBlockSize\": 100}}}"}
    }))
    .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    config_maps.create(&PostParams::default(), &old).await.unwrap();

    let started = Instant::now();
    let _controller = ControllerProcess::start("nv-ipam-state-controller", ns, &[]);
    eventually("the node agents to run", WAIT, || async {
        match run_pods(&client, ns, "name=nv-ipam-node", None).await {
            2 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    // Node agents alone are not enough: the state waits for the controller Deployment.
    eventually("the state to wait for the controller Deployment", WAIT, || async {
        match applied_state(&client, STATE).await? {
            (state, Some(message)) if state == "notReady" && message.contains("Deployment nv-ipam-controller") => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eventually("the controller's two pods to run", WAIT, || async {
        match run_pods(&client, ns, "name=nv-ipam-controller", Some(&nodes[0])).await {
            2 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, STATE, "ready").await;
    eprintln!("nv-ipam-state-controller: ready {:?} after start", started.elapsed());

    let released = config_maps.get("nvidia-k8s-ipam-config").await.expect("the old ConfigMap is kept");
    assert!(!released.labels().contains_key("nvidia.network-operator.state"), "{:?}", released.labels());
    assert!(released.owner_references().is_empty(), "{:?}", released.owner_references());

    // The webhook, on a cluster without cert-manager: notReady, saying so; none of it applied.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let generation = deployments.get("nv-ipam-controller").await.unwrap();
    set_nv_ipam(&client, json!({"enableWebhook": true})).await;
    let message = wait_for_entry(&client, STATE, "notReady").await.unwrap_or_default();
    assert!(
        message.starts_with("spec.nvIpam.enableWebhook: the webhook's serving certificate needs cert-manager"),
        "{message}"
    );
    assert!(!exists(&Api::<Service>::namespaced(client.clone(), ns), "nv-ipam-webhook-service").await);
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    assert!(!exists(&configurations, "nv-ipam-validating-webhook-configuration").await);
    let unchanged = deployments.get("nv-ipam-controller").await.unwrap();
    assert_eq!(unchanged.metadata.generation, generation.metadata.generation, "the controller keeps running as it was");
    set_nv_ipam(&client, json!({"enableWebhook": false})).await;
    wait_for_entry(&client, STATE, "ready").await;

    // The section removed: everything of the state goes, the pools stay.
    set_nv_ipam(&client, Value::Null).await;
    wait_for_entry(&client, STATE, "ignore").await;
    gone(&daemon_sets, "nv-ipam-node", "the DaemonSet to be pruned").await;
    gone(&deployments, "nv-ipam-controller", "the Deployment to be pruned").await;
    confirm_deletions(&client, ns).await;
    assert_pools_kept(&client, ns, "after the section's removal").await;

    // The section back, then the policy deleted: the garbage collector takes the operands only.
    let section = serde_json::to_value(example_policy().spec.nv_ipam).unwrap();
    set_nv_ipam(&client, section).await;
    eventually("the Deployment again", WAIT, || async {
        if exists(&deployments, "nv-ipam-controller").await { Ok(()) } else { Err("absent".to_string()) }
    })
    .await;
    Api::<NicClusterPolicy>::all(client.clone()).delete(POLICY_NAME, &DeleteParams::default()).await.unwrap();
    gone(&deployments, "nv-ipam-controller", "the garbage collector to delete the Deployment").await;
    confirm_deletions(&client, ns).await;
    assert_pools_kept(&client, ns, "after the policy's deletion").await;
    assert!(config_maps.get_opt("nvidia-k8s-ipam-config").await.unwrap().is_some(), "the released ConfigMap stays");
}
