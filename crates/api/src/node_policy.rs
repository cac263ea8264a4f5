//! `NicNodePolicy`: the driver and device plugins of one group of nodes, for clusters whose
//! node groups need different driver versions or plugin configurations.
//!
//! A NicNodePolicy holds three sections of the [`NicClusterPolicy`]: `ofedDriver`,
//! `rdmaSharedDevicePlugin` and `sriovDevicePlugin`, for the nodes its `nodeSelector` selects. A
//! section lives either in the NicClusterPolicy or in NicNodePolicies, never both
//! ([`section_conflicts`]), and two NicNodePolicies never select the same node
//! ([`overlaps`]). The states render a NicNodePolicy through its [`view`](NicNodePolicy::view),
//! a NicClusterPolicy holding just what the node policy says.

use crate::FieldError;
use crate::policy::{DevicePluginSpec, NicClusterPolicy, NicClusterPolicySpec, NicClusterPolicyStatus, OfedDriverSpec};
use crate::state::names;
use k8s_openapi::api::core::v1::Toleration;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The driver and device plugins of the nodes `nodeSelector` selects.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "mellanox.com",
    version = "v1alpha1",
    kind = "NicNodePolicy",
    plural = "nicnodepolicies",
    singular = "nicnodepolicy",
    shortname = "nicnode",
    shortname = "nnp",
    status = "NicClusterPolicyStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "NicNodePolicy is the Schema for the NicNodePolicies API",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct NicNodePolicySpec {
    /// The OFED (DOCA) driver container of these nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ofed_driver: Option<OfedDriverSpec>,
    /// The RDMA shared device plugin of these nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma_shared_device_plugin: Option<DevicePluginSpec>,
    /// The SR-IOV network device plugin of these nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sriov_device_plugin: Option<DevicePluginSpec>,
    /// The nodes this policy applies to: those with every one of these labels (none: every node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Labels added to the pods of this policy's DaemonSets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to the pods of this policy's DaemonSets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Tolerations added (before the component's own) to this policy's DaemonSets' pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}

optional_spec!(NicNodePolicySpec);

/// The sections a NicNodePolicy may hold: field name and state name.
pub const SECTIONS: [(&str, &str); 3] =
    [("ofedDriver", names::OFED), ("rdmaSharedDevicePlugin", names::RDMA_DP), ("sriovDevicePlugin", names::SRIOV_DP)];

/// Prefix of the `ds-owner` label value of a NicNodePolicy's objects (`nnp-<name>`), as the
/// original names it.
pub const DS_OWNER_PREFIX: &str = "nnp-";

impl NicNodePolicy {
    /// The policy as the states render it: a NicClusterPolicy with this policy's name, uid,
    /// generation, creation time and status, its sections and tolerations. `driver_from` is the
    /// NicClusterPolicy: when this policy has no `ofedDriver` and that one has, the view carries
    /// it, so driver-dependent pods wait for the driver there too (the states that render the
    /// driver check the node policy's own section first, [`NicNodePolicy::has_section`]).
    pub fn view(&self, driver_from: Option<&NicClusterPolicy>) -> NicClusterPolicy {
        let spec = &self.spec;
        let ofed_driver =
            spec.ofed_driver.clone().or_else(|| driver_from.and_then(|cluster| cluster.spec.ofed_driver.clone()));
        let mut view = NicClusterPolicy::new(
            &self.name_any(),
            NicClusterPolicySpec {
                ofed_driver,
                rdma_shared_device_plugin: spec.rdma_shared_device_plugin.clone(),
                sriov_device_plugin: spec.sriov_device_plugin.clone(),
                tolerations: spec.tolerations.clone(),
                ..Default::default()
            },
        );
        view.metadata.uid = self.metadata.uid.clone();
        view.metadata.generation = self.metadata.generation;
        view.metadata.creation_timestamp = self.metadata.creation_timestamp.clone();
        view.status = self.status.clone();
        view
    }

    /// Whether this policy holds the section of the state named `state`.
    pub fn has_section(&self, state: &str) -> bool {
        match state {
            names::OFED => self.spec.ofed_driver.is_some(),
            names::RDMA_DP => self.spec.rdma_shared_device_plugin.is_some(),
            names::SRIOV_DP => self.spec.sriov_device_plugin.is_some(),
            _ => false,
        }
    }

    /// The `ds-owner` label value of this policy's objects: `nnp-<name>`.
    pub fn ds_owner(&self) -> String {
        format!("{DS_OWNER_PREFIX}{}", self.name_any())
    }

    /// Whether this policy selects a node with `labels` (no selector: every node).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.spec.node_selector.iter().flatten().all(|(key, value)| labels.get(key) == Some(value))
    }

    /// This policy's entry for `state` in `status.appliedStates`, if any.
    pub fn applied_state(&self, name: &str) -> Option<&crate::policy::AppliedState> {
        self.status.as_ref()?.applied_states.as_ref()?.iter().find(|s| s.name == name)
    }
}

