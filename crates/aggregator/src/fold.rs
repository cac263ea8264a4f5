//! The pure rule from a policy (spec, generation, entries) to its global state.
//!
//! - A section that is absent is `ignore` and holds nothing back, whatever entry it left.
//! - `error` when any enabled section reports `error`; the reason names each and its message.
//! - `ready` only when every enabled section reports `ready` for the current generation.
//! - Otherwise `notReady`, the reason naming each section that holds the policy back and why:
//!   its message, a stale generation, or no entry at all (its controller is not installed), or
//!   an entry whose controller has stopped (its Lease expired: the chart was uninstalled).
//! - A policy with another name than `nic-cluster-policy` is `ignore`, as in the original.

use api::policy::AppliedState;
use api::state::names;
use api::{NicClusterPolicy, POLICY_NAME, SyncState};
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The global state of a policy and the state of each known section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The global state.
    pub state: SyncState,
    /// Why (absent when ready).
    pub reason: Option<String>,
    /// Every known state with its value as the policy stands.
    pub states: Vec<(&'static str, SyncState)>,
    /// Why each state that is not ready (or ready but leaving nodes out) is so, without its name.
    pub messages: BTreeMap<&'static str, String>,
    /// The nodes ready states leave without their operand ([`api::state::LEFT_OUT_NOTE`]),
    /// each part prefixed with its state.
    pub left_out: Vec<String>,
}

/// The reason written on a policy that is not the one acted on (the original's words).
pub fn unsupported_reason(name: &str) -> String {
    format!("Unsupported NicClusterPolicy instance {name}. Only instance with name {POLICY_NAME} is supported")
}

/// How long after a policy is created its controllers may take to report before the policy's
/// reason asks whether they are installed.
pub const FIRST_REPORT_GRACE: SignedDuration = SignedDuration::from_secs(60);

/// Folds the policy's entries into its global state at `now`; the entries of the states in
/// `stopped` (whose controllers no longer run, with why we know: [`crate::liveness`]) count as
/// never reported. A state not reported yet within [`FIRST_REPORT_GRACE`] of the policy's
/// creation is simply awaited, not an alarm.
pub fn fold(policy: &NicClusterPolicy, stopped: &BTreeMap<String, String>, now: Timestamp) -> Summary {
    let name = policy.name_any();
    if name != POLICY_NAME {
        let states = names::ALL.iter().map(|s| (*s, SyncState::Ignore)).collect();
        return Summary {
            state: SyncState::Ignore,
            reason: Some(unsupported_reason(&name)),
            states,
            messages: BTreeMap::new(),
            left_out: vec![],
        };
    }
    fold_sections(policy, stopped, now)
}

/// [`fold`] of any policy's sections, whatever its name: a NicNodePolicy's
/// [view](api::NicNodePolicy::view) is folded this way.
pub fn fold_sections(policy: &NicClusterPolicy, stopped: &BTreeMap<String, String>, now: Timestamp) -> Summary {
    let generation = policy.metadata.generation.unwrap_or(0);
    let mut errors = Vec::new();
    let mut waiting = Vec::new();
    let mut states = Vec::new();
    let mut messages = BTreeMap::new();
    let mut left_out = Vec::new();
    for state in names::ALL {
        if !policy.spec.has_section(state) {
            states.push((state, SyncState::Ignore));
            continue;
        }
        let (value, message) = match (policy.applied_state(state), stopped.get(state)) {
            (_, Some(why)) => {
                (SyncState::NotReady, format!("no controller has reported; is its chart enabled? ({why})"))
            }
            (None, None) if is_new(policy, now) => {
                (SyncState::NotReady, "waiting for its controller's first report".to_string())
            }
            (None, None) => (SyncState::NotReady, "no controller has reported; is its chart enabled?".to_string()),
            (Some(entry), None) => judge(entry, generation),
        };
        match value {
            SyncState::Error => errors.push(format!("{state}: {message}")),
            SyncState::NotReady => waiting.push(format!("{state}: {message}")),
            _ => {}
        }
        let notes: Vec<&str> = message.split("; ").filter(|part| part.starts_with(api::state::LEFT_OUT_NOTE)).collect();
        if value == SyncState::Ready {
            left_out.extend(notes.iter().map(|part| format!("{state}: {part}")));
        }
        let shown = if value == SyncState::Ready { notes.join("; ") } else { message };
        if !shown.is_empty() {
            messages.insert(state, shown);
        }
        states.push((state, value));
    }
    let enabled = states.iter().any(|(_, s)| *s != SyncState::Ignore);
    let (state, reason) = if !errors.is_empty() {
        (SyncState::Error, Some(errors.join("; ")))
    } else if !waiting.is_empty() {
        (SyncState::NotReady, Some(waiting.join("; ")))
    } else if enabled && !left_out.is_empty() {
        (SyncState::Ready, Some(left_out.join("; ")))
    } else if enabled {
        (SyncState::Ready, None)
    } else {
        (SyncState::Ready, Some("no section is set".to_string()))
    };
    Summary { state, reason, states, messages, left_out }
}

