//! Differential rendering against the original (v24.7.0, `../shared/original`): for every example
//! policy the original can run here (all but the OpenShift ones), the original deploys it on two
//! NIC nodes, then ours does, and every object each created is compared field by field, as the
//! API server holds them. A difference must be on the list of allowed differences in
//! `docs/compatibility.md` (state, kind, name, JSON path, reason, decision), else the test fails
//! naming the object, the path and both values; an entry of the list no run needs fails too, so
//! the list stays true.

use api::{NicClusterPolicy, POLICY_NAME, SyncState};
use e2e::binary::ControllerProcess;
use e2e::kubelet::{confirm_deletions, create_node, run_pods};
use e2e::original::{Original, install_original_crds, upgrade_crds_as_users_do};
use e2e::{TestEnv, WAIT, delete_if_present, eventually, every_section_prerequisites, unique_name};
use k8s_openapi::api::core::v1::Node;
use kube::api::PostParams;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client, ResourceExt};
use ofed::pools::{ARCH_LABEL, KERNEL_LABEL, OS_LABEL, OS_VERSION_LABEL};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// The example policies the original can run on this control plane (the OpenShift ones need
/// OpenShift's APIs).
const POLICIES: [&str; 6] = [
    "mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml",
    "mellanox.com_v1alpha1_nicclusterpolicy_cr-full.yaml",
    "mellanox.com_v1alpha1_nicclusterpolicy_cr-ipoib.yaml",
    "mellanox.com_v1alpha1_nicclusterpolicy_cr-nvidia-ipam.yaml",
    "nicclusterpolicy_every-section.yaml",
    "nicclusterpolicy_ofed-upgrade.yaml",
];

/// Two NIC nodes of two kernels.
const KERNELS: [&str; 2] = ["5.15.0-78-generic", "5.15.0-91-generic"];

/// The kinds of operand objects collected, with their plural and scope.
const KINDS: [(&str, &str, &str, &str, bool); 11] = [
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    ("apps", "v1", "Deployment", "deployments", true),
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("", "v1", "Service", "services", true),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false),
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", false),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false),
];

/// One object as a map from JSON pointer to value (server fields left out), keyed by
/// "Kind name", with the state that renders it.
type Collected = BTreeMap<String, (String, BTreeMap<String, Value>)>;

fn flatten(value: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                flatten(item, format!("{path}/{}", key.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                flatten(item, format!("{path}/{i}"), out);
            }
        }
        other => {
            out.insert(path, other.clone());
        }
    }
}

/// What the API server sets on every object, not what an operator renders.
fn without_server_fields(mut object: Value) -> Value {
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for field in ["uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "namespace"] {
            metadata.remove(field);
        }
        if let Some(owners) = metadata.get_mut("ownerReferences").and_then(Value::as_array_mut) {
            owners.iter_mut().for_each(|o| drop(o.as_object_mut().map(|o| o.remove("uid"))));
        }
        if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("deprecated.daemonset.template.generation");
        }
    }
    if let Some(spec) = object["spec"].as_object_mut() {
        spec.remove("clusterIP"); // a Service's address, allocated by the API server
        spec.remove("clusterIPs");
    }
    if let Some(object) = object.as_object_mut() {
        object.remove("status");
    }
    object
}

/// Every object of `namespace` and every cluster-scoped one an operator created: those with a
/// state label or a NicClusterPolicy owner.
async fn collect(client: &Client, namespace: &str) -> Collected {
    let mut collected = Collected::new();
    for (group, version, kind, plural, namespaced) in KINDS {
        let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = match namespaced {
            true => Api::namespaced_with(client.clone(), namespace, &resource),
            false => Api::all_with(client.clone(), &resource),
        };
        for object in api.list(&Default::default()).await.unwrap().items {
            let name = object.name_any();
            let state = object.labels().get(state_core::STATE_LABEL).cloned();
            let owned = object.owner_references().iter().any(|o| o.kind == "NicClusterPolicy");
            if state.is_none() && !owned {
                continue; // not an operator's (the namespace's own, the test's ConfigMaps, our CRDs)
            }
            let mut fields = BTreeMap::new();
            flatten(&without_server_fields(serde_json::to_value(&object).unwrap()), String::new(), &mut fields);
            collected.insert(format!("{kind} {name}"), (state.unwrap_or_else(|| "-".into()), fields));
        }
    }
    collected
}

/// One allowed difference of `docs/compatibility.md`.
#[derive(Debug)]
struct Allowed {
    state: String,
    kind: String,
    name: String,
    path: String,
}

