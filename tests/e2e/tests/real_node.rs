//! The chart on a real node (`../shared/k8s/cluster-up`: kubelet, containerd, scheduler): every
//! controller runs as a pod from the image `hack/build-images.sh` built, with in-cluster
//! credentials, its probes and its memory limit, as `helm install` gives a user. `hack/e2e.sh`
//! runs this stage after the played-kubelet suite, on a cluster of its own, with the images
//! imported; on any other cluster it skips, saying why.

use api::{NicClusterPolicy, POLICY_NAME, SyncState};
use e2e::binary::bin_dir;
use e2e::helm::{helm, install, upgrade};
use e2e::{TestEnv, eventually, fresh_policy, seed_policy, stubs, unique_name};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use state_core::edits::{MOFED_WAIT_LABEL, NIC_PRESENT_LABEL};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long a controller pod may take to start and become Ready on the node.
const START: Duration = Duration::from_secs(180);

/// The Helm release of every test here.
const RELEASE: &str = "netop";

/// A controller pod's own `/metrics`, through the API server's proxy.
async fn pod_metrics(client: &Client, namespace: &str, pod: &str) -> Result<String, String> {
    let request = http::Request::get(format!("/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/metrics"))
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client.request_text(request).await.map_err(|e| e.to_string())
}

/// The pod's container's resident memory from its own `/metrics`.
async fn resident_memory(client: &Client, namespace: &str, pod: &str) -> Result<u64, String> {
    let text = pod_metrics(client, namespace, pod).await?;
    let line = text.lines().find(|l| l.starts_with("process_resident_memory_bytes ")).ok_or("no RSS metric")?;
    line.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()).map(|v| v as u64).ok_or(line.to_string())
}

/// A memory quantity of the chart's values (`64Mi`) in bytes.
fn bytes(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(quantity.find(|c: char| !c.is_ascii_digit()).unwrap_or(quantity.len()));
    let factor = match unit {
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => 1,
    };
    number.parse::<u64>().unwrap_or(0) * factor
}

/// Waits until the release's `count` Deployments are Available, then checks each pod: on the
/// node, no restart, RSS under its memory limit (from its own `/metrics`), the start-up line with
/// the version in its log. The problems found, one line each.
async fn controllers_run(client: &Client, ns: &str, node: &str, count: usize) -> Vec<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually("every controller Deployment to be Available on the node", START, || async {
        let list = deployments.list(&release_objects()).await.map_err(|e| e.to_string())?;
        let waiting: Vec<String> = list
            .items
            .iter()
            .filter(|d| {
                let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) < wanted
            })
            .map(ResourceExt::name_any)
            .collect();
        if list.items.len() == count && waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("{} Deployments, waiting: {waiting:?}", list.items.len()))
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&release_objects()).await.unwrap();
    let mut problems = Vec::new();
    for pod in list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let name = pod.name_any();
        let spec = pod.spec.as_ref().unwrap();
        if spec.node_name.as_deref() != Some(node) {
            problems.push(format!("{name}: not on the real node {node}"));
        }
        let status = pod.status.as_ref().unwrap();
        let restarts: i32 = status.container_statuses.iter().flatten().map(|c| c.restart_count).sum();
        if restarts > 0 {
            problems.push(format!("{name}: {restarts} restart(s)"));
        }
        let limit = spec.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .map(|q| bytes(&q.0))
            .unwrap_or(u64::MAX);
        match resident_memory(client, ns, &name).await {
            Ok(rss) if rss < limit => {
                eprintln!("{name}: RSS {:.1} MiB (limit {} MiB)", rss as f64 / 1048576.0, limit >> 20)
            }
            Ok(rss) => problems.push(format!("{name}: RSS {rss} bytes over its limit {limit}")),
            Err(e) => problems.push(format!("{name}: /metrics not reachable: {e}")),
        }
        let log = pods.logs(&name, &LogParams::default()).await.unwrap_or_default();
        let started = log.lines().any(|l| l.contains("\"message\":\"starting\"") && l.contains("\"version\""));
        if !started {
            problems.push(format!("{name}: no start-up line with the version in its log"));
        }
    }
    problems
}

/// The release's objects (its Deployments and their pods), not the operands or a workload.
fn release_objects() -> ListParams {
    ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"))
}

