//! Each check's verdict on fixture clusters.

use super::*;
use serde_json::{Value, json};

fn node(name: &str, labels: Value, cordoned: bool) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"unschedulable": cordoned}}))
        .unwrap()
}

fn nic_node(name: &str) -> Node {
    node(
        name,
        json!({NIC_PRESENT_LABEL: "true", ofed::pools::OS_LABEL: "ubuntu", ofed::pools::OS_VERSION_LABEL: "22.04",
               ofed::pools::KERNEL_LABEL: "5.15.0-78-generic", ofed::pools::ARCH_LABEL: "amd64"}),
        false,
    )
}

fn policy(spec: Value, status: Value, generation: i64) -> NicClusterPolicy {
    serde_json::from_value(json!({"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy",
        "metadata": {"name": "nic-cluster-policy", "generation": generation}, "spec": spec, "status": status}))
    .unwrap()
}

fn rdma_policy() -> NicClusterPolicy {
    policy(
        json!({"rdmaSharedDevicePlugin": {"image": "k8s-rdma-shared-dev-plugin", "repository": "ghcr.io/mellanox", "version": "v1.5.1"}}),
        json!({"appliedStates": [{"name": "state-RDMA-device-plugin", "state": "ready", "observedGeneration": 3}]}),
        3,
    )
}

fn controller(chart: &str, ready: i32) -> Controller {
    Controller {
        chart: chart.into(),
        namespace: "nvidia-network-operator".into(),
        service_account: chart.into(),
        ready,
        image: format!("ghcr.io/x/{chart}-controller:1.0"),
        build_info: None,
    }
}

fn healthy() -> Facts {
    Facts {
        now: 10_000,
        namespace: "nvidia-network-operator".into(),
        crds_total: 12,
        controllers: vec![controller("rdma-dp", 1)],
        policy: Some(rdma_policy()),
        nodes: vec![nic_node("n1")],
        nfd_pods_ready: 2,
        access: [("rdma-dp".to_string(), Access::Denied(vec![]))].into(),
        mofed_wait_threshold: 600,
        ..Default::default()
    }
}

fn verdicts(findings: &[Finding]) -> Vec<Verdict> {
    findings.iter().map(|f| f.verdict).collect()
}

#[test]
fn a_healthy_cluster_is_all_ok_and_exits_0() {
    let all = findings(&healthy());
    assert!(all.iter().all(|f| f.verdict == Verdict::Ok), "{all:#?}");
    assert_eq!(exit_code(&all), 0);
}

#[test]
fn missing_crds_are_a_problem_and_outdated_ones_a_warning_both_saying_to_apply_them() {
    let facts = Facts {
        crds_missing: vec!["nicnodepolicies.mellanox.com".into()],
        crds_outdated: vec!["nicclusterpolicies.mellanox.com".into()],
        ..healthy()
    };
    let found = check_crds(&facts);
    assert_eq!(verdicts(&found), [Verdict::Problem, Verdict::Warning]);
    assert!(found[0].found.contains("nicnodepolicies.mellanox.com"));
    assert!(found.iter().all(|f| f.action.as_deref().unwrap().contains("kubectl apply --server-side")));
}

#[test]
fn an_enabled_section_without_a_running_controller_is_a_problem_naming_the_chart() {
    let facts = Facts { controllers: vec![], ..healthy() };
    let found = check_controllers(&facts);
    assert_eq!(verdicts(&found), [Verdict::Problem]);
    assert!(
        found[0].found.contains("state-RDMA-device-plugin")
            && found[0].action.as_deref().unwrap().contains("rdma-dp.enabled=true")
    );
    // The all-in-one controller runs every state; a held Lease also counts.
    assert_eq!(
        verdicts(&check_controllers(&Facts { controllers: vec![controller("all-in-one", 1)], ..healthy() })),
        [Verdict::Ok]
    );
    let leased =
        Facts { controllers: vec![], leased_states: ["state-RDMA-device-plugin".to_string()].into(), ..healthy() };
    assert!(check_controllers(&leased).iter().all(|f| f.verdict == Verdict::Ok));
    let unready = check_controllers(&Facts { controllers: vec![controller("rdma-dp", 0)], ..healthy() });
    assert_eq!(verdicts(&unready), [Verdict::Warning, Verdict::Problem]);
}

