//! Driver upgrades, node by node: when a driver DaemonSet's template changes (a new `version`,
//! env, probes...), when a driver waits for a safe load, or when a user asks for it, each node
//! is cordoned, waited on, drained through the Eviction API, gets its new driver pod, and is
//! uncordoned, within `maxParallelUpgrades` and `maxUnavailable`.
//!
//! The state lives on the Nodes, under the keys of the original operator (so a cluster caught
//! mid-upgrade by it is taken over, and a restart of this controller loses nothing): the label
//! [`STATE_LABEL`] and the annotations below. [`observe`] reads a pass's inputs into plain
//! values, [`decide`] (pure) turns them into actions, [`pass`] executes them, and [`drain`]
//! evicts a node's pods in a task of its own.
//!
//! With the Maintenance Operator's requestor mode ([`maintenance`]), a node's cordon, wait and
//! drain are asked of the NVIDIA Maintenance Operator through a `NodeMaintenance` instead: the
//! node waits in `node-maintenance-required` until it is `Ready`, gets its new driver, and the
//! `NodeMaintenance` is released.

pub mod decide;
pub mod drain;
pub mod maintenance;
pub mod observe;
pub mod pass;
#[cfg(test)]
mod simulation_tests;

use api::FieldError;
use api::policy::OfedDriverSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Node label: where the node is in its upgrade ([`NodeState`]).
pub const STATE_LABEL: &str = "nvidia.com/ofed-driver-upgrade-state";
/// Node label set by users: `"true"` keeps the node out of upgrades (it stays
/// `upgrade-required`).
pub const SKIP_LABEL: &str = "nvidia.com/ofed-driver-upgrade.skip";
/// Node annotation set by users (or the migration from a single DaemonSet): `"true"` forces an
/// upgrade cycle.
pub const REQUESTED_ANNOTATION: &str = "nvidia.com/ofed-driver-upgrade-requested";
/// Node annotation: `"true"` when the node was already cordoned as its upgrade began, so it
/// stays cordoned at the end.
pub const INITIAL_STATE_ANNOTATION: &str = "nvidia.com/ofed-driver-upgrade.node-initial-state.unschedulable";
/// Node annotation: Unix seconds when the wait for `waitForCompletion` pods began.
pub const WAIT_START_ANNOTATION: &str = "nvidia.com/ofed-driver-upgrade-wait-for-pod-completion-start-time";
/// Node annotation (ours): Unix seconds when the drain began, so its timeout survives a
/// restart of the controller.
pub const DRAIN_START_ANNOTATION: &str = "nvidia.com/ofed-driver-upgrade-drain-start-time";
/// Node annotation (ours): why the node's upgrade failed.
pub const FAILURE_ANNOTATION: &str = "nvidia.com/ofed-driver-upgrade-failure";
/// Node annotation: `"true"` while the node's upgrade goes through a `NodeMaintenance` of the
/// Maintenance Operator (requestor mode), so it is finished in that mode.
pub const REQUESTOR_MODE_ANNOTATION: &str = "nvidia.com/ofed-driver-upgrade-requestor-mode";
/// Node annotation of old releases, removed wherever it is found.
pub const LEGACY_STATE_ANNOTATION: &str = "nvidia.com/ofed-upgrade-state";
/// Pod label: `"true"` keeps the pod out of drains (the operator's own pods carry it).
pub const DRAIN_SKIP_LABEL: &str = "nvidia.com/ofed-driver-upgrade-drain.skip";
/// Pod label of the DaemonSet controller: the template revision a pod was made from.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// Where a node is in its upgrade: the values of [`STATE_LABEL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeState {
    /// No label (or one this version does not know): not looked at yet.
    #[default]
    Unknown,
    /// Its driver must be upgraded; waits for a slot.
    UpgradeRequired,
    /// Holds a slot; is cordoned next.
    CordonRequired,
    /// Cordoned; waits for the `waitForCompletion` pods.
    WaitForJobsRequired,
    /// The original's pod-deletion step (disabled there); passed through.
    PodDeletionRequired,
    /// Being drained.
    DrainRequired,
    /// Requestor mode: its `NodeMaintenance` is requested; waits for it to be `Ready` (the
    /// Maintenance Operator cordons, waits and drains).
    NodeMaintenanceRequired,
    /// The original library's name for the step after a `NodeMaintenance` is `Ready` (not
    /// written by it yet); handled as [`NodeState::PodRestartRequired`].
    PostMaintenanceRequired,
    /// Its old driver pod is replaced; waits for the new one to be Ready.
    PodRestartRequired,
    /// The original's validation step (disabled there); passed through.
    ValidationRequired,
    /// Upgraded; is uncordoned next.
    UncordonRequired,
    /// Its driver is current.
    UpgradeDone,
    /// Its upgrade failed (drain, or a crash-looping driver); it stays cordoned until its
    /// driver pod is current and Ready.
    UpgradeFailed,
}