/// The real node's name, or `None` after saying why this stage skips.
fn real_node() -> Option<String> {
    let node = std::env::var("NETOP_E2E_NODE").ok();
    if node.is_none() {
        eprintln!("skipping: no real node (../shared/k8s/cluster-up sets NETOP_E2E_NODE; hack/e2e.sh runs this stage)");
    }
    node
}

/// The registry the images were built for (`hack/build-images.sh` with `IMAGE_REGISTRY`).
fn registry() -> String {
    std::env::var("NETOP_E2E_IMAGE_REGISTRY").unwrap_or_else(|_| "localhost/netop-e2e".to_string())
}

/// The leader identity of the Lease `name` in `ns`.
async fn holder(client: &Client, ns: &str, name: &str) -> Result<String, String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns).get(name).await.map_err(|e| e.to_string())?;
    lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty()).ok_or("no holder".to_string())
}

#[tokio::test]
#[cfg_attr(not(e2e_real_node), ignore = "needs a real node: ../shared/k8s/cluster-up (hack/e2e.sh runs this stage)")]
async fn every_controller_runs_as_a_real_pod_from_the_images_this_repo_builds() {
    let Some(node) = real_node() else { return };
    let Some(env) = TestEnv::new("netop-e2e-node").await else { return };
    if helm().is_none() {
        return;
    }
    let client = env.client.clone();
    let ns = env.namespace.clone();
    // As the README installs it; only the registry of the images this repo built is set, and two
    // replicas of one controller, to see leader election with real pods.
    install(
        &env.cleanup,
        RELEASE,
        &ns,
        &["--set", &format!("global.image.registry={}", registry()), "--set", "rdma-dp.replicas=2"],
    );
    let problems = controllers_run(&client, &ns, &node, 15).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // `nicctl doctor` sees every controller running, reads its build info through the pod proxy,
    // and finds each ServiceAccount allowed everything its generated RBAC grants.
    let output = Command::new(bin_dir().join("nicctl"))
        .args(["doctor", "-n", &ns, "-o", "json"])
        .env("KUBECONFIG", std::env::var(e2e::KUBECONFIG_VAR).unwrap())
        .output()
        .expect("nicctl runs");
    let findings: Vec<Value> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("doctor's JSON: {e}: {}", String::from_utf8_lossy(&output.stderr)));
    let running: Vec<&str> = findings
        .iter()
        .filter(|f| f["check"] == "controllers" && f["verdict"] == "ok")
        .filter_map(|f| f["found"].as_str())
        .filter(|found| found.contains("version=\"") && found.contains("commit=\""))
        .collect();
    assert_eq!(running.len(), 15, "every controller with its build info: {findings:#?}");
    let rbac: Vec<&Value> = findings.iter().filter(|f| f["check"] == "rbac").collect();
    assert_eq!(rbac.len(), 15, "{rbac:#?}");
    assert!(rbac.iter().all(|f| f["verdict"] == "ok"), "{rbac:#?}");

    // Two rdma-dp replicas: exactly one leads (its Lease names it, its metrics say so); deleting
    // its pod hands the Lease over to the other.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let lease = "netop-rdma-dp-leader";
    let leader = eventually("one rdma-dp replica to lead", START, || holder(&client, &ns, lease)).await;
    let replicas = pods.list(&ListParams::default().labels("app.kubernetes.io/name=rdma-dp")).await.unwrap();
    let names: Vec<String> = replicas.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&leader), "the Lease names {leader}, not one of {names:?}");
    let mut leading = 0;
    for name in &names {
        let metrics = pod_metrics(&client, &ns, name).await.unwrap_or_default();
        leading += usize::from(metrics.contains("network_operator_leader 1"));
    }
    assert_eq!(leading, 1, "exactly one replica acts");
    pods.delete(&leader, &DeleteParams::default()).await.unwrap();
    // The survivor or the ReplicaSet's replacement may win the Lease (the leader releases it on
    // SIGTERM, and both race for it): either is a hand-over, as long as exactly one acts.
    eventually("another replica to take the Lease and act alone", START, || async {
        let next = holder(&client, &ns, lease).await?;
        if next == leader {
            return Err("the old leader still holds it".to_string());
        }
        let live = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=rdma-dp"))
            .await
            .map_err(|e| e.to_string())?;
        let mut acting = Vec::new();
        for pod in live.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let name = pod.name_any();
            if pod_metrics(&client, &ns, &name).await.unwrap_or_default().contains("network_operator_leader 1") {
                acting.push(name);
            }
        }
        if acting == [next.clone()] { Ok(()) } else { Err(format!("the Lease names {next}, acting: {acting:?}")) }
    })
    .await;
}

