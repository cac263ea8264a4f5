//! Helpers for the end-to-end tests in `tests/`: they run against the API server of the
//! kubeconfig in `NETOP_E2E_KUBECONFIG` and are skipped, with a printed reason, without it.
//!
//! The suite assumes a control plane without kubelet or scheduler (`../shared/k8s`): the
//! DaemonSet, Deployment and garbage-collection controllers run, and the tests play the
//! scheduler and the kubelet ([`kubelet`]). Controllers run as their real binaries
//! ([`binary`]) or in-process. Everything a test creates is registered with its [`Cleanup`],
//! which removes it even when the test panics, so no test depends on another's leftovers.

pub mod binary;
pub mod helm;
pub mod kubelet;
pub mod original;
pub mod registry;
pub mod stubs;

use api::crd;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::MutexGuard;

/// The environment variable naming the kubeconfig of the cluster under test.
pub const KUBECONFIG_VAR: &str = "NETOP_E2E_KUBECONFIG";
/// Field manager of the test's own writes.
pub const MANAGER: &str = "network-operator/e2e";
/// How long a test waits for something the controllers should do within seconds.
pub const WAIT: Duration = Duration::from_secs(60);

/// The kubeconfig path of the cluster under test, or `None` (after printing why).
pub fn kubeconfig_path() -> Option<String> {
    match std::env::var(KUBECONFIG_VAR) {
        Ok(path) => Some(path),
        Err(_) => {
            eprintln!("skipping end-to-end test: {KUBECONFIG_VAR} is not set (see tests/e2e and README.md)");
            None
        }
    }
}

/// A client for the cluster of the kubeconfig at `path`.
pub async fn client_for(path: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("{KUBECONFIG_VAR}={path}: {e}"));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{KUBECONFIG_VAR}={path}: {e}"));
    Client::try_from(config).expect("client from kubeconfig")
}

/// A client for the cluster under test, or `None` (after printing why) when none is configured.
pub async fn client() -> Option<Client> {
    Some(client_for(&kubeconfig_path()?).await)
}

/// What one test needs: a client, a namespace of its own, the CRDs installed, the cluster-wide
/// test lock held, and a [`Cleanup`] for everything it creates.
pub struct TestEnv {
    /// Admin client.
    pub client: Client,
    /// A fresh namespace for the operands, deleted at the end.
    pub namespace: String,
    /// Removes what the test registered, on success and on panic.
    pub cleanup: Cleanup,
    _lock: MutexGuard<'static, ()>,
}

impl TestEnv {
    /// Sets up a test whose namespace starts with `prefix`; `None` when no cluster is configured.
    pub async fn new(prefix: &str) -> Option<Self> {
        let path = kubeconfig_path()?;
        let lock = exclusive().await;
        let client = client_for(&path).await;
        let cleanup = Cleanup::new(path);
        install_crds(&client).await;
        let namespace = unique_name(prefix);
        create_namespace(&client, &namespace).await;
        cleanup.namespace(&namespace);
        Some(Self { client, namespace, cleanup, _lock: lock })
    }
}

/// Serialises the tests of one binary: the policy and Nodes are cluster-wide.
pub async fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(())).lock().await
}

/// Polls `check` every quarter second until it returns `Ok`, or panics after `timeout` with the
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
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
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
        wait_established(client, &name).await;
    }
}

/// Waits until CRD `name` is Established (its API is served).
pub async fn wait_established(client: &Client, name: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    eventually(&format!("CRD {name} to be Established"), WAIT, || async {
        let live = crds.get(name).await.map_err(|e| e.to_string())?;
        let conditions = live.status.and_then(|s| s.conditions).unwrap_or_default();
        let established = conditions.iter().any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(()).ok_or_else(|| "not Established yet".to_string())
    })
    .await;
}

/// Server-side applies the CRDs of `files` (names under the repository's `crds/`), as a user or
/// Helm installs them, and waits until each is Established; panics naming a file the API server
/// refuses.
pub async fn install_crd_files(client: &Client, files: &[&str]) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    for file in files {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("crds/{file}: {e}"));
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("crds/{file}: {e}"));
        let name = crd.metadata.name.clone().expect("CRDs are named");
        crds.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("the API server refused crds/{file}: {e}"));
        wait_established(client, &name).await;
    }
}