/// The sections `node_policy` holds that `cluster` holds too, as errors naming the field.
pub fn section_conflicts(node_policy: &NicNodePolicy, cluster: Option<&NicClusterPolicy>) -> Vec<FieldError> {
    let Some(cluster) = cluster else { return Vec::new() };
    SECTIONS
        .iter()
        .filter(|(_, state)| node_policy.has_section(state) && cluster.spec.has_section(state))
        .map(|(field, _)| {
            FieldError::new(
                format!("spec.{field}"),
                format!(
                    "also set in NicClusterPolicy {}: a section lives in the NicClusterPolicy or in NicNodePolicies, not both",
                    cluster.name_any()
                ),
            )
        })
        .collect()
}

/// The nodes `policy` shares with NicNodePolicies that came before it (created earlier, or at
/// the same time with a smaller name), by the earlier policy's name: the later of two
/// overlapping policies is the one at fault. `nodes` are every node's name and labels.
pub fn overlaps<'a>(
    policy: &NicNodePolicy,
    others: impl IntoIterator<Item = &'a NicNodePolicy>,
    nodes: &[(String, BTreeMap<String, String>)],
) -> BTreeMap<String, BTreeSet<String>> {
    let order = |p: &NicNodePolicy| (p.metadata.creation_timestamp.clone().map(|t| t.0), p.name_any());
    shared_nodes(policy, others.into_iter().filter(|other| order(other) <= order(policy)), nodes)
}

/// The nodes `policy` shares with any other of `others` (itself left out), by the other
/// policy's name: at admission the policy being written is at fault, whatever its age.
pub fn shared_nodes<'a>(
    policy: &NicNodePolicy,
    others: impl IntoIterator<Item = &'a NicNodePolicy>,
    nodes: &[(String, BTreeMap<String, String>)],
) -> BTreeMap<String, BTreeSet<String>> {
    let mine: BTreeSet<&str> =
        nodes.iter().filter(|(_, labels)| policy.selects(labels)).map(|(name, _)| name.as_str()).collect();
    let mut found = BTreeMap::new();
    for other in others {
        if other.name_any() == policy.name_any() {
            continue;
        }
        let shared: BTreeSet<String> = nodes
            .iter()
            .filter(|(name, labels)| mine.contains(name.as_str()) && other.selects(labels))
            .map(|(name, _)| name.clone())
            .collect();
        if !shared.is_empty() {
            found.insert(other.name_any(), shared);
        }
    }
    found
}

/// The message of a policy that overlaps earlier ones: `spec.nodeSelector` and every shared node
/// (the first few of each).
pub fn overlap_error(found: &BTreeMap<String, BTreeSet<String>>) -> Option<FieldError> {
    if found.is_empty() {
        return None;
    }
    let parts: Vec<String> = found
        .iter()
        .map(|(other, nodes)| {
            let named: Vec<&str> = nodes.iter().take(5).map(String::as_str).collect();
            let more = if nodes.len() > 5 { format!(" and {} more", nodes.len() - 5) } else { String::new() };
            format!("node(s) {}{more} also selected by NicNodePolicy {other}", named.join(", "))
        })
        .collect();
    Some(FieldError::new(
        "spec.nodeSelector",
        format!(
            "{}; two NicNodePolicies must not select the same node, nothing is changed until they do not",
            parts.join("; ")
        ),
    ))
}

