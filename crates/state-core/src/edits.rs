//! The cross-cutting edits, applied once in Rust to every object of every state after
//! templating, so no template repeats them.

use crate::STATE_LABEL;
use api::{ImageSpec, NicClusterPolicy};
use k8s_openapi::api::core::v1::{NodeAffinity, Toleration};
use kube::Resource;
use kube::core::DynamicObject;
use serde_json::{Value, json};

/// Labels every object carries besides the state label.
pub const STANDARD_LABELS: [(&str, &str); 2] =
    [("app.kubernetes.io/managed-by", "network-operator"), ("app.kubernetes.io/part-of", "nvidia-network-operator")];

/// Node label NFD sets on nodes with a Mellanox/NVIDIA NIC.
pub const NIC_PRESENT_LABEL: &str = "feature.node.kubernetes.io/pci-15b3.present";
/// Node label the OFED state sets to `"false"` once the driver is loaded on the node.
pub const MOFED_WAIT_LABEL: &str = "network.nvidia.com/operator.mofed.wait";
/// Annotation holding the hash of what was last applied (also the original's name for it).
pub const REVISION_ANNOTATION: &str = "nvidia.network-operator.revision";

/// What the edits need to know about the state and the policy.
#[derive(Clone, Copy, Debug)]
pub struct Edits<'a> {
    /// The state's name, e.g. `state-RDMA-device-plugin`.
    pub state: &'a str,
    /// The whole policy (owner, tolerations, node affinity, OFED presence).
    pub policy: &'a NicClusterPolicy,
    /// The section's image specs (pull secrets, container resources), the main one first.
    pub images: &'a [&'a ImageSpec],
    /// The state's pods run on NIC nodes and need the driver when OFED is deployed.
    pub needs_driver: bool,
}

impl Edits<'_> {
    /// Applies every edit to `object`.
    pub fn apply(&self, object: &mut DynamicObject) {
        self.metadata(object);
        let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
        if !matches!(kind.as_str(), "DaemonSet" | "Deployment") {
            return;
        }
        let Some(pod) = object.data.pointer_mut("/spec/template/spec").filter(|p| p.is_object()) else {
            return;
        };
        self.pull_secrets(pod);
        self.container_resources(pod);
        // The policy says where the operands run: DaemonSets by `tolerations` and `nodeAffinity`;
        // Deployments by `deploymentTolerations` and `deploymentNodeAffinity`, each falling back
        // to the DaemonSets' field when left out (so v24.7 policies render as before; the
        // original v24.7 ignored both for Deployments). An empty one means none.
        let deployment = kind == "Deployment";
        let spec = &self.policy.spec;
        let tolerations = match &spec.deployment_tolerations {
            Some(own) if deployment => Some(own),
            _ => spec.tolerations.as_ref(),
        };
        let affinity = match &spec.deployment_node_affinity {
            Some(own) if deployment => (own != &NodeAffinity::default()).then_some(own),
            _ => spec.node_affinity.as_ref(),
        };
        add_tolerations(pod, tolerations.map(Vec::as_slice).unwrap_or_default());
        if let Some(affinity) = affinity {
            add_node_affinity(pod, affinity);
        }
        if kind == "DaemonSet" && self.needs_driver {
            self.driver_gate(pod);
        }
    }

    fn metadata(&self, object: &mut DynamicObject) {
        let labels = object.metadata.labels.get_or_insert_with(Default::default);
        labels.insert(STATE_LABEL.to_string(), self.state.to_string());
        for (key, value) in STANDARD_LABELS {
            labels.entry(key.to_string()).or_insert_with(|| value.to_string());
        }
        // Offline rendering (nicctl) has no uid: the reference would be invalid, so it is left out.
        if self.policy.metadata.uid.is_some()
            && let Some(owner) = self.policy.controller_owner_ref(&())
        {
            object.metadata.owner_references = Some(vec![owner]);
        }
    }

    fn pull_secrets(&self, pod: &mut Value) {
        // One image: its pull secrets go to every workload. Several: each workload gets those
        // of the images its containers run.
        let images = self.images.iter().filter(|image| {
            self.images.len() == 1 || {
                let reference = image.reference();
                ["initContainers", "containers"]
                    .iter()
                    .filter_map(|list| pod[*list].as_array())
                    .flatten()
                    .any(|container| container["image"].as_str() == Some(reference.as_str()))
            }
        });
        let secrets: Vec<String> =
            images.flat_map(|image| image.image_pull_secrets.iter().flatten().cloned()).collect();
        let list = array(pod, "imagePullSecrets");
        for name in secrets {
            let entry = json!({ "name": name });
            if !list.contains(&entry) {
                list.push(entry);
            }
        }
        drop_if_empty(pod, "imagePullSecrets");
    }

    fn container_resources(&self, pod: &mut Value) {
        for list in ["initContainers", "containers"] {
            for container in pod.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                let Some(name) = container["name"].as_str() else {
                    continue;
                };
                let Some(wanted) = self.images.iter().find_map(|image| image.resources_for(name)) else {
                    continue;
                };
                let mut resources = serde_json::Map::new();
                if let Some(requests) = wanted.requests.as_ref().filter(|r| !r.is_empty()) {
                    resources.insert("requests".into(), json!(requests));
                }
                if let Some(limits) = wanted.limits.as_ref().filter(|l| !l.is_empty()) {
                    resources.insert("limits".into(), json!(limits));
                }
                container["resources"] = Value::Object(resources);
            }
        }
    }

    fn driver_gate(&self, pod: &mut Value) {
        if !pod["nodeSelector"].is_object() {
            pod["nodeSelector"] = json!({});
        }
        pod["nodeSelector"][NIC_PRESENT_LABEL] = json!("true");
        if self.policy.spec.ofed_driver.is_some() {
            pod["nodeSelector"][MOFED_WAIT_LABEL] = json!("false");
        }
    }
}

