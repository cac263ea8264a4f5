//! State `state-OFED`: the NIC driver container on every NIC node, rendered from the policy's
//! `spec.ofedDriver` and the NIC nodes.
//!
//! Nodes are grouped into [`pools`] (OS, OS version, kernel, architecture); each pool gets one
//! driver DaemonSet (`OnDelete`) with a precompiled image when its registry has one ([`images`],
//! tags listed by [`registry`] in the background). Besides its objects the state keeps the
//! `network.nvidia.com/operator.mofed.wait` node label ([`mofed_wait`]) that gates every
//! driver-dependent state; [`controller`] runs both, for the NicClusterPolicy and, on the nodes
//! each selects, for every NicNodePolicy ([`node_policies`]).

pub mod controller;
pub mod images;
pub mod mofed_wait;
pub mod node_policies;
pub mod pod;
pub mod pools;
pub mod registry;
pub mod upgrade;

use api::policy::{OfedDriverSpec, PodProbeSpec};
use api::state::names;
use api::{FieldError, ImageSpec, NicClusterPolicy};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::core::DynamicObject;
use pools::{Pool, pools};
use serde_json::{Value, json};
use state_core::edits::{MOFED_WAIT_LABEL, NIC_PRESENT_LABEL};
use state_core::objects::{self, Kind};
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};
use std::sync::OnceLock;

/// The init container that holds a new driver back until the node is drained (safe driver
/// load), as the original chart enables it by default.
pub const DEFAULT_INIT_CONTAINER_IMAGE: &str = "ghcr.io/mellanox/network-operator-init-container:v0.0.2";
/// Name of the init container's ConfigMap.
pub const INIT_CONFIG_MAP: &str = "ofed-init-container-config";
/// Node annotation the init container sets and waits to be removed (safe driver load).
pub const SAFE_LOAD_ANNOTATION: &str = "nvidia.com/ofed-driver-upgrade.driver-wait-for-safe-load";
/// Label of every driver pod (and DaemonSet).
pub const DRIVER_LABEL: &str = "nvidia.com/ofed-driver";

const MANIFESTS: &[Manifest] = state_core::manifests!(
    "0010-service-account.yaml",
    "0020-cluster-role.yaml",
    "0030-cluster-role-binding.yaml",
    "0040-role.yaml",
    "0050-role-binding.yaml",
);
const DAEMON_SET: &[Manifest] = state_core::manifests!("daemonset.yaml");

/// The shared directory of the driver container and the driver-toolkit sidecar (OpenShift).
pub const DTK_SHARED_DIR: &str = "/mnt/shared-doca-driver-toolkit";

/// How the controller renders beyond the policy: set once at start-up from its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Image of the safe-load init container (`OFED_INIT_CONTAINER_IMAGE`; empty: none).
    pub init_container_image: Option<String>,
    /// On OpenShift, build drivers with the driver toolkit (`USE_DTK`, default true).
    pub use_dtk: bool,
    /// Ask the driver repository's registry which precompiled images it has
    /// (`OFED_PRECOMPILED_LOOKUP`, default true). Off (air-gapped clusters), the controller never
    /// contacts a registry and every pool uses the source image.
    pub precompiled_lookup: bool,
    /// Driver upgrades through the Maintenance Operator (`MAINTENANCE_OPERATOR_ENABLED` and the
    /// other `MAINTENANCE_OPERATOR_*` variables, as the original's); `None`: our own drain.
    pub maintenance: Option<upgrade::maintenance::Requestor>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            init_container_image: Some(DEFAULT_INIT_CONTAINER_IMAGE.to_string()),
            use_dtk: true,
            precompiled_lookup: true,
            maintenance: None,
        }
    }
}

