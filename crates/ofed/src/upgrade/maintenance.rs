//! The NVIDIA Maintenance Operator's requestor mode (the original's
//! `operator.maintenanceOperator.useRequestor`): instead of cordoning, waiting and draining a
//! node itself, the upgrade requests a `NodeMaintenance` (`maintenance.nvidia.com/v1alpha1`)
//! named `<prefix>-<node>` in the requestor namespace, waits for its `Ready` condition, restarts
//! the driver, and releases it (deletes it when it created it, else leaves its
//! `additionalRequestors`); the Maintenance Operator uncordons the node once no requestor holds it.
//!
//! The options come from the controller's environment, under the original's names
//! (`MAINTENANCE_OPERATOR_ENABLED`, `_REQUESTOR_ID`, `_REQUESTOR_NAMESPACE`,
//! `_NODE_MAINTENANCE_PREFIX`); a NicNodePolicy's upgrades use the ID `<id>-nnp-<policy>`, as
//! the original's. Everything here is pure: [`request`] and [`release`] say what to send.

use super::Settings;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

/// The API group and version of `NodeMaintenance`.
pub const API_VERSION: &str = "maintenance.nvidia.com/v1alpha1";
/// The resource (plural) of `NodeMaintenance`.
pub const PLURAL: &str = "nodemaintenances";
/// The original chart's requestor ID.
pub const DEFAULT_REQUESTOR_ID: &str = "nvidia.doca-driver-upgrade";
/// The original chart's `NodeMaintenance` name prefix.
pub const DEFAULT_NAME_PREFIX: &str = "network-operator";
/// The original's requestor namespace.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The short name of NicNodePolicies in their requestor IDs (`<id>-nnp-<policy>`).
pub const NODE_POLICY_SHORT_NAME: &str = "nnp";

/// The `NodeMaintenance` kind.
pub fn api_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("maintenance.nvidia.com", "v1alpha1", "NodeMaintenance");
    ApiResource::from_gvk_with_plural(&gvk, PLURAL)
}

/// The `NodeMaintenance` kind as state-core's discovery asks for it: namespaced, optional.
pub fn kind() -> state_core::objects::Kind {
    state_core::objects::Kind { resource: api_resource(), namespaced: true, optional: true }
}

/// Who requests node maintenance, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requestor {
    /// `spec.requestorID` of the objects it creates (a DNS name of at most 63 characters).
    pub id: String,
    /// Namespace of the `NodeMaintenance` objects.
    pub namespace: String,
    /// Their names are `<name_prefix>-<node>`.
    pub name_prefix: String,
}

impl Requestor {
    /// The options of the environment read by `get` (`MAINTENANCE_OPERATOR_*`); `None` unless
    /// `MAINTENANCE_OPERATOR_ENABLED` is `true`. Empty values take the original chart's defaults.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let enabled = get("MAINTENANCE_OPERATOR_ENABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if !enabled {
            return None;
        }
        let value = |key: &str, default: &str| {
            get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
        };
        Some(Self {
            id: value("MAINTENANCE_OPERATOR_REQUESTOR_ID", DEFAULT_REQUESTOR_ID),
            namespace: value("MAINTENANCE_OPERATOR_REQUESTOR_NAMESPACE", DEFAULT_NAMESPACE),
            name_prefix: value("MAINTENANCE_OPERATOR_NODE_MAINTENANCE_PREFIX", DEFAULT_NAME_PREFIX),
        })
    }

    /// The requestor of `policy`'s upgrades (`""`: the NicClusterPolicy, the ID as configured;
    /// else a NicNodePolicy's name, the ID `<id>-nnp-<policy>`); an ID the `NodeMaintenance`
    /// schema would refuse is an error that says which.
    pub fn for_policy(&self, policy: &str) -> Result<Self, String> {
        let id = match policy {
            "" => self.id.clone(),
            name => format!("{}-{NODE_POLICY_SHORT_NAME}-{name}", self.id),
        };
        let labels_ok = id.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        });
        if !(2..=63).contains(&id.len()) || !labels_ok {
            let origin = if policy.is_empty() {
                "MAINTENANCE_OPERATOR_REQUESTOR_ID (chart value operator.maintenanceOperator.requestorID)".to_string()
            } else {
                format!("MAINTENANCE_OPERATOR_REQUESTOR_ID + \"-{NODE_POLICY_SHORT_NAME}-\" + the NicNodePolicy's name")
            };
            return Err(format!(
                "requestor ID {id:?} of {origin} is not a DNS name of 2 to 63 characters, as NodeMaintenance's \
                 spec.requestorID must be: shorten the requestor ID{}",
                if policy.is_empty() { "" } else { " or the NicNodePolicy's name" }
            ));
        }
        Ok(Self { id, ..self.clone() })
    }

    /// The name of the `NodeMaintenance` of `node`.
    pub fn object_name(&self, node: &str) -> String {
        format!("{}-{node}", self.name_prefix)
    }
}

