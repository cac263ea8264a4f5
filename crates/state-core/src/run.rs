//! The runner every controller binary calls: flags, logs, metrics and health server, leader
//! election, the controller itself, graceful shutdown.

use crate::lease::{self, LeaseSettings};
use crate::metrics::Metrics;
use crate::nodes::NodeCache;
use crate::owned::OwnedObjects;
use crate::reconcile::{self, Context};
use crate::state::State;
use anyhow::Context as _;
use api::NicClusterPolicy;
use axum::Router;
use axum::extract::State as Shared;
use axum::http::StatusCode;
use axum::routing::get;
use clap::{Parser, ValueEnum};
use futures::{Stream, StreamExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, controller, watcher};
use kube::{Api, Client};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Trailing-edge debounce of a state controller's reconcile triggers: a burst of events (a
/// rollout's pods) reconciles once, this long after the last one. It delays every reaction by as
/// much: at 500 ms the operator answered a spec change or the last pod Ready in 0.6 s (p50);
/// `docs/performance.md` has the measurements.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// How the cluster type is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClusterType {
    /// OpenShift when the API serves `config.openshift.io/v1`.
    Auto,
    /// Plain Kubernetes.
    Kubernetes,
    /// OpenShift.
    Openshift,
}

/// This build's version (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit this build was made from (`NETOP_COMMIT` at build time, set by
/// `hack/build-release.sh`), or `unknown`.
pub const COMMIT: &str = match option_env!("NETOP_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// Flags shared by every controller; each has an environment fallback (but `--kubeconfig`: the
/// client reads `KUBECONFIG` itself, a list of files included).
#[derive(Clone, Debug, Parser)]
#[command(version)]
pub struct Flags {
    /// Kubeconfig file to use out of cluster (default: `KUBECONFIG`, then ~/.kube/config, then the
    /// in-cluster ServiceAccount).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Namespace of the operands (DaemonSets, ConfigMaps, ...).
    #[arg(long, env = "OPERANDS_NAMESPACE", default_value = "nvidia-network-operator")]
    pub namespace: String,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Run leader election, so that only one replica acts at a time.
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Name of the Lease used for leader election (default: the controller's name).
    #[arg(long, env = "LEASE_NAME")]
    pub lease_name: Option<String>,
    /// Namespace of the Lease (default: the operands' namespace).
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease (default: the host name, i.e. the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader's lease is valid without renewal; a standby takes over after that.
    #[arg(long, env = "LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// Seconds a leader keeps acting without renewing its lease; less than --lease-duration.
    #[arg(long, env = "RENEW_DEADLINE", default_value_t = 10)]
    pub renew_deadline: u64,
    /// Seconds between two lease renewals (leader) or tries (standby); less than --renew-deadline.
    #[arg(long, env = "RETRY_PERIOD", default_value_t = 2)]
    pub retry_period: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// Cluster type: detected, or forced.
    #[arg(long, env = "CLUSTER_TYPE", value_enum, default_value = "auto")]
    pub cluster_type: ClusterType,
    /// The nodes' CNI binary directory the CNI DaemonSets install into (Multus, CNI plugins,
    /// IPoIB, Whereabouts); empty means /var/lib/cni/bin on OpenShift, /opt/cni/bin elsewhere.
    #[arg(long, env = "CNI_BIN_DIR")]
    pub cni_bin_dir: Option<String>,
}

/// Initialises logging (`RUST_LOG` filters, default `info`).
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::util::SubscriberInitExt;
    subscriber(format, std::io::stdout, std::io::stdout().is_terminal()).init();
}

/// The log subscriber of every binary, writing to `writer`: JSON, one object per line with the
/// event's fields at the top level beside `timestamp`, `level`, `target` and its one `message`;
/// or text, coloured only when `ansi` (a terminal). The level comes from `RUST_LOG` (default
/// `info`).
pub fn subscriber<W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => {
            Box::new(builder.json().flatten_event(true).with_current_span(false).with_span_list(false).finish())
        }
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
    }
}

/// Binds the HTTP server's address; failing to bind is fatal, so it happens before anything else.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))
}