impl Settings {
    /// The settings of the environment variables `OFED_INIT_CONTAINER_IMAGE`, `USE_DTK`,
    /// `OFED_PRECOMPILED_LOOKUP` and `MAINTENANCE_OPERATOR_*`.
    pub fn from_env() -> Self {
        let mut settings = Self::default();
        if let Ok(image) = std::env::var("OFED_INIT_CONTAINER_IMAGE") {
            settings.init_container_image = Some(image.trim().to_string()).filter(|i| !i.is_empty());
        }
        let off = |value: String| matches!(value.trim().to_ascii_lowercase().as_str(), "false" | "0" | "no");
        if let Ok(dtk) = std::env::var("USE_DTK") {
            settings.use_dtk = !off(dtk);
        }
        if let Ok(lookup) = std::env::var("OFED_PRECOMPILED_LOOKUP") {
            settings.precompiled_lookup = !off(lookup);
        }
        settings.maintenance = upgrade::maintenance::Requestor::from_env(|key| std::env::var(key).ok());
        settings
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Sets the settings once, at start-up (before the first render); unset, the defaults.
pub fn configure(settings: Settings) {
    let _ = SETTINGS.set(settings);
}

/// The settings in effect.
pub fn settings() -> &'static Settings {
    SETTINGS.get_or_init(Settings::default)
}

/// The OFED driver state.
pub struct OfedDriver;

impl State for OfedDriver {
    const NAME: &'static str = names::OFED;
    const COMPONENT: &'static str = "ofed";
    const NEEDS_DRIVER: bool = false;
    const NODE_LABELS: &'static [&'static str] = &[
        pools::OS_LABEL,
        pools::OS_VERSION_LABEL,
        pools::KERNEL_LABEL,
        pools::ARCH_LABEL,
        pools::OSTREE_LABEL,
        MOFED_WAIT_LABEL,
    ];
    type Spec = OfedDriverSpec;
    const READS_CONFIG_MAPS: bool = true;
    const NODE_POLICIES: bool = true;
    const SHARED_KINDS: &'static [&'static str] =
        &["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

    /// `mofed-<os><version>-<hash>-<policy>-ds`, as the original names a NicNodePolicy's pools.
    fn scoped_name(name: &str, policy: &str) -> String {
        match name.strip_suffix("-ds") {
            Some(stem) => format!("{stem}-{policy}-ds"),
            None => format!("{name}-{policy}"),
        }
    }

    fn spec(policy: &NicClusterPolicy) -> Option<&OfedDriverSpec> {
        policy.spec.ofed_driver.as_ref()
    }

    fn image(spec: &OfedDriverSpec) -> &ImageSpec {
        &spec.image
    }

    fn field_path() -> &'static str {
        "spec.ofedDriver"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::namespaced::<ServiceAccount>(),
            Kind::cluster::<ClusterRole>(),
            Kind::cluster::<ClusterRoleBinding>(),
            Kind::namespaced::<Role>(),
            Kind::namespaced::<RoleBinding>(),
            Kind::namespaced::<ConfigMap>(),
            Kind::namespaced::<DaemonSet>(),
        ]
    }

    fn referenced_config_maps(spec: &OfedDriverSpec) -> Vec<String> {
        [&spec.cert_config, &spec.repo_config].into_iter().filter_map(named).map(String::from).collect()
    }

    fn render(spec: &OfedDriverSpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        if let Some(error) =
            FieldError::join(api::pod_spec::env("spec.ofedDriver.env", spec.env.as_deref().unwrap_or_default()))
        {
            return Err(error.into());
        }
        if let Some(policy) = &spec.upgrade_policy {
            policy.max_unavailable_of(1)?;
            upgrade::check_selectors(policy)?;
        }
        let (pools, _) = pools(&ctx.observed.nodes, &pools::legacy_daemon_sets(&ctx.observed.owned));
        if pools.is_empty() {
            return Err(RenderError::Waiting(no_pool_reason(ctx)));
        }
        let mut objects =
            render_manifests(MANIFESTS, &json!({"namespace": ctx.namespace, "openshift": ctx.openshift}))?;
        let settings = settings();
        let init_image = settings.init_container_image.as_deref();
        if init_image.is_some() {
            objects.push(init_config_map(spec, ctx.namespace));
        }
        if trusted_ca(ctx) && named(&spec.cert_config).is_none() {
            // No data: OpenShift's injector writes it, and the drift check leaves it alone.
            let mut config_map = objects::to_dynamic(&ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(TRUSTED_CA_CONFIG_MAP.into()),
                    namespace: Some(ctx.namespace.into()),
                    labels: Some(
                        [("config.openshift.io/inject-trusted-cabundle".to_string(), "true".to_string())].into(),
                    ),
                    ..Default::default()
                },
                ..Default::default()
            });
            config_map.data = json!({});
            objects.push(config_map);
        }
        let env = env(spec, &ctx.observed.openshift.proxy);
        let probe = |probe: &Option<PodProbeSpec>, delay: i32, period: i32| {
            let p = probe.clone().unwrap_or(PodProbeSpec { initial_delay_seconds: delay, period_seconds: period });
            json!({"initialDelaySeconds": p.initial_delay_seconds, "periodSeconds": p.period_seconds})
        };
        let probes = json!({
            "startup": probe(&spec.startup_probe, 10, 10),
            "liveness": probe(&spec.liveness_probe, 30, 30),
            "readiness": probe(&spec.readiness_probe, 10, 30),
        });
        for pool in &pools {
            let image = images::choose(spec, pool, &ctx.observed.image_tags, live_image(ctx, pool))?;
            let dtk_image = match ctx.openshift && settings.use_dtk && !image.precompiled {
                true => Some(driver_toolkit_image(pool, ctx)?),
                false => None,
            };
            let (extra_volumes, extra_mounts) = extra_mounts(spec, pool, ctx)?;
            let mut node_selector = node_selector(pool);
            if dtk_image.is_some() {
                node_selector[pools::OSTREE_LABEL] = json!(pool.ostree);
            }
            let values = json!({
                "namespace": ctx.namespace,
                "dtk_shared_dir": DTK_SHARED_DIR,
                "init_container_image": init_image,
                "termination_grace_period_seconds": spec.termination_grace_period_seconds.unwrap_or(300),
                "probes": probes,
                "pool": {
                    "daemon_set": pool.daemon_set(),
                    "app": pool.app(),
                    "kernel": pool.kernel,
                    "image": image.reference,
                    "node_selector": node_selector,
                    "dtk_image": dtk_image,
                    "env": if dtk_image.is_some() { with_dtk(&[("DTK_OCP_DRIVER_BUILD", "true")], &env) } else { env.clone() },
                    "dtk_env": with_dtk(&[], &env),
                    "extra_volumes": extra_volumes,
                    "extra_mounts": extra_mounts,
                },
            });
            objects.extend(render_manifests(DAEMON_SET, &values)?);
        }
        Ok(objects)
    }
}