impl NodeState {
    /// Every state, in the order of an upgrade.
    pub const ALL: [NodeState; 13] = [
        NodeState::Unknown,
        NodeState::UpgradeRequired,
        NodeState::CordonRequired,
        NodeState::WaitForJobsRequired,
        NodeState::PodDeletionRequired,
        NodeState::DrainRequired,
        NodeState::NodeMaintenanceRequired,
        NodeState::PostMaintenanceRequired,
        NodeState::PodRestartRequired,
        NodeState::ValidationRequired,
        NodeState::UncordonRequired,
        NodeState::UpgradeDone,
        NodeState::UpgradeFailed,
    ];

    /// The label value (`""` for [`NodeState::Unknown`]).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "",
            NodeState::UpgradeRequired => "upgrade-required",
            NodeState::CordonRequired => "cordon-required",
            NodeState::WaitForJobsRequired => "wait-for-jobs-required",
            NodeState::PodDeletionRequired => "pod-deletion-required",
            NodeState::DrainRequired => "drain-required",
            NodeState::NodeMaintenanceRequired => "node-maintenance-required",
            NodeState::PostMaintenanceRequired => "post-maintenance-required",
            NodeState::PodRestartRequired => "pod-restart-required",
            NodeState::ValidationRequired => "validation-required",
            NodeState::UncordonRequired => "uncordon-required",
            NodeState::UpgradeDone => "upgrade-done",
            NodeState::UpgradeFailed => "upgrade-failed",
        }
    }

    /// The reason of the Event recording a move to this state.
    pub fn reason(self) -> &'static str {
        match self {
            NodeState::Unknown => "UpgradeStateRemoved",
            NodeState::UpgradeRequired => "UpgradeRequired",
            NodeState::CordonRequired => "CordonRequired",
            NodeState::WaitForJobsRequired => "WaitForJobsRequired",
            NodeState::PodDeletionRequired => "PodDeletionRequired",
            NodeState::DrainRequired => "DrainRequired",
            NodeState::NodeMaintenanceRequired => "NodeMaintenanceRequired",
            NodeState::PostMaintenanceRequired => "PostMaintenanceRequired",
            NodeState::PodRestartRequired => "PodRestartRequired",
            NodeState::ValidationRequired => "ValidationRequired",
            NodeState::UncordonRequired => "UncordonRequired",
            NodeState::UpgradeDone => "UpgradeDone",
            NodeState::UpgradeFailed => "UpgradeFailed",
        }
    }

    /// The state of a label value; unknown values are [`NodeState::Unknown`].
    pub fn parse(value: Option<&str>) -> Self {
        Self::ALL.into_iter().find(|s| Some(s.as_str()) == value && !s.as_str().is_empty()).unwrap_or(Self::Unknown)
    }

    /// Whether we may have cordoned a node in this state (it is uncordoned when upgrades are
    /// turned off, unless it was cordoned before or its upgrade went through a
    /// `NodeMaintenance`: the Maintenance Operator cordoned it and uncordons it).
    pub fn cordoned_by_us(self) -> bool {
        matches!(
            self,
            NodeState::WaitForJobsRequired
                | NodeState::PodDeletionRequired
                | NodeState::DrainRequired
                | NodeState::PostMaintenanceRequired
                | NodeState::PodRestartRequired
                | NodeState::ValidationRequired
                | NodeState::UncordonRequired
                | NodeState::UpgradeFailed
        )
    }
}