/// A name starting with `prefix` that no other test run uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{nanos:x}{n}")
}

/// Creates the namespace `name`.
pub async fn create_namespace(client: &Client, name: &str) {
    let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("valid");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
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

/// One thing a test created, to be deleted at its end.
#[derive(Clone, Debug)]
enum Created {
    Namespace(String),
    Node(String),
    NodeLabels { node: String, keys: Vec<String> },
    Policy,
    Cluster { api_version: String, kind: String, plural: String, name: String },
    HelmRelease { name: String, namespace: String },
}

/// Deletes what a test created when dropped: at the end of the test or while it unwinds from
/// a panic. It runs on a thread of its own with its own client (the test's runtime may be
/// gone), and waits until the policy and Nodes are gone so the next test starts clean.
pub struct Cleanup {
    kubeconfig: String,
    created: Mutex<Vec<Created>>,
}

impl Cleanup {
    fn new(kubeconfig: String) -> Self {
        Self { kubeconfig, created: Mutex::new(Vec::new()) }
    }

    fn push(&self, created: Created) {
        self.created.lock().unwrap_or_else(|e| e.into_inner()).push(created);
    }

    /// Deletes namespace `name` at the end.
    pub fn namespace(&self, name: &str) {
        self.push(Created::Namespace(name.to_string()));
    }

    /// Deletes Node `name` at the end.
    pub fn node(&self, name: &str) {
        self.push(Created::Node(name.to_string()));
    }

    /// Removes labels `keys` from the existing Node `node` at the end, and uncordons it.
    pub fn node_labels(&self, node: &str, keys: &[&str]) {
        self.push(Created::NodeLabels { node: node.to_string(), keys: keys.iter().map(|k| k.to_string()).collect() });
    }

    /// Deletes `nic-cluster-policy` at the end.
    pub fn policy(&self) {
        self.push(Created::Policy);
    }

    /// Uninstalls the Helm release `name` of `namespace` at the end.
    pub fn helm_release(&self, name: &str, namespace: &str) {
        self.push(Created::HelmRelease { name: name.to_string(), namespace: namespace.to_string() });
    }

    /// Deletes the cluster-scoped custom resource `K` named `name` at the end.
    pub fn cluster_resource<K: kube::Resource<DynamicType = ()>>(&self, name: &str) {
        self.push(Created::Cluster {
            api_version: K::api_version(&()).to_string(),
            kind: K::kind(&()).to_string(),
            plural: K::plural(&()).to_string(),
            name: name.to_string(),
        });
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        let path = self.kubeconfig.clone();
        let cleaner = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(remove_all(path, created));
        });
        if cleaner.join().is_err() {
            eprintln!("cleanup: the cleanup thread panicked");
        }
    }
}

async fn remove_all(path: String, created: Vec<Created>) {
    let client = client_for(&path).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let policies: Api<api::NicClusterPolicy> = Api::all(client.clone());
    for item in created.iter().rev() {
        match item {
            Created::Namespace(name) => delete_if_present(&Api::<Namespace>::all(client.clone()), name).await,
            Created::Node(name) => delete_if_present(&nodes, name).await,
            Created::NodeLabels { node, keys } => {
                let labels: serde_json::Map<String, serde_json::Value> =
                    keys.iter().map(|k| (k.clone(), serde_json::Value::Null)).collect();
                let patch = serde_json::json!({"metadata": {"labels": labels}, "spec": {"unschedulable": null}});
                if let Err(e) = nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    eprintln!("cleanup: the labels of node {node}: {e}");
                }
            }
            Created::Policy => delete_if_present(&policies, api::POLICY_NAME).await,
            Created::HelmRelease { name, namespace } => helm::uninstall(name, namespace, &path),
            Created::Cluster { api_version, kind, plural, name } => {
                let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
                let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
                let resource = kube::core::ApiResource::from_gvk_with_plural(&gvk, plural);
                delete_if_present(&Api::<kube::core::DynamicObject>::all_with(client.clone(), &resource), name).await
            }
        }
    }
    for item in &created {
        let gone = match item {
            Created::Node(name) => wait_gone(&nodes, name).await,
            Created::Policy => wait_gone(&policies, api::POLICY_NAME).await,
            _ => true,
        };
        if !gone {
            eprintln!("cleanup: {item:?} still present after 30 s");
        }
    }
}

