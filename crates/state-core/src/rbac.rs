//! The RBAC rules a controller needs, derived from what it really touches, so the charts grant
//! nothing more (`nicctl rbac` writes them into each subchart's `files/rbac.yaml`).
//!
//! A state controller needs, for each kind it renders, the verbs of reconcile (read and watch,
//! create and server-side apply, prune); the policy (read, watch) and its status (patch); its
//! Lease; and whatever the Roles it renders grant, since the API server refuses to let anyone
//! create a Role granting more than they hold themselves.

use crate::objects::Kind;
use crate::render::render_state;
use crate::state::{Observed, RenderContext, State};
use api::NicClusterPolicy;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Verbs on the objects a controller reconciles: watch them, create and apply them, prune them.
pub const OBJECT_VERBS: [&str; 6] = ["get", "list", "watch", "create", "patch", "delete"];
/// Verbs on what a controller only reads and watches.
pub const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
/// Verbs of leader election on its Lease.
pub const LEASE_VERBS: [&str; 3] = ["get", "create", "update"];

/// A set of rules, merged: one rule per API group, resource and resource names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules(BTreeMap<(String, String, Vec<String>), BTreeSet<String>>);

impl Rules {
    /// Grants `verbs` on `resource` (e.g. `daemonsets`, `nicclusterpolicies/status`) of `group`.
    pub fn allow(&mut self, group: &str, resource: &str, verbs: &[&str]) -> &mut Self {
        self.allow_named(group, resource, &[], verbs)
    }

    /// Grants `verbs` on the objects named `names` only (all of them when empty).
    pub fn allow_named(&mut self, group: &str, resource: &str, names: &[String], verbs: &[&str]) -> &mut Self {
        let entry = self.0.entry((group.to_string(), resource.to_string(), names.to_vec())).or_default();
        entry.extend(verbs.iter().map(|v| v.to_string()));
        self
    }

    /// Grants [`OBJECT_VERBS`] on `kind`.
    pub fn allow_objects(&mut self, kind: &Kind) -> &mut Self {
        self.allow(&kind.resource.group, &kind.resource.plural, &OBJECT_VERBS)
    }

    /// Grants everything `rules` grant (wildcards are kept as they are, and then show up in
    /// the generated files for review).
    pub fn allow_rules(&mut self, rules: &[PolicyRule]) -> &mut Self {
        for rule in rules {
            let verbs: Vec<&str> = rule.verbs.iter().map(String::as_str).collect();
            let names = rule.resource_names.clone().unwrap_or_default();
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    self.allow_named(group, resource, &names, &verbs);
                }
            }
        }
        self
    }

    /// Grants everything `other` grants.
    pub fn merge(&mut self, other: &Rules) -> &mut Self {
        for (key, verbs) in &other.0 {
            self.0.entry(key.clone()).or_default().extend(verbs.iter().cloned());
        }
        self
    }

    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of verb × resource grants.
    pub fn grants(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }

    /// As PolicyRules: one per group, resource and names, verbs in the usual order.
    pub fn to_policy_rules(&self) -> Vec<PolicyRule> {
        self.0
            .iter()
            .map(|((group, resource, names), verbs)| PolicyRule {
                api_groups: Some(vec![group.clone()]),
                resources: Some(vec![resource.clone()]),
                resource_names: (!names.is_empty()).then(|| names.clone()),
                verbs: ordered(verbs),
                ..Default::default()
            })
            .collect()
    }
}

fn ordered(verbs: &BTreeSet<String>) -> Vec<String> {
    const ORDER: [&str; 10] =
        ["get", "list", "watch", "create", "update", "patch", "delete", "use", "bind", "escalate"];
    let mut out: Vec<String> = ORDER.iter().filter(|v| verbs.contains(**v)).map(|v| v.to_string()).collect();
    out.extend(verbs.iter().filter(|v| !ORDER.contains(&v.as_str())).cloned());
    out
}

/// What one controller may do, in the three scopes the charts bind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerRbac {
    /// Cluster-wide (ClusterRole): the policy, cluster-scoped kinds, network CRs.
    pub cluster: Rules,
    /// In the operands' namespace (Role): the namespaced objects a state renders.
    pub operands: Rules,
    /// In the controller's own namespace (Role): its leader-election Lease.
    pub lease: Rules,
}

impl ControllerRbac {
    /// A controller that only has its Lease so far.
    pub fn with_lease() -> Self {
        let mut rbac = Self::default();
        rbac.lease.allow("coordination.k8s.io", "leases", &LEASE_VERBS);
        rbac
    }