#[tokio::test]
#[cfg_attr(not(e2e_real_node), ignore = "needs a real node: ../shared/k8s/cluster-up (hack/e2e.sh runs this stage)")]
async fn the_all_in_one_install_runs_as_one_real_pod() {
    let Some(node) = real_node() else { return };
    let Some(env) = TestEnv::new("netop-e2e-node-aio").await else { return };
    if helm().is_none() {
        return;
    }
    let ns = env.namespace.clone();
    install(
        &env.cleanup,
        RELEASE,
        &ns,
        &[
            "-f",
            "charts/network-operator/values-all-in-one.yaml",
            "--set",
            &format!("global.image.registry={}", registry()),
        ],
    );
    let problems = controllers_run(&env.client, &ns, &node, 1).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Where the harness's scripts are (`mkimage`, `import-image`, the busybox image):
/// `NETOP_E2E_K8S_TOOLS` (hack/e2e.sh sets it), else `../shared/k8s` beside the checkout.
fn k8s_tools() -> PathBuf {
    std::env::var("NETOP_E2E_K8S_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/k8s"))
}

/// The labels NFD gives an Ubuntu 22.04 node with an NVIDIA NIC, which the OFED driver's pools
/// select on.
const NIC_LABELS: [(&str, &str); 3] = [
    (NIC_PRESENT_LABEL, "true"),
    ("feature.node.kubernetes.io/system-os_release.ID", "ubuntu"),
    ("feature.node.kubernetes.io/system-os_release.VERSION_ID", "22.04"),
];

/// The kernel label NFD sets, from the node's own kernel.
const KERNEL_LABEL: &str = "feature.node.kubernetes.io/kernel-version.full";

/// Directories every distribution with kmod has, which the driver's hostPath volumes use
/// (`/etc/modprobe.d/ib_core.conf`, `FileOrCreate`: the kubelet creates the file, not its
/// folder). The harness's host may lack them.
const NODE_HOST_DIRS: &[&str] = &["/etc/modprobe.d"];

/// The driver's `Bidirectional` hostPath mounts, which need a shared mount on the node (as
/// systemd makes `/` on a real node); the harness's node has a private `/`.
const SHARED_MOUNTS: &[&str] = &["/run/mellanox/drivers"];

/// What the real node's host needs for the driver pod that a real NIC node has (a test set-up
/// matter, not the product's): the missing [`NODE_HOST_DIRS`], and [`SHARED_MOUNTS`] bound onto
/// themselves as shared mounts in the node's mount namespace. Undone when dropped.
struct NodeHost {
    created: Vec<PathBuf>,
    mounted: Vec<&'static str>,
    namespace: Option<String>,
}

impl NodeHost {
    fn prepare() -> Self {
        let created: Vec<PathBuf> = NODE_HOST_DIRS.iter().map(PathBuf::from).filter(|d| !d.exists()).collect();
        for dir in &created {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
            eprintln!("created {} on the host for the driver's hostPath volume", dir.display());
        }
        let namespace = node_mount_namespace();
        let mut mounted = Vec::new();
        if let Some(ns) = &namespace {
            for path in SHARED_MOUNTS {
                let script = format!(
                    "grep -q ' {path} ' /proc/self/mountinfo && exit 3; mkdir -p {path} && mount --bind {path} {path} && mount --make-shared {path}"
                );
                let status =
                    Command::new("nsenter").arg(format!("--mount={ns}")).args(["--", "sh", "-c", &script]).status();
                match status.map(|s| s.code()) {
                    Ok(Some(0)) => mounted.push(*path),
                    Ok(Some(3)) => {}
                    other => panic!("making {path} a shared mount in the node's mount namespace: {other:?}"),
                }
            }
        } else {
            eprintln!("no node mount namespace found (NETOP_K8S_DIR): the driver's shared mounts are left as they are");
        }
        Self { created, mounted, namespace }
    }
}

impl Drop for NodeHost {
    fn drop(&mut self) {
        for path in &self.mounted {
            let ns = self.namespace.as_deref().unwrap_or_default();
            let _ = Command::new("nsenter").arg(format!("--mount={ns}")).args(["--", "umount", "-l", path]).status();
        }
        for dir in &self.created {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                eprintln!("cleanup: {}: {e}", dir.display());
            }
        }
    }
}

