//! What a production operator must never do, checked on a real API server: touch running
//! operands on a restart or a leader hand-over, roll out input it could have refused, take over
//! objects it did not create.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{create_node, nic_node_labels, run_pods};
use e2e::{TestEnv, WAIT, eventually, fresh_policy, seed_policy, unique_name, wait_for_entry};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

const STATE: &str = "state-RDMA-device-plugin";

/// uid and resourceVersion of the plugin's DaemonSet and ConfigMap.
async fn identities(client: &Client, namespace: &str) -> Vec<(String, String)> {
    let ds = Api::<DaemonSet>::namespaced(client.clone(), namespace).get("rdma-shared-dp-ds").await.unwrap();
    let cm = Api::<ConfigMap>::namespaced(client.clone(), namespace).get("rdma-devices").await.unwrap();
    [ds.metadata, cm.metadata]
        .into_iter()
        .map(|m| (m.uid.unwrap_or_default(), m.resource_version.unwrap_or_default()))
        .collect()
}

/// Waits until `process` has finished a reconcile (its state gauge is set).
async fn reconciled(process: &ControllerProcess) {
    eventually("a reconcile", WAIT, || async {
        let metrics = process.metrics().await;
        let done = metrics.contains(&format!(r#"network_operator_state{{state="{STATE}",value="ready"}} 1"#));
        if done { Ok(()) } else { Err("no reconcile yet".to_string()) }
    })
    .await;
}

fn assert_wrote_nothing(process: &ControllerProcess, metrics: &str) {
    let log = process.log();
    assert!(!log.contains("applied") && !log.contains("deleted"), "it wrote or deleted:\n{log}");
    assert!(!metrics.contains("network_operator_objects_applied_total{"), "{metrics}");
    assert!(!metrics.contains("network_operator_status_writes_total{"), "{metrics}");
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_restart_and_a_leader_hand_over_leave_running_operands_untouched() {
    let Some(env) = TestEnv::new("netop-e2e-restart").await else { return };
    let client = env.client.clone();
    create_node(&env, &unique_name("netop-nic"), &nic_node_labels()).await;
    fresh_policy(&env, &seed_policy()).await;
    let mut first = ControllerProcess::start("rdma-dp-controller", &env.namespace, &[]);
    eventually("the plugin pod to run", WAIT, || async {
        match run_pods(&client, &env.namespace, "app=rdma-shared-dp", None).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, STATE, "ready").await;
    reconciled(&first).await;
    let before = identities(&client, &env.namespace).await;
    first.terminate(Duration::from_secs(5)).await;

    // A restart: the new process finds everything in place and writes nothing.
    let mut restarted = ControllerProcess::start("rdma-dp-controller", &env.namespace, &[]);
    reconciled(&restarted).await;
    assert_eq!(identities(&client, &env.namespace).await, before, "the restart rewrote or recreated an operand");
    assert_wrote_nothing(&restarted, &restarted.metrics().await);
    restarted.terminate(Duration::from_secs(5)).await;

    // A leader hand-over: the standby takes over and writes nothing either.
    let elect = [("LEADER_ELECT", "true"), ("LEASE_DURATION", "4"), ("RENEW_DEADLINE", "3"), ("RETRY_PERIOD", "1")];
    let mut leader =
        ControllerProcess::start("rdma-dp-controller", &env.namespace, &[&elect[..], &[("POD_NAME", "a")]].concat());
    reconciled(&leader).await;
    let mut standby =
        ControllerProcess::start("rdma-dp-controller", &env.namespace, &[&elect[..], &[("POD_NAME", "b")]].concat());
    standby.wait_ready().await;
    leader.terminate(Duration::from_secs(5)).await;
    reconciled(&standby).await;
    assert_eq!(identities(&client, &env.namespace).await, before, "the hand-over rewrote or recreated an operand");
    assert_wrote_nothing(&standby, &standby.metrics().await);
    standby.terminate(Duration::from_secs(5)).await;
}

async fn set_rdma_config(client: &Client, config: &str) {
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(
            POLICY_NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"rdmaSharedDevicePlugin": {"config": config}}})),
        )
        .await
        .expect("policy patched");
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_config_the_plugin_cannot_use_is_an_error_and_nothing_is_rolled_out() {
    let Some(env) = TestEnv::new("netop-e2e-badconfig").await else { return };
    let client = env.client.clone();
    let mut policy = seed_policy();
    policy.spec.rdma_shared_device_plugin.as_mut().unwrap().config = Some("[]".into());
    fresh_policy(&env, &policy).await;
    let _controller = ControllerProcess::start("rdma-dp-controller", &env.namespace, &[]);
    let message = wait_for_entry(&client, STATE, "error").await.unwrap_or_default();
    assert_eq!(message, "spec.rdmaSharedDevicePlugin.config: must be a JSON object with configList");

    set_rdma_config(&client, r#"{"configList": [{"rdmaHcaMax": 63, "devices": ["mlx5_0"]}]}"#).await;
    let message = wait_for_entry(&client, STATE, "error").await.unwrap_or_default();
    assert_eq!(message, "spec.rdmaSharedDevicePlugin.config.configList[0].resourceName: required");

    let huge = json!({"configList": [{"resourceName": "a", "rdmaHcaMax": 1, "devices": ["x".repeat(1_200_000)]}]});
    set_rdma_config(&client, &huge.to_string()).await;
    let message = wait_for_entry(&client, STATE, "error").await.unwrap_or_default();
    assert_eq!(message, "spec.rdmaSharedDevicePlugin.config: the config is 1.2 MB; a ConfigMap holds at most 1 MiB");

    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &env.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &env.namespace);
    assert!(daemon_sets.get_opt("rdma-shared-dp-ds").await.unwrap().is_none(), "nothing is rolled out");
    assert!(config_maps.get_opt("rdma-devices").await.unwrap().is_none(), "nothing is rolled out");
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_placement_the_api_server_would_refuse_is_an_error_naming_the_policy_field_and_nothing_changes() {
    let Some(env) = TestEnv::new("netop-e2e-badplace").await else { return };
    let client = env.client.clone();
    fresh_policy(&env, &seed_policy()).await;
    let controller = ControllerProcess::start("rdma-dp-controller", &env.namespace, &[]);
    reconciled(&controller).await;
    let before = identities(&client, &env.namespace).await;

    // The API server refuses this toleration in a pod template: our check says the same, first.
    let bad = json!({"key": "dedicated", "operator": "Foo"});
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &env.namespace);
    let template = json!({"spec": {"template": {"spec": {"tolerations": [bad]}}}});
    let refused = daemon_sets
        .patch("rdma-shared-dp-ds", &PatchParams { dry_run: true, ..Default::default() }, &Patch::Merge(&template))
        .await
        .expect_err("the API server refuses the toleration");
    assert!(matches!(&refused, kube::Error::Api(s) if s.code == 422), "{refused}");
    // Server-side apply refuses an env list with a name twice (what a duplicated
    // spec.ofedDriver.env entry would be): the render reports it before.
    let twice = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "rdma-shared-dp-ds"},
        "spec": {"template": {"spec": {"containers": [{"name": "rdma-shared-dp", "env": [
            {"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}]}}}});
    let refused = daemon_sets
        .patch("rdma-shared-dp-ds", &PatchParams::apply("netop-e2e").dry_run(), &Patch::Apply(&twice))
        .await
        .expect_err("server-side apply refuses a duplicated env name");
    assert!(refused.to_string().contains("duplicate"), "{refused}");

    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"tolerations": [bad]}})))
        .await
        .expect("the CRD schema accepts it");
    let message = wait_for_entry(&client, STATE, "error").await.unwrap_or_default();
    assert!(message.starts_with("spec.tolerations[0].operator: \"Foo\" is not an operator"), "{message}");
    assert_eq!(identities(&client, &env.namespace).await, before, "the running plugin was left as it was");

    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"tolerations": null}})))
        .await
        .unwrap();
    wait_for_entry(&client, STATE, "ready").await;
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_users_object_with_a_rendered_name_is_never_taken_over() {
    let Some(env) = TestEnv::new("netop-e2e-foreign").await else { return };
    let client = env.client.clone();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &env.namespace);
    let users: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "rdma-devices"}, "data": {"mine": "yes"}})).unwrap();
    let created = config_maps.create(&PostParams::default(), &users).await.unwrap();
    fresh_policy(&env, &seed_policy()).await;
    let _controller = ControllerProcess::start("rdma-dp-controller", &env.namespace, &[]);
    let message = wait_for_entry(&client, STATE, "error").await.unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "ConfigMap {}/rdma-devices exists and is not managed by the operator; rename or delete it",
            env.namespace
        )
    );
    // Remove the section: the user's ConfigMap stays as it was.
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"rdmaSharedDevicePlugin": null}})))
        .await
        .unwrap();
    wait_for_entry(&client, STATE, "ignore").await;
    let after = config_maps.get("rdma-devices").await.unwrap();
    assert_eq!(after.resource_version(), created.resource_version(), "the user's ConfigMap was written");
    assert!(after.owner_references().is_empty() && after.labels().is_empty());
}