    /// What a process running every one of `controllers` may do: the union of their rules.
    pub fn union<'a>(controllers: impl IntoIterator<Item = &'a ControllerRbac>) -> Self {
        let mut all = Self::default();
        for rbac in controllers {
            all.cluster.merge(&rbac.cluster);
            all.operands.merge(&rbac.operands);
            all.lease.merge(&rbac.lease);
        }
        all
    }

    /// The number of verb × resource grants, all scopes together.
    pub fn grants(&self) -> usize {
        self.cluster.grants() + self.operands.grants() + self.lease.grants()
    }

    /// The `files/rbac.yaml` of the controller's subchart.
    pub fn to_yaml(&self) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct File {
            cluster_rules: Vec<PolicyRule>,
            operand_rules: Vec<PolicyRule>,
            lease_rules: Vec<PolicyRule>,
        }
        let file = File {
            cluster_rules: self.cluster.to_policy_rules(),
            operand_rules: self.operands.to_policy_rules(),
            lease_rules: self.lease.to_policy_rules(),
        };
        let body = serde_saphyr::to_string(&file).unwrap_or_default();
        format!("# Generated by `nicctl rbac --dir charts/network-operator/charts`; do not edit.\n{body}")
    }
}

/// The rules of the controller of state `S`: its kinds (in the operands' namespace, or
/// cluster-wide for cluster-scoped kinds), what the Roles it renders grant (rendered from
/// `sample`, a policy with every section, and `cluster`, e.g. a few NIC nodes, on Kubernetes and
/// on OpenShift), the policy and its status, its Lease; and the NIC nodes when it renders from
/// them, the ConfigMaps its section may name, its leftovers (read and delete, by name) and the
/// objects it releases (read and patch, by name).
pub fn state_rbac<S: State>(sample: &NicClusterPolicy, cluster: &Observed) -> ControllerRbac {
    let mut rbac = ControllerRbac::with_lease();
    for kind in S::kinds() {
        let scope = if kind.namespaced { &mut rbac.operands } else { &mut rbac.cluster };
        scope.allow_objects(&kind);
    }
    for openshift in [false, true] {
        let ctx = RenderContext { namespace: "nvidia-network-operator", openshift, policy: sample, observed: cluster };
        for object in render_state::<S>(&ctx).ok().flatten().unwrap_or_default() {
            let kind = object.types.as_ref().map(|t| t.kind.as_str()).unwrap_or_default();
            let scope = match kind {
                "Role" => &mut rbac.operands,
                "ClusterRole" => &mut rbac.cluster,
                _ => continue,
            };
            let rules: Vec<PolicyRule> = serde_json::from_value(object.data["rules"].clone()).unwrap_or_default();
            scope.allow_rules(&rules);
        }
    }
    if !S::NODE_LABELS.is_empty() {
        rbac.cluster.allow("", "nodes", &READ_VERBS);
    }
    for leftover in S::leftovers() {
        let scope = if leftover.kind.namespaced { &mut rbac.operands } else { &mut rbac.cluster };
        scope.allow_named(
            &leftover.kind.resource.group,
            &leftover.kind.resource.plural,
            &[leftover.name.to_string()],
            &["get", "delete"],
        );
    }
    for released in S::released() {
        let scope = if released.kind.namespaced { &mut rbac.operands } else { &mut rbac.cluster };
        scope.allow_named(
            &released.kind.resource.group,
            &released.kind.resource.plural,
            &[released.name.to_string()],
            &["get", "patch"],
        );
    }
    if S::READS_CONFIG_MAPS {
        rbac.operands.allow("", "configmaps", &READ_VERBS);
    }
    rbac.cluster.allow(api::GROUP, "nicclusterpolicies", &READ_VERBS).allow(
        api::GROUP,
        "nicclusterpolicies/status",
        &["patch"],
    );
    rbac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_merge_verbs_per_resource_and_keep_resource_names_apart() {
        let mut rules = Rules::default();
        rules.allow("apps", "daemonsets", &["get", "list"]).allow("apps", "daemonsets", &["watch", "get"]);
        rules.allow_named("security.openshift.io", "securitycontextconstraints", &["privileged".into()], &["use"]);
        let policy_rules = rules.to_policy_rules();
        assert_eq!(policy_rules.len(), 2);
        assert_eq!(policy_rules[0].verbs, ["get", "list", "watch"]);
        assert_eq!(policy_rules[1].resource_names.as_deref(), Some(&["privileged".to_string()][..]));
        assert_eq!(rules.grants(), 4);
    }

    #[test]
    fn a_union_grants_what_any_controller_grants_and_nothing_more() {
        let mut a = ControllerRbac::with_lease();
        a.operands.allow("apps", "daemonsets", &["get", "list"]);
        a.cluster.allow("", "nodes", &["get"]);
        let mut b = ControllerRbac::with_lease();
        b.operands.allow("apps", "daemonsets", &["delete"]).allow("", "configmaps", &["get"]);
        let all = ControllerRbac::union([&a, &b]);
        assert_eq!(all.operands.to_policy_rules().len(), 2);
        assert_eq!(all.operands.grants(), 4);
        assert_eq!(all.cluster, a.cluster);
        assert_eq!(all.lease, ControllerRbac::with_lease().lease);
    }
}
