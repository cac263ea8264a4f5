//! `nicctl doctor`, `diff` and `upgrade status` against a real API server, run as the user
//! runs them (the binaries, with a kubeconfig), and `kubectl nic doctor` through the real
//! kubectl's plugin mechanism. A cluster broken on purpose gets each problem named; a healthy
//! one (the chart installed, the real OFED controller running, the test playing kubelet) gets
//! exit code 0, the applied policy diffs clean, a version bump names the nodes whose driver
//! would reload, and the upgrade status matches the nodes' labels.

use api::{NicClusterPolicy, POLICY_NAME};
use e2e::binary::{ControllerProcess, bin_dir};
use e2e::kubelet::{MOFED_WAIT_LABEL, create_node, run_pods};
use e2e::{TestEnv, WAIT, applied_state, eventually, fresh_policy, seed_policy, unique_name};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use ofed::pools::{ARCH_LABEL, KERNEL_LABEL, OS_LABEL, OS_VERSION_LABEL};
use ofed::upgrade::{FAILURE_ANNOTATION, STATE_LABEL};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

const NIC_LABEL: &str = "feature.node.kubernetes.io/pci-15b3.present";

fn pool_labels() -> Vec<(&'static str, &'static str)> {
    vec![
        (NIC_LABEL, "true"),
        (OS_LABEL, "ubuntu"),
        (OS_VERSION_LABEL, "22.04"),
        (KERNEL_LABEL, "5.15.0-78-generic"),
        (ARCH_LABEL, "amd64"),
    ]
}

/// The seed policy's driver alone, from a local registry.
async fn driver_policy() -> NicClusterPolicy {
    let tags = vec!["23.04-0.5.3.3.1-ubuntu22.04-amd64".to_string()];
    let registry = e2e::registry::serve("mellanox/mofed", tags).await;
    let seed = seed_policy();
    let mut ofed = seed.spec.ofed_driver.clone().expect("the seed has ofedDriver");
    ofed.image.repository = format!("{registry}/mellanox");
    let mut policy = NicClusterPolicy::new(POLICY_NAME, Default::default());
    policy.spec.ofed_driver = Some(ofed);
    policy
}

/// Runs `program` (a binary of this build, or `kubectl`) with `args` against the cluster under
/// test, `PATH` starting with this build's binaries.
fn run(program: &str, args: &[&str]) -> Output {
    let kubeconfig = std::env::var("NETOP_E2E_KUBECONFIG").expect("the cluster under test");
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let binary = if program == "kubectl" { PathBuf::from("kubectl") } else { bin_dir().join(program) };
    Command::new(&binary)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `nicctl doctor -o json`: the exit code and the findings.
fn doctor_json(namespace: &str) -> (i32, Vec<Value>) {
    let output = run("nicctl", &["doctor", "-n", namespace, "-o", "json"]);
    let findings: Vec<Value> = serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| {
        panic!("doctor's JSON: {e}: {}{}", stdout(&output), String::from_utf8_lossy(&output.stderr))
    });
    (output.status.code().unwrap_or(-1), findings)
}