/// Serves `/metrics`, `/healthz` (alive) and `/readyz` (ready once `ready` is set) until
/// `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    #[derive(Clone)]
    struct Served {
        metrics: Metrics,
        ready: Arc<AtomicBool>,
    }
    let app = Router::new()
        .route("/metrics", get(|Shared(s): Shared<Served>| async move { s.metrics.encode() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|Shared(s): Shared<Served>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not reconciled yet")
                }
            }),
        )
        .with_state(Served { metrics, ready });
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("HTTP server")
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}

/// Whether the cluster is OpenShift, retrying while the API is unreachable.
pub async fn is_openshift(client: &Client, cluster_type: ClusterType) -> bool {
    match cluster_type {
        ClusterType::Kubernetes => return false,
        ClusterType::Openshift => return true,
        ClusterType::Auto => {}
    }
    let mut delay = Duration::from_secs(1);
    loop {
        match client.list_api_group_resources("config.openshift.io/v1").await {
            Ok(_) => return true,
            Err(kube::Error::Api(status)) if status.code == 404 => return false,
            Err(e) => {
                tracing::warn!(error = %crate::apply::describe(&e), "cannot reach the API to detect the cluster type; retrying")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// The command line of controller `component`, which runs the policy states `serves`: its
/// name, what it runs (in `--help`), the shared flags, `--version`.
pub fn command(component: &'static str, serves: &[&str]) -> clap::Command {
    use clap::CommandFactory;
    let runs = match serves {
        [] if component == "aggregator" => {
            "folds every state's entry into the NicClusterPolicy's global status".to_string()
        }
        [] => "reconciles the network CRs into NetworkAttachmentDefinitions".to_string(),
        [one] => format!("reconciles {one} of the NicClusterPolicy"),
        many => format!("reconciles every state of the NicClusterPolicy ({})", many.join(", ")),
    };
    Flags::command().name(component).about(format!("NVIDIA Network Operator controller {component}: {runs}."))
}

/// Leader-election settings from the flags, for a controller named `component`; the timings
/// must satisfy retry < renew deadline < lease duration, as in client-go.
pub fn lease_settings(flags: &Flags, component: &str, serves: &[&str]) -> anyhow::Result<LeaseSettings> {
    if !(0 < flags.retry_period
        && flags.retry_period < flags.renew_deadline
        && flags.renew_deadline < flags.lease_duration)
    {
        anyhow::bail!(
            "--retry-period ({}s) < --renew-deadline ({}s) < --lease-duration ({}s) must hold",
            flags.retry_period,
            flags.renew_deadline,
            flags.lease_duration
        );
    }
    let identity = flags
        .identity
        .clone()
        .unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_else(|_| format!("{component}-{}", std::process::id())));
    Ok(LeaseSettings {
        name: flags.lease_name.clone().unwrap_or_else(|| format!("{component}-leader")),
        namespace: flags.lease_namespace.clone().unwrap_or_else(|| flags.namespace.clone()),
        identity,
        duration: Duration::from_secs(flags.lease_duration),
        renew_deadline: Duration::from_secs(flags.renew_deadline),
        retry: Duration::from_secs(flags.retry_period),
        serves: serves.iter().map(|s| s.to_string()).collect(),
    })
}

/// What a controller process hands to its body once flags, logs, client and server are up.
pub struct Process {
    /// The API client.
    pub client: Client,
    /// The parsed flags.
    pub flags: Flags,
    /// The process's metrics, served on `/metrics`.
    pub metrics: Metrics,
    /// Set by the body once its watches have their first lists, i.e. it can work (`/readyz`).
    pub ready: Arc<AtomicBool>,
}

/// The `main` of every controller binary named `component`, running the policy states
/// `serves` (written on its Lease): flags, logs, client, the
/// metrics/health server, leader election when asked, then `body` until it returns (on
/// SIGTERM; the lease is then released) or the lease is lost (an error, so that the pod
/// restarts as a candidate).
///
/// `/readyz` answers 200 on a standby once it has read the lease (it can take over), and on
/// the acting replica once the body says its watches are synced.
pub async fn run_process<F, Fut>(component: &'static str, serves: &[&str], body: F) -> anyhow::Result<()>
where
    F: FnOnce(Process) -> Fut,
    Fut: Future<Output = ()>,
{
    let flags = {
        use clap::FromArgMatches;
        Flags::from_arg_matches(&command(component, serves).get_matches())?
    };
    init_tracing(flags.log_format);
    tracing::info!(component, version = VERSION, commit = COMMIT, states = %serves.join(","), "starting");
    let leader_elect = if flags.leader_elect { Some(lease_settings(&flags, component, serves)?) } else { None };
    let metrics = Metrics::new();
    metrics.build_info.with_label_values(&[component, VERSION, COMMIT]).set(1);
    let mut config = match &flags.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("using the kubeconfig {}", path.display()))?
        }
        None => {
            kube::Config::infer().await.context("reading the Kubernetes client config (kubeconfig or in-cluster)")?
        }
    };
    // No hidden retries: a 429 is also how the Eviction API says "a PodDisruptionBudget forbids
    // it", and the client's default would retry that for many minutes inside one call. Every
    // caller has its own retry (requeue, watcher backoff, drain loop).
    config.default_retry = false;
    let client = kube::client::ClientBuilder::try_from(config)
        .context("building the Kubernetes client")?
        .with_layer(&metrics.request_layer())
        .build();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = bind(flags.metrics_addr).await?;
    let server = tokio::spawn(serve(listener, metrics.clone(), ready.clone(), shutdown_signal()));
    let process = Process { client: client.clone(), flags, metrics: metrics.clone(), ready: ready.clone() };
    let lease_to_release = leader_elect.clone();
    let work = async {
        let Some(settings) = leader_elect else {
            metrics.leader.set(1);
            body(process).await;
            return Ok(());
        };
        tokio::select! {
            () = lease::acquire(&client, &settings, &ready) => {}
            () = shutdown_signal() => return Ok(()),
        }
        ready.store(false, Ordering::Relaxed); // ready again once the body's watches are synced
        metrics.leader.set(1);
        let result = tokio::select! {
            () = lease::hold(&client, &settings) => {
                Err(anyhow::anyhow!("lost the leader lease; exiting so that another replica leads"))
            }
            () = body(process) => Ok(()),
        };
        metrics.leader.set(0);
        if result.is_ok() {
            let _ = tokio::time::timeout(RELEASE_TIMEOUT, lease::release(&client, &settings)).await;
        }
        result
    };
    // On the heap, not on the main thread's stack: the controllers' futures are large, and stack
    // pages, once touched, stay resident for the life of the process.
    let mut work = Box::pin(work);
    tokio::select! {
        result = &mut work => result?,
        result = server => {
            result.context("HTTP server task")??;
            // Stopped by SIGTERM: the body stops too and then releases the lease; if it takes
            // too long (a loaded node), it is dropped and the lease released here, bounded, so a
            // standby takes over at its next try rather than when the lease expires.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut work).await {
                Ok(result) => result?,
                Err(_) => {
                    drop(work);
                    if let Some(settings) = &lease_to_release {
                        tracing::warn!(component, "the controller did not stop in time; releasing the lease");
                        let _ = tokio::time::timeout(RELEASE_TIMEOUT, lease::release(&client, settings)).await;
                    }
                }
            }
        }
    }
    tracing::info!(component, "stopped");
    Ok(())
}

