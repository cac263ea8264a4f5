//! The policy fields that end up in operand pod specs, checked as the API server checks the pod
//! template they are copied into: tolerations, node affinity, environment variables, the names
//! of the ConfigMaps and Secrets mounted. A value the API server would refuse is an error naming
//! the policy field (`spec.tolerations[0].operator`), not the DaemonSet field it would become in
//! every state's message, and nothing is applied.

use crate::FieldError;
use crate::policy::NicClusterPolicy;
use crate::selector::{check_key, check_value};
use k8s_openapi::api::core::v1::{EnvVar, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, Toleration};
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::LazyLock;

static SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").expect("valid pattern")
});

/// Where the operands run: the policy's `spec.tolerations` and `spec.nodeAffinity`, which every
/// state copies into its pod templates, and their Deployment counterparts
/// `spec.deploymentTolerations` and `spec.deploymentNodeAffinity`.
pub fn placement(policy: &NicClusterPolicy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, toleration) in policy.spec.tolerations.iter().flatten().enumerate() {
        errors.extend(check_toleration(&format!("spec.tolerations[{i}]"), toleration));
    }
    if let Some(affinity) = &policy.spec.node_affinity {
        errors.extend(node_affinity("spec.nodeAffinity", affinity));
    }
    for (i, toleration) in policy.spec.deployment_tolerations.iter().flatten().enumerate() {
        errors.extend(check_toleration(&format!("spec.deploymentTolerations[{i}]"), toleration));
    }
    if let Some(affinity) = &policy.spec.deployment_node_affinity {
        errors.extend(node_affinity("spec.deploymentNodeAffinity", affinity));
    }
    errors
}

fn check_toleration(path: &str, toleration: &Toleration) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let key = toleration.key.as_deref().unwrap_or_default();
    let operator = toleration.operator.as_deref().unwrap_or_default();
    let value = toleration.value.as_deref().unwrap_or_default();
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !key.is_empty()
        && let Err(why) = check_key(key)
    {
        errors.push(FieldError::new(format!("{path}.key"), why));
    }
    match operator {
        "" | "Equal" if key.is_empty() => errors.push(FieldError::new(
            format!("{path}.operator"),
            "must be Exists when key is empty (which tolerates every taint)",
        )),
        "" | "Equal" => {
            if let Err(why) = check_value(value) {
                errors.push(FieldError::new(format!("{path}.value"), why));
            }
        }
        "Exists" if !value.is_empty() => {
            errors.push(FieldError::new(format!("{path}.value"), "must be empty when operator is Exists"))
        }
        "Exists" => {}
        other => errors.push(FieldError::new(
            format!("{path}.operator"),
            format!("{other:?} is not an operator: Equal or Exists (empty means Equal)"),
        )),
    }
    if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        errors.push(FieldError::new(
            format!("{path}.effect"),
            format!("{effect:?} is not a taint effect: NoSchedule, PreferNoSchedule or NoExecute (empty means all)"),
        ));
    }
    if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
        errors.push(FieldError::new(format!("{path}.tolerationSeconds"), "is allowed only with effect NoExecute"));
    }
    errors
}

fn node_affinity(path: &str, affinity: &NodeAffinity) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(required) = &affinity.required_during_scheduling_ignored_during_execution {
        let at = format!("{path}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms");
        if required.node_selector_terms.is_empty() {
            errors.push(FieldError::new(&at, "needs at least one term"));
        }
        for (i, term) in required.node_selector_terms.iter().enumerate() {
            errors.extend(node_selector_term(&format!("{at}[{i}]"), term));
        }
    }
    for (i, preferred) in affinity.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
        let at = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        if !(1..=100).contains(&preferred.weight) {
            errors.push(FieldError::new(format!("{at}.weight"), format!("{} is not in 1..100", preferred.weight)));
        }
        errors.extend(node_selector_term(&format!("{at}.preference"), &preferred.preference));
    }
    errors
}

