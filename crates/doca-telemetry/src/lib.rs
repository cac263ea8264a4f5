//! State `state-doca-telemetry-service`: the DOCA telemetry service, rendered from the policy's
//! `spec.docaTelemetryService`, exporting NIC counters for Prometheus.
//!
//! Objects: ServiceAccount `doca-telemetry-service`, DaemonSet `doca-telemetry-service` on NIC
//! nodes (after the driver when the policy deploys OFED), the default ConfigMap
//! `doca-telemetry-service` when the section names none, and on OpenShift a Role and RoleBinding
//! for the privileged SCC. A ConfigMap the section names (`config.fromConfigMap`) is the user's:
//! it must exist (until it does the state is `notReady`), and it is never owned, changed or
//! deleted.

use api::policy::DocaTelemetryServiceSpec;
use api::state::names;
use api::{FieldError, ImageSpec, NicClusterPolicy};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::DynamicObject;
use serde_json::json;
use state_core::objects::{self, Kind};
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};

/// Name of the default ConfigMap.
pub const DEFAULT_CONFIG_MAP: &str = "doca-telemetry-service";
/// The key the service reads its configuration from.
pub const CONFIG_KEY: &str = "dts_config_map.ini";
/// The default configuration: the sysfs, pod-resources, ethtool and ifconfig providers,
/// exported for Prometheus on port 9189.
pub const DEFAULT_CONFIG: &str = include_str!("../manifests/dts_config_map.ini");

const MANIFESTS: &[Manifest] = state_core::manifests!(
    "0010-service-account.yaml",
    "0020-role.yaml",
    "0030-role-binding.yaml",
    "0040-daemonset.yaml",
);

/// The DOCA telemetry service state.
pub struct DocaTelemetry;

/// The policy field naming the user's ConfigMap.
const FROM_CONFIG_MAP: &str = "spec.docaTelemetryService.config.fromConfigMap";

/// The user's ConfigMap the section names, if it names one (empty counts as none).
fn from_config_map(spec: &DocaTelemetryServiceSpec) -> Option<&str> {
    spec.config.as_ref()?.from_config_map.as_deref().filter(|name| !name.is_empty())
}

impl State for DocaTelemetry {
    const NAME: &'static str = names::DOCA_TELEMETRY;
    const COMPONENT: &'static str = "doca-telemetry";
    const NEEDS_DRIVER: bool = true;
    type Spec = DocaTelemetryServiceSpec;
    const READS_CONFIG_MAPS: bool = true;

    fn spec(policy: &NicClusterPolicy) -> Option<&DocaTelemetryServiceSpec> {
        policy.spec.doca_telemetry_service.as_ref()
    }

    fn image(spec: &DocaTelemetryServiceSpec) -> &ImageSpec {
        &spec.image
    }

    fn field_path() -> &'static str {
        "spec.docaTelemetryService"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::namespaced::<ServiceAccount>(),
            Kind::namespaced::<Role>(),
            Kind::namespaced::<RoleBinding>(),
            Kind::namespaced::<ConfigMap>(),
            Kind::namespaced::<DaemonSet>(),
        ]
    }

    fn referenced_config_maps(spec: &DocaTelemetryServiceSpec) -> Vec<String> {
        from_config_map(spec).map(String::from).into_iter().collect()
    }

    fn render(spec: &DocaTelemetryServiceSpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        let config_map = match (&spec.config, from_config_map(spec)) {
            (None, _) => DEFAULT_CONFIG_MAP,
            (Some(_), None) => {
                return Err(FieldError::new(
                    FROM_CONFIG_MAP,
                    "required when config is set: the name of a ConfigMap in the operands' namespace (or remove config for the default)",
                )
                .into());
            }
            (Some(_), Some(name)) => {
                api::pod_spec::object_name(FROM_CONFIG_MAP, name)?;
                if !ctx.observed.config_maps.contains_key(name) {
                    return Err(RenderError::Waiting(format!(
                        "ConfigMap {}/{name} named by {FROM_CONFIG_MAP} does not exist",
                        ctx.namespace
                    )));
                }
                name
            }
        };
        let values = json!({
            "namespace": ctx.namespace,
            "openshift": ctx.openshift,
            "image": spec.image.reference(),
            "config_map": config_map,
        });
        let mut rendered = render_manifests(MANIFESTS, &values)?;
        if spec.config.is_none() {
            let at = rendered.len().saturating_sub(1);
            rendered.insert(at, objects::config_map(DEFAULT_CONFIG_MAP, ctx.namespace, CONFIG_KEY, DEFAULT_CONFIG));
        }
        Ok(rendered)
    }
}