/// How long a controller may take to stop after SIGTERM before it is dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);
/// How long releasing the lease may take at exit.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the controller of state `S` until shutdown: the whole `main` of a state binary.
pub async fn run<S: State>() -> anyhow::Result<()> {
    run_process(S::COMPONENT, &[S::NAME], state_body::<S>).await
}

/// The body of state `S`'s process (see [`run_process`]): detects the cluster type, then runs
/// the state's controller until shutdown.
pub async fn state_body<S: State>(process: Process) {
    let openshift = is_openshift(&process.client, process.flags.cluster_type).await;
    let settings = Settings { namespace: process.flags.namespace, openshift, cni_bin_dir: process.flags.cni_bin_dir };
    run_controller_with::<S>(process.client, settings, process.metrics, process.ready).await;
}

/// The body of one controller, boxed so that different controllers fit in one list.
pub type Body = Box<dyn FnOnce(Process) -> futures::future::LocalBoxFuture<'static, ()>>;

/// Boxes a controller body (`state_body::<S>`, `aggregator::controller::run`, ...) for
/// [`run_together`].
pub fn body<F, Fut>(body: F) -> Body
where
    F: FnOnce(Process) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    Box::new(move |process| Box::pin(body(process)))
}

/// Runs several controller bodies side by side in one process, all on its one client, metrics
/// registry and runtime (the single-process install): `process.ready` is set once every body
/// says its watches are synced; returns when all have stopped (on SIGTERM).
pub async fn run_together(process: Process, bodies: Vec<Body>) {
    let mut flags = Vec::with_capacity(bodies.len());
    let work = futures::future::join_all(bodies.into_iter().map(|body| {
        let ready = Arc::new(AtomicBool::new(false));
        flags.push(ready.clone());
        body(Process {
            client: process.client.clone(),
            flags: process.flags.clone(),
            metrics: process.metrics.clone(),
            ready,
        })
    }));
    let synced = async {
        while !flags.iter().all(|ready| ready.load(Ordering::Relaxed)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    run_marking_ready(
        async {
            work.await;
        },
        synced,
        &process.ready,
    )
    .await;
}

/// What a state controller renders for, besides the policy.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Namespace of the operands.
    pub namespace: String,
    /// The cluster is OpenShift.
    pub openshift: bool,
    /// The nodes' CNI binary directory, when given (`None`: the cluster type's default).
    pub cni_bin_dir: Option<String>,
}

/// The kube-runtime controller of state `S`: watches the policy (`nic-cluster-policy` only)
/// and the objects carrying the state label, reconciles until SIGTERM.
pub async fn run_controller<S: State>(
    client: Client,
    namespace: String,
    openshift: bool,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
) {
    run_controller_with::<S>(client, Settings { namespace, openshift, cni_bin_dir: None }, metrics, ready).await
}

/// [`run_controller`] with every setting: first releases the state's [`State::released`]
/// objects (before the first reconcile, so no prune races it) and deletes its
/// [`State::leftovers`] once (in the background), then reconciles until SIGTERM.
pub async fn run_controller_with<S: State>(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
) {
    let Settings { namespace, openshift, cni_bin_dir } = settings;
    crate::leftovers::release_all(&client, &namespace, S::NAME, &S::released()).await;
    let leftovers = S::leftovers();
    if !leftovers.is_empty() {
        let (client, namespace) = (client.clone(), namespace.clone());
        tokio::spawn(async move { crate::leftovers::delete_all(&client, &namespace, S::NAME, &leftovers).await });
    }
    let policies: Api<NicClusterPolicy> = Api::all(client.clone());
    let (owned, changes) = OwnedObjects::watch(&client, S::kinds(), S::NAME, Some(&namespace));
    let node_policy_ctx = Context::new(client.clone(), namespace.clone(), openshift, owned.clone(), metrics.clone())
        .with_cni_bin_dir(cni_bin_dir.clone());
    let mut ctx =
        Context::new(client.clone(), namespace, openshift, owned.clone(), metrics).with_cni_bin_dir(cni_bin_dir);
    let mut node_changes = None;
    if !S::NODE_LABELS.is_empty() {
        let (nodes, changes) = NodeCache::watch(&client, S::NODE_LABELS);
        ctx = ctx.with_nodes(nodes);
        node_changes = Some(changes);
    }
    tracing::info!(state = S::NAME, namespace = %ctx.namespace, openshift, "starting controller");
    let controller =
        Controller::new(policies, watcher::Config::default().fields(&format!("metadata.name={}", api::POLICY_NAME)))
            .with_config(controller::Config::default().debounce(DEBOUNCE));
    ctx.metrics.init_reconciles(S::NAME);
    let policy_store = controller.store();
    let deleted = forget_states_when_deleted(controller.store(), ctx.metrics.clone());
    let node_cache = ctx.nodes.clone();
    // The NicNodePolicies' controller, when the section may live there, on the same object cache.
    let changes = changes.map(|_| ()).boxed();
    let (changes, node_policies) = if S::NODE_POLICIES {
        let (mine, theirs) = fan_out(changes);
        let node_policy_ctx = match node_cache.clone() {
            Some(nodes) => node_policy_ctx.with_nodes(nodes),
            None => node_policy_ctx,
        };
        let (synced, run) = crate::node_policies::controller::<S>(node_policy_ctx, theirs);
        (mine.boxed(), Some((synced, run)))
    } else {
        (changes, None)
    };
    let (node_policies_synced, node_policies_run) = node_policies.unzip();
    let synced = async move {
        let _ = policy_store.wait_until_ready().await;
        owned.synced().await;
        if let Some(nodes) = node_cache {
            nodes.synced().await;
        }
        if let Some(synced) = node_policies_synced {
            synced.await;
        }
    };
    let config_map_changes = S::READS_CONFIG_MAPS.then(|| config_map_changes(&ctx.client, &ctx.namespace));
    let changes = futures::stream::select_all([
        changes,
        futures::stream::iter(node_changes).flatten().boxed(),
        futures::stream::iter(config_map_changes).flatten().boxed(),
    ]);
    let results = controller.reconcile_all_on(changes).graceful_shutdown_on(shutdown_signal()).run(
        reconcile::reconcile::<S>,
        reconcile::error_policy::<S>,
        Arc::new(ctx),
    );
    let work = async {
        let controllers = async {
            match node_policies_run {
                Some(node_policies) => drop(futures::future::join(drive(results), node_policies).await),
                None => drive(results).await,
            }
        };
        tokio::select! {
            () = controllers => {}
            () = deleted => {}
        }
    };
    run_marking_ready(work, synced, &ready).await;
}

/// Two streams that each yield when `source` does, coalesced (a yield not taken yet absorbs
/// the next ones); a task of its own drives `source`.
pub fn fan_out(
    source: impl Stream<Item = ()> + Send + 'static,
) -> (impl Stream<Item = ()> + Send + 'static, impl Stream<Item = ()> + Send + 'static) {
    let (first, first_rx) = tokio::sync::mpsc::channel(1);
    let (second, second_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut source = std::pin::pin!(source);
        while source.next().await.is_some() {
            let _ = first.try_send(());
            let _ = second.try_send(());
        }
    });
    let receive = |rx: tokio::sync::mpsc::Receiver<()>| {
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
    };
    (receive(first_rx), receive(second_rx))
}

