//! State `state-nic-configuration-operator`: the NIC configuration operator, rendered from the
//! policy's `spec.nicConfigurationOperator`: it applies NIC firmware and firmware settings
//! (the `configuration.net.nvidia.com` templates) node by node, through its daemon on the NIC
//! nodes.
//!
//! Objects: ServiceAccount, ClusterRole and ClusterRoleBinding `nic-configuration-operator`,
//! the ConfigMap `nic-configuration-operator-supported-nic-firmware`, the Deployment
//! `nic-configuration-operator`, the DaemonSet `nic-configuration-daemon` on the NIC nodes
//! (after the driver when the policy deploys OFED) and, on OpenShift, a Role and RoleBinding for
//! the privileged SCC. With `nicFirmwareStorage`, both mount the PVC `pvcName` (the operator
//! read-write, the daemons read-only); with `create` (the default) the controller creates it.
//!
//! The controller also keeps the `network.nvidia.com/operator.nic-configuration.wait` node
//! label while the section is absent, as the original does ([`wait_label`]).
//!
//! Unlike the original:
//! - the firmware-storage PVC is created when missing and then never changed, owned or deleted
//!   (it holds the user's firmware files; [`State::KEPT_KINDS`]): removing the section or the
//!   policy keeps it, and one the original created is released;
//! - the five CRDs are never rendered, owned or deleted: they ship in `crds/` and the chart
//!   ([`api::nic_configuration`]); those the original created are released at start-up.

use api::policy::{NicConfigurationOperatorSpec, NicFirmwareStorageSpec};
use api::state::names;
use api::{FieldError, ImageSpec, NicClusterPolicy};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use state_core::leftovers::Leftover;
use state_core::objects::Kind;
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};

pub mod wait_label;

/// The CRDs the original operator rendered with this state.
pub const CRDS: [&str; 5] = [
    "nicconfigurationtemplates.configuration.net.nvidia.com",
    "nicdevices.configuration.net.nvidia.com",
    "nicfirmwaresources.configuration.net.nvidia.com",
    "nicfirmwaretemplates.configuration.net.nvidia.com",
    "nicinterfacenametemplates.configuration.net.nvidia.com",
];

/// The label of the daemon's pods.
pub const DAEMON_POD_LABEL: &str = "nvidia.com/nic-configuration-daemon";

/// The firmware each NIC model supports (the data of the ConfigMap).
const SUPPORTED_FIRMWARE: &str = include_str!("../manifests/supported-nic-firmware.txt");

const MANIFESTS: &[Manifest] = state_core::manifests!(
    "0010-service-account.yaml",
    "0020-cluster-role.yaml",
    "0030-cluster-role-binding.yaml",
    "0040-role.yaml",
    "0050-role-binding.yaml",
    "0060-supported-nic-firmware.yaml",
    "0070-firmware-storage.yaml",
    "0080-operator.yaml",
    "0090-configuration-daemon.yaml",
);

/// The NIC configuration operator state.
pub struct NicConfiguration;

/// The ConfigMap's data: one key per NIC model and release.
fn supported_firmware() -> serde_json::Map<String, Value> {
    SUPPORTED_FIRMWARE
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split_once(' '))
        .map(|(key, value)| (key.to_string(), Value::String(value.to_string())))
        .collect()
}

/// The template values of `nicFirmwareStorage`, its fields checked.
fn storage(spec: &NicFirmwareStorageSpec) -> Result<Value, FieldError> {
    const FIELD: &str = "spec.nicConfigurationOperator.nicFirmwareStorage";
    let pvc_name = spec.pvc_name();
    api::pod_spec::object_name(&format!("{FIELD}.pvcName"), pvc_name)?;
    let size = spec.available_storage_size();
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].contains(&unit)
    {
        return Err(FieldError::new(
            format!("{FIELD}.availableStorageSize"),
            format!("{size:?} is not a size such as 1Gi (digits, then Ki, Mi, Gi, Ti, Pi or Ei)"),
        ));
    }
    Ok(json!({
        "create": spec.create(),
        "pvc_name": pvc_name,
        "storage_class_name": spec.storage_class_name.as_deref().unwrap_or_default(),
        "size": size,
    }))
}