/// The policy's `upgradePolicy`, resolved: what a pass follows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Nodes upgrading at once; 0: no limit.
    pub max_parallel: usize,
    /// `maxUnavailable` as written (resolved against the node count of each pass).
    pub max_unavailable: Option<IntOrString>,
    /// Pods to wait for before draining.
    pub wait_for: Option<WaitFor>,
    /// How to drain; `None`: no drain.
    pub drain: Option<DrainSettings>,
    /// Requestor mode: nodes are maintained through `NodeMaintenance` objects of this requestor
    /// (set by the controller from its environment, not by the policy).
    pub requestor: Option<maintenance::Requestor>,
}

/// `waitForCompletion`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaitFor {
    /// Label selector of the pods waited for.
    pub selector: String,
    /// Seconds to wait; 0: forever.
    pub timeout_seconds: i64,
}

/// `drain`, when enabled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainSettings {
    /// Evict pods no controller manages too.
    pub force: bool,
    /// Evict pods with emptyDir volumes too (their data is lost).
    pub delete_empty_dir: bool,
    /// Label selector of the pods to evict, always excluding [`DRAIN_SKIP_LABEL`]`=true`.
    pub selector: String,
    /// Seconds a drain may take; 0: no limit.
    pub timeout_seconds: i64,
}

/// The upgrade policy's pod selectors (`drain.podSelector`, `waitForCompletion.podSelector`)
/// parse as the API server parses them: a broken one is an error naming its field, before any
/// node is cordoned (it would fail the drain of every node).
pub fn check_selectors(policy: &api::policy::DriverUpgradePolicySpec) -> Result<(), FieldError> {
    let field = "spec.ofedDriver.upgradePolicy";
    if let Some(selector) = policy.drain.as_ref().and_then(|d| d.pod_selector.as_deref()) {
        api::selector::check(&format!("{field}.drain.podSelector"), selector)?;
    }
    if let Some(selector) = policy.wait_for_completion.as_ref().and_then(|w| w.pod_selector.as_deref()) {
        api::selector::check(&format!("{field}.waitForCompletion.podSelector"), selector)?;
    }
    Ok(())
}

impl Settings {
    /// How many of `total` nodes may be unavailable at once (see
    /// [`api::policy::DriverUpgradePolicySpec::max_unavailable_of`]); `total` if invalid
    /// (never: [`Settings::of`] refuses it).
    pub fn max_unavailable_of(&self, total: usize) -> usize {
        let policy = api::policy::DriverUpgradePolicySpec {
            max_unavailable: self.max_unavailable.clone(),
            ..Default::default()
        };
        policy.max_unavailable_of(total).unwrap_or(total)
    }