#[test]
fn a_nic_node_without_pool_labels_is_named_a_problem_when_a_driver_is_wanted() {
    let bare = node("n2", json!({NIC_PRESENT_LABEL: "true"}), false);
    let facts = Facts { nodes: vec![nic_node("n1"), bare], ..healthy() };
    let found = check_nfd(&facts);
    assert_eq!(verdicts(&found), [Verdict::Ok, Verdict::Warning], "no driver in the policy: a warning");
    assert!(found[1].found.contains("n2") && found[1].found.contains(ofed::pools::KERNEL_LABEL));
    let with_driver = Facts {
        policy: Some(policy(
            json!({"ofedDriver": {"image": "doca-driver", "repository": "nvcr.io/nvidia/mellanox", "version": "24.10-0.7.0.0-0"}}),
            json!({}),
            1,
        )),
        ..facts
    };
    assert_eq!(verdicts(&check_nfd(&with_driver)), [Verdict::Ok, Verdict::Problem]);
    let no_nfd = Facts { nfd_pods_ready: 0, nodes: vec![], ..healthy() };
    assert_eq!(verdicts(&check_nfd(&no_nfd)), [Verdict::Warning, Verdict::Warning]);
}

fn driver_pod(node: &str, created: &str, status: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": format!("mofed-{node}"), "labels": {ofed::DRIVER_LABEL: ""},
        "creationTimestamp": created},
        "spec": {"nodeName": node, "containers": [{"name": "mofed-container"}]}, "status": status}))
    .unwrap()
}

