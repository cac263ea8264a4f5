//! The single-process install: the chart with `values-all-in-one.yaml` (one Deployment, one
//! ServiceAccount with the union of every controller's RBAC), and the real `network-operator`
//! binary run as that ServiceAccount. Every state of a policy with nearly every section
//! converges to `ready` in the one process, a network gets its NAD, a removed section is
//! pruned, and the process's one `/metrics` reports every state.

use api::{NicClusterPolicy, POLICY_NAME, SyncState};
use e2e::binary::ControllerProcess;
use e2e::helm::{helm, impersonating, install};
use e2e::kubelet::{create_node, nic_node_labels, run_pods};
use e2e::{
    TestEnv, WAIT, create_macvlan_network, eventually, every_section_prerequisites, fresh_policy, unique_name,
    wait_for_entry,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::time::Duration;

/// Every section of the every-section example but the OFED driver (it would need NFD labels
/// and a registry), and nv-ipam without its webhook (no cert-manager here).
fn policy() -> NicClusterPolicy {
    let text = include_str!("../../../example/crs/nicclusterpolicy_every-section.yaml");
    let mut policy = match api::parse::parse_all(text).expect("the example parses").remove(0) {
        api::parse::Document::Policy(policy) => *policy,
        other => panic!("not a policy: {other:?}"),
    };
    policy.spec.ofed_driver = None;
    if let Some(nv_ipam) = policy.spec.nv_ipam.as_mut() {
        nv_ipam.enable_webhook = Some(false);
    }
    policy
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn one_process_runs_every_controller_with_the_all_in_one_charts_rbac() {
    let Some(env) = TestEnv::new("netop-e2e-one").await else { return };
    if helm().is_none() {
        return;
    }
    let client = env.client.clone();
    let ns = env.namespace.clone();
    let release = unique_name("one");
    install(&env.cleanup, &release, &ns, &["-f", "charts/network-operator/values-all-in-one.yaml"]);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns).list(&Default::default()).await.unwrap();
    let names: Vec<String> = deployments.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, [format!("{release}-all-in-one")], "the single-process install is one Deployment");

    let node = unique_name("netop-nic");
    create_node(&env, &node, &nic_node_labels()).await;
    every_section_prerequisites(&client, &ns).await;
    let policy = policy();
    fresh_policy(&env, &policy).await;
    let config = impersonating(&ns, &format!("{release}-all-in-one"));
    let process_env = [
        ("KUBECONFIG", config.to_str().unwrap()),
        ("LEADER_ELECT", "true"),
        ("LEASE_NAMESPACE", ns.as_str()),
        ("RUST_LOG", "info"),
    ];
    let operator = ControllerProcess::start("network-operator", &ns, &process_env);
    operator.wait_ready().await;

    // Play the scheduler and kubelet until the aggregator (in the same process) says ready.
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    eventually("the whole policy to be ready", Duration::from_secs(120), || async {
        run_pods(&client, &ns, "", Some(&node)).await;
        let live = policies.get(POLICY_NAME).await.map_err(|e| e.to_string())?;
        let status = live.status.unwrap_or_default();
        match status.state {
            Some(SyncState::Ready) => Ok(()),
            other => Err(format!("{other:?}: {:?}", status.reason)),
        }
    })
    .await;
    let live = policies.get(POLICY_NAME).await.unwrap();
    let status = live.status.unwrap_or_default();
    let entries: Vec<(String, String)> =
        status.applied_states.iter().flatten().map(|s| (s.name.clone(), s.state.to_string())).collect();
    for name in api::state::names::ALL {
        let wanted = if policy.spec.has_section(name) { "ready" } else { "ignore" };
        assert!(entries.iter().any(|(n, s)| n == name && s == wanted), "{name} is not {wanted} in {entries:?}");
    }

    // network-nads, in the same process: a network's NAD.
    let name = unique_name("one-net");
    create_macvlan_network(&env, &name, &ns).await;
    eventually("the network's NAD", WAIT, || async {
        let nads: Api<api::NetworkAttachmentDefinition> = Api::namespaced(client.clone(), &ns);
        nads.get_opt(&name).await.map_err(|e| e.to_string())?.map(|_| ()).ok_or("absent".to_string())
    })
    .await;

    // A section removed: its state is ignore and its DaemonSet pruned; the others stay.
    policies
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"rdmaSharedDevicePlugin": null}})))
        .await
        .unwrap();
    wait_for_entry(&client, "state-RDMA-device-plugin", "ignore").await;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    assert!(daemon_sets.get_opt("rdma-shared-dp-ds").await.unwrap().is_none(), "not pruned");
    assert!(daemon_sets.get_opt("kube-multus-ds").await.unwrap().is_some(), "another state's DaemonSet went too");

    // One /metrics for every state, one lease for the process.
    let metrics = operator.metrics().await;
    for state in ["state-multus-cni", "state-nv-ipam-cni", "state-RDMA-device-plugin"] {
        assert!(metrics.contains(&format!("network_operator_state{{state=\"{state}\"")), "{state} absent:\n{metrics}");
    }
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), &ns);
    assert!(leases.get_opt("network-operator-leader").await.unwrap().is_some(), "no process lease");
    let log = operator.log();
    assert!(!log.to_lowercase().contains("forbidden"), "the all-in-one RBAC is missing something:\n{log}");
    let _ = std::fs::remove_file(config);
}
