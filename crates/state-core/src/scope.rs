//! Whose objects a reconcile renders, applies and prunes: the NicClusterPolicy's, or one
//! NicNodePolicy's.
//!
//! A state's objects all carry its state label; the `ds-owner` label tells the policies apart,
//! as in the original: a NicNodePolicy's objects carry `ds-owner: nnp-<name>`, the
//! NicClusterPolicy's none (ours) or `NicClusterPolicy` (the original's v26 releases). A
//! NicNodePolicy's objects are the cluster policy's render [`confined`](confine) to it: every
//! name suffixed, the `ds-owner` label on the objects, their pods and the DaemonSets' selectors,
//! the policy's `nodeSelector`, `labels` and `annotations` on the pods, the policy as owner.

use crate::objects::ObjectKey;
use crate::state::{RenderError, State};
use api::NicNodePolicy;
use kube::ResourceExt;
use kube::core::DynamicObject;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The label that tells which policy an object belongs to.
pub const DS_OWNER_LABEL: &str = "ds-owner";
/// The `ds-owner` value the original's v26 releases give the NicClusterPolicy's objects.
pub const CLUSTER_DS_OWNER: &str = "NicClusterPolicy";
/// The `ds-owner` value of objects the NicNodePolicies of a state share
/// ([`State::SHARED_KINDS`]); no policy name gives it (theirs start with `nnp-`).
pub const SHARED_DS_OWNER: &str = "NicNodePolicies";

/// The policy whose objects one reconcile handles.
#[derive(Clone, Debug)]
pub enum Scope<'a> {
    /// The NicClusterPolicy.
    Cluster,
    /// One NicNodePolicy.
    Node(&'a NicNodePolicy),
}

impl Scope<'_> {
    /// Whether `object` is one the NicNodePolicies of its state share.
    pub fn is_shared(object: &DynamicObject) -> bool {
        object.labels().get(DS_OWNER_LABEL).is_some_and(|owner| owner == SHARED_DS_OWNER)
    }

    /// Whether `object` (carrying the state label) belongs to this policy.
    pub fn contains(&self, object: &DynamicObject) -> bool {
        let owner = object.labels().get(DS_OWNER_LABEL).map(String::as_str);
        match self {
            Scope::Cluster => owner.is_none_or(|owner| owner == CLUSTER_DS_OWNER),
            Scope::Node(policy) => owner == Some(policy.ds_owner().as_str()),
        }
    }

    /// The kind of the policy, as owner references name it.
    pub fn owner_kind(&self) -> &'static str {
        match self {
            Scope::Cluster => "NicClusterPolicy",
            Scope::Node(_) => "NicNodePolicy",
        }
    }

    /// A label selector of the nodes this policy's pods may run on, beyond the state's own
    /// (empty for the cluster policy).
    pub fn node_selector(&self) -> Vec<String> {
        match self {
            Scope::Cluster => Vec::new(),
            Scope::Node(policy) => {
                policy.spec.node_selector.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect()
            }
        }
    }
}

