//! Checks the CRD schema cannot make on its own (or makes with CEL, which only an API server
//! evaluates). Controllers run these before rendering, so bad input becomes a state `error`
//! naming the field instead of half-applied objects.

use crate::FieldError;
use crate::policy::NicClusterPolicy;
use regex::Regex;
use std::sync::LazyLock;

/// Format of an InfiniBand GUID: eight hexadecimal pairs separated by colons.
pub const GUID_PATTERN: &str = r"^([0-9A-Fa-f]{2}:){7}[0-9A-Fa-f]{2}$";

static GUID: LazyLock<Regex> = LazyLock::new(|| Regex::new(GUID_PATTERN).expect("valid GUID pattern"));

/// Every problem of the policy that the CRD schema does not already report.
pub fn policy(policy: &NicClusterPolicy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if policy.metadata.name.as_deref() != Some(crate::POLICY_NAME) {
        errors.push(FieldError::new(
            "metadata.name",
            format!("only the NicClusterPolicy named {} is acted on", crate::POLICY_NAME),
        ));
    }
    if let Some(upgrade) = policy.spec.ofed_driver.as_ref().and_then(|o| o.upgrade_policy.as_ref())
        && upgrade.safe_load == Some(true)
        && upgrade.auto_upgrade != Some(true)
    {
        errors.push(FieldError::new(
            "spec.ofedDriver.upgradePolicy.safeLoad",
            "safeLoad requires autoUpgrade to be true",
        ));
    }
    if let Some(ib) = &policy.spec.ib_kubernetes {
        let start = ib.p_key_guid_pool_range_start.as_deref();
        let end = ib.p_key_guid_pool_range_end.as_deref();
        for (field, value) in [("pKeyGUIDPoolRangeStart", start), ("pKeyGUIDPoolRangeEnd", end)] {
            if let Some(v) = value
                && !GUID.is_match(v)
            {
                errors.push(FieldError::new(
                    format!("spec.ibKubernetes.{field}"),
                    format!("{v:?} is not a GUID of the form xx:xx:xx:xx:xx:xx:xx:xx (hexadecimal)"),
                ));
            }
        }
        if let (Some(start), Some(end)) = (start.and_then(guid_value), end.and_then(guid_value))
            && end <= start
        {
            errors.push(FieldError::new(
                "spec.ibKubernetes.pKeyGUIDPoolRangeEnd",
                "pKeyGUIDPoolRangeEnd must be greater than pKeyGUIDPoolRangeStart",
            ));
        }
    }
    errors
}

fn guid_value(guid: &str) -> Option<u64> {
    GUID.is_match(guid).then(|| u64::from_str_radix(&guid.replace(':', ""), 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DriverUpgradePolicySpec, IbKubernetesSpec, NicClusterPolicySpec, OfedDriverSpec};

    fn named(name: &str, spec: NicClusterPolicySpec) -> NicClusterPolicy {
        let mut p = NicClusterPolicy::new(name, spec);
        p.metadata.name = Some(name.into());
        p
    }

    fn paths(p: &NicClusterPolicy) -> Vec<String> {
        policy(p).into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn an_empty_policy_with_the_right_name_is_valid() {
        assert!(policy(&named("nic-cluster-policy", Default::default())).is_empty());
    }

    #[test]
    fn another_name_is_reported_on_metadata_name() {
        assert_eq!(paths(&named("mine", Default::default())), ["metadata.name"]);
    }

    #[test]
    fn safe_load_without_auto_upgrade_is_reported() {
        let spec = NicClusterPolicySpec {
            ofed_driver: Some(OfedDriverSpec {
                upgrade_policy: Some(DriverUpgradePolicySpec { safe_load: Some(true), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(paths(&named("nic-cluster-policy", spec)), ["spec.ofedDriver.upgradePolicy.safeLoad"]);
    }

    fn ib(start: &str, end: &str) -> NicClusterPolicy {
        named(
            "nic-cluster-policy",
            NicClusterPolicySpec {
                ib_kubernetes: Some(IbKubernetesSpec {
                    p_key_guid_pool_range_start: Some(start.into()),
                    p_key_guid_pool_range_end: Some(end.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    }

    #[test]
    fn guid_ranges_must_be_well_formed_and_increasing() {
        assert!(paths(&ib("02:00:00:00:00:00:00:00", "02:FF:FF:FF:FF:FF:FF:FF")).is_empty());
        assert_eq!(
            paths(&ib("02:00:00:00:00:00:00", "zz")),
            ["spec.ibKubernetes.pKeyGUIDPoolRangeStart", "spec.ibKubernetes.pKeyGUIDPoolRangeEnd"]
        );
        assert_eq!(
            paths(&ib("02:FF:00:00:00:00:00:00", "02:00:00:00:00:00:00:00")),
            ["spec.ibKubernetes.pKeyGUIDPoolRangeEnd"]
        );
    }
}
