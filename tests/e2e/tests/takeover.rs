//! Switching from the running original (v24.7.0, `../shared/original`) to ours touches no operand:
//! the original deploys the seed policy (OFED with automatic upgrades on three NIC nodes of two
//! kernels and two architectures, the RDMA plugin, the secondary network) and a MacvlanNetwork,
//! the played kubelet makes everything Ready, then the original stops, our CRDs are applied over
//! its CRDs as the README says, and our 15 controllers start, each as its chart's ServiceAccount.
//! After our status is ready and a minute more, no pod, template, object, node or NAD changed.

use api::{NicClusterPolicy, POLICY_NAME, SyncState};
use e2e::binary::ControllerProcess;
use e2e::helm::{helm, impersonating, install};
use e2e::kubelet::{create_node, run_pods};
use e2e::original::{Original, install_original_crds, upgrade_crds_as_users_do};
use e2e::{TestEnv, create_macvlan_network, eventually, fresh_policy, seed_policy, unique_name};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client, ResourceExt};
use ofed::pools::{ARCH_LABEL, KERNEL_LABEL, OS_LABEL, OS_VERSION_LABEL};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const NIC_LABEL: &str = "feature.node.kubernetes.io/pci-15b3.present";
const VERSION: &str = "23.04-0.5.3.3.1";
/// How long everything must stay as it was after our status is ready.
const SETTLE: Duration = Duration::from_secs(60);

/// Three NIC nodes: two kernels on amd64, and an arm64 node (with its own kernel: the original
/// gives a pool of two architectures an image that flips between them on every reconcile).
const NODES: [(&str, &str, &str); 3] =
    [("a", "5.15.0-78-generic", "amd64"), ("b", "5.15.0-91-generic", "amd64"), ("c", "5.15.0-100-generic", "arm64")];

/// The operand kinds compared before and after, with their plural and scope.
const KINDS: [(&str, &str, &str, bool); 9] = [
    ("apps", "DaemonSet", "daemonsets", true),
    ("apps", "Deployment", "deployments", true),
    ("", "ConfigMap", "configmaps", true),
    ("", "ServiceAccount", "serviceaccounts", true),
    ("rbac.authorization.k8s.io", "Role", "roles", true),
    ("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", true),
    ("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", false),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", false),
    ("k8s.cni.cncf.io", "NetworkAttachmentDefinition", "network-attachment-definitions", true),
];

/// What must not change: every operand pod, object and NIC node.
#[derive(Debug)]
struct Snapshot {
    /// Operand pods: name -> (uid, terminating).
    pods: BTreeMap<String, (String, bool)>,
    /// Operand objects: "Kind namespace/name" -> uid.
    objects: BTreeMap<String, String>,
    /// DaemonSets and Deployments: name -> `.spec.template`; NADs: name -> `.spec`.
    templates: BTreeMap<String, Value>,
    /// NIC nodes: name -> (unschedulable, upgrade state).
    nodes: BTreeMap<String, (bool, Option<String>)>,
}

async fn snapshot(client: &Client, namespace: &str, nad_namespace: &str, nodes: &[String]) -> Snapshot {
    let mut snapshot = Snapshot {
        pods: BTreeMap::new(),
        objects: BTreeMap::new(),
        templates: BTreeMap::new(),
        nodes: BTreeMap::new(),
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for pod in pods.list(&Default::default()).await.unwrap().items.into_iter().filter(|p| !installed_by_helm(p)) {
        let uid = pod.uid().unwrap_or_default();
        snapshot.pods.insert(pod.name_any(), (uid, pod.metadata.deletion_timestamp.is_some()));
    }
    for (group, kind, plural, namespaced) in KINDS {
        let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural);
        let in_namespace = if kind == "NetworkAttachmentDefinition" { nad_namespace } else { namespace };
        let api: Api<DynamicObject> = match namespaced {
            true => Api::namespaced_with(client.clone(), in_namespace, &resource),
            false => Api::all_with(client.clone(), &resource),
        };
        let params = match namespaced {
            true => Default::default(),
            false => kube::api::ListParams::default().labels(state_core::STATE_LABEL),
        };
        for object in api.list(&params).await.unwrap().items {
            let name = object.name_any();
            if matches!(name.as_str(), "kube-root-ca.crt" | "default") || installed_by_helm(&object) {
                continue; // the namespace's own, or our chart's
            }
            let key = format!("{kind} {in_namespace}/{name}");
            snapshot.objects.insert(key.clone(), object.uid().unwrap_or_default());
            match kind {
                "DaemonSet" | "Deployment" => {
                    snapshot.templates.insert(key, object.data["spec"]["template"].clone());
                }
                "NetworkAttachmentDefinition" => {
                    snapshot.templates.insert(key, object.data["spec"].clone());
                }
                _ => {}
            }
        }
    }
    let api: Api<Node> = Api::all(client.clone());
    for name in nodes {
        let node = api.get(name).await.unwrap();
        let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        let state = node.labels().get(ofed::upgrade::STATE_LABEL).cloned();
        snapshot.nodes.insert(name.clone(), (unschedulable, state));
    }
    snapshot
}