fn node_selector_term(path: &str, term: &NodeSelectorTerm) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, requirement) in term.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        if let Err(why) = check_key(&requirement.key) {
            errors.push(FieldError::new(format!("{at}.key"), why));
        }
        errors.extend(requirement_values(&at, requirement));
    }
    for (i, requirement) in term.match_fields.iter().flatten().enumerate() {
        let at = format!("{path}.matchFields[{i}]");
        if requirement.key != "metadata.name" {
            errors.push(FieldError::new(format!("{at}.key"), format!("{:?}: only metadata.name", requirement.key)));
        }
        if !matches!(requirement.operator.as_str(), "In" | "NotIn") {
            errors.push(FieldError::new(format!("{at}.operator"), "must be In or NotIn"));
        } else if requirement.values.as_ref().map_or(0, Vec::len) != 1 {
            errors.push(FieldError::new(format!("{at}.values"), "must have exactly one value"));
        }
    }
    errors
}

fn requirement_values(at: &str, requirement: &NodeSelectorRequirement) -> Option<FieldError> {
    let values = requirement.values.as_deref().unwrap_or_default();
    let values_at = format!("{at}.values");
    match requirement.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => Some(FieldError::new(values_at, "must be non-empty for In and NotIn")),
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            Some(FieldError::new(values_at, "must be empty for Exists and DoesNotExist"))
        }
        "Gt" | "Lt" if values.len() != 1 || values[0].parse::<i64>().is_err() => {
            Some(FieldError::new(values_at, "must be one integer for Gt and Lt"))
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => None,
        other => Some(FieldError::new(
            format!("{at}.operator"),
            format!("{other:?} is not an operator: In, NotIn, Exists, DoesNotExist, Gt or Lt"),
        )),
    }
}

/// Environment variables at `path` (e.g. `spec.ofedDriver.env`): each named (printable ASCII,
/// no `=`) once (server-side apply refuses a list with a name twice, which would leave the state
/// retrying forever), with a value or one source, not both.
pub fn env(path: &str, env: &[EnvVar]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, var) in env.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let name = var.name.as_str();
        if name.is_empty() {
            errors.push(FieldError::new(format!("{at}.name"), "required"));
        } else if name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
            errors.push(FieldError::new(format!("{at}.name"), format!("{name:?}: printable ASCII without '=' only")));
        } else if let Some(first) = seen.insert(name, i) {
            errors.push(FieldError::new(format!("{at}.name"), format!("{name:?} is already set by {path}[{first}]")));
            seen.insert(name, first);
        }
        if let Some(from) = &var.value_from {
            let sources = [
                from.field_ref.is_some(),
                from.resource_field_ref.is_some(),
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
            ];
            if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errors.push(FieldError::new(format!("{at}.valueFrom"), "may not be set together with value"));
            } else if sources.iter().filter(|s| **s).count() != 1 {
                errors.push(FieldError::new(
                    format!("{at}.valueFrom"),
                    "needs exactly one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef",
                ));
            }
        }
    }
    errors
}