async fn wait_gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..120 {
        if matches!(api.get_opt(name).await, Ok(None)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
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

/// Replaces any existing `nic-cluster-policy` with `policy` (registered for cleanup) and returns
/// it as created.
pub async fn fresh_policy(env: &TestEnv, policy: &api::NicClusterPolicy) -> api::NicClusterPolicy {
    let policies: Api<api::NicClusterPolicy> = Api::all(env.client.clone());
    delete_if_present(&policies, api::POLICY_NAME).await;
    eventually("an old policy to be gone", WAIT, || async {
        match policies.get_opt(api::POLICY_NAME).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    env.cleanup.policy();
    policies.create(&PostParams::default(), policy).await.expect("the policy is accepted")
}

/// The entry `state` of the policy's `status.appliedStates`: `(state, message)`.
pub async fn applied_state(client: &Client, state: &str) -> Result<(String, Option<String>), String> {
    let policy =
        Api::<api::NicClusterPolicy>::all(client.clone()).get(api::POLICY_NAME).await.map_err(|e| e.to_string())?;
    let entry = policy.applied_state(state).ok_or_else(|| format!("no entry for {state} yet"))?;
    Ok((entry.state.to_string(), entry.message.clone()))
}

/// Waits until the entry `state` reads `wanted` for the current generation; returns its message.
pub async fn wait_for_entry(client: &Client, state: &str, wanted: &str) -> Option<String> {
    eventually(&format!("{state} to be {wanted}"), WAIT, || async {
        let policy =
            Api::<api::NicClusterPolicy>::all(client.clone()).get(api::POLICY_NAME).await.map_err(|e| e.to_string())?;
        let entry = policy.applied_state(state).ok_or_else(|| format!("no entry for {state} yet"))?;
        let current = entry.observed_generation == policy.metadata.generation;
        if entry.state.to_string() == wanted && current {
            Ok(entry.message.clone())
        } else {
            Err(format!("{} for generation {:?} ({:?})", entry.state, entry.observed_generation, entry.message))
        }
    })
    .await
}

/// Creates the ConfigMaps and Secrets that the every-section example policy names, in
/// `namespace` (placeholders: nothing reads their content here).
pub async fn every_section_prerequisites(client: &Client, namespace: &str) {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for name in ["custom-ca-certs", "custom-package-repos", "doca-telemetry-custom-config", "driver-proxy-config"] {
        let config_map: ConfigMap =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"placeholder": "e2e"}}))
                .expect("a ConfigMap");
        config_maps
            .create(&PostParams::default(), &config_map)
            .await
            .unwrap_or_else(|e| panic!("ConfigMap {name}: {e}"));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in ["ufm-secret", "ngc-pull-secret"] {
        let secret: Secret = serde_json::from_value(
            serde_json::json!({"metadata": {"name": name}, "stringData": {"UFM_USERNAME": "e2e"}}),
        )
        .expect("a Secret");
        secrets.create(&PostParams::default(), &secret).await.unwrap_or_else(|e| panic!("Secret {name}: {e}"));
    }
}

/// Creates MacvlanNetwork `name` (bridge on `ens2f0`, Whereabouts IPAM) whose NAD goes to
/// `namespace`, registered for cleanup.
pub async fn create_macvlan_network(env: &TestEnv, name: &str, namespace: &str) -> Api<api::networks::MacvlanNetwork> {
    let network: api::networks::MacvlanNetwork = serde_json::from_value(serde_json::json!({
        "apiVersion": "mellanox.com/v1alpha1", "kind": "MacvlanNetwork", "metadata": {"name": name},
        "spec": {"networkNamespace": namespace, "master": "ens2f0", "mode": "bridge", "ipam": "{\"type\": \"whereabouts\"}"},
    }))
    .expect("a MacvlanNetwork");
    env.cleanup.cluster_resource::<api::networks::MacvlanNetwork>(name);
    let networks: Api<api::networks::MacvlanNetwork> = Api::all(env.client.clone());
    networks.create(&PostParams::default(), &network).await.unwrap_or_else(|e| panic!("MacvlanNetwork {name}: {e}"));
    networks
}