/// The mount namespace of the node's containerd (`cluster-up`'s `NETOP_K8S_DIR`), where the
/// kubelet and containerd resolve hostPath volumes.
fn node_mount_namespace() -> Option<String> {
    let dir = std::env::var("NETOP_K8S_DIR").ok()?;
    let info = std::fs::read_to_string(Path::new(&dir).join("node/info")).ok()?;
    let run = info.lines().find_map(|l| l.strip_prefix("run="))?.to_string();
    let pids = std::fs::read_to_string(Path::new(&run).join("pids")).ok()?;
    let pid = pids.lines().find_map(|l| l.strip_prefix("containerd "))?.trim().to_string();
    Some(format!("/proc/{pid}/ns/mnt"))
}

/// Labels the real node as NFD would on a NIC node (with its real kernel); the labels, the
/// operator's own node labels and any cordon are removed at the end.
async fn label_as_nic_node(env: &TestEnv, node: &str) {
    let nodes: Api<Node> = Api::all(env.client.clone());
    let kernel = nodes.get(node).await.unwrap().status.and_then(|s| s.node_info).map(|i| i.kernel_version).unwrap();
    let mut labels: BTreeMap<&str, &str> = NIC_LABELS.into_iter().collect();
    labels.insert(KERNEL_LABEL, &kernel);
    let mut keys: Vec<&str> = labels.keys().copied().collect();
    keys.extend([MOFED_WAIT_LABEL, ofed::upgrade::STATE_LABEL]);
    env.cleanup.node_labels(node, &keys);
    let patch = json!({"metadata": {"labels": labels}});
    nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

/// Builds a stand-in (`e2e::stubs`) for every image `policies` render on the real node, as
/// `nicctl render` renders them from the live Node, and imports them into the node: the exact
/// references the controllers will render. Returns the references.
async fn stand_in_operands(client: &Client, ns: &str, node: &str, policies: &[&NicClusterPolicy]) -> BTreeSet<String> {
    let dir = std::env::temp_dir().join(unique_name("netop-stand-ins"));
    std::fs::create_dir_all(&dir).unwrap();
    let live = Api::<Node>::all(client.clone()).get(node).await.unwrap();
    let nodes_file = dir.join("nodes.json");
    std::fs::write(&nodes_file, serde_json::to_string(&live).unwrap()).unwrap();
    let mut objects = Vec::new();
    for (n, policy) in policies.iter().enumerate() {
        let file = dir.join(format!("policy-{n}.json"));
        std::fs::write(&file, serde_json::to_string(policy).unwrap()).unwrap();
        let output = Command::new(bin_dir().join("nicctl"))
            .arg("render")
            .arg("-f")
            .arg(&file)
            .arg("--nodes")
            .arg(&nodes_file)
            .args(["--namespace", ns])
            .output()
            .expect("nicctl runs");
        assert!(output.status.success(), "nicctl render: {}", String::from_utf8_lossy(&output.stderr));
        let documents: Vec<Value> = serde_saphyr::from_str_multiple(&String::from_utf8_lossy(&output.stdout)).unwrap();
        objects.extend(documents.into_iter().filter(|d| !d.is_null()));
    }
    let stubs = stubs::plan(&objects).unwrap();
    let tools = k8s_tools();
    let tars = stubs::build(&stubs, &tools.join("mkimage"), &tools.join("node/images/busybox.tar.xz"), &dir).unwrap();
    let output = Command::new(tools.join("import-image")).args(&tars).output().expect("import-image runs");
    assert!(output.status.success(), "import-image: {}", String::from_utf8_lossy(&output.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("stand-ins imported: {:?}", stubs.keys().collect::<Vec<_>>());
    stubs.into_keys().collect()
}

/// The operands' pods in `ns` (every pod a DaemonSet owns).
async fn operand_pods(client: &Client, ns: &str) -> Vec<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap();
    pods.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.owner_references().iter().any(|o| o.kind == "DaemonSet"))
        .collect()
}

/// When the pod's Ready condition last became True, if it is.
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    ready.last_transition_time.as_ref().map(|t| t.0)
}