/// A `NodeMaintenance` as an upgrade reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Its name.
    pub name: String,
    /// `spec.nodeName`.
    pub node: String,
    /// `spec.requestorID`: who created it.
    pub requestor_id: String,
    /// `spec.additionalRequestors`: who else holds it.
    pub additional: Vec<String>,
    /// Its `Ready` condition has reason `Ready`: the node is cordoned, waited on and drained.
    pub ready: bool,
    /// Being deleted.
    pub terminating: bool,
    /// Its `resourceVersion` (the lock of a change to `additionalRequestors`).
    pub resource_version: Option<String>,
}

impl Maintenance {
    /// Reads `object`.
    pub fn of(object: &DynamicObject) -> Self {
        let spec = &object.data["spec"];
        let ready = object.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["reason"] == "Ready");
        Self {
            name: object.metadata.name.clone().unwrap_or_default(),
            node: spec["nodeName"].as_str().unwrap_or_default().to_string(),
            requestor_id: spec["requestorID"].as_str().unwrap_or_default().to_string(),
            additional: spec["additionalRequestors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|id| id.as_str().map(str::to_string))
                .collect(),
            ready,
            terminating: object.metadata.deletion_timestamp.is_some(),
            resource_version: object.metadata.resource_version.clone(),
        }
    }

    /// Whether requestor `id` holds it (created it or is among its additional requestors).
    pub fn holds(&self, id: &str) -> bool {
        self.requestor_id == id || self.additional.iter().any(|a| a == id)
    }

    /// Its requestors with `id` changed to `present` (a merge patch of `additionalRequestors`
    /// carrying the `resourceVersion` read, so a concurrent change by another requestor makes
    /// it fail with a conflict rather than be overwritten).
    fn additional_patch(&self, id: &str, present: bool) -> Value {
        let mut ids: Vec<&str> = self.additional.iter().map(String::as_str).filter(|a| *a != id).collect();
        if present {
            ids.push(id);
        }
        json!({"metadata": {"resourceVersion": self.resource_version}, "spec": {"additionalRequestors": ids}})
    }
}

/// What requesting a node's maintenance sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Create this `NodeMaintenance`.
    Create(Value),
    /// Another requestor's maintenance of the node exists: join it with this merge patch.
    Join(Value),
}

/// What requesting maintenance of `node` sends, given its `NodeMaintenance` if one exists;
/// `None` when the requestor holds it already.
pub fn request(
    requestor: &Requestor,
    node: &str,
    settings: &Settings,
    existing: Option<&Maintenance>,
) -> Option<Request> {
    match existing {
        Some(m) if m.holds(&requestor.id) => None,
        Some(m) => Some(Request::Join(m.additional_patch(&requestor.id, true))),
        None => Some(Request::Create(desired(requestor, node, settings))),
    }
}

/// What releasing a node's maintenance sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Release {
    /// Delete it: this requestor created it.
    Delete,
    /// Leave it to the other requestors with this merge patch.
    Leave(Value),
}