/// Puts `tolerations` before the pod's own, and the GPU taint's toleration after them.
fn add_tolerations(pod: &mut Value, tolerations: &[Toleration]) {
    let mut merged: Vec<Value> = tolerations.iter().map(|t| json!(t)).collect();
    merged.extend(pod["tolerations"].as_array().cloned().unwrap_or_default());
    let gpu = json!({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"});
    if !merged.contains(&gpu) {
        merged.push(gpu);
    }
    pod["tolerations"] = Value::Array(merged);
}

/// Adds `affinity` to the pod's own node affinity ([`merge_node_affinity`]).
fn add_node_affinity(pod: &mut Value, affinity: &NodeAffinity) {
    let existing: Option<NodeAffinity> =
        pod.pointer("/affinity/nodeAffinity").and_then(|v| serde_json::from_value(v.clone()).ok());
    let merged = merge_node_affinity(existing, affinity);
    if !pod["affinity"].is_object() {
        pod["affinity"] = json!({});
    }
    pod["affinity"]["nodeAffinity"] = json!(merged);
}

/// `policy` AND `existing`: required terms are combined pairwise (a node must satisfy a term of
/// each), preferred terms are concatenated. Never drops what the template required.
pub fn merge_node_affinity(existing: Option<NodeAffinity>, policy: &NodeAffinity) -> NodeAffinity {
    let Some(existing) = existing else {
        return policy.clone();
    };
    let required = match (
        existing.required_during_scheduling_ignored_during_execution,
        policy.required_during_scheduling_ignored_during_execution.clone(),
    ) {
        (Some(a), Some(b)) => {
            let mut terms = Vec::new();
            for ta in &a.node_selector_terms {
                for tb in &b.node_selector_terms {
                    let mut term = ta.clone();
                    extend(&mut term.match_expressions, tb.match_expressions.clone());
                    extend(&mut term.match_fields, tb.match_fields.clone());
                    terms.push(term);
                }
            }
            Some(k8s_openapi::api::core::v1::NodeSelector { node_selector_terms: terms })
        }
        (a, b) => a.or(b),
    };
    let mut preferred = existing.preferred_during_scheduling_ignored_during_execution.unwrap_or_default();
    preferred.extend(policy.preferred_during_scheduling_ignored_during_execution.clone().unwrap_or_default());
    NodeAffinity {
        required_during_scheduling_ignored_during_execution: required,
        preferred_during_scheduling_ignored_during_execution: (!preferred.is_empty()).then_some(preferred),
    }
}

fn extend<T>(target: &mut Option<Vec<T>>, more: Option<Vec<T>>) {
    if let Some(more) = more {
        target.get_or_insert_with(Vec::new).extend(more);
    }
}

fn array<'v>(object: &'v mut Value, key: &str) -> &'v mut Vec<Value> {
    if !object[key].is_array() {
        object[key] = json!([]);
    }
    object[key].as_array_mut().expect("just made an array")
}