/// Whether `policy` was created less than [`FIRST_REPORT_GRACE`] before `now`.
pub fn is_new(policy: &NicClusterPolicy, now: Timestamp) -> bool {
    policy.metadata.creation_timestamp.as_ref().is_some_and(|created| now < created.0 + FIRST_REPORT_GRACE)
}

/// The value of a reported entry for the policy's `generation`, and why.
fn judge(entry: &AppliedState, generation: i64) -> (SyncState, String) {
    let message = entry.message.clone().unwrap_or_default();
    match (entry.state, entry.observed_generation) {
        (SyncState::Error, Some(g)) if g >= generation => (SyncState::Error, message),
        (_, observed) if observed.is_none_or(|g| g < generation) => {
            let seen = observed.map_or("no generation".to_string(), |g| format!("generation {g}"));
            (SyncState::NotReady, format!("stale: reported for {seen}"))
        }
        (SyncState::Ready, _) => (SyncState::Ready, message),
        (SyncState::NotReady, _) if message.is_empty() => (SyncState::NotReady, "not ready".to_string()),
        (SyncState::NotReady, _) => (SyncState::NotReady, message),
        (_, _) => (SyncState::NotReady, "reported ignore although the section is set".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::policy::{DevicePluginSpec, NicClusterPolicyStatus, OfedDriverSpec};
    use api::{ImageSpec, NicClusterPolicySpec};

    fn policy(name: &str, spec: NicClusterPolicySpec, entries: Vec<AppliedState>) -> NicClusterPolicy {
        let mut p = NicClusterPolicy::new(name, spec);
        p.metadata.generation = Some(3);
        p.status = Some(NicClusterPolicyStatus { applied_states: Some(entries), ..Default::default() });
        p
    }

    fn entry(name: &str, state: SyncState, message: Option<&str>, generation: i64) -> AppliedState {
        AppliedState {
            name: name.into(),
            state,
            message: message.map(String::from),
            observed_generation: Some(generation),
        }
    }

    fn rdma_and_ofed() -> NicClusterPolicySpec {
        NicClusterPolicySpec {
            rdma_shared_device_plugin: Some(DevicePluginSpec { image: ImageSpec::default(), ..Default::default() }),
            ofed_driver: Some(OfedDriverSpec::default()),
            ..Default::default()
        }
    }

    fn global(p: &NicClusterPolicy) -> (SyncState, Option<String>) {
        let s = fold(p, &BTreeMap::new(), Timestamp::now());
        (s.state, s.reason)
    }

    #[test]
    fn all_sections_absent_is_ready_with_nothing_to_do() {
        let p = policy(POLICY_NAME, NicClusterPolicySpec::default(), vec![]);
        assert_eq!(global(&p), (SyncState::Ready, Some("no section is set".into())));
        assert!(fold(&p, &BTreeMap::new(), Timestamp::now()).states.iter().all(|(_, s)| *s == SyncState::Ignore));
    }

    #[test]
    fn ready_and_ignored_sections_make_a_ready_policy() {
        let p = policy(
            POLICY_NAME,
            rdma_and_ofed(),
            vec![
                entry(names::RDMA_DP, SyncState::Ready, None, 3),
                entry(names::OFED, SyncState::Ready, Some("DaemonSet x: no node matches"), 3),
                entry(names::MULTUS, SyncState::Ignore, None, 3),
            ],
        );
        assert_eq!(global(&p), (SyncState::Ready, None));
    }

    #[test]
    fn one_not_ready_section_holds_the_policy_back_with_its_message() {
        let p = policy(
            POLICY_NAME,
            rdma_and_ofed(),
            vec![
                entry(
                    names::RDMA_DP,
                    SyncState::NotReady,
                    Some("DaemonSet rdma-shared-dp-ds: 1 of 2 pods available"),
                    3,
                ),
                entry(names::OFED, SyncState::Ready, None, 3),
            ],
        );
        assert_eq!(
            global(&p),
            (
                SyncState::NotReady,
                Some("state-RDMA-device-plugin: DaemonSet rdma-shared-dp-ds: 1 of 2 pods available".into())
            )
        );
    }

    #[test]
    fn one_error_makes_the_policy_error_even_with_others_not_ready() {
        let p = policy(
            POLICY_NAME,
            rdma_and_ofed(),
            vec![
                entry(names::RDMA_DP, SyncState::Error, Some("spec.rdmaSharedDevicePlugin.config: invalid JSON"), 3),
                entry(names::OFED, SyncState::NotReady, Some("waiting"), 3),
            ],
        );
        assert_eq!(
            global(&p),
            (
                SyncState::Error,
                Some("state-RDMA-device-plugin: spec.rdmaSharedDevicePlugin.config: invalid JSON".into())
            )
        );
    }

    #[test]
    fn an_entry_for_an_older_generation_is_stale() {
        let p = policy(
            POLICY_NAME,
            rdma_and_ofed(),
            vec![
                entry(names::RDMA_DP, SyncState::Ready, None, 2),
                entry(names::OFED, SyncState::Error, Some("old"), 2),
            ],
        );
        assert_eq!(
            global(&p),
            (
                SyncState::NotReady,
                Some(
                    "state-OFED: stale: reported for generation 2; state-RDMA-device-plugin: stale: reported for generation 2"
                        .into()
                )
            )
        );
    }

    #[test]
    fn a_node_policys_sections_are_folded_whatever_its_name() {
        let p = policy("pool-a", rdma_and_ofed(), vec![entry(names::RDMA_DP, SyncState::Ready, None, 3)]);
        assert_eq!(fold(&p, &BTreeMap::new(), Timestamp::now()).state, SyncState::Ignore, "a cluster policy's name");
        let summary = fold_sections(&p, &BTreeMap::new(), Timestamp::now());
        assert_eq!(
            (summary.state, summary.reason),
            (SyncState::NotReady, Some("state-OFED: no controller has reported; is its chart enabled?".into()))
        );
    }

    #[test]
    fn an_enabled_section_without_entry_names_its_missing_controller() {
        let p = policy(POLICY_NAME, rdma_and_ofed(), vec![entry(names::RDMA_DP, SyncState::Ready, None, 3)]);
        assert_eq!(
            global(&p),
            (SyncState::NotReady, Some("state-OFED: no controller has reported; is its chart enabled?".into()))
        );
    }

    #[test]
    fn an_entry_for_a_removed_section_does_not_hold_the_policy_back() {
        let mut spec = rdma_and_ofed();
        spec.ofed_driver = None;
        let p = policy(
            POLICY_NAME,
            spec,
            vec![
                entry(names::RDMA_DP, SyncState::Ready, None, 3),
                entry(names::OFED, SyncState::NotReady, Some("x"), 2),
            ],
        );
        assert_eq!(global(&p), (SyncState::Ready, None));
    }

    #[test]
    fn a_policy_with_another_name_is_ignored_with_the_originals_reason() {
        let p = policy("my-policy", rdma_and_ofed(), vec![]);
        assert_eq!(
            global(&p),
            (
                SyncState::Ignore,
                Some("Unsupported NicClusterPolicy instance my-policy. Only instance with name nic-cluster-policy is supported".into())
            )
        );
    }

    #[test]
    fn a_ready_entry_whose_controller_stopped_holds_the_policy_back_as_unreported() {
        let entries =
            vec![entry(names::RDMA_DP, SyncState::Ready, None, 3), entry(names::OFED, SyncState::Ready, None, 3)];
        let p = policy(POLICY_NAME, rdma_and_ofed(), entries);
        let stopped = BTreeMap::from([(names::OFED.to_string(), "its controller's Lease x expired at T".to_string())]);
        let summary = fold(&p, &stopped, Timestamp::now());
        assert_eq!(summary.state, SyncState::NotReady);
        assert_eq!(
            summary.reason.as_deref(),
            Some(
                "state-OFED: no controller has reported; is its chart enabled? (its controller's Lease x expired at T)"
            )
        );
        assert!(summary.states.contains(&(names::OFED, SyncState::NotReady)));
        assert!(summary.states.contains(&(names::RDMA_DP, SyncState::Ready)));
    }

    #[test]
    fn a_new_policy_awaits_its_controllers_before_asking_whether_they_are_installed() {
        let mut p = policy(POLICY_NAME, rdma_and_ofed(), vec![entry(names::RDMA_DP, SyncState::Ready, None, 3)]);
        let created: Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created));
        let early = fold(&p, &BTreeMap::new(), created + SignedDuration::from_secs(20));
        assert_eq!(early.reason.as_deref(), Some("state-OFED: waiting for its controller's first report"));
        let late = fold(&p, &BTreeMap::new(), created + SignedDuration::from_secs(61));
        assert_eq!(late.reason.as_deref(), Some("state-OFED: no controller has reported; is its chart enabled?"));
    }

    #[test]
    fn a_ready_state_that_leaves_nodes_out_says_so_in_the_ready_policys_reason() {
        let note = "1 pool(s) ready on 2 node(s); left out: 1 NIC node(s) without NFD labels get no driver: n3";
        let entries =
            vec![entry(names::RDMA_DP, SyncState::Ready, None, 3), entry(names::OFED, SyncState::Ready, Some(note), 3)];
        let summary = fold(&policy(POLICY_NAME, rdma_and_ofed(), entries), &BTreeMap::new(), Timestamp::now());
        assert_eq!(summary.state, SyncState::Ready);
        let expected = "state-OFED: left out: 1 NIC node(s) without NFD labels get no driver: n3";
        assert_eq!(summary.reason.as_deref(), Some(expected));
        assert_eq!(summary.left_out, [expected]);
    }

    #[test]
    fn each_state_keeps_why_it_is_not_ready_and_a_ready_one_only_its_left_out_nodes() {
        let note = "1 pool(s) ready on 2 node(s); left out: 1 NIC node(s) without NFD labels get no driver: n3";
        let entries = vec![
            entry(names::RDMA_DP, SyncState::NotReady, Some("1 of 2 pods available"), 3),
            entry(names::OFED, SyncState::Ready, Some(note), 3),
        ];
        let summary = fold(&policy(POLICY_NAME, rdma_and_ofed(), entries), &BTreeMap::new(), Timestamp::now());
        assert_eq!(summary.messages.get(names::RDMA_DP).map(String::as_str), Some("1 of 2 pods available"));
        assert_eq!(
            summary.messages.get(names::OFED).map(String::as_str),
            Some("left out: 1 NIC node(s) without NFD labels get no driver: n3")
        );
        assert_eq!(summary.messages.get(names::MULTUS), None, "an absent section says nothing");
        let stale = vec![entry(names::RDMA_DP, SyncState::Ready, None, 2)];
        let summary = fold(&policy(POLICY_NAME, rdma_and_ofed(), stale), &BTreeMap::new(), Timestamp::now());
        assert_eq!(summary.messages.get(names::RDMA_DP).map(String::as_str), Some("stale: reported for generation 2"));
    }

    #[test]
    fn per_state_values_cover_every_known_state() {
        let p = policy(POLICY_NAME, rdma_and_ofed(), vec![entry(names::RDMA_DP, SyncState::Ready, None, 3)]);
        let states = fold(&p, &BTreeMap::new(), Timestamp::now()).states;
        assert_eq!(states.len(), names::ALL.len());
        assert!(states.contains(&(names::RDMA_DP, SyncState::Ready)));
        assert!(states.contains(&(names::OFED, SyncState::NotReady)));
        assert!(states.contains(&(names::MULTUS, SyncState::Ignore)));
    }
}