/// A stream that yields when a ConfigMap of `namespace` is created, changed or deleted
/// (metadata only): states that read ConfigMaps a user names re-render when those appear.
pub fn config_map_changes(client: &Client, namespace: &str) -> impl Stream<Item = ()> + Send + 'static {
    let api: Api<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::ConfigMap>> =
        Api::namespaced(client.clone(), namespace);
    crate::owned::backoff_on_failure(watcher(api, watcher::Config::default())).filter_map(|event| async move {
        matches!(event, Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))).then_some(())
    })
}

/// Runs `work` until it ends, setting `ready` as soon as `synced` resolves (the controller's
/// watches have their first lists: it can work, whether or not there is anything to do).
pub async fn run_marking_ready(work: impl Future<Output = ()>, synced: impl Future<Output = ()>, ready: &AtomicBool) {
    let mark = async {
        synced.await;
        ready.store(true, Ordering::Relaxed);
        tracing::info!("watches synced; ready");
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = work => {}
        () = mark => {}
    }
}

/// Withdraws the state series of `metrics` whenever the policy is absent from the controller's
/// cache (deleted): a dashboard then shows nothing deployed, not the last state. Polls the cache
/// each second, which costs no request. Withdrawing on every poll without the policy, not only on
/// a seen deletion, also covers a policy deleted within one poll and a reconcile that was under
/// way when it went.
pub async fn forget_states_when_deleted(policies: Store<NicClusterPolicy>, metrics: Metrics) {
    let key = ObjectRef::new(api::POLICY_NAME);
    let mut present = false;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = policies.get(&key).is_some();
        if !now {
            metrics.forget_states();
            if present {
                tracing::info!(policy = api::POLICY_NAME, "the policy is gone; its state metrics are withdrawn");
            }
        }
        present = now;
    }
}

