//! The RBAC rules a controller needs, derived from what it really touches, so the charts grant
//! nothing more (`nicctl rbac` writes them into each subchart's `files/rbac.yaml`).
//!
//! A state controller needs, for each kind it renders, the verbs of reconcile (read and watch,
//! create and server-side apply, prune); the policy (read, watch) and its status (patch); its
//! Lease. Its rights to change objects stop at what it renders:
//!
//! - in the operands' namespace, the namespaced kinds it renders (that namespace is the
//!   operator's);
//! - cluster-wide, only the objects it renders, by name (`resourceNames`; server-side apply
//!   names the object in the URL, so even `create` is checked by name);
//! - the Roles and ClusterRoles it renders are written with `escalate`, and bound with `bind`, on
//!   those names only: the controller does not hold the rights its operands' Roles grant, so it
//!   cannot use them on objects it does not own (the API server's escalation check otherwise
//!   requires it to hold every one of them).
//!
//! A grant of a destructive verb on every object of a kind that is not the controller's own is
//! allowed only with a reason ([`Rules::allow_every`]), printed in the generated file;
//! [`ControllerRbac::unjustified`] lists any other.

use crate::objects::Kind;
use crate::render::render_state;
use crate::state::{Observed, RenderContext, State};
use api::NicClusterPolicy;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::DynamicObject;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Verbs on the objects a controller reconciles: watch them, create and apply them, prune them.
pub const OBJECT_VERBS: [&str; 6] = ["get", "list", "watch", "create", "patch", "delete"];
/// Verbs that write an object of ours by name: server-side apply (which creates it too), prune.
pub const WRITE_VERBS: [&str; 3] = ["create", "patch", "delete"];
/// Verbs on what a controller only reads and watches.
pub const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
/// Verbs of leader election on its Lease.
pub const LEASE_VERBS: [&str; 3] = ["get", "create", "update"];
/// Verbs that create, change, remove or hand out rights: on a kind not the controller's own,
/// granted only by name or with a reason.
pub const DESTRUCTIVE_VERBS: [&str; 9] =
    ["create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate", "*"];

/// A set of rules, merged: one rule per API group, resource and resource names; the kinds
/// the controller owns in this scope; and the reasons for grants on every object of a kind it
/// does not own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    rules: BTreeMap<(String, String, Vec<String>), BTreeSet<String>>,
    owned: BTreeSet<(String, String)>,
    reasons: BTreeMap<(String, String), String>,
}

impl Rules {
    /// Grants `verbs` on every object of `resource` (e.g. `daemonsets`, `pods/eviction`) of
    /// `group`. A destructive verb on a kind the controller does not own needs
    /// [`Rules::allow_every`] instead.
    pub fn allow(&mut self, group: &str, resource: &str, verbs: &[&str]) -> &mut Self {
        self.allow_named(group, resource, &[], verbs)
    }

    /// Grants `verbs` on the objects named `names` only (all of them when empty).
    pub fn allow_named(&mut self, group: &str, resource: &str, names: &[String], verbs: &[&str]) -> &mut Self {
        let mut names = names.to_vec();
        names.sort();
        names.dedup();
        let entry = self.rules.entry((group.to_string(), resource.to_string(), names)).or_default();
        entry.extend(verbs.iter().map(|v| v.to_string()));
        self
    }

    /// Grants `verbs` on every object of `resource`, destructive ones included, for `reason`
    /// (why the controller must touch objects that are not its own, and how it limits itself).
    pub fn allow_every(&mut self, group: &str, resource: &str, verbs: &[&str], reason: &str) -> &mut Self {
        self.reasons.insert((group.to_string(), resource.to_string()), reason.to_string());
        self.allow(group, resource, verbs)
    }

    /// Grants [`OBJECT_VERBS`] on `kind`, a kind the controller renders (and so owns) in this
    /// scope.
    pub fn allow_objects(&mut self, kind: &Kind) -> &mut Self {
        self.owned.insert((kind.resource.group.clone(), kind.resource.plural.clone()));
        self.allow(&kind.resource.group, &kind.resource.plural, &OBJECT_VERBS)
    }