/// The table between the `differences` markers of `docs/compatibility.md`.
fn allowed_differences() -> Vec<Allowed> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/compatibility.md");
    let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let table = text
        .split("<!-- differences:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- differences:end -->").next())
        .expect("docs/compatibility.md has the differences markers");
    table
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| State"))
        .map(|line| {
            let cells: Vec<String> = line.split('|').map(|c| c.trim().trim_matches('`').to_string()).collect();
            assert!(cells.len() >= 7, "a row of State, Kind, Name, Path, Reason, Decision: {line}");
            assert!(
                !cells[5].is_empty() && !cells[6].is_empty(),
                "every difference has a reason and a decision: {line}"
            );
            Allowed { state: cells[1].clone(), kind: cells[2].clone(), name: cells[3].clone(), path: cells[4].clone() }
        })
        .collect()
}

/// `pattern` matches `text`: `*` stands for any run of characters within a path segment (or
/// a name), `**` for anything.
fn matches(pattern: &str, text: &str) -> bool {
    if let Some(rest) = pattern.strip_prefix("**") {
        return (0..=text.len()).any(|i| text.is_char_boundary(i) && matches(rest, &text[i..]));
    }
    if let Some(rest) = pattern.strip_prefix('*') {
        let end = text.find('/').unwrap_or(text.len());
        return (0..=end).any(|i| text.is_char_boundary(i) && matches(rest, &text[i..]));
    }
    match (pattern.chars().next(), text.chars().next()) {
        (None, None) => true,
        (Some(p), Some(t)) if p == t => matches(&pattern[p.len_utf8()..], &text[t.len_utf8()..]),
        _ => false,
    }
}

/// Every difference between the original's objects and ours: (state, kind name, path, theirs, ours).
fn differences(theirs: &Collected, ours: &Collected) -> Vec<(String, String, String, String, String)> {
    let mut found = Vec::new();
    let keys: BTreeSet<&String> = theirs.keys().chain(ours.keys()).collect();
    for key in keys {
        match (theirs.get(key), ours.get(key)) {
            (Some((state, _)), None) => {
                found.push((state.clone(), key.clone(), "(only the original's)".into(), String::new(), String::new()))
            }
            (None, Some((state, _))) => {
                found.push((state.clone(), key.clone(), "(only ours)".into(), String::new(), String::new()))
            }
            (Some((state, a)), Some((_, b))) => {
                let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for path in paths.into_iter().filter(|p| a.get(*p) != b.get(*p)) {
                    let show = |v: Option<&Value>| v.map(|v| v.to_string()).unwrap_or_else(|| "(absent)".into());
                    found.push((state.clone(), key.clone(), path.clone(), show(a.get(path)), show(b.get(path))));
                }
            }
            (None, None) => {}
        }
    }
    found
}

fn policy_from(file: &str, registry: &str) -> NicClusterPolicy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../example/crs").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut policy = match api::parse::parse_all(&text).expect("an example parses").remove(0) {
        api::parse::Document::Policy(policy) => *policy,
        other => panic!("{file}: not a policy: {other:?}"),
    };
    // The driver's tags come from the local registry (one image path for every example).
    if let Some(ofed) = policy.spec.ofed_driver.as_mut() {
        ofed.image.repository = format!("{registry}/mellanox");
        ofed.image.image = "mofed".into();
    }
    policy
}

/// Deploys `policy` on fresh NIC nodes, plays the kubelet until `ready` says so, collects what
/// was created, then deletes the policy and the nodes and waits until every operand is gone.
async fn deploy_and_collect(
    env: &TestEnv,
    policy: &NicClusterPolicy,
    ready: impl Fn(&NicClusterPolicy) -> Result<(), String>,
) -> Collected {
    let client = &env.client;
    let mut nodes = Vec::new();
    for kernel in KERNELS {
        let name = unique_name("diff");
        let labels = [
            ("feature.node.kubernetes.io/pci-15b3.present", "true"),
            (OS_LABEL, "ubuntu"),
            (OS_VERSION_LABEL, "22.04"),
            (KERNEL_LABEL, kernel),
            (ARCH_LABEL, "amd64"),
        ];
        create_node(env, &name, &labels).await;
        nodes.push(name);
    }
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    env.cleanup.policy();
    policies.create(&PostParams::default(), policy).await.expect("the policy is accepted");
    eventually("the policy to be ready", Duration::from_secs(150), || async {
        run_pods(client, &env.namespace, "", Some(&nodes[0])).await;
        let live = policies.get(POLICY_NAME).await.map_err(|e| e.to_string())?;
        ready(&live)
    })
    .await;
    let collected = collect(client, &env.namespace).await;
    delete_if_present(&policies, POLICY_NAME).await;
    let node_api: Api<Node> = Api::all(client.clone());
    for node in &nodes {
        delete_if_present(&node_api, node).await;
    }
    eventually("every operand to be gone", WAIT, || async {
        confirm_deletions(client, &env.namespace).await;
        // The original's pool CRDs too: it owns them, so they go with its policy.
        let left = collect(client, &env.namespace).await;
        let left: Vec<&String> = left.keys().collect();
        let policy_gone = policies.get_opt(POLICY_NAME).await.map_err(|e| e.to_string())?.is_none();
        if left.is_empty() && policy_gone { Ok(()) } else { Err(format!("{left:?}, policy gone: {policy_gone}")) }
    })
    .await;
    collected
}

