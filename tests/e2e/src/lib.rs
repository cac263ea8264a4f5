//! Helpers for the end-to-end tests in `tests/`: they run against the API server of the
//! kubeconfig in `NETOP_E2E_KUBECONFIG` and are skipped, with a printed reason, without it.
//!
//! The suite assumes only an API server: no kubelet, scheduler, controller manager or garbage
//! collector. Workload status is patched by the tests where a controller would set it.

use api::crd;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, MutexGuard};

/// The environment variable naming the kubeconfig of the cluster under test.
pub const KUBECONFIG_VAR: &str = "NETOP_E2E_KUBECONFIG";
/// Field manager of the test's own writes.
pub const MANAGER: &str = "network-operator/e2e";

/// A client for the cluster under test, or `None` (after printing why) when no cluster is
/// configured.
pub async fn client() -> Option<Client> {
    let Ok(path) = std::env::var(KUBECONFIG_VAR) else {
        eprintln!("skipping end-to-end test: {KUBECONFIG_VAR} is not set");
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("{KUBECONFIG_VAR}={path}: {e}"));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{KUBECONFIG_VAR}={path}: {e}"));
    Some(Client::try_from(config).expect("client from kubeconfig"))
}

/// Serialises the tests of one binary: the policy is a cluster singleton.
pub async fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(())).lock().await
}

/// Polls `check` every half second until it returns `Ok`, or panics after `timeout` with the
/// last reason it gave.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(reason) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {reason}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Installs (server-side applies) every CRD of the project and waits until each is Established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for definition in crd::all() {
        let name = definition.metadata.name.clone().expect("CRDs are named");
        crds.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&definition))
            .await
            .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        eventually(&format!("CRD {name} to be Established"), Duration::from_secs(30), || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let live = crds.get(&name).await.map_err(|e| e.to_string())?;
                let established = live
                    .status
                    .and_then(|s| s.conditions)
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(()).ok_or_else(|| "not Established yet".to_string())
            }
        })
        .await;
    }
}

/// Creates a namespace with a unique name starting with `prefix`.
pub async fn unique_namespace(client: &Client, prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
    let name = format!("{prefix}-{:x}", nanos);
    let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("valid");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name
}

/// Deletes an object if it exists (errors are printed, not raised: this is cleanup).
pub async fn delete_if_present<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => eprintln!("cleanup: deleting {name}: {e}"),
    }
}

/// The original product's example policy, as users have it.
pub const SEED_POLICY: &str = include_str!("../../../example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml");

/// The seed policy, parsed.
pub fn seed_policy() -> api::NicClusterPolicy {
    match api::parse::parse_all(SEED_POLICY).expect("the seed parses").remove(0) {
        api::parse::Document::Policy(policy) => *policy,
        other => panic!("not a policy: {other:?}"),
    }
}

/// Replaces any existing `nic-cluster-policy` with `policy` and returns it as created.
pub async fn fresh_policy(client: &Client, policy: &api::NicClusterPolicy) -> api::NicClusterPolicy {
    let policies: Api<api::NicClusterPolicy> = Api::all(client.clone());
    delete_if_present(&policies, api::POLICY_NAME).await;
    eventually("an old policy to be gone", Duration::from_secs(60), || async {
        match policies.get_opt(api::POLICY_NAME).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    policies.create(&PostParams::default(), policy).await.expect("the policy is accepted")
}

/// Plays the DaemonSet controller (absent here): every desired pod available and updated.
pub async fn mark_daemonset_available(client: &Client, namespace: &str, name: &str) {
    let daemon_sets: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client.clone(), namespace);
    let generation = daemon_sets.get(name).await.expect("the DaemonSet exists").metadata.generation.unwrap_or(1);
    let status = serde_json::json!({"status": {
        "observedGeneration": generation, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
        "numberMisscheduled": 0, "numberReady": 2, "numberAvailable": 2, "updatedNumberScheduled": 2,
    }});
    daemon_sets
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("DaemonSet status patched");
}