/// Waits until the policy is `ready` and every operand DaemonSet has its one pod Ready on the
/// node (from the kubelet's own status), running only stand-ins, and returns the pods.
async fn operands_ready(client: &Client, ns: &str, node: &str, stand_ins: &BTreeSet<String>) -> Vec<Pod> {
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    eventually("the policy to be ready from the kubelet's pod status", OPERANDS, || async {
        let policy = policies.get(POLICY_NAME).await.map_err(|e| e.to_string())?;
        let status = policy.status.unwrap_or_default();
        if status.state != Some(SyncState::Ready) {
            return Err(format!("{:?}: {:?}", status.state, status.reason));
        }
        let sets = Api::<DaemonSet>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap();
        let pods = operand_pods(client, ns).await;
        let ready = pods.iter().filter(|p| ready_since(p).is_some()).count();
        if sets.items.is_empty() || ready != sets.items.len() || pods.len() != sets.items.len() {
            return Err(format!("{} DaemonSets, {} pods, {ready} Ready", sets.items.len(), pods.len()));
        }
        Ok(())
    })
    .await;
    let pods = operand_pods(client, ns).await;
    for pod in &pods {
        let name = pod.name_any();
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(node), "{name}");
        for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            let image = container.image.clone().unwrap_or_default();
            assert!(stand_ins.contains(&image), "{name} runs {image}, which nicctl render did not render");
        }
        let restarts: i32 =
            pod.status.as_ref().unwrap().container_statuses.iter().flatten().map(|c| c.restart_count).sum();
        assert_eq!(restarts, 0, "{name} restarted");
    }
    pods
}

/// The one pod of the operand whose pods carry `label` (`key=value`), Ready.
fn pod_labelled<'a>(pods: &'a [Pod], key: &str) -> &'a Pod {
    let found: Vec<&Pod> = pods.iter().filter(|p| p.labels().contains_key(key)).collect();
    assert_eq!(found.len(), 1, "pods labelled {key}: {:?}", found.iter().map(|p| p.name_any()).collect::<Vec<_>>());
    found[0]
}

/// The label of the RDMA device plugin's pods.
const RDMA_POD: &str = "app";

/// How long the operands may take to run and the policy to become ready (probes included).
const OPERANDS: Duration = Duration::from_secs(300);

/// The driver version the upgrade test moves to.
const NEXT_DRIVER: &str = "24.07-0.6.1.0-0";

/// The policy of the README with an automatic driver upgrade to [`NEXT_DRIVER`] that drains
/// every pod (the operator's own are exempt by their label).
fn upgraded(policy: &NicClusterPolicy) -> NicClusterPolicy {
    let mut next = policy.clone();
    let mut driver: Value = serde_json::to_value(next.spec.ofed_driver.as_ref().unwrap()).unwrap();
    driver["version"] = json!(NEXT_DRIVER);
    driver["upgradePolicy"] = json!({
        "autoUpgrade": true,
        "maxParallelUpgrades": 1,
        "drain": {"enable": true, "force": false, "podSelector": "", "timeoutSeconds": 300, "deleteEmptyDir": true}
    });
    next.spec.ofed_driver = Some(serde_json::from_value(driver).unwrap());
    next
}

/// A Deployment of one idle busybox pod, standing for a user's workload on the node.
fn workload(ns: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "workload", "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "netop-e2e-workload"}},
            "template": {
                "metadata": {"labels": {"app": "netop-e2e-workload"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "sleep", "image": "localhost/busybox:static", "imagePullPolicy": "Never",
                                    "command": ["sleep", "3600"]}]
                }
            }
        }
    }))
    .unwrap()
}

