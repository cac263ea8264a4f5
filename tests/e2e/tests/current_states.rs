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

/// A kind of one of the shipped CRDs.
struct CustomKind {
    api_version: &'static str,
    kind: &'static str,
    plural: &'static str,
}

impl CustomKind {
    /// Its API in `namespace`.
    fn api(&self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        let (group, version) = self.api_version.split_once('/').unwrap();
        let resource = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: self.api_version.into(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        };
        Api::namespaced_with(client.clone(), namespace, &resource)
    }

    /// The object `name` with `spec`.
    fn object(&self, name: &str, spec: Value) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": self.api_version, "kind": self.kind,
            "metadata": {"name": name}, "spec": spec}))
        .unwrap()
    }

    /// Creates the test's CR of this kind, which the CRD from `crds/` must accept.
    async fn create(&self, client: &Client, namespace: &str, spec: Value) {
        let object = self.object(&format!("e2e-{}", self.plural), spec);
        self.api(client, namespace)
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("the {} CRD refuses a valid one: {e}", self.kind));
    }

    /// Whether the test's CR of this kind is still there.
    async fn exists(&self, client: &Client, namespace: &str) -> bool {
        self.api(client, namespace).get_opt(&format!("e2e-{}", self.plural)).await.unwrap().is_some()
    }
}

const CONFIGURATION_TEMPLATES: CustomKind = CustomKind {
    api_version: "configuration.net.nvidia.com/v1alpha1",
    kind: "NicConfigurationTemplate",
    plural: "nicconfigurationtemplates",
};
const RAIL_POOL_CONFIGS: CustomKind = CustomKind {
    api_version: "spectrumx.nvidia.com/v1alpha2",
    kind: "SpectrumXRailPoolConfig",
    plural: "spectrumxrailpoolconfigs",
};

/// One CR of each NIC configuration kind, as its operator's documentation shows them.
fn nic_configuration_crs() -> [(CustomKind, Value); 5] {
    let kind = |kind, plural| CustomKind { api_version: "configuration.net.nvidia.com/v1alpha1", kind, plural };
    [
        (
            CONFIGURATION_TEMPLATES,
            json!({"nodeSelector": {"feature.node.kubernetes.io/network-sriov.capable": "true"},
                "nicSelector": {"nicType": "1021"}, "resetToDefault": false,
                "template": {"numVfs": 8, "linkType": "Ethernet",
                    "pciPerformanceOptimized": {"enabled": true, "maxAccOutRead": 44, "maxReadRequest": 4096},
                    "roceOptimized": {"enabled": true, "qos": {"trust": "dscp", "pfc": "0,0,0,1,0,0,0,0", "tos": 0}},
                    "gpuDirectOptimized": {"enabled": true, "env": "Baremetal"}}}),
        ),
        (
            kind("NicDevice", "nicdevices"),
            json!({"configuration": {"template": {"numVfs": 0, "linkType": "Ethernet"}}}),
        ),
        (
            kind("NicFirmwareSource", "nicfirmwaresources"),
            json!({"binUrlSources": ["https://firmware.example/fw-ConnectX7.zip"]}),
        ),
        (
            kind("NicFirmwareTemplate", "nicfirmwaretemplates"),
            json!({"nicSelector": {"nicType": "1021"},
                "template": {"nicFirmwareSourceRef": "e2e-nicfirmwaresources", "updatePolicy": "Update"}}),
        ),
        (
            kind("NicInterfaceNameTemplate", "nicinterfacenametemplates"),
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
    for (kind, spec) in nic_configuration_crs() {
        kind.create(&client, ns, spec).await;
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
    // And one the state no longer renders (another pvcName then): pruned, it would be deleted.
    let mut older = originals.clone();
    older.metadata.name = Some("older-fw-storage".into());
    pvcs.create(&PostParams::default(), &older).await.unwrap();

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
    for name in ["nic-fw-storage-pvc", "older-fw-storage"] {
        let released = pvcs.get(name).await.unwrap_or_else(|e| panic!("the original's PVC {name} is gone: {e}"));
        assert!(!released.labels().contains_key(STATE_LABEL), "{name}: {:?}", released.labels());
        assert!(released.owner_references().is_empty(), "{name}: {:?}", released.owner_references());
    }

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
    for name in ["nic-fw-storage-pvc", "older-fw-storage", "fw-storage-2"] {
        assert!(pvcs.get_opt(name).await.unwrap().is_some(), "PVC {name} was deleted");
    }
    for (kind, _) in nic_configuration_crs() {
        assert!(kind.exists(&client, ns).await, "the {} was deleted", kind.kind);
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
    RAIL_POOL_CONFIGS.create(&client, ns, rails).await;
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
    assert!(RAIL_POOL_CONFIGS.exists(&client, ns).await, "the rail pool configuration was deleted");
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
    let templates = CONFIGURATION_TEMPLATES.api(&client, ns);
    let template = |nic_type: &str, link: &str| {
        let spec = json!({"nicSelector": {"nicType": nic_type}, "template": {"numVfs": 1, "linkType": link,
            "spectrumXOptimized": {"enabled": true, "version": "RA2.0"}}});
        let object = CONFIGURATION_TEMPLATES.object(&unique_name("t"), spec);
        let templates = templates.clone();
        async move { templates.create(&PostParams::default(), &object).await }
    };
    template("1023", "Ethernet").await.expect("Spectrum-X on a ConnectX-8 with one VF is valid");
    let refused = template("1021", "Ethernet").await.expect_err("a ConnectX-7 is refused");
    assert!(refused.to_string().contains("ConnectX-8, ConnectX-9 or BlueField-3"), "{refused}");
    let refused = template("1023", "Infiniband").await.expect_err("InfiniBand is refused");
    assert!(refused.to_string().contains("linkType=='Ethernet' and numVfs==1"), "{refused}");

    let pools = RAIL_POOL_CONFIGS.api(&client, ns);
    let rail = json!({"name": "r", "nicSelector": {"pfNames": ["eth1"]}, "mtu": 1500});
    let mut both = rail.clone();
    both["cidrPoolRef"] = json!("p");
    both["ipam"] = json!("{}");
    let both = RAIL_POOL_CONFIGS.object("both", json!({"numVfs": 1, "railTopology": [both]}));
    let refused = pools.create(&PostParams::default(), &both).await.expect_err("cidrPoolRef and ipam together");
    assert!(refused.to_string().contains("Only one of cidrPoolRef or ipam"), "{refused}");
    let defaulted = RAIL_POOL_CONFIGS.object("defaults", json!({"numVfs": 1, "railTopology": [rail]}));
    let stored = pools.create(&PostParams::default(), &defaulted).await.unwrap();
    assert_eq!(stored.data["spec"]["draEnabled"], true, "the CRD's defaults apply");
    assert_eq!(stored.data["spec"]["maxUnavailable"], 1);
}