/// Drives a controller's results until it stops (on SIGTERM). Failed reconciles are logged by
/// the error policies; watch failures (e.g. a CRD that is not installed) are logged here.
pub async fn drive<K, R>(results: impl Stream<Item = ControllerResult<K, R>>)
where
    K: kube::Resource,
    R: std::error::Error + 'static,
{
    results
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::QueueError(e)) => {
                    tracing::warn!(error = %crate::apply::describe_watch(&e), "controller: watch failure; retrying")
                }
                Err(e) => tracing::warn!(error = %e, "controller: queue failure; retrying"),
            }
        })
        .await;
}

/// One item of a kube-runtime controller's result stream.
pub type ControllerResult<K, R> = Result<(ObjectRef<K>, Action), controller::Error<R, watcher::Error>>;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn both_fanned_out_streams_see_every_burst_and_a_burst_coalesces() {
        let (source, receiver) = tokio::sync::mpsc::unbounded_channel::<()>();
        let events = futures::stream::unfold(receiver, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        let (first, second) = fan_out(events);
        let (mut first, mut second) = (Box::pin(first), Box::pin(second));
        let wait = Duration::from_millis(200);
        for _ in 0..3 {
            source.send(()).unwrap();
        }
        assert_eq!(tokio::time::timeout(wait, first.next()).await, Ok(Some(())), "the first stream sees the burst");
        assert_eq!(tokio::time::timeout(wait, second.next()).await, Ok(Some(())), "so does the second");
        assert!(tokio::time::timeout(wait, first.next()).await.is_err(), "three waiting events make one trigger");
        source.send(()).unwrap();
        assert_eq!(tokio::time::timeout(wait, first.next()).await, Ok(Some(())), "a later event triggers again");
        assert_eq!(tokio::time::timeout(wait, second.next()).await, Ok(Some(())));
    }

    #[tokio::test(start_paused = true)]
    async fn state_series_are_withdrawn_even_when_the_policy_went_before_the_first_poll() {
        let (policies, _writer) = kube::runtime::reflector::store::<NicClusterPolicy>();
        let metrics = Metrics::new();
        // A reconcile reported a state, and the policy was gone from the cache before any poll.
        metrics.set_state("state-X", api::SyncState::Ready);
        let exported = |metrics: &Metrics| metrics.encode().contains("network_operator_state{");
        assert!(exported(&metrics));
        let watch = tokio::spawn(forget_states_when_deleted(policies, metrics.clone()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!exported(&metrics), "{}", metrics.encode());
        // A late reconcile that reports again is withdrawn at the next poll.
        metrics.set_state("state-X", api::SyncState::Ready);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!exported(&metrics), "{}", metrics.encode());
        watch.abort();
    }

    #[tokio::test]
    async fn health_is_always_ok_and_readiness_follows_the_first_reconcile() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        metrics.set_state("state-X", api::SyncState::Ready);
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics, ready.clone(), async {
            let _ = stopped.await;
        }));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics_page = get(addr, "/metrics").await;
        assert!(metrics_page.contains(r#"network_operator_state{state="state-X",value="ready"} 1"#), "{metrics_page}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        use clap::CommandFactory;
        for arg in Flags::command().get_arguments() {
            let id = arg.get_id().as_str();
            if ["kubeconfig", "help", "version"].contains(&id) {
                continue; // KUBECONFIG is read by the client itself
            }
            assert!(arg.get_env().is_some(), "--{id} has no environment fallback");
        }
    }

    #[test]
    fn help_names_the_state_the_binary_runs_and_version_and_kubeconfig_are_there() {
        let mut rdma = command("rdma-dp", &["state-RDMA-device-plugin"]);
        let help = rdma.render_help().to_string();
        assert!(help.contains("rdma-dp: reconciles state-RDMA-device-plugin of the NicClusterPolicy"), "{help}");
        assert!(help.contains("--kubeconfig") && help.contains("--version"), "{help}");
        assert_eq!(rdma.render_version().trim(), format!("rdma-dp {VERSION}"));
        let aggregator = command("aggregator", &[]).render_help().to_string();
        assert!(aggregator.contains("global status"), "{aggregator}");
    }
}