/// The driver image the live DaemonSet of `pool` runs, if it exists.
pub fn live_image<'a>(ctx: &RenderContext<'a>, pool: &Pool) -> Option<&'a str> {
    live_image_in(&ctx.observed.owned, pool)
}

/// The driver image the DaemonSet of `pool` among `owned` (the state's live objects) runs.
pub fn live_image_in<'a>(owned: &'a [std::sync::Arc<DynamicObject>], pool: &Pool) -> Option<&'a str> {
    let name = pool.daemon_set();
    let daemon_set = owned.iter().find(|o| {
        o.types.as_ref().is_some_and(|t| t.kind == "DaemonSet") && o.metadata.name.as_deref() == Some(name.as_str())
    })?;
    daemon_set.data.pointer("/spec/template/spec/containers/0/image")?.as_str()
}

/// Why there is no pool: no NIC node, or no NIC node with the NFD labels.
fn no_pool_reason(ctx: &RenderContext<'_>) -> String {
    if ctx.observed.nodes.is_empty() {
        format!("no node carries {NIC_PRESENT_LABEL}=true; is NFD installed and are the NICs' nodes labelled?")
    } else {
        format!(
            "no NIC node carries the NFD OS/kernel labels ({}); is NFD installed? Existing driver DaemonSets are left as they are",
            pools::POOL_LABELS.join(", ")
        )
    }
}

