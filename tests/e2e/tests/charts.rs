//! The Helm chart on a real API server: every object of the umbrella (and of a subset) is
//! accepted, and each controller does its whole job with only its chart's RBAC (the test runs
//! the binary as the controller's ServiceAccount), while that ServiceAccount is refused what it
//! does not need.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::helm::{helm, impersonating, install};
use e2e::kubelet::{create_node, nic_node_labels, run_pods};
use e2e::{
    TestEnv, WAIT, client_for, create_macvlan_network, eventually, fresh_policy, seed_policy, unique_name,
    wait_for_entry,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

fn env_of(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The release's Deployments, each with its ServiceAccount.
async fn deployments(client: &Client, namespace: &str) -> Vec<(String, String)> {
    let list = Api::<Deployment>::namespaced(client.clone(), namespace).list(&Default::default()).await.unwrap();
    let mut found: Vec<(String, String)> = list
        .items
        .iter()
        .map(|d| {
            let account =
                d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|p| p.service_account_name.clone());
            (d.name_any(), account.unwrap_or_default())
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn helm_installs_the_whole_chart_and_a_subset() {
    let Some(env) = TestEnv::new("netop-e2e-chart").await else { return };
    if helm().is_none() {
        return;
    }
    let client = env.client.clone();
    let release = unique_name("all");
    install(&env.cleanup, &release, &env.namespace, &["--set", "rdma-dp.replicas=2"]);
    let found = deployments(&client, &env.namespace).await;
    let wanted: Vec<(String, String)> = [
        "aggregator",
        "cni-plugins",
        "doca-telemetry",
        "ib-kubernetes",
        "ipoib",
        "multus",
        "network-nads",
        "nic-configuration",
        "nic-feature-discovery",
        "nv-ipam",
        "ofed",
        "rdma-dp",
        "spectrum-x",
        "sriov-dp",
        "whereabouts",
    ]
    .iter()
    .map(|c| (format!("{release}-{c}"), format!("{release}-{c}")))
    .collect();
    assert_eq!(found, wanted);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &env.namespace);
    for (_, account) in &found {
        assert!(accounts.get_opt(account).await.unwrap().is_some(), "no ServiceAccount {account}");
    }
    let roles: Api<ClusterRole> = Api::all(client.clone());
    assert!(roles.get_opt(&format!("{release}-rdma-dp")).await.unwrap().is_some());

    // A second release with one controller only, in another namespace.
    let namespace = unique_name("netop-e2e-chart-some");
    e2e::create_namespace(&client, &namespace).await;
    env.cleanup.namespace(&namespace);
    let some = unique_name("some");
    let args = e2e::helm::only_controllers(&["rdma-dp"]);
    install(&env.cleanup, &some, &namespace, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(deployments(&client, &namespace).await, [(format!("{some}-rdma-dp"), format!("{some}-rdma-dp"))]);
}

/// The workload a state deploys.
#[derive(Clone, Copy)]
enum Workload {
    DaemonSet(&'static str),
    Deployment(&'static str),
}

impl Workload {
    async fn exists(self, client: &Client, namespace: &str) -> bool {
        match self {
            Self::DaemonSet(name) => {
                Api::<DaemonSet>::namespaced(client.clone(), namespace).get_opt(name).await.is_ok_and(|d| d.is_some())
            }
            Self::Deployment(name) => {
                Api::<Deployment>::namespaced(client.clone(), namespace).get_opt(name).await.is_ok_and(|d| d.is_some())
            }
        }
    }
}

/// Sets the policy's section `key` (a dotted path under `spec`, e.g. `secondaryNetwork.multus`)
/// to `value` (`null` removes it).
async fn set_section(client: &Client, key: &str, value: serde_json::Value) {
    let section = key.rsplit('.').fold(value, |inner, part| json!({part: inner}));
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": section})))
        .await
        .unwrap_or_else(|e| panic!("setting spec.{key}: {e}"));
}

fn assert_never_forbidden(process: &ControllerProcess) {
    let log = process.log();
    assert!(!log.to_lowercase().contains("forbidden"), "the chart's RBAC is missing something:\n{log}");
}

async fn forbidden<K>(api: Api<K>) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    matches!(api.list(&Default::default()).await, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn every_controller_does_its_job_with_only_its_charts_rbac() {
    let Some(env) = TestEnv::new("netop-e2e-rbac").await else { return };
    if helm().is_none() {
        return;
    }
    let client = env.client.clone();
    let ns = env.namespace.clone();
    let release = unique_name("rbac");
    // The webhook too; its Service is not routed here, so the API server may not wait for it.
    install(
        &env.cleanup,
        &release,
        &ns,
        &["--set", "admission.enabled=true", "--set", "admission.failurePolicy=Ignore"],
    );
    let as_account = |controller: &str| impersonating(&ns, &format!("{release}-{controller}"));
    let elect = |config: &std::path::Path| {
        vec![
            ("KUBECONFIG".to_string(), config.display().to_string()),
            ("LEADER_ELECT".to_string(), "true".to_string()),
            ("LEASE_NAMESPACE".to_string(), ns.clone()),
        ]
    };

    // rdma-dp: apply, ready, section removed, prune.
    create_node(&env, &unique_name("netop-nic"), &nic_node_labels()).await;
    fresh_policy(&env, &seed_policy()).await;
    let rdma_config = as_account("rdma-dp");
    let rdma_env = elect(&rdma_config);
    let rdma = ControllerProcess::start("rdma-dp-controller", &ns, &env_of(&rdma_env));
    let aggregator_config = as_account("aggregator");
    let aggregator_env = elect(&aggregator_config);
    let aggregator = ControllerProcess::start("aggregator", &ns, &env_of(&aggregator_env));
    eventually("the plugin pod to run", WAIT, || async {
        match run_pods(&client, &ns, "app=rdma-shared-dp", None).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, "state-RDMA-device-plugin", "ready").await;
    eventually("the aggregator to write the global state", WAIT, || async {
        let policy = Api::<NicClusterPolicy>::all(client.clone()).get(POLICY_NAME).await.map_err(|e| e.to_string())?;
        policy.status.and_then(|s| s.state).map(|_| ()).ok_or("no global state".to_string())
    })
    .await;
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"rdmaSharedDevicePlugin": null}})))
        .await
        .unwrap();
    wait_for_entry(&client, "state-RDMA-device-plugin", "ignore").await;
    assert!(Api::<DaemonSet>::namespaced(client.clone(), &ns).get_opt("rdma-shared-dp-ds").await.unwrap().is_none());
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "default")
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        events.items.iter().any(|e| e.reason.as_deref().is_some_and(|r| r.starts_with("State"))),
        "the aggregator recorded no event"
    );
    assert_never_forbidden(&rdma);
    assert_never_forbidden(&aggregator);

    // ofed: a pool's DaemonSet and its node's label, then the section removed.
    let registry = e2e::registry::serve("mellanox/mofed", vec![]).await;
    let driver_node = unique_name("netop-ofed");
    let nfd = [
        ("feature.node.kubernetes.io/pci-15b3.present", "true"),
        (ofed::pools::OS_LABEL, "ubuntu"),
        (ofed::pools::OS_VERSION_LABEL, "22.04"),
        (ofed::pools::KERNEL_LABEL, "5.15.0-78-generic"),
        (ofed::pools::ARCH_LABEL, "amd64"),
    ];
    create_node(&env, &driver_node, &nfd).await;
    let repository = json!({"spec": {"ofedDriver": {"repository": format!("{registry}/mellanox")}}});
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&repository))
        .await
        .unwrap();
    let ofed_config = as_account("ofed");
    let ofed_env = elect(&ofed_config);
    let ofed = ControllerProcess::start("ofed-controller", &ns, &env_of(&ofed_env));
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    eventually("the driver DaemonSet and the node's wait label", WAIT, || async {
        let ds = daemon_sets.get_opt("mofed-ubuntu22.04-54669c9886-ds").await.map_err(|e| e.to_string())?;
        let node = nodes.get(&driver_node).await.map_err(|e| e.to_string())?;
        let label = node.labels().get("network.nvidia.com/operator.mofed.wait").cloned();
        if ds.is_some() && label.as_deref() == Some("true") {
            Ok(())
        } else {
            Err(format!("{:?} {label:?}", ds.is_some()))
        }
    })
    .await;
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"ofedDriver": null}})))
        .await
        .unwrap();
    wait_for_entry(&client, "state-OFED", "ignore").await;
    assert!(daemon_sets.get_opt("mofed-ubuntu22.04-54669c9886-ds").await.unwrap().is_none());
    assert_never_forbidden(&ofed);

    // The states whose section the seed policy does not have: each added, run as its
    // ServiceAccount until its workload exists, then removed.
    let sections = [
        (
            "nic-feature-discovery",
            "nicFeatureDiscovery",
            "state-nic-feature-discovery",
            Workload::DaemonSet("nic-feature-discovery-ds"),
            json!({"image": "nic-feature-discovery", "repository": "ghcr.io/mellanox", "version": "v0.0.1"}),
        ),
        (
            "doca-telemetry",
            "docaTelemetryService",
            "state-doca-telemetry-service",
            Workload::DaemonSet("doca-telemetry-service"),
            json!({"image": "doca_telemetry", "repository": "nvcr.io/nvidia/doca", "version": "1.16.5-doca2.6.0-host"}),
        ),
        (
            "ib-kubernetes",
            "ibKubernetes",
            "state-ib-kubernetes",
            Workload::Deployment("ib-kubernetes"),
            json!({"image": "ib-kubernetes", "repository": "ghcr.io/mellanox", "version": "v1.0.2", "ufmSecret": "ufm-secret"}),
        ),
        (
            "sriov-dp",
            "sriovDevicePlugin",
            "state-SRIOV-device-plugin",
            Workload::DaemonSet("sriov-device-plugin"),
            json!({"image": "sriov-network-device-plugin", "repository": "ghcr.io/k8snetworkplumbingwg", "version": "v3.7.0",
                "config": "{\"resourceList\": [{\"resourceName\": \"hostdev\", \"selectors\": {\"vendors\": [\"15b3\"]}}]}"}),
        ),
        // Multus and Whereabouts render ClusterRoles: their ServiceAccounts write them through
        // `escalate` and bind them through `bind`, on those names only.
        (
            "multus",
            "secondaryNetwork.multus",
            "state-multus-cni",
            Workload::DaemonSet("kube-multus-ds"),
            json!({"image": "multus-cni", "repository": "ghcr.io/k8snetworkplumbingwg", "version": "v3.9.3",
                "config": "{\"cniVersion\": \"0.3.1\", \"name\": \"multus-cni-network\", \"type\": \"multus\"}"}),
        ),
        (
            "cni-plugins",
            "secondaryNetwork.cniPlugins",
            "state-container-networking-plugins",
            Workload::DaemonSet("cni-plugins-ds"),
            json!({"image": "plugins", "repository": "ghcr.io/k8snetworkplumbingwg", "version": "v1.5.0"}),
        ),
        (
            "ipoib",
            "secondaryNetwork.ipoib",
            "state-ipoib-cni",
            Workload::DaemonSet("kube-ipoib-cni-ds"),
            json!({"image": "ipoib-cni", "repository": "ghcr.io/mellanox", "version": "v1.2.0"}),
        ),
        (
            "whereabouts",
            "secondaryNetwork.ipamPlugin",
            "state-whereabouts-cni",
            Workload::DaemonSet("whereabouts"),
            json!({"image": "whereabouts", "repository": "ghcr.io/k8snetworkplumbingwg", "version": "v0.7.0"}),
        ),
        // nv-ipam renders two ClusterRoles, a Deployment and a DaemonSet; it looks for cert-manager's
        // API and for the ConfigMap of older releases, with its ServiceAccount's rights.
        (
            "nv-ipam",
            "nvIpam",
            "state-nv-ipam-cni",
            Workload::Deployment("nv-ipam-controller"),
            json!({"image": "nvidia-k8s-ipam", "repository": "ghcr.io/mellanox", "version": "v0.2.0", "enableWebhook": false}),
        ),
        // The NIC configuration operator: a ClusterRole, a Deployment, a DaemonSet, and the
        // firmware-storage PVC it creates but never owns.
        (
            "nic-configuration",
            "nicConfigurationOperator",
            "state-nic-configuration-operator",
            Workload::Deployment("nic-configuration-operator"),
            json!({
                "operator": {"image": "nic-configuration-operator", "repository": "nvcr.io/nvidia/mellanox", "version": "network-operator-v26.4.1"},
                "configurationDaemon": {"image": "nic-configuration-operator-daemon", "repository": "nvcr.io/nvidia/mellanox", "version": "network-operator-v26.4.1"},
                "nicFirmwareStorage": {"create": true, "pvcName": "rbac-fw-storage"},
            }),
        ),
        (
            "spectrum-x",
            "spectrumXOperator",
            "state-spectrum-x-operator",
            Workload::DaemonSet("spectrum-x-flowcontroller"),
            json!({"image": "spectrum-x-operator", "repository": "nvcr.io/nvidia/mellanox", "version": "network-operator-v26.4.1"}),
        ),
    ];
    for (chart, key, state, workload, section) in sections {
        let config = as_account(chart);
        // nv-ipam's own Deployment is `nv-ipam-controller`, hence the binary's longer name.
        let binary =
            if chart == "nv-ipam" { "nv-ipam-state-controller".to_string() } else { format!("{chart}-controller") };
        let process = ControllerProcess::start(&binary, &ns, &env_of(&elect(&config)));
        set_section(&client, key, section).await;
        eventually(&format!("the workload of {chart}"), WAIT, || async {
            if workload.exists(&client, &ns).await { Ok(()) } else { Err("absent".to_string()) }
        })
        .await;
        let cluster_role = match chart {
            "multus" => Some("multus"),
            "whereabouts" => Some("whereabouts-cni"),
            "nv-ipam" => Some("nv-ipam-controller"),
            "nic-configuration" => Some("nic-configuration-operator"),
            "spectrum-x" => Some("spectrum-x-operator"),
            _ => None,
        };
        if let Some(name) = cluster_role {
            let live = Api::<ClusterRole>::all(client.clone()).get_opt(name).await.unwrap();
            assert!(live.is_some(), "{chart}: its ServiceAccount did not create ClusterRole {name}");
        }
        set_section(&client, key, serde_json::Value::Null).await;
        wait_for_entry(&client, state, "ignore").await;
        assert!(!workload.exists(&client, &ns).await, "{chart}: the workload was not pruned");
        assert_never_forbidden(&process);
        let _ = std::fs::remove_file(config);
    }

    // network-nads: a network's NAD, then its deletion.
    let nads_config = as_account("network-nads");
    let nads_env = elect(&nads_config);
    let nads = ControllerProcess::start("network-nads-controller", &ns, &env_of(&nads_env));
    let name = unique_name("rbac-net");
    let networks = create_macvlan_network(&env, &name, &ns).await;
    let nad_api: Api<api::NetworkAttachmentDefinition> = Api::namespaced(client.clone(), &ns);
    eventually("the network to be ready", WAIT, || async {
        let live = networks.get(&name).await.map_err(|e| e.to_string())?;
        live.status.and_then(|s| s.macvlan_network_attachment_def).map(|_| ()).ok_or("not yet".to_string())
    })
    .await;
    assert!(nad_api.get_opt(&name).await.unwrap().is_some());
    networks.delete(&name, &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_never_forbidden(&nads);

    // The admission webhook, self-managed: it stores its certificates in its Secret and
    // publishes its CA in its ValidatingWebhookConfiguration, with only its chart's RBAC.
    let webhook_config = as_account("admission");
    let webhook_name = format!("{release}-admission");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr()).unwrap().port();
    let webhook_env = vec![
        ("KUBECONFIG".to_string(), webhook_config.display().to_string()),
        ("WEBHOOK_LISTEN".to_string(), format!("127.0.0.1:{port}")),
        ("WEBHOOK_SELF_MANAGED_SECRET".to_string(), format!("{webhook_name}-certs")),
        ("WEBHOOK_CONFIG_NAME".to_string(), webhook_name.clone()),
        ("WEBHOOK_SERVICE".to_string(), webhook_name.clone()),
    ];
    let webhook = ControllerProcess::start("admission-webhook", &ns, &env_of(&webhook_env));
    eventually("the webhook's CA in its caBundle", WAIT, || async {
        let config =
            Api::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>::all(client.clone())
                .get(&webhook_name)
                .await
                .map_err(|e| e.to_string())?;
        let bundle = config.webhooks.unwrap_or_default().first().and_then(|w| w.client_config.ca_bundle.clone());
        let secret = Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(&format!("{webhook_name}-certs"))
            .await
            .map_err(|e| e.to_string())?;
        let ca = secret.and_then(|s| s.data).and_then(|d| d.get("ca.crt").cloned());
        if bundle.is_some() && bundle == ca { Ok(()) } else { Err("not published yet".to_string()) }
    })
    .await;
    assert_never_forbidden(&webhook);
    let webhook_client = client_for(&webhook_config.display().to_string()).await;
    let other = Api::<Secret>::namespaced(webhook_client, &ns).get(&format!("{webhook_name}-other")).await;
    assert!(matches!(other, Err(kube::Error::Api(s)) if s.code == 403), "the webhook may read other Secrets");
    let _ = std::fs::remove_file(webhook_config);

    // Each ServiceAccount is refused what it does not need.
    let rdma_client = client_for(&rdma_config.display().to_string()).await;
    assert!(forbidden(Api::<Secret>::namespaced(rdma_client.clone(), &ns)).await, "rdma-dp may read Secrets");
    assert!(
        forbidden(Api::<api::NetworkAttachmentDefinition>::all(rdma_client.clone())).await,
        "rdma-dp may read NADs"
    );
    assert!(
        forbidden(Api::<DaemonSet>::namespaced(rdma_client, "default")).await,
        "rdma-dp reaches outside its namespace"
    );
    let nads_client = client_for(&nads_config.display().to_string()).await;
    assert!(
        forbidden(Api::<DaemonSet>::namespaced(nads_client.clone(), &ns)).await,
        "network-nads may read DaemonSets"
    );
    assert!(forbidden(Api::<Secret>::all(nads_client)).await, "network-nads may read Secrets");
    // The multus ServiceAccount writes the ClusterRole it renders (above, through `escalate` on
    // that name), but no other ClusterRole, whatever it grants.
    let multus_config = as_account("multus");
    let multus_client = client_for(&multus_config.display().to_string()).await;
    let greedy: ClusterRole = serde_json::from_value(json!({"metadata": {"name": unique_name("netop-greedy")},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}))
    .unwrap();
    let refused = Api::<ClusterRole>::all(multus_client)
        .create(&PostParams { dry_run: true, ..Default::default() }, &greedy)
        .await
        .expect_err("a ClusterRole it does not render is refused");
    assert!(matches!(&refused, kube::Error::Api(s) if s.code == 403), "{refused}");
    let _ = std::fs::remove_file(multus_config);
    let aggregator_client = client_for(&aggregator_config.display().to_string()).await;
    assert!(
        forbidden(Api::<DaemonSet>::namespaced(aggregator_client, &ns)).await,
        "the aggregator may read DaemonSets"
    );
    for path in [rdma_config, aggregator_config, nads_config, ofed_config] {
        let _ = std::fs::remove_file(path);
    }
}
