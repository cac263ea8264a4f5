//! The states of the original's current release, against a real API server (the test plays the
//! kubelet): `nic-configuration-controller` and `spectrum-x-controller` apply their objects, are
//! ready once their workloads run, prune them when the section goes, and never delete their
//! CRDs, the user's CRs or the firmware-storage PVC (one the original labelled and owned is
//! released; one they create has no owner). Without its section, the NIC configuration
//! controller keeps the nodes' `nic-configuration.wait` label as the original does. The CRDs from
//! `crds/` accept CRs of each kind and refuse what the original's refuse.

use api::parse::{self, Document};
use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{confirm_deletions, create_node, run_pods};
use e2e::{TestEnv, WAIT, eventually, fresh_policy, install_crd_files, unique_name, wait_for_entry};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const NIC_LABEL: (&str, &str) = ("feature.node.kubernetes.io/pci-15b3.present", "true");
const STATE_LABEL: &str = "nvidia.network-operator.state";
const WAIT_LABEL: &str = "network.nvidia.com/operator.nic-configuration.wait";

/// Waits until the wait label of each node of `nodes` is the one wanted (`None`: no label).
async fn wait_labels(client: &Client, nodes: &[String; 2], wanted: [Option<&str>; 2], what: &str) {
    let api: Api<Node> = Api::all(client.clone());
    eventually(what, WAIT, || async {
        let mut found = Vec::new();
        for node in nodes {
            let live = api.get(node).await.map_err(|e| e.to_string())?;
            found.push(live.labels().get(WAIT_LABEL).cloned());
        }
        let wanted: Vec<Option<String>> = wanted.iter().map(|w| w.map(String::from)).collect();
        if found == wanted { Ok(()) } else { Err(format!("{found:?}")) }
    })
    .await;
}

/// Sets the wait label of `node`, as the configuration daemon does.
async fn set_wait_label(client: &Client, node: &str, value: &str) {
    let patch = json!({"metadata": {"labels": {WAIT_LABEL: value}}});
    Api::<Node>::all(client.clone()).patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

fn example(text: &str) -> NicClusterPolicy {
    match parse::parse_all(text).expect("the example parses").remove(0) {
        Document::Policy(policy) => *policy,
        other => panic!("not a policy: {other:?}"),
    }
}

async fn set_section(client: &Client, key: &str, value: Value) {
    Api::<NicClusterPolicy>::all(client.clone())
        .patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&json!({"spec": {key: value}})))
        .await
        .unwrap_or_else(|e| panic!("setting spec.{key}: {e}"));
}

async fn gone<K>(api: &Api<K>, name: &str, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(what, WAIT, || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|o| o.map(|o| o.meta().name.clone())))),
        }
    })
    .await;
}

/// Creates one CR of `kind` (plural `plural`) in `group`, which the CRD from `crds/` must accept.
async fn create_cr(
    client: &Client,
    namespace: &str,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    body: Value,
) {
    let resource = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    };
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/{version}"), "kind": kind,
        "metadata": {"name": format!("e2e-{}", kind.to_lowercase()), "namespace": namespace},
        "spec": body,
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("the {kind} CRD refuses a valid {kind}: {e}"));
}

/// Whether the CR of `kind` created by [`create_cr`] is still there.
async fn cr_exists(client: &Client, namespace: &str, group: &str, version: &str, kind: &str, plural: &str) -> bool {
    let resource = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
        .get_opt(&format!("e2e-{}", kind.to_lowercase()))
        .await
        .unwrap()
        .is_some()
}

const CONFIGURATION: &str = "configuration.net.nvidia.com";