/// Confines the objects state `S` rendered for the view of `policy` to that policy (see the
/// module's doc). Objects of the state's [shared kinds](State::SHARED_KINDS) keep their names,
/// carry `ds-owner: NicNodePolicies` and are owned by every one of `peers` (the policies
/// holding the section; this one when none is given). Other cluster-scoped objects cannot be
/// confined (names of cluster-scoped objects are granted by name in the controllers' RBAC): a
/// state that renders one is an internal error.
pub fn confine<S: State>(
    objects: &mut [DynamicObject],
    policy: &NicNodePolicy,
    peers: &[std::sync::Arc<NicNodePolicy>],
) -> Result<(), RenderError> {
    let suffix = policy.name_any();
    let owner = policy.ds_owner();
    let mut renamed: BTreeMap<(String, String), String> = BTreeMap::new();
    for object in objects.iter_mut() {
        let key = ObjectKey::of(object);
        if S::SHARED_KINDS.contains(&key.kind.as_str()) {
            object.labels_mut().insert(DS_OWNER_LABEL.to_string(), SHARED_DS_OWNER.to_string());
            let owners: Vec<&NicNodePolicy> =
                if peers.is_empty() { vec![policy] } else { peers.iter().map(AsRef::as_ref).collect() };
            object.metadata.owner_references = policy.metadata.uid.as_ref().map(|_| {
                owners
                    .iter()
                    .filter_map(|peer| {
                        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                            api_version: format!("{}/{}", api::GROUP, api::VERSION),
                            kind: "NicNodePolicy".into(),
                            name: peer.name_any(),
                            uid: peer.metadata.uid.clone()?,
                            ..Default::default()
                        })
                    })
                    .collect()
            });
            continue;
        }
        if key.namespace.is_none() {
            return Err(RenderError::Manifest {
                manifest: key.to_string(),
                message: "a cluster-scoped object cannot belong to a NicNodePolicy".into(),
            });
        }
        let name = S::scoped_name(&key.name, &suffix);
        renamed.insert((key.kind.clone(), key.name.clone()), name.clone());
        object.metadata.name = Some(name);
        object.labels_mut().insert(DS_OWNER_LABEL.to_string(), owner.clone());
        if let Some(reference) = object.metadata.owner_references.as_mut().and_then(|refs| refs.first_mut()) {
            reference.kind = "NicNodePolicy".to_string();
        }
    }
    let rename = |kind: &str, value: Option<&mut Value>| {
        if let Some(value) = value
            && let Some(name) = value.as_str().and_then(|n| renamed.get(&(kind.to_string(), n.to_string())))
        {
            *value = json!(name);
        }
    };
    for object in objects.iter_mut() {
        let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
        match kind.as_str() {
            "RoleBinding" => {
                rename("Role", object.data.pointer_mut("/roleRef/name"));
                for subject in object.data.get_mut("subjects").and_then(Value::as_array_mut).into_iter().flatten() {
                    let subject_kind = subject["kind"].as_str().unwrap_or_default().to_string();
                    rename(&subject_kind, subject.get_mut("name"));
                }
            }
            "DaemonSet" | "Deployment" => {
                if let Some(labels) =
                    object.data.pointer_mut("/spec/selector/matchLabels").and_then(Value::as_object_mut)
                {
                    labels.insert(DS_OWNER_LABEL.into(), json!(owner));
                }
                let Some(template) = object.data.pointer_mut("/spec/template").and_then(Value::as_object_mut) else {
                    continue;
                };
                let metadata = template.entry("metadata").or_insert_with(|| json!({}));
                let mut pod_labels = policy.spec.labels.clone().unwrap_or_default();
                pod_labels.insert(DS_OWNER_LABEL.into(), owner.clone());
                for (field, extra) in [("labels", Some(&pod_labels)), ("annotations", policy.spec.annotations.as_ref())]
                {
                    let Some(extra) = extra.filter(|e| !e.is_empty()) else { continue };
                    merge(metadata, field, extra);
                }
                let Some(pod) = template.get_mut("spec").filter(|p| p.is_object()) else { continue };
                rename("ServiceAccount", pod.get_mut("serviceAccountName"));
                for volume in pod.get_mut("volumes").and_then(Value::as_array_mut).into_iter().flatten() {
                    rename("ConfigMap", volume.pointer_mut("/configMap/name"));
                }
                for list in ["initContainers", "containers"] {
                    for container in pod.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                        for source in container.get_mut("envFrom").and_then(Value::as_array_mut).into_iter().flatten() {
                            rename("ConfigMap", source.pointer_mut("/configMapRef/name"));
                        }
                        // A ConfigMap named on the command line (OFED's init container).
                        if let Some(args) = container.get_mut("args").and_then(Value::as_array_mut) {
                            let flags: Vec<usize> =
                                (0..args.len()).filter(|&i| args[i] == "--configmap-name").map(|i| i + 1).collect();
                            for at in flags {
                                rename("ConfigMap", args.get_mut(at));
                            }
                        }
                    }
                }
                if let Some(selector) = policy.spec.node_selector.as_ref().filter(|s| !s.is_empty()) {
                    merge(pod, "nodeSelector", selector);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Adds every entry of `extra` to the string map `parent.field` (created when absent).
fn merge(parent: &mut Value, field: &str, extra: &BTreeMap<String, String>) {
    let Some(parent) = parent.as_object_mut() else { return };
    let map = parent.entry(field).or_insert_with(|| json!({}));
    if let Some(map) = map.as_object_mut() {
        for (key, value) in extra {
            map.insert(key.clone(), json!(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Kind;
    use crate::state::RenderContext;
    use api::NicNodePolicySpec;

    /// A state whose objects are given by the test.
    struct Fixed;

    impl State for Fixed {
        const NAME: &'static str = "state-X";
        const COMPONENT: &'static str = "x";
        const NEEDS_DRIVER: bool = false;
        type Spec = ();
        fn spec(_: &api::NicClusterPolicy) -> Option<&()> {
            None
        }
        fn image(_: &()) -> &api::ImageSpec {
            unreachable!()
        }
        fn field_path() -> &'static str {
            "spec.x"
        }
        fn kinds() -> Vec<Kind> {
            Vec::new()
        }
        fn render(_: &(), _: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
            Ok(Vec::new())
        }
    }

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    fn labelled(owner: Option<&str>) -> DynamicObject {
        let labels = owner.map_or(json!({}), |o| json!({ DS_OWNER_LABEL: o }));
        object(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns", "labels": labels}}),
        )
    }

    #[test]
    fn each_policy_owns_the_objects_its_ds_owner_label_names() {
        let pool_a = NicNodePolicy::new("pool-a", Default::default());
        for (owner, cluster, node) in [
            (None, true, false),
            (Some(CLUSTER_DS_OWNER), true, false),
            (Some("nnp-pool-a"), false, true),
            (Some("nnp-pool-b"), false, false),
        ] {
            let o = labelled(owner);
            assert_eq!(Scope::Cluster.contains(&o), cluster, "{owner:?} in the cluster policy's scope");
            assert_eq!(Scope::Node(&pool_a).contains(&o), node, "{owner:?} in pool-a's scope");
        }
    }

    #[test]
    fn confining_renames_every_object_and_every_reference_to_one() {
        let mut policy = NicNodePolicy::new(
            "pool-a",
            NicNodePolicySpec {
                node_selector: Some([("pool".to_string(), "a".to_string())].into()),
                labels: Some([("team".to_string(), "hpc".to_string())].into()),
                annotations: Some([("note".to_string(), "x".to_string())].into()),
                ..Default::default()
            },
        );
        policy.metadata.uid = Some("uid-a".into());
        let owner = json!([{"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy", "name": "pool-a", "uid": "uid-a", "controller": true}]);
        let mut objects = vec![
            object(
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa", "namespace": "ns", "ownerReferences": owner}}),
            ),
            object(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "ns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "role"},
                "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}, {"kind": "ServiceAccount", "name": "foreign", "namespace": "ns"}]}),
            ),
            object(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "role", "namespace": "ns"}}),
            ),
            object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": "ns"}})),
            object(
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x-ds", "namespace": "ns"},
                "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}},
                    "spec": {"serviceAccountName": "sa", "nodeSelector": {"nic": "true"},
                        "volumes": [{"name": "c", "configMap": {"name": "config"}}, {"name": "h", "hostPath": {"path": "/dev"}}],
                        "initContainers": [{"name": "init", "args": ["--configmap-name", "config", "--other", "config"]}],
                        "containers": [{"name": "x", "envFrom": [{"configMapRef": {"name": "config"}}]}]}}}}),
            ),
        ];
        confine::<Fixed>(&mut objects, &policy, &[]).unwrap();
        let names: Vec<&str> = objects.iter().map(|o| o.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["sa-pool-a", "rb-pool-a", "role-pool-a", "config-pool-a", "x-ds-pool-a"]);
        assert!(objects.iter().all(|o| o.labels()[DS_OWNER_LABEL] == "nnp-pool-a"));
        assert_eq!(objects[0].metadata.owner_references.as_ref().unwrap()[0].kind, "NicNodePolicy");
        assert_eq!(objects[1].data["roleRef"]["name"], "role-pool-a");
        assert_eq!(objects[1].data["subjects"][0]["name"], "sa-pool-a");
        assert_eq!(objects[1].data["subjects"][1]["name"], "foreign", "what it did not render keeps its name");
        let ds = &objects[4].data["spec"];
        assert_eq!(ds["selector"]["matchLabels"], json!({"app": "x", "ds-owner": "nnp-pool-a"}));
        assert_eq!(ds["template"]["metadata"]["labels"], json!({"app": "x", "ds-owner": "nnp-pool-a", "team": "hpc"}));
        assert_eq!(ds["template"]["metadata"]["annotations"], json!({"note": "x"}));
        let pod = &ds["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "sa-pool-a");
        assert_eq!(pod["nodeSelector"], json!({"nic": "true", "pool": "a"}));
        assert_eq!(pod["volumes"][0]["configMap"]["name"], "config-pool-a");
        assert_eq!(pod["volumes"][1], json!({"name": "h", "hostPath": {"path": "/dev"}}), "nothing added elsewhere");
        assert_eq!(pod["containers"][0]["envFrom"][0]["configMapRef"]["name"], "config-pool-a");
        assert_eq!(pod["initContainers"][0]["args"], json!(["--configmap-name", "config-pool-a", "--other", "config"]));
    }

    #[test]
    fn a_cluster_scoped_object_cannot_be_confined() {
        let policy = NicNodePolicy::new("pool-a", Default::default());
        let mut objects = vec![object(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}),
        )];
        assert!(matches!(confine::<Fixed>(&mut objects, &policy, &[]), Err(RenderError::Manifest { .. })));
    }
}
