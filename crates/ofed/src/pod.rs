//! A pod as the OFED state reads it. The driver pods' watch, the drains and the jobs an upgrade
//! waits for read a handful of fields, so only those are decoded: k8s-openapi's full `Pod`
//! decoder is a few hundred KB of code, and a controller's code pages are most of its resident
//! memory (see docs/performance.md).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// A pod: its metadata, and the parts of its spec and status the OFED state reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Pod {
    /// The pod's metadata (owners, labels, annotations, deletion).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Node and volumes.
    pub spec: Option<PodSpec>,
    /// Phase, conditions and container statuses.
    pub status: Option<PodStatus>,
}

/// What the OFED state reads of a pod's spec.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The node the pod is bound to.
    pub node_name: Option<String>,
    /// The pod's volumes (a drain looks for `emptyDir`).
    pub volumes: Option<Vec<Volume>>,
}

/// A volume: its name, and whether it is an `emptyDir`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// The volume's name.
    #[serde(default)]
    pub name: String,
    /// Set when the volume is an `emptyDir` (its settings are not read).
    pub empty_dir: Option<EmptyDir>,
}

/// An `emptyDir` volume source (its fields are not read).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct EmptyDir {}

/// What the OFED state reads of a pod's status.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: Option<String>,
    /// The pod's conditions (`Ready`, ...).
    pub conditions: Option<Vec<PodCondition>>,
    /// The containers' readiness and restarts.
    pub container_statuses: Option<Vec<ContainerStatus>>,
    /// The init containers' readiness and restarts.
    pub init_container_statuses: Option<Vec<ContainerStatus>>,
}

/// A pod condition.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PodCondition {
    /// `Ready`, `ContainersReady`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
}

/// A container's readiness and restarts.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// The container's name.
    #[serde(default)]
    pub name: String,
    /// Whether it passes its readiness probe.
    #[serde(default)]
    pub ready: bool,
    /// How often it restarted.
    #[serde(default)]
    pub restart_count: i32,
}

impl k8s_openapi::Resource for Pod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for Pod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_pod_decodes_into_what_the_state_reads() {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "annotations": {"a": "b"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i"}],
                     "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}, {"name": "cm", "configMap": {"name": "x"}}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": null}],
                       "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2, "image": "i", "imageID": ""}]},
        }))
        .unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        let volumes = spec.volumes.unwrap();
        assert!(volumes[0].empty_dir.is_some() && volumes[1].empty_dir.is_none());
        let status = pod.status.unwrap();
        assert_eq!(status.conditions.unwrap()[0].type_, "Ready");
        assert_eq!(status.container_statuses.unwrap()[0].restart_count, 2);
        assert_eq!(<Pod as kube::Resource>::kind(&()), "Pod");
    }
}