/// One CR of each NIC configuration kind, as its operator's documentation shows them.
fn nic_configuration_crs() -> [(&'static str, &'static str, Value); 5] {
    [
        (
            "NicConfigurationTemplate",
            "nicconfigurationtemplates",
            json!({"nodeSelector": {"feature.node.kubernetes.io/network-sriov.capable": "true"},
                "nicSelector": {"nicType": "1021"}, "resetToDefault": false,
                "template": {"numVfs": 8, "linkType": "Ethernet",
                    "pciPerformanceOptimized": {"enabled": true, "maxAccOutRead": 44, "maxReadRequest": 4096},
                    "roceOptimized": {"enabled": true, "qos": {"trust": "dscp", "pfc": "0,0,0,1,0,0,0,0", "tos": 0}},
                    "gpuDirectOptimized": {"enabled": true, "env": "Baremetal"}}}),
        ),
        ("NicDevice", "nicdevices", json!({"configuration": {"template": {"numVfs": 0, "linkType": "Ethernet"}}})),
        (
            "NicFirmwareSource",
            "nicfirmwaresources",
            json!({"binUrlSources": ["https://firmware.example/fw-ConnectX7.zip"]}),
        ),
        (
            "NicFirmwareTemplate",
            "nicfirmwaretemplates",
            json!({"nicSelector": {"nicType": "1021"},
                "template": {"nicFirmwareSourceRef": "e2e-nicfirmwaresource", "updatePolicy": "Update"}}),
        ),
        (
            "NicInterfaceNameTemplate",
            "nicinterfacenametemplates",
            json!({"netDevicePrefix": "eth", "rdmaDevicePrefix": "mlx", "pfsPerNic": 1,
                "railPciAddresses": [["0000:1a:00.0"], ["0000:2a:00.0"]]}),
        ),
    ]
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn nic_configuration_is_ready_with_its_workloads_and_never_deletes_its_crs_or_the_firmware_storage() {
    let Some(env) = TestEnv::new("netop-e2e-nic-config").await else { return };
    let client = env.client.clone();
    let ns = env.namespace.as_str();
    install_crd_files(
        &client,
        &[
            "nicconfigurationtemplates.configuration.net.nvidia.com.yaml",
            "nicdevices.configuration.net.nvidia.com.yaml",
            "nicfirmwaresources.configuration.net.nvidia.com.yaml",
            "nicfirmwaretemplates.configuration.net.nvidia.com.yaml",
            "nicinterfacenametemplates.configuration.net.nvidia.com.yaml",
        ],
    )
    .await;
    for (kind, plural, body) in nic_configuration_crs() {
        create_cr(&client, ns, CONFIGURATION, "v1alpha1", kind, plural, body).await;
    }
    let nodes = [unique_name("netop-nic-config"), unique_name("netop-nic-config")];
    // The wait label as a previous configuration left it, on a NIC node and on another.
    create_node(&env, &nodes[0], &[NIC_LABEL, (WAIT_LABEL, "true")]).await;
    create_node(&env, &nodes[1], &[(WAIT_LABEL, "false")]).await;

    let full =
        example(include_str!("../../../example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full-v26.4.1.yaml"));
    let section = full.spec.nic_configuration_operator.clone().expect("the example has the section");
    let policy = fresh_policy(&env, &NicClusterPolicy::new(POLICY_NAME, Default::default())).await;
    // The firmware storage as the original left it: labelled with the state, owned by the policy.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let originals: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "nic-fw-storage-pvc", "labels": {STATE_LABEL: "state-nic-configuration-operator"},
            "ownerReferences": [{"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
                "name": POLICY_NAME, "uid": policy.uid().unwrap(), "controller": true}]},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "nic-fw-storage-class"}
    }))
    .unwrap();
    pvcs.create(&PostParams::default(), &originals).await.unwrap();

    let _controller = ControllerProcess::start("nic-configuration-controller", ns, &[]);
    // Without the section, as the original: false on the NIC node, none elsewhere.
    wait_labels(&client, &nodes, [Some("false"), None], "the wait labels without the section").await;
    set_section(&client, "nicConfigurationOperator", serde_json::to_value(&section).unwrap()).await;
    eventually("the configuration daemon to run on the NIC node only", WAIT, || async {
        match run_pods(&client, ns, "app.kubernetes.io/name=nic-configuration-daemon", None).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    eventually("the operator's pod to run", WAIT, || async {
        match run_pods(&client, ns, "app.kubernetes.io/component=nic-configuration-operator", Some(&nodes[1])).await {
            1 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, "state-nic-configuration-operator", "ready").await;
    // With the section the daemon owns the label: what it sets stays.
    set_wait_label(&client, &nodes[0], "true").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    wait_labels(&client, &nodes, [Some("true"), None], "the daemon's label left alone").await;
    let released = pvcs.get("nic-fw-storage-pvc").await.expect("the original's PVC is kept");
    assert!(!released.labels().contains_key(STATE_LABEL), "{:?}", released.labels());
    assert!(released.owner_references().is_empty(), "{:?}", released.owner_references());

    // Another PVC name: created by us, with neither owner nor state label.
    let mut renamed = section.clone();
    renamed.nic_firmware_storage.as_mut().unwrap().pvc_name = Some("fw-storage-2".into());
    set_section(&client, "nicConfigurationOperator", serde_json::to_value(&renamed).unwrap()).await;
    eventually("the new PVC", WAIT, || async {
        match pvcs.get_opt("fw-storage-2").await.map_err(|e| e.to_string())? {
            Some(pvc) if pvc.owner_references().is_empty() && !pvc.labels().contains_key(STATE_LABEL) => Ok(()),
            Some(pvc) => Err(format!("owned or labelled: {:?}", pvc.metadata)),
            None => Err("absent".into()),
        }
    })
    .await;

    // The section removed: the workloads go; the PVCs, the CRDs and the CRs stay.
    set_section(&client, "nicConfigurationOperator", Value::Null).await;
    wait_for_entry(&client, "state-nic-configuration-operator", "ignore").await;
    gone(&Api::<Deployment>::namespaced(client.clone(), ns), "nic-configuration-operator", "the Deployment").await;
    gone(&Api::<DaemonSet>::namespaced(client.clone(), ns), "nic-configuration-daemon", "the DaemonSet").await;
    confirm_deletions(&client, ns).await;
    // The daemon gone: false again on the NIC node.
    wait_labels(&client, &nodes, [Some("false"), None], "the wait label after the section's removal").await;
    // The policy deleted too: the garbage collector finds nothing of the user's to take.
    Api::<NicClusterPolicy>::all(client.clone()).delete(POLICY_NAME, &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for name in ["nic-fw-storage-pvc", "fw-storage-2"] {
        assert!(pvcs.get_opt(name).await.unwrap().is_some(), "PVC {name} was deleted");
    }
    for (kind, plural, _) in nic_configuration_crs() {
        assert!(cr_exists(&client, ns, CONFIGURATION, "v1alpha1", kind, plural).await, "the {kind} was deleted");
    }
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn spectrum_x_is_ready_with_its_flow_controllers_and_never_deletes_a_rail_pool_config() {
    let Some(env) = TestEnv::new("netop-e2e-spectrum-x").await else { return };
    let client = env.client.clone();
    let ns = env.namespace.as_str();
    install_crd_files(&client, &["spectrumxrailpoolconfigs.spectrumx.nvidia.com.yaml"]).await;
    let rails = json!({"nodeSelector": {"spectrumx": "true"}, "networkNamespace": "default", "numVfs": 1,
        "railTopology": [{"name": "rail-1", "nicSelector": {"pfNames": ["eth1"]}, "mtu": 9000, "cidrPoolRef": "rail-1"}]});
    create_cr(
        &client,
        ns,
        "spectrumx.nvidia.com",
        "v1alpha2",
        "SpectrumXRailPoolConfig",
        "spectrumxrailpoolconfigs",
        rails,
    )
    .await;
    let nodes = [unique_name("netop-spcx"), unique_name("netop-spcx")];
    for node in &nodes {
        create_node(&env, node, &[NIC_LABEL]).await;
    }
    let policy = example(include_str!("../../../example/crs/nicclusterpolicy_spectrum-x.yaml"));
    fresh_policy(&env, &policy).await;
    let _controller = ControllerProcess::start("spectrum-x-controller", ns, &[]);
    eventually("the flow controllers to run", WAIT, || async {
        match run_pods(&client, ns, "control-plane=spectrum-x-flowcontroller", None).await {
            2 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    wait_for_entry(&client, "state-spectrum-x-operator", "ready").await;
    let daemon_set = Api::<DaemonSet>::namespaced(client.clone(), ns).get("spectrum-x-flowcontroller").await.unwrap();
    let env_names: Vec<String> = daemon_set.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect();
    assert!(env_names.contains(&"XPLANE_VERSION".to_string()), "{env_names:?}");

    set_section(&client, "spectrumXOperator", Value::Null).await;
    wait_for_entry(&client, "state-spectrum-x-operator", "ignore").await;
    gone(&Api::<DaemonSet>::namespaced(client.clone(), ns), "spectrum-x-flowcontroller", "the DaemonSet").await;
    confirm_deletions(&client, ns).await;
    let kept = cr_exists(
        &client,
        ns,
        "spectrumx.nvidia.com",
        "v1alpha2",
        "SpectrumXRailPoolConfig",
        "spectrumxrailpoolconfigs",
    );
    assert!(kept.await, "the rail pool configuration was deleted");
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn the_current_crds_refuse_what_the_originals_refuse() {
    let Some(env) = TestEnv::new("netop-e2e-current-crds").await else { return };
    let client = env.client.clone();
    let ns = env.namespace.as_str();
    install_crd_files(
        &client,
        &[
            "nicconfigurationtemplates.configuration.net.nvidia.com.yaml",
            "spectrumxrailpoolconfigs.spectrumx.nvidia.com.yaml",
        ],
    )
    .await;
    let template = |nic_type: &str, link: &str, num_vfs: i64| {
        json!({"apiVersion": "configuration.net.nvidia.com/v1alpha1", "kind": "NicConfigurationTemplate",
            "metadata": {"name": unique_name("t"), "namespace": ns},
            "spec": {"nicSelector": {"nicType": nic_type},
                "template": {"numVfs": num_vfs, "linkType": link,
                    "spectrumXOptimized": {"enabled": true, "version": "RA2.0"}}}})
    };
    let templates = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        ns,
        &ApiResource {
            group: CONFIGURATION.into(),
            version: "v1alpha1".into(),
            api_version: format!("{CONFIGURATION}/v1alpha1"),
            kind: "NicConfigurationTemplate".into(),
            plural: "nicconfigurationtemplates".into(),
        },
    );
    let create = |value: Value| {
        let templates = templates.clone();
        async move { templates.create(&PostParams::default(), &serde_json::from_value(value).unwrap()).await }
    };
    create(template("1023", "Ethernet", 1)).await.expect("Spectrum-X on a ConnectX-8 with one VF is valid");
    let refused = create(template("1021", "Ethernet", 1)).await.expect_err("a ConnectX-7 is refused");
    assert!(refused.to_string().contains("ConnectX-8, ConnectX-9 or BlueField-3"), "{refused}");
    let refused = create(template("1023", "Infiniband", 1)).await.expect_err("InfiniBand is refused");
    assert!(refused.to_string().contains("linkType=='Ethernet' and numVfs==1"), "{refused}");

    let pools = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        ns,
        &ApiResource {
            group: "spectrumx.nvidia.com".into(),
            version: "v1alpha2".into(),
            api_version: "spectrumx.nvidia.com/v1alpha2".into(),
            kind: "SpectrumXRailPoolConfig".into(),
            plural: "spectrumxrailpoolconfigs".into(),
        },
    );
    let both: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "spectrumx.nvidia.com/v1alpha2", "kind": "SpectrumXRailPoolConfig",
        "metadata": {"name": "both", "namespace": ns},
        "spec": {"numVfs": 1, "railTopology": [{"name": "r", "nicSelector": {"pfNames": ["eth1"]}, "mtu": 1500,
            "cidrPoolRef": "p", "ipam": "{}"}]}
    }))
    .unwrap();
    let refused = pools.create(&PostParams::default(), &both).await.expect_err("cidrPoolRef and ipam together");
    assert!(refused.to_string().contains("Only one of cidrPoolRef or ipam"), "{refused}");
    let defaulted: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "spectrumx.nvidia.com/v1alpha2", "kind": "SpectrumXRailPoolConfig",
        "metadata": {"name": "defaults", "namespace": ns},
        "spec": {"numVfs": 1, "railTopology": [{"name": "r", "nicSelector": {"pfNames": ["eth1"]}, "mtu": 1500}]}
    }))
    .unwrap();
    let stored = pools.create(&PostParams::default(), &defaulted).await.unwrap();
    assert_eq!(stored.data["spec"]["draEnabled"], true, "the CRD's defaults apply");
    assert_eq!(stored.data["spec"]["maxUnavailable"], 1);
}