/// The pool's nodeSelector: NIC nodes of its OS, version, kernel and architecture (a legacy
/// pool: of every architecture, as the original selected them).
fn node_selector(pool: &Pool) -> Value {
    let mut selector = json!({
        NIC_PRESENT_LABEL: "true",
        pools::OS_LABEL: pool.os,
        pools::OS_VERSION_LABEL: pool.os_version,
        pools::KERNEL_LABEL: pool.kernel,
    });
    if !pool.legacy {
        selector[pools::ARCH_LABEL] = json!(pool.arch);
    }
    selector
}

/// `DTK_OCP_NIC_SHARED_DIR` and `first`, then `env`.
fn with_dtk(first: &[(&str, &str)], env: &[EnvVar]) -> Vec<EnvVar> {
    let var = |name: &str, value: &str| EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() };
    let mut out: Vec<EnvVar> = first.iter().map(|(n, v)| var(n, v)).collect();
    out.push(var("DTK_OCP_NIC_SHARED_DIR", DTK_SHARED_DIR));
    out.extend(env.iter().cloned());
    out
}

/// The driver-toolkit image of an RHCOS pool (OpenShift builds drivers with it).
fn driver_toolkit_image(pool: &Pool, ctx: &RenderContext<'_>) -> Result<String, RenderError> {
    let Some(ostree) = &pool.ostree else {
        return Err(RenderError::Waiting(format!(
            "pool {} needs the NFD label {} to pick its driver-toolkit image",
            pool.daemon_set(),
            pools::OSTREE_LABEL
        )));
    };
    ctx.observed.openshift.driver_toolkit.get(ostree).cloned().ok_or_else(|| {
        RenderError::Waiting(format!(
            "no driver-toolkit image for RHCOS {ostree} in ImageStream openshift/driver-toolkit"
        ))
    })
}

/// The driver container's environment: the user's; then, on OpenShift, the cluster-wide proxy
/// (upper- and lower-case) unless the user set it; then the defaults the user did not set.
fn env(spec: &OfedDriverSpec, proxy: &[(String, String)]) -> Vec<EnvVar> {
    let mut env = spec.env.clone().unwrap_or_default();
    let user_set = |name: &str, env: &[EnvVar]| env.iter().any(|e| e.name.eq_ignore_ascii_case(name));
    for (name, value) in proxy {
        if !value.is_empty() && !user_set(name, &env) {
            for name in [name.to_ascii_uppercase(), name.to_ascii_lowercase()] {
                env.push(EnvVar { name, value: Some(value.clone()), ..Default::default() });
            }
        }
    }
    for (name, value) in
        [("CREATE_IFNAMES_UDEV", "true"), ("NVIDIA_NIC_DRIVERS_INVENTORY_PATH", "/mnt/drivers-inventory")]
    {
        if !env.iter().any(|e| e.name == name) {
            env.push(EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() });
        }
    }
    env
}

/// The init container's ConfigMap: whether safe driver load is on, and its node annotation.
fn init_config_map(spec: &OfedDriverSpec, namespace: &str) -> DynamicObject {
    let policy = spec.upgrade_policy.as_ref();
    let enable = policy.is_some_and(|p| p.auto_upgrade == Some(true) && p.safe_load == Some(true));
    // Laid out as the original writes it, so a takeover leaves the ConfigMap as it is.
    let config = format!(
        "{{\n  \"safeDriverLoad\": {{\n    \"enable\": {enable},\n    \"annotation\": \"{SAFE_LOAD_ANNOTATION}\"\n  }}\n}}"
    );
    objects::config_map(INIT_CONFIG_MAP, namespace, "config.json", &config)
}

/// The ConfigMap a certConfig or repoConfig names, if it names one.
fn named(reference: &Option<api::policy::ConfigMapNameReference>) -> Option<&str> {
    reference.as_ref().and_then(|r| r.name.as_deref()).filter(|name| !name.is_empty())
}