#[tokio::test]
#[cfg_attr(not(e2e_real_node), ignore = "needs a real node: ../shared/k8s/cluster-up (hack/e2e.sh runs this stage)")]
async fn operands_run_on_the_real_kubelet_and_a_driver_upgrade_drains_and_restarts_them_in_order() {
    let Some(node) = real_node() else { return };
    // Before the env: dropped after its cleanup has deleted the policy.
    let _host = NodeHost::prepare();
    let Some(env) = TestEnv::new("netop-e2e-operands").await else { return };
    if helm().is_none() {
        return;
    }
    let (client, ns) = (env.client.clone(), env.namespace.clone());
    install(&env.cleanup, RELEASE, &ns, &["--set", &format!("global.image.registry={}", registry())]);
    let problems = controllers_run(&client, &ns, &node, 15).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    label_as_nic_node(&env, &node).await;
    let policy = seed_policy();
    let next = upgraded(&policy);
    let stand_ins = stand_in_operands(&client, &ns, &node, &[&policy, &next]).await;

    // The README's policy: every operand starts through the kubelet, the device plugin only
    // once the driver pod is Ready (mofed.wait), and the policy becomes ready.
    fresh_policy(&env, &policy).await;
    let pods = operands_ready(&client, &ns, &node, &stand_ins).await;
    let driver = pod_labelled(&pods, "nvidia.com/ofed-driver");
    let plugin = pods.iter().find(|p| p.labels().get(RDMA_POD).map(String::as_str) == Some("rdma-shared-dp")).unwrap();
    let driver_ready = ready_since(driver).unwrap();
    let plugin_created = plugin.metadata.creation_timestamp.as_ref().unwrap().0;
    assert!(
        plugin_created >= driver_ready,
        "the device plugin pod started at {plugin_created}, before the driver was Ready at {driver_ready}"
    );

    // A user's workload on the node, then the driver version bump with autoUpgrade.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments.create(&PostParams::default(), &workload(&ns)).await.unwrap();
    let workload_pod = eventually("the workload pod to be Ready", START, || async {
        let list = Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().labels("app=netop-e2e-workload"))
            .await
            .map_err(|e| e.to_string())?;
        list.items.into_iter().find(|p| ready_since(p).is_some()).ok_or("not Ready yet".to_string())
    })
    .await;
    let (old_driver, old_plugin) = (driver.uid().unwrap(), plugin.uid().unwrap());
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    let patch = json!({"spec": {"ofedDriver": serde_json::to_value(next.spec.ofed_driver.as_ref().unwrap()).unwrap()}});
    policies.patch(POLICY_NAME, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

    // Watch the node until the upgrade is done: cordoned, the workload evicted, the driver pod
    // replaced by one of the new version, uncordoned, `upgrade-done`.
    let nodes: Api<Node> = Api::all(client.clone());
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (mut cordoned, mut evicted) = (false, false);
    let deadline = tokio::time::Instant::now() + OPERANDS;
    loop {
        let live = nodes.get(&node).await.unwrap();
        let unschedulable = live.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        cordoned |= unschedulable;
        evicted |=
            pods_api.get_opt(&workload_pod.name_any()).await.unwrap().is_none_or(|p| p.uid() != workload_pod.uid());
        let state = live.labels().get(ofed::upgrade::STATE_LABEL).cloned();
        let operands = operand_pods(&client, &ns).await;
        let new_driver = operands.iter().find(|p| {
            p.labels().contains_key("nvidia.com/ofed-driver")
                && p.uid().as_deref() != Some(old_driver.as_str())
                && ready_since(p).is_some()
        });
        let done = new_driver.is_some() && !unschedulable && state.as_deref() == Some("upgrade-done");
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upgrade did not finish in {OPERANDS:?}: state {state:?}, cordoned now {unschedulable}, seen cordoned {cordoned}, \
             workload evicted {evicted}, new driver Ready {}",
            new_driver.is_some()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(cordoned, "the node was never seen cordoned during the upgrade");
    assert!(evicted, "the workload pod was not drained");
    let pods = operands_ready(&client, &ns, &node, &stand_ins).await;
    let driver = pod_labelled(&pods, "nvidia.com/ofed-driver");
    let image = driver.spec.as_ref().unwrap().containers[0].image.clone().unwrap();
    assert!(image.contains(NEXT_DRIVER), "the driver pod runs {image}");
    let plugin = pods.iter().find(|p| p.labels().get(RDMA_POD).map(String::as_str) == Some("rdma-shared-dp")).unwrap();
    assert_ne!(plugin.uid().unwrap(), old_plugin, "the device plugin kept running while the driver restarted");
    let (driver_ready, plugin_created) =
        (ready_since(driver).unwrap(), plugin.metadata.creation_timestamp.as_ref().unwrap().0);
    assert!(
        plugin_created >= driver_ready,
        "the device plugin restarted at {plugin_created}, before the new driver was Ready at {driver_ready}"
    );
    // The operator's controllers were not drained: none restarted or moved.
    let problems = controllers_run(&client, &ns, &node, 15).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The Deployments of the release, rolled out to `tag` (every replica updated and available).
async fn rolled_out_to(client: &Client, ns: &str, tag: &str) -> Result<(), String> {
    let list =
        Api::<Deployment>::namespaced(client.clone(), ns).list(&release_objects()).await.map_err(|e| e.to_string())?;
    let pending: Vec<String> = list
        .items
        .iter()
        .filter(|d| {
            let image = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|p| p.containers[0].image.clone().unwrap_or_default());
            let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = d.status.clone().unwrap_or_default();
            !image.is_some_and(|i| i.ends_with(&format!(":{tag}")))
                || status.observed_generation != d.metadata.generation
                || status.updated_replicas != Some(wanted)
                || status.available_replicas != Some(wanted)
                || status.replicas != Some(wanted)
        })
        .map(ResourceExt::name_any)
        .collect();
    if pending.is_empty() { Ok(()) } else { Err(format!("not rolled out: {pending:?}")) }
}

/// The uids of the operands' DaemonSets (with their generation) and pods.
async fn operand_uids(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let sets = Api::<DaemonSet>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap();
    let mut out: BTreeMap<String, String> = sets
        .items
        .iter()
        .map(|d| {
            (format!("DaemonSet/{}", d.name_any()), format!("{} gen {:?}", d.uid().unwrap(), d.metadata.generation))
        })
        .collect();
    out.extend(operand_pods(client, ns).await.iter().map(|p| (format!("Pod/{}", p.name_any()), p.uid().unwrap())));
    out
}

#[tokio::test]
#[cfg_attr(not(e2e_real_node), ignore = "needs a real node: ../shared/k8s/cluster-up (hack/e2e.sh runs this stage)")]
async fn helm_upgrade_rolls_the_controllers_and_uninstall_leaves_the_operands_running() {
    let Some(node) = real_node() else { return };
    let Ok(next_tag) = std::env::var("NETOP_E2E_NEXT_IMAGE_TAG") else {
        eprintln!("skipping: NETOP_E2E_NEXT_IMAGE_TAG names no second image tag (hack/e2e.sh builds one)");
        return;
    };
    let _host = NodeHost::prepare();
    let Some(env) = TestEnv::new("netop-e2e-upgrade").await else { return };
    if helm().is_none() {
        return;
    }
    let (client, ns) = (env.client.clone(), env.namespace.clone());
    let registry_value = format!("global.image.registry={}", registry());
    install(&env.cleanup, RELEASE, &ns, &["--set", &registry_value]);
    let problems = controllers_run(&client, &ns, &node, 15).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    label_as_nic_node(&env, &node).await;
    let policy = seed_policy();
    let stand_ins = stand_in_operands(&client, &ns, &node, &[&policy]).await;
    fresh_policy(&env, &policy).await;
    operands_ready(&client, &ns, &node, &stand_ins).await;
    let before = operand_uids(&client, &ns).await;

    // New controller images: every controller rolls, no operand is touched.
    upgrade(RELEASE, &ns, &["--reuse-values", "--set", &format!("global.image.tag={next_tag}")]);
    eventually("every controller to roll out to the new tag", START, || rolled_out_to(&client, &ns, &next_tag)).await;
    let problems = controllers_run(&client, &ns, &node, 15).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    operands_ready(&client, &ns, &node, &stand_ins).await;
    assert_eq!(operand_uids(&client, &ns).await, before, "helm upgrade touched the operands");

    // Uninstall: the controllers go; the operands, the policy and the CRDs stay.
    e2e::helm::uninstall(RELEASE, &ns, &std::env::var(e2e::KUBECONFIG_VAR).unwrap());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let controllers: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("the controllers to be gone", START, || async {
        let left = deployments.list(&release_objects()).await.map_err(|e| e.to_string())?.items.len();
        let pods = controllers.list(&release_objects()).await.map_err(|e| e.to_string())?.items.len();
        if left + pods == 0 { Ok(()) } else { Err(format!("{left} Deployments, {pods} pods left")) }
    })
    .await;
    assert_eq!(operand_uids(&client, &ns).await, before, "helm uninstall touched the operands");
    assert!(operand_pods(&client, &ns).await.iter().all(|p| ready_since(p).is_some()), "an operand stopped running");
    Api::<NicClusterPolicy>::all(client.clone()).get(POLICY_NAME).await.expect("the policy stays");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.get("nicclusterpolicies.mellanox.com").await.expect("the CRDs stay");
}