/// The problem of check `check` whose text contains every one of `words`.
fn problem<'a>(findings: &'a [Value], check: &str, words: &[&str]) -> &'a Value {
    findings
        .iter()
        .find(|f| {
            let found = f["found"].as_str().unwrap_or_default();
            f["check"] == check && f["verdict"] == "problem" && words.iter().all(|w| found.contains(w))
        })
        .unwrap_or_else(|| panic!("no {check} problem naming {words:?} in {findings:#?}"))
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn doctor_names_each_problem_of_a_broken_cluster() {
    let Some(env) = TestEnv::new("netop-e2e-doctor").await else { return };
    let client = env.client.clone();
    let base = unique_name("doc");
    let (bare, stuck, failed) = (format!("{base}-bare"), format!("{base}-stuck"), format!("{base}-failed"));
    // A NIC node NFD left without OS and kernel labels.
    create_node(&env, &bare, &[(NIC_LABEL, "true")]).await;
    // A node waiting for its driver, whose driver pod crash-loops.
    let mut waiting = pool_labels();
    waiting.push((MOFED_WAIT_LABEL, "true"));
    create_node(&env, &stuck, &waiting).await;
    // A node whose driver upgrade failed, left cordoned.
    let mut failing = pool_labels();
    failing.push((STATE_LABEL, "upgrade-failed"));
    create_node(&env, &failed, &failing).await;
    let patch = json!({"metadata": {"annotations": {FAILURE_ANNOTATION: "drain failed: timed out after 300s"}},
                       "spec": {"unschedulable": true}});
    Api::<Node>::all(client.clone()).patch(&failed, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &env.namespace);
    let driver: Pod =
        serde_json::from_value(json!({"metadata": {"name": "mofed-stuck", "labels": {ofed::DRIVER_LABEL: ""}},
        "spec": {"nodeName": stuck, "containers": [{"name": "mofed-container", "image": "doca-driver:x"}]}}))
        .unwrap();
    pods.create(&PostParams::default(), &driver).await.unwrap();
    let hour_ago = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_hours(1)).unwrap().to_string();
    let status = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": hour_ago}],
        "containerStatuses": [{"name": "mofed-container", "ready": false, "restartCount": 14, "image": "doca-driver:x",
            "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}});
    pods.patch_status("mofed-stuck", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    // The policy enables the driver and the RDMA device plugin; no controller runs.
    let mut policy = driver_policy().await;
    policy.spec.rdma_shared_device_plugin = seed_policy().spec.rdma_shared_device_plugin;
    fresh_policy(&env, &policy).await;

    let (code, findings) = doctor_json(&env.namespace);
    assert_eq!(code, 2, "problems: exit code 2");
    assert_eq!(findings[0]["verdict"], "problem", "problems first");
    problem(&findings, "nfd", &[&bare, "left out of every driver pool", KERNEL_LABEL]);
    let wait = problem(&findings, "mofed-wait", &[&stuck, "mofed-stuck", "CrashLoopBackOff", "restarted 14 times"]);
    assert!(wait["action"].as_str().unwrap().contains("kubectl logs"), "{wait}");
    problem(&findings, "controllers", &["state-RDMA-device-plugin", "rdma-dp"]);
    problem(&findings, "controllers", &["state-OFED", "ofed"]);
    problem(&findings, "upgrades", &[&failed, "drain failed: timed out after 300s"]);
    problem(&findings, "policy-status", &["state-OFED", "no status entry"]);
    problem(&findings, "operand-pods", &["mofed-stuck", "CrashLoopBackOff"]);

    // The same through kubectl's plugin mechanism (kubectl finds kubectl-nic on the PATH).
    let plugin = run("kubectl", &["nic", "doctor", "-n", &env.namespace]);
    assert_eq!(plugin.status.code(), Some(2), "{}", String::from_utf8_lossy(&plugin.stderr));
    let text = stdout(&plugin);
    assert!(text.starts_with("PROBLEM"), "{text}");
    assert!(text.contains(&bare) && text.contains(&failed) && text.contains("mofed-stuck"), "{text}");
    eprintln!("kubectl nic doctor (broken cluster):\n{text}");
}

/// The chart's release with the OFED controller only.
fn install_ofed_release(env: &TestEnv, release: &str) {
    let args = e2e::helm::only_controllers(&["ofed"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    e2e::helm::install(&env.cleanup, release, &env.namespace, &args);
}

async fn nodes_state(client: &Client, names: &[String]) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for name in names {
        let node = Api::<Node>::all(client.clone()).get(name).await.unwrap();
        let state = node.metadata.labels.as_ref().and_then(|l| l.get(STATE_LABEL)).cloned().unwrap_or_default();
        let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        out.push((name.clone(), state, cordoned));
    }
    out
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn a_healthy_cluster_passes_the_doctor_diffs_clean_and_shows_its_upgrade_status() {
    let Some(env) = TestEnv::new("netop-e2e-doctor").await else { return };
    if e2e::helm::helm().is_none() {
        return;
    }
    let client = env.client.clone();
    let base = unique_name("doc");
    let nodes: Vec<String> = ["a", "b"].iter().map(|s| format!("{base}-{s}")).collect();
    for node in &nodes {
        create_node(&env, node, &pool_labels()).await;
    }
    // The chart's OFED controller (its Deployment, ServiceAccount and RBAC), its pod played
    // Ready; the controller itself runs as a process of this build.
    let release = unique_name("doc");
    install_ofed_release(&env, &release);
    eventually("the chart's OFED controller Deployment to be ready", WAIT, || async {
        run_pods(&client, &env.namespace, "app.kubernetes.io/name=ofed", Some(&nodes[0])).await;
        let deployment = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &env.namespace)
            .get(&format!("{release}-ofed"))
            .await
            .map_err(|e| e.to_string())?;
        let ready = deployment.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready > 0 { Ok(()) } else { Err("not ready yet".to_string()) }
    })
    .await;
    // Node Feature Discovery, played.
    let nfd: Pod = serde_json::from_value(json!({"metadata": {"name": "nfd-worker",
        "labels": {"app.kubernetes.io/name": "node-feature-discovery"}},
        "spec": {"containers": [{"name": "worker", "image": "nfd:x"}]}}))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), &env.namespace).create(&PostParams::default(), &nfd).await.unwrap();
    run_pods(&client, &env.namespace, "app.kubernetes.io/name=node-feature-discovery", Some(&nodes[0])).await;

    let policy = driver_policy().await;
    fresh_policy(&env, &policy).await;
    let mut controller = ControllerProcess::start("ofed-controller", &env.namespace, &[]);
    controller.wait_ready().await;
    eventually("state-OFED ready with every driver running", WAIT, || async {
        run_pods(&client, &env.namespace, ofed::DRIVER_LABEL, None).await;
        let (state, message) = applied_state(&client, "state-OFED").await?;
        if state == "ready" { Ok(()) } else { Err(format!("{state}: {message:?}")) }
    })
    .await;
    eventually("mofed.wait false on both nodes", WAIT, || async {
        for node in &nodes {
            let live = Api::<Node>::all(client.clone()).get(node).await.map_err(|e| e.to_string())?;
            let wait = live.metadata.labels.as_ref().and_then(|l| l.get(MOFED_WAIT_LABEL)).cloned();
            if wait.as_deref() != Some("false") {
                return Err(format!("{node}: {wait:?}"));
            }
        }
        Ok(())
    })
    .await;

    let (code, findings) = doctor_json(&env.namespace);
    let not_ok: Vec<&Value> = findings.iter().filter(|f| f["verdict"] != "ok").collect();
    assert_eq!(code, 0, "a healthy cluster: {not_ok:#?}");
    let rbac = findings.iter().find(|f| f["check"] == "rbac").expect("the RBAC check ran");
    assert!(rbac["found"].as_str().unwrap().contains("ofed: its ServiceAccount may do all"), "{rbac}");
    let human = stdout(&run("nicctl", &["doctor", "-n", &env.namespace]));
    eprintln!("nicctl doctor (healthy cluster):\n{human}");

    // The applied policy diffs clean.
    let live = Api::<NicClusterPolicy>::all(client.clone()).get(POLICY_NAME).await.unwrap();
    let mut applied = NicClusterPolicy::new(POLICY_NAME, live.spec.clone());
    applied.metadata.labels = live.metadata.labels.clone();
    let file = std::env::temp_dir().join(format!("{}.yaml", unique_name("netop-diff")));
    std::fs::write(&file, serde_saphyr::to_string(&applied).unwrap()).unwrap();
    let clean = run("nicctl", &["diff", "-n", &env.namespace, "-f", file.to_str().unwrap()]);
    assert_eq!(clean.status.code(), Some(0), "{}{}", stdout(&clean), String::from_utf8_lossy(&clean.stderr));
    assert!(stdout(&clean).contains("0 to create, 0 to change, 0 to delete"), "{}", stdout(&clean));

    // A version bump: the driver DaemonSet changes, both nodes would reload their driver.
    let mut bumped = applied.clone();
    bumped.spec.ofed_driver.as_mut().unwrap().image.version = "24.10-0.7.0.0-0".into();
    std::fs::write(&file, serde_saphyr::to_string(&bumped).unwrap()).unwrap();
    let bump = run("nicctl", &["diff", "-n", &env.namespace, "-f", file.to_str().unwrap()]);
    let text = stdout(&bump);
    assert_eq!(bump.status.code(), Some(1), "changes: exit code 1: {text}{}", String::from_utf8_lossy(&bump.stderr));
    assert!(text.contains("change  DaemonSet") && text.contains("+") && text.contains("24.10-0.7.0.0-0"), "{text}");
    assert!(text.contains("Driver pools that would roll"), "{text}");
    let rolls = text.lines().find(|l| l.trim_start().starts_with("mofed-")).unwrap_or_default();
    assert!(nodes.iter().all(|n| rolls.contains(n.as_str())), "both nodes named: {text}");
    eprintln!("nicctl diff (version bump):\n{text}");
    let json_out = run("nicctl", &["diff", "-n", &env.namespace, "-f", file.to_str().unwrap(), "-o", "json"]);
    let report: Value = serde_json::from_str(&stdout(&json_out)).unwrap();
    assert_eq!(report["rolls"][0]["nodes"], json!(nodes));
    let _ = std::fs::remove_file(&file);

    // Mid-upgrade (the controller stopped, the nodes' labels set as an upgrade leaves them):
    // the status shows each node's state, cordon and what blocks it.
    let (status, _) = controller.terminate(Duration::from_secs(5)).await;
    assert!(status.success());
    let node_api: Api<Node> = Api::all(client.clone());
    let draining = json!({"metadata": {"labels": {STATE_LABEL: "drain-required"}}, "spec": {"unschedulable": true}});
    node_api.patch(&nodes[0], &PatchParams::default(), &Patch::Merge(&draining)).await.unwrap();
    let failed = json!({"metadata": {"labels": {STATE_LABEL: "upgrade-failed"},
                                     "annotations": {FAILURE_ANNOTATION: "driver pod x is crash-looping"}},
                        "spec": {"unschedulable": true}});
    node_api.patch(&nodes[1], &PatchParams::default(), &Patch::Merge(&failed)).await.unwrap();
    let output = run("nicctl", &["upgrade", "status", "-n", &env.namespace, "-o", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let shown: Vec<(String, String, bool)> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| nodes.iter().any(|n| l["node"] == n.as_str()))
        .map(|l| {
            (l["node"].as_str().unwrap().to_string(), l["state"].as_str().unwrap().to_string(), l["cordoned"] == true)
        })
        .collect();
    assert_eq!(shown, nodes_state(&client, &nodes).await, "the status matches the nodes' labels");
    let failed_line = report["nodes"].as_array().unwrap().iter().find(|l| l["node"] == nodes[1].as_str()).unwrap();
    assert_eq!(failed_line["blocking"], "driver pod x is crash-looping");
    assert!(failed_line["running"].as_str().is_some_and(|v| !v.is_empty()), "{failed_line}");
    let human = stdout(&run("nicctl", &["upgrade", "status", "-n", &env.namespace]));
    assert!(human.contains("drain-required") && human.contains("upgrade-failed"), "{human}");
    eprintln!("nicctl upgrade status:\n{human}");
}