/// Minimal CRDs of cert-manager's Issuer and Certificate (no cert-manager runs), so that the
/// examples whose NVIDIA IPAM webhook needs them deploy with both operators; removed at the end.
async fn install_cert_manager_crds(env: &TestEnv) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for (kind, plural) in [("Issuer", "issuers"), ("Certificate", "certificates")] {
        let name = format!("{plural}.cert-manager.io");
        let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"group": "cert-manager.io", "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase()},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        }))
        .unwrap();
        env.cleanup.cluster_resource::<CustomResourceDefinition>(&name);
        crds.create(&PostParams::default(), &crd).await.unwrap_or_else(|e| panic!("CRD {name}: {e}"));
    }
    eventually("cert-manager's API to be served", WAIT, || async {
        let served = env.client.list_api_group_resources("cert-manager.io/v1").await.map_err(|e| e.to_string())?;
        if served.resources.len() >= 2 { Ok(()) } else { Err(format!("{:?}", served.resources)) }
    })
    .await;
}

fn originals_ready(policy: &NicClusterPolicy) -> Result<(), String> {
    let status = policy.status.clone().unwrap_or_default();
    match status.state {
        Some(SyncState::Ready) => Ok(()),
        other => Err(format!("{other:?}: {:?}", status.applied_states)),
    }
}

fn ours_ready(policy: &NicClusterPolicy) -> Result<(), String> {
    let status = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation);
    if ready { Ok(()) } else { Err(format!("{:?}: {:?}", status.reason, status.applied_states)) }
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn ours_creates_what_the_original_creates_for_every_example_policy_up_to_the_listed_differences() {
    let Some(script) = e2e::original::script() else { return };
    let Some(env) = TestEnv::new("netop-e2e-diff").await else { return };
    let client = env.client.clone();
    let allowed = allowed_differences();
    every_section_prerequisites(&client, &env.namespace).await;
    install_cert_manager_crds(&env).await;
    // A registry that lists no precompiled driver: both operators build the driver on the node.
    let registry = e2e::registry::serve("mellanox/mofed", Vec::new()).await;

    // The original, policy after policy, on its own CRDs.
    let original_crds = install_original_crds(&client, &script).await;
    let mut original = Original::start(&script, &env.namespace);
    let mut theirs = BTreeMap::new();
    for file in POLICIES {
        theirs.insert(file, deploy_and_collect(&env, &policy_from(file, &registry), originals_ready).await);
    }
    original.stop();
    drop(original_crds);

    // Ours, on ours.
    upgrade_crds_as_users_do(&client).await;
    let operator = ControllerProcess::start("network-operator", &env.namespace, &[]);
    operator.wait_ready().await;
    let mut unlisted = Vec::new();
    let mut used = vec![false; allowed.len()];
    for file in POLICIES {
        let ours = deploy_and_collect(&env, &policy_from(file, &registry), ours_ready).await;
        for (state, key, path, a, b) in differences(&theirs[file], &ours) {
            let (kind, name) = key.split_once(' ').unwrap_or((&key, ""));
            let entry = allowed.iter().position(|e| {
                matches(&e.state, &state) && matches(&e.kind, kind) && matches(&e.name, name) && matches(&e.path, &path)
            });
            match entry {
                Some(i) => used[i] = true,
                None => unlisted.push(format!("{file}: {state} {key} {path}: original {a}, ours {b}")),
            }
        }
    }
    let unused: Vec<&Allowed> = allowed.iter().zip(&used).filter(|(_, used)| !**used).map(|(a, _)| a).collect();
    let mut per_state: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &allowed {
        *per_state.entry(entry.state.as_str()).or_insert(0) += 1;
    }
    println!("differential: {} allowed differences, per state: {per_state:?}", allowed.len());
    assert!(unlisted.is_empty(), "differences not in docs/compatibility.md:\n{}", unlisted.join("\n"));
    assert!(unused.is_empty(), "entries of docs/compatibility.md no example needs: {unused:#?}");
}