/// The name of a ConfigMap or Secret at `path`: a DNS subdomain (lowercase letters, digits, `-`
/// and `.`, at most 253 characters), else no such object can exist.
pub fn object_name(path: &str, name: &str) -> Result<(), FieldError> {
    if name.len() <= 253 && SUBDOMAIN.is_match(name) {
        return Ok(());
    }
    Err(FieldError::new(
        path,
        format!("{name:?} is not an object name: lowercase letters, digits, '-' and '.', at most 253 characters"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::NicClusterPolicySpec;
    use serde_json::json;

    fn placement_of(spec: serde_json::Value) -> Vec<String> {
        let spec: NicClusterPolicySpec = serde_json::from_value(spec).unwrap();
        placement(&NicClusterPolicy::new(crate::POLICY_NAME, spec)).into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn tolerations_the_api_server_accepts_pass() {
        let tolerations = json!([
            {"operator": "Exists"},
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "hpc", "effect": "NoExecute", "tolerationSeconds": 30},
            {"key": "node-role.kubernetes.io/master", "operator": "Equal", "value": "", "effect": "PreferNoSchedule"},
        ]);
        assert_eq!(placement_of(json!({"tolerations": tolerations})), Vec::<String>::new());
    }

    #[test]
    fn tolerations_the_api_server_refuses_name_the_policy_field() {
        let tolerations = json!([
            {"key": "a", "operator": "Foo"},
            {"operator": "Equal", "value": "x"},
            {"key": "b", "operator": "Exists", "value": "x"},
            {"key": "c", "effect": "Never"},
            {"key": "d", "effect": "NoSchedule", "tolerationSeconds": 5},
            {"key": "bad key!"},
            {"key": "e", "value": "not a value"},
        ]);
        assert_eq!(
            placement_of(json!({"tolerations": tolerations})),
            [
                "spec.tolerations[0].operator: \"Foo\" is not an operator: Equal or Exists (empty means Equal)",
                "spec.tolerations[1].operator: must be Exists when key is empty (which tolerates every taint)",
                "spec.tolerations[2].value: must be empty when operator is Exists",
                "spec.tolerations[3].effect: \"Never\" is not a taint effect: NoSchedule, PreferNoSchedule or NoExecute (empty means all)",
                "spec.tolerations[4].tolerationSeconds: is allowed only with effect NoExecute",
                "spec.tolerations[5].key: has key \"bad key!\": a label name is 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
                "spec.tolerations[6].value: has value \"not a value\": a label value is empty or 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ]
        );
    }

    #[test]
    fn node_affinity_the_api_server_refuses_names_the_policy_field() {
        let affinity = json!({
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
                "matchExpressions": [
                    {"key": "a", "operator": "In", "values": []},
                    {"key": "b", "operator": "Exists", "values": ["x"]},
                    {"key": "c", "operator": "Gt", "values": ["ten"]},
                    {"key": "d", "operator": "Near"},
                    {"key": "ok", "operator": "In", "values": ["x"]},
                ],
                "matchFields": [{"key": "metadata.labels", "operator": "In", "values": ["n"]}],
            }]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}],
        });
        let at = "spec.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]";
        assert_eq!(
            placement_of(json!({"nodeAffinity": affinity})),
            [
                format!("{at}.matchExpressions[0].values: must be non-empty for In and NotIn"),
                format!("{at}.matchExpressions[1].values: must be empty for Exists and DoesNotExist"),
                format!("{at}.matchExpressions[2].values: must be one integer for Gt and Lt"),
                format!(
                    "{at}.matchExpressions[3].operator: \"Near\" is not an operator: In, NotIn, Exists, DoesNotExist, Gt or Lt"
                ),
                format!("{at}.matchFields[0].key: \"metadata.labels\": only metadata.name"),
                "spec.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: 0 is not in 1..100"
                    .into(),
            ]
        );
        let empty = json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}});
        assert_eq!(
            placement_of(json!({"nodeAffinity": empty})),
            [
                "spec.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: needs at least one term"
            ]
        );
    }

    #[test]
    fn deployment_placement_is_checked_under_its_own_field() {
        let affinity = json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}});
        assert_eq!(
            placement_of(json!({
                "deploymentTolerations": [{"key": "a", "operator": "Foo"}],
                "deploymentNodeAffinity": affinity,
            })),
            [
                "spec.deploymentTolerations[0].operator: \"Foo\" is not an operator: Equal or Exists (empty means Equal)",
                "spec.deploymentNodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: needs at least one term",
            ]
        );
    }

    #[test]
    fn env_names_twice_or_unusable_and_ambiguous_sources_are_errors() {
        let env: Vec<EnvVar> = serde_json::from_value(json!([
            {"name": "A", "value": "1"},
            {"name": "A", "value": "2"},
            {"name": "", "value": "x"},
            {"name": "B=C"},
            {"name": "D", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "E", "valueFrom": {}},
            {"name": "lower.case-ok"},
        ]))
        .unwrap();
        let found: Vec<String> = super::env("spec.ofedDriver.env", &env).into_iter().map(|e| e.to_string()).collect();
        assert_eq!(
            found,
            [
                "spec.ofedDriver.env[1].name: \"A\" is already set by spec.ofedDriver.env[0]",
                "spec.ofedDriver.env[2].name: required",
                "spec.ofedDriver.env[3].name: \"B=C\": printable ASCII without '=' only",
                "spec.ofedDriver.env[4].valueFrom: may not be set together with value",
                "spec.ofedDriver.env[5].valueFrom: needs exactly one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef",
            ]
        );
    }

    #[test]
    fn object_names_must_be_dns_subdomains() {
        for good in ["certs", "my.certs-1", &"a".repeat(253)] {
            assert!(object_name("f", good).is_ok(), "{good}");
        }
        for bad in ["", "Certs", "a_b", "../x", "a/b", " a", "a.", &"a".repeat(254)] {
            assert!(object_name("f", bad).is_err(), "{bad:?}");
        }
    }
}
