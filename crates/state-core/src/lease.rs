//! Lease-based leader election (`coordination.k8s.io/v1`), so a controller can run with more
//! than one replica: one leads, the others wait and take over when its lease expires or is
//! released.
//!
//! As in client-go: the leader renews every `retry`; if it could not renew for `renew_deadline`
//! (shorter than the lease `duration`) it stops leading before anyone else may take over; on
//! shutdown it releases the lease so a standby takes over at its next try instead of waiting
//! for the lease to expire. The decision is a pure function ([`decide`]); the I/O around it uses
//! optimistic concurrency (create, or replace with the read `resourceVersion`), so two
//! candidates never both win.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// How long the leader keeps acting without a successful renewal; shorter than `duration`.
    pub renew_deadline: Duration,
    /// How often the leader renews and candidates retry.
    pub retry: Duration,
    /// The policy states the leader runs, written on the Lease ([`SERVES_ANNOTATION`]) so the
    /// aggregator knows whose controller stopped.
    pub serves: Vec<String>,
}

/// Annotation of a controller's Lease: the policy states (`state-OFED,...`) its leader runs.
pub const SERVES_ANNOTATION: &str = "network.nvidia.com/serves-states";

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
        /// When the lease expires unless it is renewed first.
        expires: Timestamp,
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
        Some(last) if last + duration > now => Decision::Wait { holder, expires: last + duration },
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

/// Writes which states the holder runs on `lease` (nothing for a controller of no state).
fn annotate(lease: &mut Lease, settings: &LeaseSettings) {
    if !settings.serves.is_empty() {
        lease.metadata.annotations.get_or_insert_default().insert(SERVES_ANNOTATION.into(), settings.serves.join(","));
    }
}