/// The ConfigMap OpenShift fills with the cluster proxy's CA bundle (label
/// `config.openshift.io/inject-trusted-cabundle`), used as certConfig when none is set.
pub const TRUSTED_CA_CONFIG_MAP: &str = "ocp-network-operator-trusted-ca";

/// On OpenShift with a proxy CA (`Proxy/cluster` `spec.trustedCA`), the CA is mounted as the
/// certConfig unless the policy names one.
fn trusted_ca(ctx: &RenderContext<'_>) -> bool {
    ctx.openshift && ctx.observed.openshift.trusted_ca
}

/// Volumes and mounts beyond the fixed ones: the certConfig and repoConfig files (each key
/// mounted by itself, so the directory's other files stay), and the RHEL subscription.
fn extra_mounts(
    spec: &OfedDriverSpec,
    pool: &Pool,
    ctx: &RenderContext<'_>,
) -> Result<(Vec<Value>, Vec<Value>), FieldError> {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (field, volume, reference) in
        [("certConfig", "cert-config", &spec.cert_config), ("repoConfig", "repo-config", &spec.repo_config)]
    {
        let path = format!("spec.ofedDriver.{field}.name");
        let (name, keys): (&str, Vec<String>) = match named(reference) {
            Some(name) => {
                api::pod_spec::object_name(&path, name)?;
                let config_map = ctx.observed.config_maps.get(name).ok_or_else(|| {
                    FieldError::new(&path, format!("ConfigMap {name} does not exist in namespace {}", ctx.namespace))
                })?;
                (name, config_map.data.iter().flatten().map(|(k, _)| k.clone()).collect())
            }
            // OpenShift with a proxy CA and no certConfig: the CA OpenShift injects.
            None if field == "certConfig" && trusted_ca(ctx) => {
                (TRUSTED_CA_CONFIG_MAP, vec!["ca-bundle.crt".to_string()])
            }
            None => continue,
        };
        let dir = match (field, pool.os.as_str()) {
            ("certConfig", "ubuntu") => "/etc/ssl/certs",
            ("certConfig", "rhel" | "rhcos") => "/etc/pki/ca-trust/extracted/pem",
            ("repoConfig", "ubuntu") => "/etc/apt/sources.list.d",
            ("repoConfig", "rhel" | "rhcos") => "/etc/yum.repos.d",
            (_, os) => {
                return Err(FieldError::new(
                    &path,
                    format!(
                        "{field} is supported on ubuntu, rhel and rhcos nodes; pool {} runs {os}",
                        pool.daemon_set()
                    ),
                ));
            }
        };
        let file = |key: &str| {
            if name == TRUSTED_CA_CONFIG_MAP && key == "ca-bundle.crt" {
                "tls-ca-bundle.pem".to_string()
            } else {
                key.to_string()
            }
        };
        let items: Vec<Value> = keys.iter().map(|k| json!({"key": k, "path": file(k)})).collect();
        // The volume is named after its ConfigMap, as the original names it, unless both fields
        // name the same ConfigMap or the name is not a volume name (a DNS label: no '.', at
        // most 63 characters), which the API server would refuse.
        let taken = volumes.iter().any(|v: &Value| v["name"] == name);
        let label = name.len() <= 63 && !name.contains('.');
        let volume = match (label, taken) {
            (true, false) => name.to_string(),
            (true, true) if name.len() + volume.len() < 63 => format!("{name}-{volume}"),
            _ => volume.to_string(),
        };
        volumes.push(json!({"name": volume, "configMap": {"name": name, "items": items}}));
        for key in &keys {
            let file = file(key);
            mounts
                .push(json!({"name": volume, "mountPath": format!("{dir}/{file}"), "subPath": file, "readOnly": true}));
        }
    }
    if pool.os == "rhel" && pool.runtime != "cri-o" {
        let subscription = [
            ("/run/secrets/etc-pki-entitlement", "/etc/pki/entitlement", "Directory"),
            ("/run/secrets/redhat.repo", "/etc/yum.repos.d/redhat.repo", "File"),
            ("/run/secrets/rhsm", "/etc/rhsm", "Directory"),
        ];
        for (i, (mount, host, kind)) in subscription.into_iter().enumerate() {
            let name = format!("subscription-config-{i}");
            volumes.push(json!({"name": name, "hostPath": {"path": host, "type": kind}}));
            mounts.push(json!({"name": name, "mountPath": mount, "readOnly": true}));
        }
    }
    Ok((volumes, mounts))
}

