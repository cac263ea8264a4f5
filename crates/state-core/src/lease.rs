//! Lease-based leader election (`coordination.k8s.io/v1`), so a controller can run with more
//! than one replica: one leads, the others wait and take over when its lease expires.
//!
//! The decision is a pure function ([`decide`]); the I/O around it uses optimistic concurrency
//! (create, or replace with the read `resourceVersion`), so two candidates never both win.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::time::Duration;

/// Where the lease lives and how long it lasts.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This candidate's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the leader renews and candidates retry.
    pub retry: Duration,
}

/// What a candidate should do with the lease it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a valid lease: wait.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides from the lease as read (`None` when it does not exist) at time `now`.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    match last {
        Some(last) if last + duration > now => Decision::Wait { holder },
        _ => Decision::Acquire,
    }
}

/// The lease spec after `decision` by `identity` at `now` (`None` for [`Decision::Wait`]).
pub fn next_spec(
    current: Option<&LeaseSpec>,
    decision: &Decision,
    settings: &LeaseSettings,
    now: Timestamp,
) -> Option<LeaseSpec> {
    let mut spec = current.cloned().unwrap_or_default();
    match decision {
        Decision::Wait { .. } => return None,
        Decision::Acquire => {
            if current.is_some() {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            } else {
                spec.lease_transitions = Some(0);
            }
            spec.acquire_time = Some(MicroTime(now));
        }
        Decision::Renew => {}
    }
    spec.holder_identity = Some(settings.identity.clone());
    spec.lease_duration_seconds = Some(i32::try_from(settings.duration.as_secs()).unwrap_or(i32::MAX));
    spec.renew_time = Some(MicroTime(now));
    Some(spec)
}

/// One round: read the lease, decide, write. `Ok(true)` when we hold the lease afterwards.
pub async fn try_acquire_or_renew(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&settings.name).await?;
    let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &settings.identity, now);
    let Some(spec) = next_spec(current.as_ref().and_then(|l| l.spec.as_ref()), &decision, settings, now) else {
        return Ok(false);
    };
    let result = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(settings.name.clone()), ..Default::default() },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&settings.name, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        // Someone else wrote first: they won this round.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Blocks until this candidate holds the lease, retrying on API errors.
pub async fn acquire(client: &Client, settings: &LeaseSettings) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let mut waiting_logged = false;
    loop {
        match try_acquire_or_renew(&api, settings).await {
            Ok(true) => {
                tracing::info!(lease = %settings.name, identity = %settings.identity, "leading");
                return;
            }
            Ok(false) if !waiting_logged => {
                tracing::info!(lease = %settings.name, "another replica leads; waiting");
                waiting_logged = true;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(lease = %settings.name, error = %e, "lease not readable; retrying")
            }
        }
        tokio::time::sleep(settings.retry).await;
    }
}

/// Renews the lease until it cannot be renewed within its duration; then returns (the
/// caller must stop leading).
pub async fn hold(client: &Client, settings: &LeaseSettings) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(settings.retry).await;
        match try_acquire_or_renew(&api, settings).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %settings.name, "lease taken by another replica");
                return;
            }
            Err(e) => tracing::warn!(lease = %settings.name, error = %e, "lease renewal failed"),
        }
        if last_renewal.elapsed() >= settings.duration {
            tracing::error!(lease = %settings.name, "lease not renewed in time");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings {
            name: "rdma-dp".into(),
            namespace: "ns".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        }
    }

    fn held_by(holder: &str, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed)),
            acquire_time: Some(MicroTime(renewed)),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn a_missing_lease_is_acquired() {
        assert_eq!(decide(None, "me", now()), Decision::Acquire);
        let spec = next_spec(None, &Decision::Acquire, &settings(), now()).unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let lease = held_by("me", now() - SignedDuration::from_secs(5));
        assert_eq!(decide(Some(&lease), "me", now()), Decision::Renew);
        let spec = next_spec(Some(&lease), &Decision::Renew, &settings(), now()).unwrap();
        assert_eq!(spec.renew_time, Some(MicroTime(now())));
        assert_eq!(spec.lease_transitions, Some(3), "renewing is no transition");
    }

    #[test]
    fn a_lease_held_by_another_is_not_taken() {
        let lease = held_by("other", now() - SignedDuration::from_secs(5));
        assert_eq!(decide(Some(&lease), "me", now()), Decision::Wait { holder: "other".into() });
        assert_eq!(next_spec(Some(&lease), &decide(Some(&lease), "me", now()), &settings(), now()), None);
    }

    #[test]
    fn an_expired_lease_is_taken_over() {
        let lease = held_by("other", now() - SignedDuration::from_secs(16));
        assert_eq!(decide(Some(&lease), "me", now()), Decision::Acquire);
        let spec = next_spec(Some(&lease), &Decision::Acquire, &settings(), now()).unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(now())));
    }

    #[test]
    fn a_released_lease_is_acquired() {
        let mut lease = held_by("", now());
        lease.holder_identity = None;
        assert_eq!(decide(Some(&lease), "me", now()), Decision::Acquire);
    }
}