/// What releasing `maintenance` sends for requestor `id`; `None` when there is nothing to do
/// (not held, or already being deleted).
pub fn release(id: &str, maintenance: &Maintenance) -> Option<Release> {
    if maintenance.requestor_id == id {
        return (!maintenance.terminating).then_some(Release::Delete);
    }
    maintenance.additional.iter().any(|a| a == id).then(|| Release::Leave(maintenance.additional_patch(id, false)))
}

/// The `NodeMaintenance` requested for `node`: the upgrade policy's `waitForCompletion` and
/// `drain` (the drain skipping the pods labelled `nvidia.com/ofed-driver-upgrade-drain.skip`,
/// as ours does; no drain when it is disabled), the Maintenance Operator's cordon.
pub fn desired(requestor: &Requestor, node: &str, settings: &Settings) -> Value {
    let mut spec = json!({"requestorID": requestor.id, "nodeName": node});
    if let Some(wait) = &settings.wait_for {
        spec["waitForPodCompletion"] = json!({"podSelector": wait.selector, "timeoutSeconds": wait.timeout_seconds});
    }
    if let Some(drain) = &settings.drain {
        spec["drainSpec"] = json!({
            "force": drain.force,
            "podSelector": drain.selector,
            "timeoutSeconds": drain.timeout_seconds,
            "deleteEmptyDir": drain.delete_empty_dir,
        });
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "NodeMaintenance",
        "metadata": {"name": requestor.object_name(node), "namespace": requestor.namespace},
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::{DrainSettings, WaitFor};
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |key| map.get(key).cloned()
    }

    fn requestor() -> Requestor {
        Requestor::from_env(env(&[("MAINTENANCE_OPERATOR_ENABLED", "true")])).unwrap()
    }

    #[test]
    fn the_mode_is_on_only_when_enabled_and_takes_the_original_charts_defaults() {
        assert_eq!(Requestor::from_env(env(&[])), None);
        assert_eq!(Requestor::from_env(env(&[("MAINTENANCE_OPERATOR_ENABLED", "false")])), None);
        let on = requestor();
        assert_eq!((on.id.as_str(), on.namespace.as_str()), ("nvidia.doca-driver-upgrade", "default"));
        assert_eq!(on.object_name("worker-1"), "network-operator-worker-1");
        let set = Requestor::from_env(env(&[
            ("MAINTENANCE_OPERATOR_ENABLED", "True"),
            ("MAINTENANCE_OPERATOR_REQUESTOR_ID", "acme.drivers"),
            ("MAINTENANCE_OPERATOR_REQUESTOR_NAMESPACE", "maintenance"),
            ("MAINTENANCE_OPERATOR_NODE_MAINTENANCE_PREFIX", "acme"),
        ]))
        .unwrap();
        assert_eq!(
            set,
            Requestor { id: "acme.drivers".into(), namespace: "maintenance".into(), name_prefix: "acme".into() }
        );
    }

    #[test]
    fn a_node_policy_requests_under_its_shortened_id_and_a_too_long_id_is_an_error() {
        let base = requestor();
        assert_eq!(base.for_policy("").unwrap().id, "nvidia.doca-driver-upgrade");
        assert_eq!(base.for_policy("gpu-pool").unwrap().id, "nvidia.doca-driver-upgrade-nnp-gpu-pool");
        let long = "x".repeat(40);
        let error = base.for_policy(&long).unwrap_err();
        assert!(error.contains("NicNodePolicy's name") && error.contains("63"), "{error}");
        let bad = Requestor { id: "-bad".into(), ..base };
        assert!(bad.for_policy("").unwrap_err().contains("operator.maintenanceOperator.requestorID"));
    }

    fn settings() -> Settings {
        Settings {
            max_parallel: 1,
            wait_for: Some(WaitFor { selector: "app=train".into(), timeout_seconds: 60 }),
            drain: Some(DrainSettings {
                force: true,
                delete_empty_dir: false,
                selector: "nvidia.com/ofed-driver-upgrade-drain.skip!=true".into(),
                timeout_seconds: 300,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_request_carries_the_upgrade_policys_wait_and_drain() {
        let Some(Request::Create(body)) = request(&requestor(), "n1", &settings(), None) else { panic!("a create") };
        assert_eq!(
            body,
            json!({"apiVersion": "maintenance.nvidia.com/v1alpha1", "kind": "NodeMaintenance",
                   "metadata": {"name": "network-operator-n1", "namespace": "default"},
                   "spec": {"requestorID": "nvidia.doca-driver-upgrade", "nodeName": "n1",
                            "waitForPodCompletion": {"podSelector": "app=train", "timeoutSeconds": 60},
                            "drainSpec": {"force": true, "podSelector": "nvidia.com/ofed-driver-upgrade-drain.skip!=true",
                                          "timeoutSeconds": 300, "deleteEmptyDir": false}}})
        );
        let bare = request(&requestor(), "n1", &Settings::default(), None);
        let Some(Request::Create(body)) = bare else { panic!("a create") };
        assert_eq!(body["spec"], json!({"requestorID": "nvidia.doca-driver-upgrade", "nodeName": "n1"}), "no drain");
    }

    fn maintenance(creator: &str, additional: &[&str]) -> Maintenance {
        Maintenance {
            name: "network-operator-n1".into(),
            node: "n1".into(),
            requestor_id: creator.into(),
            additional: additional.iter().map(|a| a.to_string()).collect(),
            resource_version: Some("42".into()),
            ..Default::default()
        }
    }

    #[test]
    fn another_requestors_maintenance_is_joined_and_left_under_its_resource_version() {
        let ours = requestor();
        let theirs = maintenance("nvidia.gpu-driver-upgrade", &["other"]);
        let Some(Request::Join(patch)) = request(&ours, "n1", &settings(), Some(&theirs)) else { panic!("a join") };
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "42"},
                   "spec": {"additionalRequestors": ["other", "nvidia.doca-driver-upgrade"]}})
        );
        let joined = maintenance("nvidia.gpu-driver-upgrade", &["other", "nvidia.doca-driver-upgrade"]);
        assert_eq!(request(&ours, "n1", &settings(), Some(&joined)), None, "held already");
        assert_eq!(
            release(&ours.id, &joined),
            Some(Release::Leave(
                json!({"metadata": {"resourceVersion": "42"}, "spec": {"additionalRequestors": ["other"]}})
            ))
        );
        assert_eq!(release(&ours.id, &theirs), None, "not held: nothing to release");
    }

    #[test]
    fn our_own_maintenance_is_deleted_once() {
        let ours = maintenance("nvidia.doca-driver-upgrade", &[]);
        assert_eq!(request(&requestor(), "n1", &settings(), Some(&ours)), None);
        assert_eq!(release("nvidia.doca-driver-upgrade", &ours), Some(Release::Delete));
        let deleting = Maintenance { terminating: true, ..ours };
        assert_eq!(release("nvidia.doca-driver-upgrade", &deleting), None);
    }

    #[test]
    fn ready_is_the_ready_condition_with_reason_ready() {
        let object = |conditions: Value| -> DynamicObject {
            serde_json::from_value(json!({"apiVersion": API_VERSION, "kind": "NodeMaintenance",
                "metadata": {"name": "network-operator-n1", "namespace": "default", "resourceVersion": "7"},
                "spec": {"requestorID": "a.b", "nodeName": "n1", "additionalRequestors": ["c"]},
                "status": {"conditions": conditions}}))
            .unwrap()
        };
        let draining = Maintenance::of(&object(json!([{"type": "Ready", "status": "False", "reason": "Draining"}])));
        assert!(!draining.ready);
        assert_eq!((draining.node.as_str(), draining.additional.as_slice()), ("n1", &["c".to_string()][..]));
        assert!(Maintenance::of(&object(json!([{"type": "Ready", "status": "True", "reason": "Ready"}]))).ready);
    }
}