    /// Grants what the controller needs on the objects of `kind`, a
    /// [kept kind](crate::State::KEPT_KINDS) it renders: [`OBJECT_VERBS`] but `delete`.
    pub fn allow_kept_objects(&mut self, kind: &Kind) -> &mut Self {
        self.owned.insert((kind.resource.group.clone(), kind.resource.plural.clone()));
        let verbs: Vec<&str> = OBJECT_VERBS.into_iter().filter(|verb| *verb != "delete").collect();
        self.allow(&kind.resource.group, &kind.resource.plural, &verbs)
    }

    /// Grants everything `other` grants.
    pub fn merge(&mut self, other: &Rules) -> &mut Self {
        for (key, verbs) in &other.rules {
            self.rules.entry(key.clone()).or_default().extend(verbs.iter().cloned());
        }
        self.owned.extend(other.owned.iter().cloned());
        self.reasons.extend(other.reasons.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The number of verb × resource grants.
    pub fn grants(&self) -> usize {
        self.rules.values().map(BTreeSet::len).sum()
    }

    /// Whether `verb` on the object `name` of `resource` is granted.
    pub fn allows(&self, group: &str, resource: &str, name: &str, verb: &str) -> bool {
        self.rules.iter().any(|((g, r, names), verbs)| {
            g == group
                && r == resource
                && (names.is_empty() || names.iter().any(|n| n == name))
                && (verbs.contains(verb) || verbs.contains("*"))
        })
    }

    /// The destructive grants on every object of a kind, as `group/resource verb`, that are
    /// not on a kind owned here (when `owned_exempt`) and have no reason.
    fn unjustified(&self, owned_exempt: bool) -> Vec<String> {
        let mut found = Vec::new();
        for ((group, resource, names), verbs) in &self.rules {
            let key = (group.clone(), resource.clone());
            if !names.is_empty() || self.reasons.contains_key(&key) || (owned_exempt && self.owned.contains(&key)) {
                continue;
            }
            for verb in verbs.iter().filter(|v| DESTRUCTIVE_VERBS.contains(&v.as_str())) {
                found.push(format!("{}/{resource} {verb}", if group.is_empty() { "core" } else { group }));
            }
        }
        found
    }

    /// As PolicyRules: one per group, resource and names, verbs in the usual order.
    pub fn to_policy_rules(&self) -> Vec<PolicyRule> {
        self.rules
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

    /// Reads the policy, and writes the status of the one policy acted on.
    pub fn allow_policy_status(&mut self) -> &mut Self {
        self.cluster.allow(api::GROUP, "nicclusterpolicies", &READ_VERBS).allow_named(
            api::GROUP,
            "nicclusterpolicies/status",
            &[api::POLICY_NAME.to_string()],
            &["patch"],
        );
        self
    }

    /// Reads the NicNodePolicies and every node's labels (their selectors must not overlap) and
    /// writes their status. (The roles a NicNodePolicy's objects use are shared and keep their
    /// names: [`State::SHARED_KINDS`], granted by name like the cluster policy's.)
    pub fn allow_node_policies(&mut self) -> &mut Self {
        self.cluster.allow(api::GROUP, "nicnodepolicies", &READ_VERBS).allow_every(
            api::GROUP,
            "nicnodepolicies/status",
            &["patch"],
            "the state's entry in the status of each NicNodePolicy (the users name them)",
        );
        self.cluster.allow("", "nodes", &READ_VERBS);
        self
    }

    /// Lets the controller write the Roles and ClusterRoles among `objects` and bind the roles
    /// their bindings refer to, by name: `escalate` and `bind` instead of holding every right
    /// those roles grant.
    pub fn allow_rendered_roles(&mut self, objects: &[DynamicObject]) -> &mut Self {
        const RBAC: &str = "rbac.authorization.k8s.io";
        for object in objects {
            let kind = object.types.as_ref().map(|t| t.kind.as_str()).unwrap_or_default();
            let name = object.metadata.name.clone().unwrap_or_default();
            let role_ref = |field: &str| object.data["roleRef"][field].as_str().unwrap_or_default().to_string();
            match kind {
                "Role" => self.operands.allow_named(RBAC, "roles", &[name], &["escalate"]),
                "ClusterRole" => self.cluster.allow_named(RBAC, "clusterroles", &[name], &["escalate"]),
                // A RoleBinding's bind is checked in its namespace, so a Role there grants it.
                "RoleBinding" if role_ref("kind") == "ClusterRole" => {
                    self.operands.allow_named(RBAC, "clusterroles", &[role_ref("name")], &["bind"])
                }
                "RoleBinding" => self.operands.allow_named(RBAC, "roles", &[role_ref("name")], &["bind"]),
                "ClusterRoleBinding" => self.cluster.allow_named(RBAC, "clusterroles", &[role_ref("name")], &["bind"]),
                _ => continue,
            };
        }
        self
    }

    /// The number of verb × resource grants, all scopes together.
    pub fn grants(&self) -> usize {
        self.cluster.grants() + self.operands.grants() + self.lease.grants()
    }

    /// Every grant of a destructive verb on all objects of a kind that is not the controller's
    /// own, without a reason: cluster-wide, any kind not restricted by name; in the operands'
    /// namespace, any kind the controller does not render. Empty for every generated controller
    /// (a test checks it).
    pub fn unjustified(&self) -> Vec<String> {
        let cluster = self.cluster.unjustified(false).into_iter().map(|g| format!("cluster-wide: {g}"));
        let operands = self.operands.unjustified(true).into_iter().map(|g| format!("operands' namespace: {g}"));
        cluster.chain(operands).collect()
    }

    /// The `files/rbac.yaml` of the controller's subchart, with the reasons for its grants on
    /// every object of a kind it does not own as a comment.
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
        let mut header =
            String::from("# Generated by `nicctl rbac --dir charts/network-operator/charts`; do not edit.\n");
        let reasons = [("cluster-wide", &self.cluster), ("operands' namespace", &self.operands)];
        for (scope, rules) in reasons {
            for ((group, resource), reason) in &rules.reasons {
                let group = if group.is_empty() { "core" } else { group };
                header.push_str(&format!("# Every {group}/{resource} ({scope}): {reason}\n"));
            }
        }
        header + &body
    }
}

/// The names of the objects of `kind` among `objects`.
fn names_of(objects: &[DynamicObject], kind: &Kind) -> Vec<String> {
    objects
        .iter()
        .filter(|object| {
            object.types.as_ref().is_some_and(|t| {
                t.kind == kind.resource.kind
                    && t.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("") == kind.resource.group
            })
        })
        .filter_map(|object| object.metadata.name.clone())
        .collect()
}

/// The rules of the controller of state `S`, from what it renders from `sample` (a policy with
/// every section) and `cluster` (e.g. a few NIC nodes), on Kubernetes and on OpenShift: the
/// namespaced kinds it renders, in the operands' namespace; cluster-scoped kinds read and
/// watched, and written by the names it renders; its Roles and bindings through `escalate` and
/// `bind`; the policy and its status; its Lease; the NIC nodes when it renders from them, the
/// ConfigMaps its section may name, its leftovers (read and delete, by name) and the objects it
/// releases (read and patch, by name); its [kept kinds](State::KEPT_KINDS) never deleted.
pub fn state_rbac<S: State>(sample: &NicClusterPolicy, cluster: &Observed) -> ControllerRbac {
    let mut rbac = ControllerRbac::with_lease();
    let rendered: Vec<DynamicObject> = [false, true]
        .into_iter()
        .flat_map(|openshift| {
            let ctx =
                RenderContext { namespace: "nvidia-network-operator", openshift, policy: sample, observed: cluster };
            render_state::<S>(&ctx).ok().flatten().unwrap_or_default()
        })
        .collect();
    for kind in S::kinds() {
        if S::KEPT_KINDS.contains(&kind.resource.kind.as_str()) {
            // Created, and released when the original owned it; never deleted.
            let scope = if kind.namespaced { &mut rbac.operands } else { &mut rbac.cluster };
            scope.allow_kept_objects(&kind);
        } else if kind.namespaced {
            rbac.operands.allow_objects(&kind);
        } else {
            let (group, plural) = (&kind.resource.group, &kind.resource.plural);
            rbac.cluster.allow(group, plural, &READ_VERBS);
            let names = names_of(&rendered, &kind);
            if !names.is_empty() {
                rbac.cluster.allow_named(group, plural, &names, &WRITE_VERBS);
            }
        }
    }
    rbac.allow_rendered_roles(&rendered);
    if !S::NODE_LABELS.is_empty() {
        rbac.cluster.allow("", "nodes", &READ_VERBS);
    } else if S::NEEDS_DRIVER {
        // A driver-gated workload on no node: are nodes waiting for their driver?
        rbac.cluster.allow("", "nodes", &["list"]);
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
    rbac.allow_policy_status();
    if S::NODE_POLICIES {
        rbac.allow_node_policies();
    }
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

    #[test]
    fn a_destructive_verb_on_every_object_of_a_kind_not_owned_is_unjustified_without_a_reason() {
        let mut rbac = ControllerRbac::with_lease();
        rbac.cluster.allow("rbac.authorization.k8s.io", "clusterroles", &["get", "list", "watch", "delete"]);
        rbac.cluster.allow("", "nodes", &["get", "patch"]);
        rbac.operands.allow("", "pods", &["update"]);
        rbac.operands.allow_objects(&Kind::namespaced::<k8s_openapi::api::apps::v1::DaemonSet>());
        assert_eq!(
            rbac.unjustified(),
            [
                "cluster-wide: core/nodes patch",
                "cluster-wide: rbac.authorization.k8s.io/clusterroles delete",
                "operands' namespace: core/pods update",
            ]
        );
        rbac.cluster.allow("", "nodes", &["get", "patch"]);
        rbac.cluster.allow_every("", "nodes", &["patch"], "labels");
        rbac.cluster.allow("rbac.authorization.k8s.io", "clusterroles", &["get", "list", "watch"]);
        assert_eq!(rbac.unjustified().len(), 2, "a reason justifies its kind only");
    }

    #[test]
    fn grants_by_name_are_never_unjustified_and_name_only_their_objects() {
        let mut rbac = ControllerRbac::with_lease();
        rbac.cluster.allow_named("rbac.authorization.k8s.io", "clusterroles", &["multus".into()], &WRITE_VERBS);
        rbac.cluster.allow_named("rbac.authorization.k8s.io", "clusterroles", &["multus".into()], &["escalate"]);
        assert!(rbac.unjustified().is_empty());
        assert!(rbac.cluster.allows("rbac.authorization.k8s.io", "clusterroles", "multus", "delete"));
        assert!(!rbac.cluster.allows("rbac.authorization.k8s.io", "clusterroles", "cluster-admin", "delete"));
        assert_eq!(rbac.cluster.to_policy_rules().len(), 1, "one rule per name list");
    }

    #[test]
    fn rendered_roles_are_granted_escalate_and_their_bindings_bind_in_the_scope_checked() {
        let object = |value: serde_json::Value| serde_json::from_value::<DynamicObject>(value).unwrap();
        let rbac_v1 = "rbac.authorization.k8s.io/v1";
        let objects = [
            object(
                serde_json::json!({"apiVersion": rbac_v1, "kind": "ClusterRole", "metadata": {"name": "multus"}, "rules": []}),
            ),
            object(
                serde_json::json!({"apiVersion": rbac_v1, "kind": "Role", "metadata": {"name": "rdma"}, "rules": []}),
            ),
            object(serde_json::json!({"apiVersion": rbac_v1, "kind": "ClusterRoleBinding", "metadata": {"name": "b"},
                "roleRef": {"kind": "ClusterRole", "name": "multus"}})),
            object(serde_json::json!({"apiVersion": rbac_v1, "kind": "RoleBinding", "metadata": {"name": "c"},
                "roleRef": {"kind": "ClusterRole", "name": "view-x"}})),
            object(serde_json::json!({"apiVersion": rbac_v1, "kind": "RoleBinding", "metadata": {"name": "d"},
                "roleRef": {"kind": "Role", "name": "rdma"}})),
        ];
        let mut rbac = ControllerRbac::default();
        rbac.allow_rendered_roles(&objects);
        let group = "rbac.authorization.k8s.io";
        assert!(rbac.cluster.allows(group, "clusterroles", "multus", "escalate"));
        assert!(rbac.cluster.allows(group, "clusterroles", "multus", "bind"));
        assert!(rbac.operands.allows(group, "roles", "rdma", "escalate"));
        assert!(rbac.operands.allows(group, "roles", "rdma", "bind"));
        assert!(rbac.operands.allows(group, "clusterroles", "view-x", "bind"));
        assert!(!rbac.cluster.allows(group, "clusterroles", "view-x", "bind"));
        assert!(!rbac.cluster.allows(group, "clusterroles", "cluster-admin", "bind"));
        assert!(rbac.unjustified().is_empty());
    }
}
