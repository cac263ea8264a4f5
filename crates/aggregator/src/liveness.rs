//! Which states' controllers have stopped, from their leader Leases: each controller writes the
//! states it runs on its Lease (`state_core::lease::SERVES_ANNOTATION`) and renews it every few
//! seconds while it runs. A state whose every Lease expired more than [`GRACE`] ago has no
//! controller (its chart was uninstalled, or it cannot start): its entry in `appliedStates` is
//! what a controller said before it went, not the truth now. A state with no Lease at all (a
//! controller run without leader election) is trusted as before.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use state_core::lease::SERVES_ANNOTATION;
use std::collections::BTreeMap;

/// How long after its Lease expired a controller counts as stopped: a restart or a hand-over to
/// another replica takes a few seconds.
pub const GRACE: SignedDuration = SignedDuration::from_secs(30);

/// When each state's controller was last known to run: the latest expiry among the Leases that
/// name it, with that Lease's name.
pub fn expiries(leases: &[impl std::ops::Deref<Target = Lease>]) -> BTreeMap<String, (Timestamp, String)> {
    let mut latest: BTreeMap<String, (Timestamp, String)> = BTreeMap::new();
    for lease in leases {
        let Some(states) = lease.annotations().get(SERVES_ANNOTATION) else { continue };
        let Some(spec) = &lease.spec else { continue };
        let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else { continue };
        let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
        let expiry = renewed.0 + duration;
        for state in states.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let entry = latest.entry(state.to_string()).or_insert((expiry, lease.name_any()));
            if expiry > entry.0 {
                *entry = (expiry, lease.name_any());
            }
        }
    }
    latest
}

/// The states whose controllers stopped at `now`, each with why we think so.
pub fn stopped(expiries: &BTreeMap<String, (Timestamp, String)>, now: Timestamp) -> BTreeMap<String, String> {
    expiries
        .iter()
        .filter(|(_, (expiry, _))| *expiry + GRACE < now)
        .map(|(state, (expiry, lease))| {
            (
                state.clone(),
                format!(
                    "its controller's Lease {lease} expired at {}",
                    expiry.round(jiff::Unit::Second).unwrap_or(*expiry)
                ),
            )
        })
        .collect()
}

/// When the next running controller would count as stopped if it renews no more: the moment to
/// fold again, since nothing else announces it.
pub fn next_check(expiries: &BTreeMap<String, (Timestamp, String)>, now: Timestamp) -> Option<Timestamp> {
    expiries.values().map(|(expiry, _)| *expiry + GRACE).filter(|at| *at >= now).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lease(name: &str, serves: Option<&str>, renewed: &str) -> Lease {
        let mut value = json!({"metadata": {"name": name},
            "spec": {"holderIdentity": "pod", "leaseDurationSeconds": 15, "renewTime": renewed}});
        if let Some(serves) = serves {
            value["metadata"]["annotations"] = json!({SERVES_ANNOTATION: serves});
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_state_counts_as_stopped_only_when_every_lease_naming_it_expired_a_grace_ago() {
        let leases = vec![
            Box::new(lease("rdma-dp-leader", Some("state-RDMA-device-plugin"), "2026-11-29T10:00:00.000000Z")),
            Box::new(lease(
                "network-operator-leader",
                Some("state-OFED,state-RDMA-device-plugin"),
                "2026-11-29T10:05:00.000000Z",
            )),
            Box::new(lease("someone-else", None, "2026-11-29T09:00:00.000000Z")),
        ];
        let expiries = expiries(&leases);
        assert_eq!(expiries.len(), 2, "leases without the annotation say nothing");
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        // 10:05:15 expiry + 30 s grace.
        assert!(stopped(&expiries, at("2026-11-29T10:05:40Z")).is_empty());
        let gone = stopped(&expiries, at("2026-11-29T10:05:46Z"));
        assert_eq!(gone.keys().collect::<Vec<_>>(), ["state-OFED", "state-RDMA-device-plugin"]);
        assert_eq!(
            gone["state-OFED"],
            "its controller's Lease network-operator-leader expired at 2026-11-29T10:05:15Z"
        );
        assert_eq!(next_check(&expiries, at("2026-11-29T10:05:00Z")), Some(at("2026-11-29T10:05:45Z")));
        assert_eq!(next_check(&expiries, at("2026-11-29T10:06:00Z")), None, "all stopped: nothing to wait for");
    }
}
