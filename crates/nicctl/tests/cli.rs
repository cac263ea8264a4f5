//! `nicctl` as a user runs it: exit codes and messages.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn nicctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nicctl")).args(args).current_dir(repo()).output().expect("nicctl runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_temp(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("nicctl-test-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("temp file written");
    path
}

const SEED_POLICY: &str = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml";

#[test]
fn render_exits_0_on_every_example_with_an_operator_kind_and_2_on_the_others() {
    for entry in std::fs::read_dir(repo().join("example/crs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
            // The IPPool example is NVIDIA IPAM's own kind, which no state renders.
            if path.file_name().is_some_and(|n| n.to_string_lossy().contains("ippool")) {
                assert_eq!(output.status.code(), Some(2), "{}", path.display());
                assert!(stderr(&output).contains("found: nv-ipam.nvidia.com/v1alpha1 IPPool"), "{}", stderr(&output));
            } else {
                assert!(output.status.success(), "{}: {}", path.display(), stderr(&output));
            }
        }
    }
}

#[test]
fn a_misspelled_field_exits_2_naming_the_file_and_the_field() {
    let text = std::fs::read_to_string(repo().join(SEED_POLICY)).unwrap().replace("  ofedDriver:", "  ofedDriverr:");
    let path = write_temp("misspelled.yaml", &text);
    let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    assert!(message.contains("spec.ofedDriverr: unknown field (did you mean ofedDriver?)"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
}

#[test]
fn a_wrong_type_exits_2_naming_the_field() {
    let text = std::fs::read_to_string(repo().join(SEED_POLICY))
        .unwrap()
        .replace("initialDelaySeconds: 10", "initialDelaySeconds: soon");
    let path = write_temp("wrong-type.yaml", &text);
    let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("spec.ofedDriver.startupProbe.initialDelaySeconds: expected integer, got string"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_missing_required_field_exits_2_naming_the_field() {
    let text = std::fs::read_to_string(repo().join(SEED_POLICY)).unwrap().replace("    version: 23.04-0.5.3.3.1\n", "");
    let path = write_temp("missing.yaml", &text);
    let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("spec.ofedDriver.version: required: set it here or spec.global.version"), "{message}");
}

#[test]
fn sections_that_leave_their_image_to_spec_global_render_as_if_they_spelled_it_out() {
    let text = std::fs::read_to_string(repo().join(SEED_POLICY)).unwrap();
    let seed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let sections =
        ["/spec/secondaryNetwork/cniPlugins", "/spec/secondaryNetwork/multus", "/spec/secondaryNetwork/ipamPlugin"];
    // Spelled out: every section with its own repository, and one pull secret each.
    let mut explicit = seed.clone();
    for section in ["/spec/ofedDriver", "/spec/rdmaSharedDevicePlugin"].iter().chain(&sections) {
        explicit.pointer_mut(section).unwrap()["imagePullSecrets"] = serde_json::json!(["pull-secret"]);
    }
    // From global: the shared repository, multus's version and the pull secret.
    let mut global = seed.clone();
    global["spec"]["global"] = serde_json::json!({
        "repository": "ghcr.io/k8snetworkplumbingwg", "version": "v3.9.3", "imagePullSecrets": ["pull-secret"],
    });
    for section in sections {
        global.pointer_mut(section).unwrap().as_object_mut().unwrap().remove("repository");
    }
    global.pointer_mut("/spec/secondaryNetwork/multus").unwrap().as_object_mut().unwrap().remove("version");
    let rendered = |name: &str, policy: &serde_json::Value| {
        let path = write_temp(name, &policy.to_string());
        let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    let explicit = rendered("explicit.json", &explicit);
    assert!(explicit.contains("ghcr.io/k8snetworkplumbingwg/multus-cni:v3.9.3"), "{explicit}");
    assert!(explicit.contains("- name: pull-secret"), "{explicit}");
    assert_eq!(rendered("global.json", &global), explicit);
}

#[test]
fn a_missing_file_exits_2() {
    let output = nicctl(&["render", "-f", "does-not-exist.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("does-not-exist.yaml"));
}

#[test]
fn crds_prints_every_crd() {
    let output = nicctl(&["crds"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for name in [
        "nicclusterpolicies.mellanox.com",
        "macvlannetworks.mellanox.com",
        "hostdevicenetworks.mellanox.com",
        "ipoibnetworks.mellanox.com",
        "network-attachment-definitions.k8s.cni.cncf.io",
    ] {
        assert!(text.contains(&format!("name: {name}")), "{name} missing");
    }
}

#[test]
fn render_prints_the_rdma_device_plugin_for_the_seed_policy() {
    let output = nicctl(&["render", "-f", SEED_POLICY]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("name: rdma-shared-dp-ds"), "{text}");
    assert!(text.contains("name: rdma-devices"), "{text}");
}

#[test]
fn render_prints_the_four_secondary_network_states_and_nv_ipam_with_the_cni_bin_dir_of_the_cluster() {
    let path = "example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr-full.yaml";
    for (args, bin_dir) in [
        (vec![], "/opt/cni/bin"),
        (vec!["--openshift"], "/var/lib/cni/bin"),
        (vec!["--openshift", "--cni-bin-dir", "/usr/libexec/cni"], "/usr/libexec/cni"),
    ] {
        let output = nicctl(&[&["render", "-f", path][..], &args].concat());
        assert!(output.status.success(), "{}", stderr(&output));
        let text = String::from_utf8(output.stdout).unwrap();
        for object in [
            "name: kube-multus-ds",
            "name: cni-plugins-ds",
            "name: kube-ipoib-cni-ds",
            "name: whereabouts-cni",
            "name: nv-ipam-node",
        ] {
            assert!(text.contains(object), "{args:?}: no {object}");
        }
        // The four CNI DaemonSets and nv-ipam's node agent.
        assert_eq!(text.matches(&format!("path: {bin_dir}\n")).count(), 5, "{args:?}: {bin_dir} in each CNI DaemonSet");
        assert!(!text.contains("kind: CustomResourceDefinition"), "no state renders a CRD");
        assert!(!text.contains("multus-cni-config"), "config: '' means auto");
    }
}

#[test]
fn an_invalid_multus_config_exits_2_naming_the_field() {
    let text = std::fs::read_to_string(repo().join(SEED_POLICY)).unwrap().replace("config: ''", "config: '{not json'");
    let path = write_temp("bad-multus.yaml", &text);
    let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("spec.secondaryNetwork.multus.config: invalid JSON"), "{}", stderr(&output));
}

#[test]
fn an_invalid_plugin_config_exits_2_naming_the_field() {
    let text =
        std::fs::read_to_string(repo().join(SEED_POLICY)).unwrap().replace("\"configList\": [", "\"configList\": [[");
    let path = write_temp("bad-config.yaml", &text);
    let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("spec.rdmaSharedDevicePlugin.config: invalid JSON"), "{}", stderr(&output));
}

#[test]
fn render_prints_the_nad_of_a_network_cr() {
    let output = nicctl(&["render", "-f", "example/crs/mellanox.com_v1alpha1_macvlannetwork_cr.yaml"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("kind: NetworkAttachmentDefinition"), "{text}");
    assert!(text.contains("name: example-macvlannetwork"), "{text}");
}

#[test]
fn invalid_ipam_exits_2_naming_the_field() {
    let text = std::fs::read_to_string(repo().join("example/crs/mellanox.com_v1alpha1_macvlannetwork_cr.yaml"))
        .unwrap()
        .replace("\"type\": \"whereabouts\",", "\"type\": whereabouts,");
    let path = write_temp("bad-ipam.yaml", &text);
    let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("spec.ipam: invalid JSON"), "{}", stderr(&output));
}

#[test]
fn a_file_without_an_operator_kind_exits_2_naming_what_it_found() {
    let path = write_temp("foreign.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n");
    let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("no NicClusterPolicy, NicNodePolicy or network CR") && message.contains("apps/v1 Deployment"),
        "{message}"
    );
}

#[test]
fn a_yaml_syntax_error_exits_2_with_the_parsers_snippet() {
    let path =
        write_temp("syntax.yaml", "apiVersion: mellanox.com/v1alpha1\nkind: NicClusterPolicy\nmetadata: name: x: y\n");
    let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.lines().count() > 1 && message.contains("line 3"), "{message}");
}

#[test]
fn the_nodes_hint_is_given_only_without_nodes() {
    let without = nicctl(&["render", "-f", SEED_POLICY]);
    assert!(stderr(&without).contains("--nodes"), "{}", stderr(&without));
    let nodes = write_temp("no-nic-nodes.yaml", "apiVersion: v1\nkind: Node\nmetadata:\n  name: plain\n");
    let with = nicctl(&["render", "-f", SEED_POLICY, "--nodes", nodes.to_str().unwrap()]);
    assert!(with.status.success(), "{}", stderr(&with));
    assert!(!stderr(&with).contains("pass the cluster's Nodes"), "{}", stderr(&with));
}

#[test]
fn a_closed_pipe_ends_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    for args in [&["rbac"][..], &["render", "-f", SEED_POLICY], &["crds"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nicctl"))
            .args(args)
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nicctl runs");
        // Read one byte, then close the pipe, as `| head -c1` does.
        let mut stdout = child.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        stdout.read_exact(&mut byte).unwrap();
        drop(stdout);
        let output = child.wait_with_output().unwrap();
        let message = stderr(&output);
        assert!(!message.contains("panicked") && !message.contains("Broken pipe"), "{args:?}: {message}");
        assert!(output.status.success(), "{args:?}: {:?} {message}", output.status);
    }
}

const NODE_POLICIES: &str = "example/crs/mellanox.com_v1alpha1_nicnodepolicy_cr.yaml";

/// Nodes as `--nodes` takes them: a name and labels each (every one a NIC node).
fn nodes_file(name: &str, nodes: &[(&str, &str)]) -> PathBuf {
    let text: String = nodes
        .iter()
        .map(|(node, role)| {
            format!(
                "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels:\n    feature.node.kubernetes.io/pci-15b3.present: \"true\"\n    node-role.kubernetes.io/{role}: \"\"\n    feature.node.kubernetes.io/system-os_release.ID: ubuntu\n    feature.node.kubernetes.io/system-os_release.VERSION_ID: \"22.04\"\n    feature.node.kubernetes.io/kernel-version.full: 5.15.0-78-generic\n    kubernetes.io/arch: amd64\n"
            )
        })
        .collect();
    write_temp(name, &text)
}

#[test]
fn node_policies_render_their_own_objects_named_after_them_on_the_nodes_they_select() {
    let nodes = nodes_file("nodes-disjoint.yaml", &[("gpu-1", "gpu"), ("gpu-2", "gpu"), ("storage-1", "storage")]);
    let output = nicctl(&["render", "-f", NODE_POLICIES, "--nodes", nodes.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("NicNodePolicy pool-a selects 2 node(s): gpu-1, gpu-2"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("NicNodePolicy storage-nodes selects 1 node(s): storage-1"),
        "{}",
        stderr(&output)
    );
    let objects: Vec<serde_json::Value> =
        serde_saphyr::from_str_multiple(&String::from_utf8_lossy(&output.stdout)).unwrap();
    let named = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let rdma = named("DaemonSet", "rdma-shared-dp-ds-pool-a");
    assert_eq!(rdma["metadata"]["labels"]["ds-owner"], "nnp-pool-a");
    assert_eq!(rdma["spec"]["selector"]["matchLabels"]["ds-owner"], "nnp-pool-a");
    assert_eq!(rdma["spec"]["template"]["metadata"]["labels"]["ds-owner"], "nnp-pool-a");
    assert_eq!(rdma["spec"]["template"]["spec"]["nodeSelector"]["node-role.kubernetes.io/gpu"], "");
    let volumes = rdma["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["configMap"]["name"] == "rdma-devices-pool-a"), "{volumes:?}");
    named("ConfigMap", "rdma-devices-pool-a");

    let sriov = named("DaemonSet", "sriov-device-plugin-storage-nodes");
    let pod = &sriov["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "sriov-device-plugin", "the ServiceAccount is shared");
    assert_eq!(pod["nodeSelector"]["node-role.kubernetes.io/storage"], "");
    assert!(pod["tolerations"].as_array().unwrap().iter().any(|t| t["key"] == "dedicated"), "{pod}");
    let account = named("ServiceAccount", "sriov-device-plugin");
    assert_eq!(account["metadata"]["labels"]["ds-owner"], "NicNodePolicies");
    assert!(
        objects.iter().all(|o| o["metadata"]["labels"]["ds-owner"]
            .as_str()
            .is_some_and(|v| v.starts_with("nnp-") || v == "NicNodePolicies")),
        "every object names its policy, or is shared by the NicNodePolicies"
    );
    // Each policy's driver: its own pool DaemonSet and version, on its own nodes; one shared
    // ServiceAccount.
    let drivers: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| o["kind"] == "DaemonSet" && o["metadata"]["name"].as_str().unwrap().starts_with("mofed-"))
        .collect();
    assert_eq!(drivers.len(), 2);
    for (driver, policy, version, role) in
        [(drivers[0], "pool-a", "24.10-0.7.0.0-0", "gpu"), (drivers[1], "storage-nodes", "24.07-0.6.1.0-0", "storage")]
    {
        let name = driver["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("mofed-ubuntu22.04-") && name.ends_with(&format!("-{policy}-ds")), "{name}");
        let pod = &driver["spec"]["template"]["spec"];
        assert!(pod["containers"][0]["image"].as_str().unwrap().contains(version), "{name}");
        assert_eq!(pod["nodeSelector"][format!("node-role.kubernetes.io/{role}")], "", "{name}");
        assert_eq!(pod["serviceAccountName"], "ofed-driver");
    }
    assert_eq!(
        objects.iter().filter(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == "ofed-driver").count(),
        1
    );
    // The RDMA plugin waits for its policy's driver.
    assert_eq!(rdma["spec"]["template"]["spec"]["nodeSelector"]["network.nvidia.com/operator.mofed.wait"], "false");
}

#[test]
fn node_policies_that_select_the_same_node_exit_2_naming_it() {
    let text = std::fs::read_to_string(repo().join(NODE_POLICIES)).unwrap();
    let both = text.replace("node-role.kubernetes.io/storage: \"\"", "node-role.kubernetes.io/gpu: \"\"");
    let path = write_temp("overlap.yaml", &both);
    let nodes = nodes_file("nodes-overlap.yaml", &[("gpu-1", "gpu")]);
    let output = nicctl(&["render", "-f", path.to_str().unwrap(), "--nodes", nodes.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(
            "NicNodePolicy storage-nodes: spec.nodeSelector: node(s) gpu-1 also selected by NicNodePolicy pool-a"
        ),
        "{message}"
    );
}

#[test]
fn a_section_in_a_node_policy_and_the_cluster_policy_exits_2_naming_the_field() {
    let cluster = std::fs::read_to_string(repo().join(SEED_POLICY)).unwrap();
    let node_policies = std::fs::read_to_string(repo().join(NODE_POLICIES)).unwrap();
    let path = write_temp("both-kinds.yaml", &format!("{cluster}\n---\n{node_policies}"));
    let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("NicNodePolicy pool-a: spec.ofedDriver: also set in NicClusterPolicy nic-cluster-policy"),
        "{message}"
    );
}

#[test]
fn a_node_policy_section_without_a_version_is_required_there_having_no_global() {
    let text = std::fs::read_to_string(repo().join(NODE_POLICIES)).unwrap().replace("    version: v1.5.1\n", "");
    let path = write_temp("nnp-missing.yaml", &text);
    let output = nicctl(&["render", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("spec.rdmaSharedDevicePlugin.version: required: a NicNodePolicy has no spec.global"),
        "{message}"
    );
}

#[test]
fn a_cluster_command_without_a_usable_kubeconfig_exits_2_and_an_unreachable_cluster_3() {
    let missing = nicctl(&["doctor", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("--kubeconfig /nonexistent/kubeconfig"), "{}", stderr(&missing));
    let kubeconfig = write_temp(
        "unreachable.kubeconfig",
        "apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\n\
         users: [{name: x, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\n",
    );
    for args in [&["doctor"][..], &["upgrade", "status"], &["diff", "-f", SEED_POLICY]] {
        let mut all = args.to_vec();
        all.extend(["--kubeconfig", kubeconfig.to_str().unwrap()]);
        let output = nicctl(&all);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).starts_with("error: "), "{}", stderr(&output));
    }
}
