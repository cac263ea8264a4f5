//! State `state-multus-cni`: Multus CNI, the meta-plugin that attaches pods to secondary
//! networks, rendered from the policy's `spec.secondaryNetwork.multus`.
//!
//! Objects: ClusterRole, ServiceAccount and ClusterRoleBinding `multus`, DaemonSet
//! `kube-multus-ds` on every node (not only NIC nodes) mounting the nodes' CNI configuration and
//! binary directories and, when `config` is set, ConfigMap `multus-cni-config` with that
//! configuration (key `cni-conf.json`, mounted as `00-multus.conf`).
//!
//! Unlike the original, an empty `config` (as in every upstream example) counts as not set:
//! Multus then generates its configuration from the node's first CNI configuration (`auto`),
//! where the original wrote an empty configuration to every node and broke their networking. A
//! set `config` must be a JSON object (else `error` naming the field), and a change of it rolls
//! the pods (the pod template carries its hash).

use api::policy::MultusSpec;
use api::state::names;
use api::{FieldError, ImageSpec, NicClusterPolicy};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::core::DynamicObject;
use serde_json::json;
use state_core::objects::{self, Kind};
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};

/// Name of the ConfigMap holding an explicit Multus configuration.
pub const CONFIG_MAP: &str = "multus-cni-config";
/// The ConfigMap's key holding the configuration.
pub const CONFIG_KEY: &str = "cni-conf.json";

const MANIFESTS: &[Manifest] = state_core::manifests!(
    "0010-cluster-role.yaml",
    "0020-service-account.yaml",
    "0030-cluster-role-binding.yaml",
    "0050-daemonset.yaml",
);

/// The Multus CNI state.
pub struct Multus;

/// The explicit configuration: `None` when `config` is missing or blank (Multus generates one);
/// otherwise it must be a JSON object that fits in a ConfigMap.
pub fn config(spec: &MultusSpec) -> Result<Option<&str>, FieldError> {
    let field = format!("{}.config", Multus::field_path());
    let Some(config) = objects::non_empty(spec.config.as_ref()) else {
        return Ok(None);
    };
    objects::check_fits_config_map(&field, config)?;
    match api::json::is_object(config) {
        Ok(true) => Ok(Some(config)),
        Ok(_) => Err(FieldError::new(field, "must be a JSON object (a Multus CNI configuration), or empty for auto")),
        Err(e) => Err(FieldError::new(field, format!("invalid JSON: {e}"))),
    }
}

impl State for Multus {
    const NAME: &'static str = names::MULTUS;
    const COMPONENT: &'static str = "multus";
    const NEEDS_DRIVER: bool = false;
    type Spec = MultusSpec;

    fn spec(policy: &NicClusterPolicy) -> Option<&MultusSpec> {
        policy.spec.secondary_network.as_ref()?.multus.as_ref()
    }

    fn image(spec: &MultusSpec) -> &ImageSpec {
        &spec.image
    }

    fn field_path() -> &'static str {
        "spec.secondaryNetwork.multus"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::cluster::<ClusterRole>(),
            Kind::namespaced::<ServiceAccount>(),
            Kind::cluster::<ClusterRoleBinding>(),
            Kind::namespaced::<ConfigMap>(),
            Kind::namespaced::<DaemonSet>(),
        ]
    }

    fn render(spec: &MultusSpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        let config = config(spec)?;
        let values = json!({
            "namespace": ctx.namespace,
            "image": spec.image.reference(),
            "cni_bin_dir": ctx.cni_bin_dir(),
            "config_hash": config.map(objects::hash),
        });
        let mut rendered = render_manifests(MANIFESTS, &values)?;
        if let Some(config) = config {
            let mut config_map = objects::config_map(CONFIG_MAP, ctx.namespace, CONFIG_KEY, config);
            config_map.metadata.labels =
                Some([("tier", "node"), ("app", "multus")].map(|(k, v)| (k.into(), v.into())).into());
            // The ConfigMap goes right before the DaemonSet that mounts it.
            let at = rendered.len().saturating_sub(1);
            rendered.insert(at, config_map);
        }
        Ok(rendered)
    }
}