impl State for NicConfiguration {
    const NAME: &'static str = names::NIC_CONFIGURATION;
    const COMPONENT: &'static str = "nic-configuration";
    const NEEDS_DRIVER: bool = true;
    type Spec = NicConfigurationOperatorSpec;
    const KEPT_KINDS: &'static [&'static str] = &["PersistentVolumeClaim"];

    fn spec(policy: &NicClusterPolicy) -> Option<&NicConfigurationOperatorSpec> {
        policy.spec.nic_configuration_operator.as_ref()
    }

    fn image(spec: &NicConfigurationOperatorSpec) -> &ImageSpec {
        &spec.operator
    }

    fn images(spec: &NicConfigurationOperatorSpec) -> Vec<(String, &ImageSpec)> {
        vec![
            (format!("{}.operator", Self::field_path()), &spec.operator),
            (format!("{}.configurationDaemon", Self::field_path()), &spec.configuration_daemon),
        ]
    }

    fn field_path() -> &'static str {
        "spec.nicConfigurationOperator"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::namespaced::<ServiceAccount>(),
            Kind::cluster::<ClusterRole>(),
            Kind::cluster::<ClusterRoleBinding>(),
            Kind::namespaced::<Role>(),
            Kind::namespaced::<RoleBinding>(),
            Kind::namespaced::<ConfigMap>(),
            Kind::namespaced::<PersistentVolumeClaim>(),
            Kind::namespaced::<Deployment>(),
            Kind::namespaced::<DaemonSet>(),
        ]
    }

    /// The CRDs the original rendered (owned by the policy): released, so deleting the policy
    /// deletes no template and no NicDevice.
    fn released() -> Vec<Leftover> {
        CRDS.into_iter().map(Leftover::crd).collect()
    }

    fn render(spec: &NicConfigurationOperatorSpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        if !["info", "debug"].contains(&spec.log_level()) {
            let field = format!("{}.logLevel", Self::field_path());
            return Err(FieldError::new(field, format!("{:?} is neither info nor debug", spec.log_level())).into());
        }
        let storage = spec.nic_firmware_storage.as_ref().map(storage).transpose()?;
        let mut env = vec![json!({"name": "LOG_LEVEL", "value": spec.log_level()})];
        env.extend(spec.env.iter().flatten().map(|var| json!(var)));
        let values = json!({
            "namespace": ctx.namespace,
            "openshift": ctx.openshift,
            "operator_image": spec.operator.reference(),
            "daemon_image": spec.configuration_daemon.reference(),
            "env": env,
            "storage": storage,
            "supported_firmware": supported_firmware(),
        });
        render_manifests(MANIFESTS, &values)
    }
}

/// The controller's body: the state, and the wait label ([`wait_label`]), until shutdown.
pub async fn controller(process: state_core::run::Process) {
    let labels = wait_label::run(process.client.clone(), process.flags.namespace.clone());
    tokio::select! {
        () = state_core::run::state_body::<NicConfiguration>(process) => {}
        () = labels => {}
    }
}

/// The controller's RBAC: the state's ([`state_core::rbac::state_rbac`]), the nodes' wait
/// label and the daemon's pods.
pub fn rbac(sample: &NicClusterPolicy) -> state_core::rbac::ControllerRbac {
    let mut rbac = state_core::rbac::state_rbac::<NicConfiguration>(sample, &Default::default());
    rbac.cluster.allow_every(
        "",
        "nodes",
        &["get", "list", "watch", "patch"],
        "keeps the network.nvidia.com/operator.nic-configuration.wait label of the nodes while the policy has no \
         nicConfigurationOperator; it patches only that label",
    );
    rbac.operands.allow("", "pods", &state_core::rbac::READ_VERBS);
    rbac
}