fn drop_if_empty(object: &mut Value, key: &str) {
    if object[key].as_array().is_some_and(Vec::is_empty)
        && let Some(map) = object.as_object_mut()
    {
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

    fn term(key: &str) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: "Exists".into(),
                values: None,
            }]),
            match_fields: None,
        }
    }

    fn required(terms: Vec<NodeSelectorTerm>) -> NodeAffinity {
        NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector { node_selector_terms: terms }),
            preferred_during_scheduling_ignored_during_execution: None,
        }
    }

    fn keys(affinity: &NodeAffinity) -> Vec<Vec<String>> {
        affinity
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms
            .iter()
            .map(|t| t.match_expressions.iter().flatten().map(|e| e.key.clone()).collect())
            .collect()
    }

    fn edited(kind: &str, spec: api::NicClusterPolicySpec) -> Value {
        let policy = NicClusterPolicy::new(api::POLICY_NAME, spec);
        let image = ImageSpec::default();
        let edits = Edits { state: "state-x", policy: &policy, images: &[&image], needs_driver: false };
        let mut object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "x"},
            "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}},
        }))
        .unwrap();
        edits.apply(&mut object);
        object.data["spec"]["template"]["spec"].clone()
    }

    fn toleration(key: &str) -> Toleration {
        Toleration { key: Some(key.into()), operator: Some("Exists".into()), ..Default::default() }
    }

    fn placed(pod: &Value) -> (Vec<String>, Vec<Vec<String>>) {
        let tolerations = pod["tolerations"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap().to_string());
        let affinity: Option<NodeAffinity> =
            pod.pointer("/affinity/nodeAffinity").map(|a| serde_json::from_value(a.clone()).unwrap());
        (tolerations.collect(), affinity.as_ref().map(keys).unwrap_or_default())
    }

    #[test]
    fn deployments_are_placed_by_the_deployment_fields_and_daemonsets_by_their_own() {
        let spec = api::NicClusterPolicySpec {
            tolerations: Some(vec![toleration("ds")]),
            node_affinity: Some(required(vec![term("ds")])),
            deployment_tolerations: Some(vec![toleration("deploy")]),
            deployment_node_affinity: Some(required(vec![term("deploy")])),
            ..Default::default()
        };
        let gpu = "nvidia.com/gpu".to_string();
        assert_eq!(
            placed(&edited("DaemonSet", spec.clone())),
            (vec!["ds".into(), gpu.clone()], vec![vec!["ds".into()]])
        );
        assert_eq!(placed(&edited("Deployment", spec)), (vec!["deploy".into(), gpu], vec![vec!["deploy".into()]]));
    }

    #[test]
    fn deployments_fall_back_to_the_daemonset_fields_and_an_empty_deployment_field_means_none() {
        let spec = api::NicClusterPolicySpec {
            tolerations: Some(vec![toleration("ds")]),
            node_affinity: Some(required(vec![term("ds")])),
            ..Default::default()
        };
        let gpu = "nvidia.com/gpu".to_string();
        assert_eq!(
            placed(&edited("Deployment", spec.clone())),
            (vec!["ds".into(), gpu.clone()], vec![vec!["ds".into()]])
        );
        let none = api::NicClusterPolicySpec {
            deployment_tolerations: Some(vec![]),
            deployment_node_affinity: Some(NodeAffinity::default()),
            ..spec
        };
        assert_eq!(placed(&edited("Deployment", none)), (vec![gpu], vec![]));
    }

    #[test]
    fn policy_affinity_alone_is_used_as_is() {
        let policy = required(vec![term("a")]);
        assert_eq!(merge_node_affinity(None, &policy), policy);
    }

    #[test]
    fn required_terms_are_combined_so_both_must_hold() {
        let merged = merge_node_affinity(Some(required(vec![term("t1"), term("t2")])), &required(vec![term("p")]));
        assert_eq!(keys(&merged), [vec!["t1", "p"], vec!["t2", "p"]]);
    }
}