    /// The settings of the OFED section: `None` when upgrades are off (no section, no
    /// `upgradePolicy`, or `autoUpgrade` not true); an invalid `maxUnavailable` is an error
    /// naming the field.
    pub fn of(spec: Option<&OfedDriverSpec>) -> Result<Option<Settings>, FieldError> {
        let Some(policy) = spec.and_then(|s| s.upgrade_policy.as_ref()).filter(|p| p.auto_upgrade == Some(true)) else {
            return Ok(None);
        };
        policy.max_unavailable_of(1)?;
        check_selectors(policy)?;
        let wait_for = policy.wait_for_completion.as_ref().and_then(|w| {
            let selector = w.pod_selector.clone().filter(|s| !s.trim().is_empty())?;
            Some(WaitFor { selector, timeout_seconds: i64::from(w.timeout_seconds.unwrap_or(0).max(0)) })
        });
        let drain = policy.drain.as_ref().filter(|d| d.enable.unwrap_or(true)).map(|d| {
            let skip = format!("{DRAIN_SKIP_LABEL}!=true");
            let selector = match d.pod_selector.as_deref().map(str::trim) {
                Some(user) if !user.is_empty() => format!("{user},{skip}"),
                _ => skip,
            };
            DrainSettings {
                force: d.force.unwrap_or(false),
                delete_empty_dir: d.delete_empty_dir.unwrap_or(false),
                selector,
                timeout_seconds: i64::from(d.timeout_seconds.unwrap_or(300).max(0)),
            }
        });
        Ok(Some(Settings {
            max_parallel: usize::try_from(policy.max_parallel_upgrades.unwrap_or(1)).unwrap_or(0),
            max_unavailable: policy.max_unavailable.clone(),
            wait_for,
            drain,
            requestor: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::policy::{DrainSpec, DriverUpgradePolicySpec, WaitForCompletionSpec};

    fn spec(policy: DriverUpgradePolicySpec) -> OfedDriverSpec {
        OfedDriverSpec { upgrade_policy: Some(policy), ..Default::default() }
    }

    #[test]
    fn every_state_reads_back_from_its_label_and_unknown_values_are_unknown() {
        for state in NodeState::ALL {
            assert_eq!(NodeState::parse(Some(state.as_str())), state);
        }
        assert_eq!(NodeState::parse(Some("upgrade-paused")), NodeState::Unknown);
        assert_eq!(NodeState::parse(None), NodeState::Unknown);
    }

    #[test]
    fn upgrades_are_off_without_auto_upgrade() {
        assert_eq!(Settings::of(None), Ok(None));
        assert_eq!(Settings::of(Some(&OfedDriverSpec::default())), Ok(None));
        let off =
            DriverUpgradePolicySpec { auto_upgrade: Some(false), max_parallel_upgrades: Some(3), ..Default::default() };
        assert_eq!(Settings::of(Some(&spec(off))), Ok(None));
    }

    #[test]
    fn defaults_follow_the_crd_and_the_drain_never_evicts_pods_labelled_to_skip() {
        let on = DriverUpgradePolicySpec {
            auto_upgrade: Some(true),
            drain: Some(DrainSpec::default()),
            wait_for_completion: Some(WaitForCompletionSpec {
                pod_selector: Some(String::new()),
                timeout_seconds: None,
            }),
            ..Default::default()
        };
        let settings = Settings::of(Some(&spec(on))).unwrap().unwrap();
        assert_eq!(settings.max_parallel, 1);
        assert_eq!(settings.wait_for, None, "an empty selector waits for nothing");
        let drain = settings.drain.unwrap();
        assert_eq!((drain.force, drain.delete_empty_dir, drain.timeout_seconds), (false, false, 300));
        assert_eq!(drain.selector, "nvidia.com/ofed-driver-upgrade-drain.skip!=true");

        let user = DriverUpgradePolicySpec {
            auto_upgrade: Some(true),
            max_parallel_upgrades: Some(0),
            drain: Some(DrainSpec {
                pod_selector: Some("app=train".into()),
                timeout_seconds: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let settings = Settings::of(Some(&spec(user))).unwrap().unwrap();
        assert_eq!(settings.max_parallel, 0);
        let drain = settings.drain.unwrap();
        assert_eq!(drain.selector, "app=train,nvidia.com/ofed-driver-upgrade-drain.skip!=true");
        assert_eq!(drain.timeout_seconds, 0);
    }

    #[test]
    fn a_disabled_or_absent_drain_drains_nothing() {
        let disabled = DriverUpgradePolicySpec {
            auto_upgrade: Some(true),
            drain: Some(DrainSpec { enable: Some(false), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(Settings::of(Some(&spec(disabled))).unwrap().unwrap().drain, None);
        let absent = DriverUpgradePolicySpec { auto_upgrade: Some(true), ..Default::default() };
        assert_eq!(Settings::of(Some(&spec(absent))).unwrap().unwrap().drain, None);
    }

    #[test]
    fn an_invalid_max_unavailable_names_the_field() {
        let bad = DriverUpgradePolicySpec {
            auto_upgrade: Some(true),
            max_unavailable: Some(IntOrString::String("lots".into())),
            ..Default::default()
        };
        let error = Settings::of(Some(&spec(bad))).unwrap_err();
        assert!(error.to_string().starts_with("spec.ofedDriver.upgradePolicy.maxUnavailable"), "{error}");
    }
}