/// One round: read the lease, decide, write. `Ok(true)` when we hold the lease afterwards.
pub async fn try_acquire_or_renew(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool, kube::Error> {
    Ok(attempt(api, settings).await?.is_none())
}

/// One round, saying how long to wait before the next try: `None` when we hold the lease,
/// otherwise until the holder's lease expires, at most `retry`.
async fn attempt(api: &Api<Lease>, settings: &LeaseSettings) -> Result<Option<Duration>, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&settings.name).await?;
    let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &settings.identity, now);
    let Some(spec) = next_spec(current.as_ref().and_then(|l| l.spec.as_ref()), &decision, settings, now) else {
        return Ok(Some(wait_before_retry(&decision, settings.retry, now)));
    };
    let result = match current {
        None => {
            let mut lease = Lease {
                metadata: ObjectMeta { name: Some(settings.name.clone()), ..Default::default() },
                spec: Some(spec),
            };
            annotate(&mut lease, settings);
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            lease.spec = Some(spec);
            annotate(&mut lease, settings);
            api.replace(&settings.name, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(None),
        // Someone else wrote first: they won this round.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Some(settings.retry)),
        Err(e) => Err(e),
    }
}

/// How long a candidate waits after `decision`: until just after the holder's lease expires
/// (so a crashed leader is replaced within the lease duration), but never longer than `retry`
/// (so a released lease is taken within `retry`).
pub fn wait_before_retry(decision: &Decision, retry: Duration, now: Timestamp) -> Duration {
    match decision {
        Decision::Wait { expires, .. } => {
            let until_expiry = now.duration_until(*expires).unsigned_abs() + Duration::from_millis(50);
            until_expiry.min(retry)
        }
        _ => retry,
    }
}

/// Blocks until this candidate holds the lease, retrying on API errors. `reachable` is set
/// once the lease could be read (a standby that can take over is ready).
pub async fn acquire(client: &Client, settings: &LeaseSettings, reachable: &AtomicBool) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let mut waiting_logged = false;
    loop {
        let result = attempt(&api, settings).await;
        reachable.store(result.is_ok(), Ordering::Relaxed);
        let wait = match result {
            Ok(None) => {
                tracing::info!(lease = %settings.name, identity = %settings.identity, "leading");
                return;
            }
            Ok(Some(wait)) => {
                if !waiting_logged {
                    tracing::info!(lease = %settings.name, "another replica leads; standing by");
                    waiting_logged = true;
                }
                wait
            }
            Err(e) => {
                tracing::warn!(lease = %settings.name, error = %crate::apply::describe(&e), "lease not readable; retrying");
                settings.retry
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Renews the lease every `retry` and returns (the caller must stop leading at once) when
/// another replica took it, or when no renewal succeeded for `renew_deadline`: by then a
/// leader cut off from the API stops acting before its lease expires and a standby may lead.
pub async fn hold(client: &Client, settings: &LeaseSettings) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        let next = (last_renewal + settings.renew_deadline).min(tokio::time::Instant::now() + settings.retry);
        tokio::time::sleep_until(next).await;
        if last_renewal.elapsed() >= settings.renew_deadline {
            tracing::error!(lease = %settings.name, deadline_seconds = settings.renew_deadline.as_secs(), "lease not renewed in time; stopping");
            return;
        }
        let renewal = tokio::time::timeout_at(last_renewal + settings.renew_deadline, attempt(&api, settings)).await;
        match renewal {
            Ok(Ok(None)) => last_renewal = tokio::time::Instant::now(),
            Ok(Ok(Some(_))) => {
                tracing::error!(lease = %settings.name, "lease taken by another replica; stopping");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %settings.name, error = %crate::apply::describe(&e), "lease renewal failed")
            }
            Err(_) => tracing::warn!(lease = %settings.name, "lease renewal timed out"),
        }
    }
}

/// Gives the lease up (on shutdown), so a standby takes over at its next try; does nothing
/// when another replica holds it. A conflict (a renewal that was still on its way) is retried
/// on a fresh read, a few times; other errors are logged: the lease then simply expires.
pub async fn release(client: &Client, settings: &LeaseSettings) {
    for _ in 0..3 {
        match release_once(client, settings).await {
            Ok(true) => return tracing::info!(lease = %settings.name, "lease released"),
            Ok(false) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => {
                return tracing::warn!(lease = %settings.name, error = %crate::apply::describe(&e), "lease not released; it will expire");
            }
        }
    }
    tracing::warn!(lease = %settings.name, "lease not released (conflicts); it will expire");
}

async fn release_once(client: &Client, settings: &LeaseSettings) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    async {
        let Some(mut lease) = api.get_opt(&settings.name).await? else { return Ok(false) };
        let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(&settings.identity))
        else {
            return Ok(false);
        };
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        api.replace(&settings.name, &PostParams::default(), &lease).await.map(|_| true)
    }
    .await
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
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
            serves: vec!["state-RDMA-device-plugin".into()],
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
        let expires = now() + SignedDuration::from_secs(10);
        assert_eq!(decide(Some(&lease), "me", now()), Decision::Wait { holder: "other".into(), expires });
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

    #[test]
    fn a_standby_retries_just_after_the_holders_lease_expires_but_never_later_than_retry() {
        let retry = Duration::from_secs(2);
        let soon = Decision::Wait { holder: "other".into(), expires: now() + SignedDuration::from_secs(1) };
        assert_eq!(wait_before_retry(&soon, retry, now()), Duration::from_millis(1050));
        let later = Decision::Wait { holder: "other".into(), expires: now() + SignedDuration::from_secs(9) };
        assert_eq!(wait_before_retry(&later, retry, now()), retry);
    }

    /// A client whose API server answers every request with `respond(method)`.
    fn answering(respond: fn(&str) -> (u16, serde_json::Value)) -> Client {
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (status, body) = respond(request.method().as_str());
                let body = Body::from(serde_json::to_vec(&body).unwrap());
                send.send_response(http::Response::builder().status(status).body(body).unwrap());
            }
        });
        Client::new(service, "ns")
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_cut_off_from_the_api_stops_leading_before_its_lease_expires() {
        let client = answering(|_| {
            (503, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503}))
        });
        let started = tokio::time::Instant::now();
        hold(&client, &settings()).await;
        let held = started.elapsed();
        assert!(held >= settings().renew_deadline, "stopped after {held:?}");
        assert!(held < settings().duration, "still leading after the lease expired: {held:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_lease_was_taken_stops_at_its_next_renewal() {
        let client = answering(|_| {
            let renewed = MicroTime(Timestamp::now());
            let lease = Lease {
                metadata: ObjectMeta { name: Some("rdma-dp".into()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some("other".into()),
                    lease_duration_seconds: Some(15),
                    renew_time: Some(renewed),
                    ..Default::default()
                }),
            };
            (200, serde_json::to_value(lease).unwrap())
        });
        let started = tokio::time::Instant::now();
        hold(&client, &settings()).await;
        assert_eq!(started.elapsed(), settings().retry);
    }

    #[tokio::test]
    async fn a_release_that_meets_a_renewal_on_its_way_reads_again_and_releases() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static PUTS: AtomicUsize = AtomicUsize::new(0);
        let client = answering(|method| {
            let lease = Lease {
                metadata: ObjectMeta { name: Some("rdma-dp".into()), ..Default::default() },
                spec: Some(LeaseSpec { holder_identity: Some("me".into()), ..Default::default() }),
            };
            match method {
                "PUT" if PUTS.fetch_add(1, Ordering::SeqCst) == 0 => (
                    409,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                                       "reason": "Conflict", "message": "the object has been modified"}),
                ),
                _ => (200, serde_json::to_value(lease).unwrap()),
            }
        });
        release(&client, &settings()).await;
        assert_eq!(PUTS.load(Ordering::SeqCst), 2, "the conflict was retried once, on a fresh read");
    }
}
