//! Leader election with real `rdma-dp-controller` processes: exactly one acts; a leader killed
//! with SIGKILL is replaced within the lease duration; a leader stopped with SIGTERM releases
//! the lease and a standby takes over at its next try.

use e2e::binary::ControllerProcess;
use e2e::{TestEnv, WAIT, eventually, fresh_policy, seed_policy};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use std::time::{Duration, Instant};

const LEASE: &str = "rdma-dp-leader";
const LEASE_DURATION: Duration = Duration::from_secs(4);
const RETRY: Duration = Duration::from_secs(1);

fn candidate(namespace: &str, identity: &str) -> ControllerProcess {
    ControllerProcess::start(
        "rdma-dp-controller",
        namespace,
        &[
            ("LEADER_ELECT", "true"),
            ("POD_NAME", identity),
            ("LEASE_DURATION", "4"),
            ("RENEW_DEADLINE", "3"),
            ("RETRY_PERIOD", "1"),
        ],
    )
}

async fn holder(client: &Client, namespace: &str) -> Result<Option<String>, String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = leases.get_opt(LEASE).await.map_err(|e| e.to_string())?;
    Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity).filter(|h| !h.is_empty()))
}

async fn acting(process: &ControllerProcess) -> bool {
    process.metrics().await.lines().any(|line| line == "network_operator_leader 1")
}

/// Waits until `identity` holds the lease; returns how long that took.
async fn wait_for_holder(client: &Client, namespace: &str, identity: &str) -> Duration {
    let started = Instant::now();
    eventually(&format!("{identity} to hold the lease"), WAIT, || async {
        match holder(client, namespace).await? {
            Some(h) if h == identity => Ok(()),
            other => Err(format!("held by {other:?}")),
        }
    })
    .await;
    started.elapsed()
}

#[tokio::test]
#[cfg_attr(not(e2e_cluster), ignore = "needs a cluster: set NETOP_E2E_KUBECONFIG, or run hack/e2e.sh")]
async fn one_replica_acts_and_a_standby_takes_over_a_killed_or_stopped_leader() {
    let Some(env) = TestEnv::new("netop-e2e-leader").await else { return };
    let client = env.client.clone();
    fresh_policy(&env, &seed_policy()).await;
    let mut a = candidate(&env.namespace, "replica-a");
    let mut b = candidate(&env.namespace, "replica-b");
    // Both are ready (a standby can take over), exactly one acts.
    a.wait_ready().await;
    b.wait_ready().await;
    let first =
        eventually("a leader", WAIT, || async { holder(&client, &env.namespace).await?.ok_or("none".into()) }).await;
    // The leader has acted once it reported the state for this generation (ready or not: that
    // depends on which Nodes other tests left behind).
    eventually("the leader to report its state", WAIT, || async {
        let (value, _) = e2e::applied_state(&client, "state-RDMA-device-plugin").await?;
        if value == "ready" || value == "notReady" { Ok(()) } else { Err(value) }
    })
    .await;
    let (leader, standby, standby_name) =
        if first == "replica-a" { (&mut a, &mut b, "replica-b") } else { (&mut b, &mut a, "replica-a") };
    assert!(acting(leader).await, "the lease holder acts");
    assert!(!acting(standby).await, "the standby does not act");
    assert!(!standby.log().contains("applied"), "the standby wrote objects:\n{}", standby.log());

    // SIGKILL: the standby takes over once the lease expires.
    leader.kill();
    let took = wait_for_holder(&client, &env.namespace, standby_name).await;
    assert!(took <= LEASE_DURATION + RETRY, "takeover after SIGKILL took {took:?}");
    eventually("the new leader to act", WAIT, || async {
        if acting(standby).await { Ok(()) } else { Err("not acting".into()) }
    })
    .await;
    eprintln!("takeover after SIGKILL: {took:?}");

    // SIGTERM: the lease is released at once and a new standby takes it at its next try.
    let mut c = candidate(&env.namespace, "replica-c");
    c.wait_ready().await;
    let (status, _) = standby.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");
    let took = wait_for_holder(&client, &env.namespace, "replica-c").await;
    assert!(took <= RETRY + Duration::from_millis(1500), "takeover after SIGTERM took {took:?}");
    eprintln!("takeover after SIGTERM: {took:?}");
    // The release completes before the process exits (bounded: 4 s to stop, 3 s to release).
    let (status, _) = c.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(holder(&client, &env.namespace).await.unwrap(), None, "the last leader released the lease");
}