/// Whether `object` is one of our chart's (its controllers, their RBAC): not an operand.
fn installed_by_helm(object: &impl kube::Resource) -> bool {
    object.meta().labels.as_ref().and_then(|l| l.get("app.kubernetes.io/managed-by")).is_some_and(|v| v == "Helm")
}

/// The binaries of the umbrella chart's controllers (each subchart names its binary), without
/// the opt-in ones (admission webhook, all-in-one).
fn chart_controllers() -> Vec<(String, String)> {
    let charts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/network-operator/charts");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&charts).unwrap() {
        let chart = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(chart.join("Chart.yaml")) else { continue };
        let meta: Value = serde_saphyr::from_str(&text).unwrap();
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        let Some(binary) = meta["annotations"]["network-operator.nvidia.com/binary"].as_str() else { continue };
        if !matches!(name.as_str(), "admission" | "all-in-one") {
            found.push((name, binary.to_string()));
        }
    }
    found.sort();
    found
}

/// Writes (create, patch, update, delete) our controllers made, by kind, from their metrics.
async fn writes_by_kind(controllers: &[ControllerProcess]) -> BTreeMap<String, u64> {
    let mut writes = BTreeMap::new();
    for controller in controllers {
        for line in controller.metrics().await.lines().filter(|l| l.starts_with("network_operator_api_requests_total{"))
        {
            let label = |key: &str| {
                line.split(&format!("{key}=\"")).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default()
            };
            let count: f64 = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
            if matches!(label("verb"), "create" | "patch" | "update" | "delete") {
                *writes.entry(format!("{} {}", label("verb"), label("kind"))).or_insert(0) += count as u64;
            }
        }
    }
    writes
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn switching_from_the_running_original_touches_no_operand() {
    let Some(script) = e2e::original::script() else { return };
    let Some(env) = TestEnv::new("netop-e2e-takeover").await else { return };
    if helm().is_none() {
        return;
    }
    let client = env.client.clone();
    let ns = env.namespace.clone();
    let _original_crds = install_original_crds(&client, &script).await;

    let mut tags = Vec::new();
    let mut nodes = Vec::new();
    for (suffix, kernel, arch) in NODES {
        let name = unique_name(&format!("takeover-{suffix}"));
        let labels = [
            (NIC_LABEL, "true"),
            (OS_LABEL, "ubuntu"),
            (OS_VERSION_LABEL, "22.04"),
            (KERNEL_LABEL, kernel),
            (ARCH_LABEL, arch),
        ];
        create_node(&env, &name, &labels).await;
        tags.push(format!("{VERSION}-ubuntu22.04-{arch}"));
        nodes.push(name);
    }
    // A precompiled driver for the first kernel: both operators must choose it.
    tags.push(format!("{VERSION}-{}-ubuntu22.04-amd64", NODES[0].1));
    let registry = e2e::registry::serve("mellanox/mofed", tags).await;
    let mut policy = seed_policy();
    let ofed = policy.spec.ofed_driver.as_mut().unwrap();
    ofed.image.repository = format!("{registry}/mellanox");
    ofed.upgrade_policy =
        Some(serde_json::from_value(serde_json::json!({"autoUpgrade": true, "maxParallelUpgrades": 1})).unwrap());
    fresh_policy(&env, &policy).await;
    let network = unique_name("takeover-macvlan");
    create_macvlan_network(&env, &network, &ns).await;

    // The original deploys everything; the played kubelet runs every pod it creates.
    let mut original = Original::start(&script, &ns);
    let kubelet = {
        let (client, ns) = (client.clone(), ns.clone());
        tokio::spawn(async move {
            loop {
                run_pods(&client, &ns, "", None).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    let node_api: Api<Node> = Api::all(client.clone());
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    eventually("the original to report ready, every NIC node upgrade-done", Duration::from_secs(180), || async {
        let live = policies.get(POLICY_NAME).await.map_err(|e| e.to_string())?;
        let status = live.status.unwrap_or_default();
        if status.state != Some(SyncState::Ready) {
            return Err(format!("{:?}: {:?}", status.state, status.applied_states));
        }
        for name in &nodes {
            let node = node_api.get(name).await.map_err(|e| e.to_string())?;
            let state = node.labels().get(ofed::upgrade::STATE_LABEL).cloned();
            if state.as_deref() != Some("upgrade-done") {
                return Err(format!("{name}: upgrade state {state:?}"));
            }
        }
        // Every DaemonSet (the RDMA plugin's too, once the driver is ready everywhere) runs a
        // pod on each of its nodes.
        for ds in daemon_sets.list(&Default::default()).await.map_err(|e| e.to_string())?.items {
            let status = ds.status.clone().unwrap_or_default();
            let wanted = if ds.name_any().starts_with("mofed-") { 1 } else { NODES.len() as i32 };
            if status.desired_number_scheduled != wanted || status.number_available != Some(wanted) {
                return Err(format!("{}: {status:?}", ds.name_any()));
            }
        }
        Ok(())
    })
    .await;
    let before = snapshot(&client, &ns, &ns, &nodes).await;
    for (key, template) in &before.templates {
        println!("the original's {key}: image {}", template["spec"]["containers"][0]["image"]);
    }
    assert_eq!(before.pods.len(), 5 * NODES.len(), "every operand runs: {:?}", before.pods.keys());
    original.stop();

    // Upgrade as the README says: CRDs first, then the chart; our controllers as its accounts.
    upgrade_crds_as_users_do(&client).await;
    let release = unique_name("takeover");
    install(&env.cleanup, &release, &ns, &[]);
    let configs: Vec<(String, std::path::PathBuf)> = chart_controllers()
        .into_iter()
        .map(|(chart, binary)| (binary, impersonating(&ns, &format!("{release}-{chart}"))))
        .collect();
    let controllers: Vec<ControllerProcess> = configs
        .iter()
        .map(|(binary, config)| {
            ControllerProcess::start(binary, &ns, &[("KUBECONFIG", config.to_str().unwrap()), ("RUST_LOG", "info")])
        })
        .collect();
    assert_eq!(controllers.len(), 15, "{configs:?}");
    let started = std::time::Instant::now();
    eventually("our status to be ready for the current generation", Duration::from_secs(120), || async {
        let live = policies.get(POLICY_NAME).await.map_err(|e| e.to_string())?;
        let generation = live.metadata.generation;
        let status = live.status.unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation);
        let current = status.applied_states.iter().flatten().all(|s| s.observed_generation == generation);
        if ready && current && status.state == Some(SyncState::Ready) {
            Ok(())
        } else {
            Err(format!("{:?} {:?}: {:?}", status.state, status.reason, status.applied_states))
        }
    })
    .await;
    let to_ready = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let after = snapshot(&client, &ns, &ns, &nodes).await;
    kubelet.abort();

    assert_eq!(before.pods, after.pods, "no operand pod was replaced, deleted or evicted");
    for (key, uid) in &before.objects {
        assert_eq!(Some(uid), after.objects.get(key), "{key} was deleted or replaced");
    }
    let added: Vec<&String> = after.objects.keys().filter(|k| !before.objects.contains_key(*k)).collect();
    println!("takeover: objects we added beside the original's: {added:?}");
    for (key, template) in &before.templates {
        assert_eq!(Some(template), after.templates.get(key), "{key}: its template (or NAD spec) changed");
    }
    assert_eq!(before.nodes, after.nodes, "no node was cordoned or changed upgrade state");
    for (name, (unschedulable, state)) in &after.nodes {
        assert!(!unschedulable && state.as_deref() == Some("upgrade-done"), "{name}: {unschedulable} {state:?}");
    }
    // The IP pool CRDs the original owned through the policy are the user's now: deleting the
    // policy deletes no IP allocation.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for name in whereabouts::POOL_CRDS {
        let crd = crds.get(name).await.unwrap();
        let owners: Vec<&str> = crd.owner_references().iter().map(|o| o.kind.as_str()).collect();
        assert!(!owners.contains(&"NicClusterPolicy"), "{name} is still owned by the policy: {owners:?}");
    }
    let networks: Api<api::networks::MacvlanNetwork> = Api::all(client.clone());
    let network_status = networks.get(&network).await.unwrap().status;
    let state = network_status.as_ref().map(|s| s.state);
    assert_eq!(state, Some(api::networks::NetworkState::Ready), "{network_status:?}");
    let writes = writes_by_kind(&controllers).await;
    let total: u64 = writes.values().sum();
    println!("takeover: our status ready {to_ready:.1?} after start; {total} writes by our controllers: {writes:?}");
}