/// The RBAC rules of the OFED controller: the state's own (its objects, and what its
/// ClusterRole grants the driver, rendered for `sample` on a sample NIC node), the nodes it
/// labels, the driver pods it watches, and the pull secrets it reads to list image tags.
pub fn rbac(sample: &NicClusterPolicy) -> state_core::rbac::ControllerRbac {
    use state_core::rbac::READ_VERBS;
    let node: k8s_openapi::api::core::v1::Node =
        serde_json::from_value(json!({"metadata": {"name": "sample", "labels": {
        NIC_PRESENT_LABEL: "true", pools::OS_LABEL: "ubuntu", pools::OS_VERSION_LABEL: "22.04",
        pools::KERNEL_LABEL: "5.15.0-78-generic", pools::ARCH_LABEL: "amd64"}}}))
        .unwrap_or_default();
    let node = state_core::nodes::facts(node, None);
    let mut cluster = state_core::Observed { nodes: vec![std::sync::Arc::new(node)], ..Default::default() };
    for name in OfedDriver::spec(sample).map(OfedDriver::referenced_config_maps).unwrap_or_default() {
        let config_map = ConfigMap {
            metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
            ..Default::default()
        };
        cluster.config_maps.insert(name, config_map);
    }
    let mut rbac = state_core::rbac::state_rbac::<OfedDriver>(sample, &cluster);
    rbac.cluster.allow_every(
        "",
        "nodes",
        &["get", "list", "watch", "patch"],
        "labels its NIC nodes (mofed.wait, the upgrade state) and cordons them during driver upgrades; \
         it patches only nodes of its driver pools, and only those labels and spec.unschedulable",
    );
    // OpenShift: the driver-toolkit images and the cluster-wide proxy.
    rbac.cluster.allow("image.openshift.io", "imagestreams", &["get"]).allow(
        "config.openshift.io",
        "proxies",
        &["get"],
    );
    rbac.operands.allow("", "pods", &READ_VERBS).allow("", "secrets", &["get"]);
    // Upgrades: replace outdated driver pods, read their DaemonSets' template revisions; list
    // and evict workload pods of any namespace (waitForCompletion, drain); Events on nodes.
    rbac.operands.allow_every(
        "",
        "pods",
        &["delete"],
        "deletes the outdated driver pods of its own DaemonSets (updateStrategy OnDelete), one upgrade slot at a time",
    );
    rbac.operands.allow("apps", "controllerrevisions", &["list"]);
    rbac.cluster.allow("", "pods", &["list"]).allow_every(
        "",
        "pods/eviction",
        &["create"],
        "drains a node before its driver is replaced, only when upgradePolicy.drainSpec.enable is set, \
         through the Eviction API (PodDisruptionBudgets hold)",
    );
    rbac.cluster.allow_every(
        "maintenance.nvidia.com",
        "nodemaintenances",
        &["get", "list", "watch", "create", "patch", "delete"],
        "only with MAINTENANCE_OPERATOR_ENABLED (operator.maintenanceOperator.useRequestor): requests a \
         NodeMaintenance per upgrading node in the requestor namespace (default \"default\", so not restricted to \
         one namespace) and releases it: deletes only those with its own requestorID, else removes itself from \
         additionalRequestors",
    );
    rbac.cluster.allow_every(
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "records Events on the nodes it upgrades; Event names are generated, so they cannot be listed",
    );
    rbac
}