/// The checks of a NicNodePolicy a schema cannot express: its node selector and pod labels are
/// label keys and values, its tolerations valid, safe load only with auto upgrade.
pub fn validate(policy: &NicNodePolicy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (field, map) in [("nodeSelector", &policy.spec.node_selector), ("labels", &policy.spec.labels)] {
        for (key, value) in map.iter().flatten() {
            let at = format!("spec.{field}[{key}]");
            if let Err(why) = crate::selector::check_key(key) {
                errors.push(FieldError::new(&at, why));
            }
            if let Err(why) = crate::selector::check_value(value) {
                errors.push(FieldError::new(&at, why));
            }
        }
    }
    for key in policy.spec.annotations.iter().flatten().map(|(key, _)| key) {
        if let Err(why) = crate::selector::check_key(key) {
            errors.push(FieldError::new(format!("spec.annotations[{key}]"), why));
        }
    }
    let view = policy.view(None);
    errors.extend(crate::pod_spec::placement(&view));
    if let Some(upgrade) = policy.spec.ofed_driver.as_ref().and_then(|o| o.upgrade_policy.as_ref()) {
        if upgrade.safe_load == Some(true) && upgrade.auto_upgrade != Some(true) {
            errors.push(FieldError::new(
                "spec.ofedDriver.upgradePolicy.safeLoad",
                "safeLoad requires autoUpgrade to be true",
            ));
        }
        if let Err(error) = upgrade.max_unavailable_of(1) {
            errors.push(error);
        }
    }
    if let Some(ofed) = &policy.spec.ofed_driver {
        errors.extend(crate::pod_spec::env("spec.ofedDriver.env", ofed.env.as_deref().unwrap_or_default()));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn node_policy(name: &str, created: i64, selector: &[(&str, &str)]) -> NicNodePolicy {
        let mut policy = NicNodePolicy::new(
            name,
            NicNodePolicySpec {
                node_selector: Some(selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
        );
        policy.metadata.creation_timestamp =
            Some(Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + created).unwrap()));
        policy
    }

    fn nodes(list: &[(&str, &[(&str, &str)])]) -> Vec<(String, BTreeMap<String, String>)> {
        list.iter()
            .map(|(name, labels)| {
                (name.to_string(), labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            })
            .collect()
    }

    #[test]
    fn the_later_of_two_policies_selecting_a_node_is_the_one_that_overlaps() {
        let a = node_policy("pool-a", 0, &[("pool", "a")]);
        let b = node_policy("pool-b", 10, &[("role", "gpu")]);
        let cluster =
            nodes(&[("n1", &[("pool", "a")]), ("n2", &[("pool", "a"), ("role", "gpu")]), ("n3", &[("role", "gpu")])]);
        let all = [a.clone(), b.clone()];
        assert_eq!(overlaps(&a, &all, &cluster), BTreeMap::new(), "the earlier policy keeps its nodes");
        let found = overlaps(&b, &all, &cluster);
        assert_eq!(found, BTreeMap::from([("pool-a".to_string(), BTreeSet::from(["n2".to_string()]))]));
        let error = overlap_error(&found).unwrap();
        assert_eq!(error.path, "spec.nodeSelector");
        assert!(error.message.starts_with("node(s) n2 also selected by NicNodePolicy pool-a"), "{error}");

        let disjoint = nodes(&[("n1", &[("pool", "a")]), ("n3", &[("role", "gpu")])]);
        assert_eq!(overlaps(&b, &all, &disjoint), BTreeMap::new());
    }

    #[test]
    fn a_policy_without_a_node_selector_selects_every_node() {
        let everything = NicNodePolicy::new("all", Default::default());
        assert!(everything.selects(&BTreeMap::new()));
        let picky = node_policy("picky", 0, &[("pool", "a")]);
        assert!(!picky.selects(&BTreeMap::new()));
    }

    #[test]
    fn a_section_in_both_kinds_is_a_conflict_naming_the_field() {
        let device_plugin = || DevicePluginSpec::default();
        let node = NicNodePolicy::new(
            "pool-a",
            NicNodePolicySpec { rdma_shared_device_plugin: Some(device_plugin()), ..Default::default() },
        );
        let mut cluster = NicClusterPolicy::new(crate::POLICY_NAME, Default::default());
        assert_eq!(section_conflicts(&node, Some(&cluster)), vec![]);
        cluster.spec.sriov_device_plugin = Some(device_plugin());
        assert_eq!(section_conflicts(&node, Some(&cluster)), vec![], "different sections may be split");
        cluster.spec.rdma_shared_device_plugin = Some(device_plugin());
        let conflicts = section_conflicts(&node, Some(&cluster));
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].path, "spec.rdmaSharedDevicePlugin");
        assert!(conflicts[0].message.contains("also set in NicClusterPolicy nic-cluster-policy"), "{}", conflicts[0]);
        assert_eq!(section_conflicts(&node, None), vec![]);
    }

    #[test]
    fn the_view_carries_the_node_policys_sections_identity_and_the_cluster_drivers_gate() {
        let mut node = NicNodePolicy::new(
            "pool-a",
            NicNodePolicySpec { rdma_shared_device_plugin: Some(Default::default()), ..Default::default() },
        );
        node.metadata.uid = Some("uid-a".into());
        node.metadata.generation = Some(4);
        let mut cluster = NicClusterPolicy::new(crate::POLICY_NAME, Default::default());
        assert!(node.view(Some(&cluster)).spec.ofed_driver.is_none());
        cluster.spec.ofed_driver = Some(Default::default());
        cluster.spec.secondary_network = Some(Default::default());
        let view = node.view(Some(&cluster));
        assert_eq!(
            (view.name_any(), view.metadata.uid.as_deref(), view.metadata.generation),
            ("pool-a".to_string(), Some("uid-a"), Some(4))
        );
        assert!(view.spec.ofed_driver.is_some(), "pods wait for the cluster policy's driver");
        assert!(view.spec.secondary_network.is_none(), "nothing else of the cluster policy comes along");
        assert!(!node.has_section(names::OFED));
        assert_eq!(node.ds_owner(), "nnp-pool-a");
    }

    #[test]
    fn node_selector_labels_and_annotations_are_checked_as_label_keys_and_values() {
        let mut policy = node_policy("p", 0, &[("bad key!", "ok"), ("pool", "bad value!")]);
        policy.spec.annotations = Some(BTreeMap::from([("also bad!".to_string(), "anything at all".to_string())]));
        let paths: Vec<String> = validate(&policy).into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["spec.nodeSelector[bad key!]", "spec.nodeSelector[pool]", "spec.annotations[also bad!]"]);
    }
}