#[test]
fn a_stuck_mofed_wait_names_the_node_and_the_driver_pods_last_container_status() {
    let waiting = node("n1", json!({MOFED_WAIT_LABEL: "true"}), false);
    let crashing = driver_pod(
        "n1",
        "1970-01-01T00:00:00Z",
        json!({"phase": "Running", "containerStatuses": [{"name": "mofed-container", "ready": false, "restartCount": 12,
            "image": "", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
    );
    let facts = Facts { nodes: vec![waiting.clone()], pods: vec![crashing], ..healthy() };
    let found = check_mofed_wait(&facts);
    assert_eq!(verdicts(&found), [Verdict::Problem]);
    assert!(
        found[0].found.contains("n1: waiting for its driver for 2h")
            && found[0].found.contains("container mofed-container waiting (CrashLoopBackOff), last terminated Error (exit 1), restarted 12 times"),
        "{}",
        found[0].found
    );
    let recent = driver_pod("n1", "1970-01-01T02:40:00Z", json!({"phase": "Running"}));
    assert_eq!(
        verdicts(&check_mofed_wait(&Facts { nodes: vec![waiting.clone()], pods: vec![recent], ..healthy() })),
        [Verdict::Ok]
    );
    let podless = check_mofed_wait(&Facts { nodes: vec![waiting], ..healthy() });
    assert!(podless[0].found.contains("no driver pod"), "{podless:?}");
}

#[test]
fn operand_pods_not_ready_are_grouped_by_state_with_their_events() {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "rdma-shared-dp-ds-abc",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "rdma-shared-dp-ds", "uid": "u"}]},
        "spec": {"nodeName": "n1", "containers": []},
        "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}}))
    .unwrap();
    let event: Event = serde_json::from_value(json!({"metadata": {"name": "e"}, "reason": "FailedMount",
        "message": "configmap not found", "involvedObject": {"kind": "Pod", "name": "rdma-shared-dp-ds-abc"}}))
    .unwrap();
    let facts = Facts {
        pods: vec![pod],
        events: vec![event],
        workload_states: [("rdma-shared-dp-ds".to_string(), "state-RDMA-device-plugin".to_string())].into(),
        ..healthy()
    };
    let found = check_operand_pods(&facts);
    assert_eq!(verdicts(&found), [Verdict::Problem]);
    assert!(
        found[0].found.starts_with("state-RDMA-device-plugin: 1 pod(s) not ready: rdma-shared-dp-ds-abc Pending on n1")
    );
    assert!(found[0].found.contains("FailedMount: configmap not found"), "{}", found[0].found);
}

#[test]
fn the_nv_ipam_webhook_needs_cert_manager_or_openshift() {
    let webhook = policy(
        json!({"nvIpam": {"image": "nvidia-k8s-ipam", "repository": "ghcr.io/mellanox", "version": "v0.2.0", "enableWebhook": true}}),
        json!({}),
        1,
    );
    let facts = Facts { policy: Some(webhook), ..healthy() };
    assert_eq!(verdicts(&check_nv_ipam_webhook(&facts)), [Verdict::Problem]);
    let served = Facts { served: ["cert-manager.io/v1".to_string()].into(), ..facts.clone() };
    assert_eq!(verdicts(&check_nv_ipam_webhook(&served)), [Verdict::Ok]);
    let openshift = Facts { served: ["config.openshift.io/v1".to_string()].into(), ..facts };
    assert_eq!(verdicts(&check_nv_ipam_webhook(&openshift)), [Verdict::Ok]);
}

#[test]
fn failed_upgrades_stray_cordons_and_blocked_drains_are_named() {
    use ofed::upgrade::{FAILURE_ANNOTATION, STATE_LABEL};
    let mut failed = node("n1", json!({STATE_LABEL: "upgrade-failed"}), true);
    failed.metadata.annotations =
        Some([(FAILURE_ANNOTATION.to_string(), "drain failed: timed out after 5s".to_string())].into());
    let stray = node("n2", json!({STATE_LABEL: "upgrade-done"}), true);
    let draining = node("n3", json!({STATE_LABEL: "drain-required"}), true);
    let facts = Facts {
        nodes: vec![failed, stray, draining],
        drain_blocking: [("n3".to_string(), vec!["work/train-0".to_string()])].into(),
        ..healthy()
    };
    let found = check_upgrades(&facts);
    assert_eq!(verdicts(&found), [Verdict::Problem, Verdict::Warning, Verdict::Warning]);
    assert!(found[0].found.contains("n1: driver upgrade failed: drain failed: timed out after 5s"));
    assert!(found[1].found.contains("n2: cordoned with no driver upgrade in progress"));
    assert!(found[2].found.contains("n3: draining, still on the node: work/train-0"));
}

#[test]
fn denied_grants_are_a_problem_and_an_unchecked_controller_a_warning() {
    let facts = Facts {
        access: [
            ("ofed".to_string(), Access::Denied(vec!["patch core/nodes (cluster-wide)".into()])),
            ("rdma-dp".to_string(), Access::Skipped("you may not impersonate ServiceAccounts".into())),
        ]
        .into(),
        ..healthy()
    };
    let found = check_rbac(&facts);
    assert_eq!(verdicts(&found), [Verdict::Problem, Verdict::Warning]);
    assert!(found[0].found.contains("patch core/nodes"));
}

#[test]
fn the_policy_status_shows_missing_stale_failing_and_waiting_states() {
    let spec = json!({
        "rdmaSharedDevicePlugin": {"image": "k8s-rdma-shared-dev-plugin", "repository": "ghcr.io/mellanox", "version": "v1.5.1"},
        "nvIpam": {"image": "nvidia-k8s-ipam", "repository": "ghcr.io/mellanox", "version": "v0.2.0"},
        "ibKubernetes": {"image": "ib-kubernetes", "repository": "ghcr.io/mellanox", "version": "v1.0.2", "ufmSecret": "ufm"},
    });
    let status = json!({"appliedStates": [
        {"name": "state-RDMA-device-plugin", "state": "ready", "observedGeneration": 4},
        {"name": "state-nv-ipam-cni", "state": "error", "message": "spec.nvIpam.version: bad", "observedGeneration": 5},
    ]});
    let facts = Facts { policy: Some(policy(spec, status, 5)), ..healthy() };
    let found = check_policy_status(&facts);
    let lines: Vec<&str> = found.iter().map(|f| f.found.as_str()).collect();
    assert_eq!(verdicts(&found), [Verdict::Warning, Verdict::Problem, Verdict::Problem], "{lines:?}");
    assert!(lines[0].contains("state-RDMA-device-plugin: stale: computed for generation 4"));
    assert!(lines.iter().any(|l| l.contains("state-ib-kubernetes: no status entry")));
    assert!(lines.iter().any(|l| l.contains("state-nv-ipam-cni: error: spec.nvIpam.version: bad")));
    let none = check_policy_status(&Facts { policy: None, ..healthy() });
    assert_eq!(verdicts(&none), [Verdict::Warning]);
}

#[test]
fn the_report_lists_problems_first_and_its_exit_code_is_the_worst_verdict() {
    let facts = Facts { controllers: vec![], crds_outdated: vec!["x".into()], ..healthy() };
    let all = findings(&facts);
    assert_eq!(all[0].verdict, Verdict::Problem);
    assert!(all.windows(2).all(|w| w[0].verdict <= w[1].verdict));
    assert_eq!(exit_code(&all), 2);
    let warnings = findings(&Facts { crds_outdated: vec!["x".into()], ..healthy() });
    assert_eq!(exit_code(&warnings), 1);
    let text = human(&all, Paint::plain());
    assert!(text.starts_with("PROBLEM controllers"), "{text}");
    assert!(text.contains("→ install or enable the rdma-dp controller"), "{text}");
}

#[test]
fn the_build_info_is_read_from_the_metrics_text() {
    let metrics =
        "# HELP x\nnetwork_operator_build_info{commit=\"abc\",component=\"ofed\",version=\"0.1.0\"} 1\nother 2\n";
    assert_eq!(build_info(metrics).as_deref(), Some("commit=\"abc\",component=\"ofed\",version=\"0.1.0\""));
    assert_eq!(build_info("other 1\n"), None);
    let shown = check_controllers(&Facts {
        controllers: vec![Controller { build_info: Some("version=\"0.1.0\"".into()), ..controller("rdma-dp", 1) }],
        ..healthy()
    });
    assert!(shown[0].found.ends_with("1 ready; version=\"0.1.0\")"), "{}", shown[0].found);
}
