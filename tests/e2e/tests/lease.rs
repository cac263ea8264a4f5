//! Leader election against a real API server: one candidate holds the Lease, another waits,
//! and takes over once the holder stops renewing and the lease expires.

use e2e::{client, delete_if_present, eventually, exclusive, unique_namespace};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use state_core::lease::{LeaseSettings, try_acquire_or_renew};
use std::time::Duration;

fn candidate(namespace: &str, identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: "e2e-leader".into(),
        namespace: namespace.into(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
        retry: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn a_second_candidate_waits_then_takes_over_an_expired_lease() {
    let Some(client) = client().await else { return };
    let _guard = exclusive().await;
    let namespace = unique_namespace(&client, "netop-e2e-lease").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let (first, second) = (candidate(&namespace, "replica-a"), candidate(&namespace, "replica-b"));

    assert!(try_acquire_or_renew(&leases, &first).await.expect("lease API reachable"), "a missing lease is acquired");
    assert!(!try_acquire_or_renew(&leases, &second).await.unwrap(), "a held lease is not taken");
    assert!(try_acquire_or_renew(&leases, &first).await.unwrap(), "the holder renews");
    assert!(!try_acquire_or_renew(&leases, &second).await.unwrap(), "a renewed lease is still not taken");

    // replica-a stops renewing: replica-b takes over once the 3 s lease has expired.
    eventually("replica-b to take over", Duration::from_secs(20), || async {
        match try_acquire_or_renew(&leases, &second).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("lease still held".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let lease = leases.get("e2e-leader").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(lease.lease_transitions, Some(1));
    assert!(!try_acquire_or_renew(&leases, &first).await.unwrap(), "the old holder does not come back while b renews");

    delete_if_present(&leases, "e2e-leader").await;
    delete_if_present(&Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()), &namespace).await;
}
