//! State `state-nv-ipam-cni`: NVIDIA IPAM, which hands out IP addresses from per-node blocks of
//! its pools, rendered from the policy's `spec.nvIpam`.
//!
//! Objects: ServiceAccounts, ClusterRoles and ClusterRoleBindings `nv-ipam-node` and
//! `nv-ipam-controller`, the Deployment `nv-ipam-controller` (two replicas, preferring the
//! control plane), the DaemonSet `nv-ipam-node` on every node and, on OpenShift, a Role and
//! RoleBinding for the node agent's privileged SCC. With `enableWebhook`: the Service
//! `nv-ipam-webhook-service`, the ValidatingWebhookConfiguration of the pools and the serving
//! certificate, issued by cert-manager (Issuer and Certificate) on Kubernetes and by the service
//! CA on OpenShift.
//!
//! Unlike the original:
//! - the pools' CRDs (`IPPool`, `CIDRPool`) are never rendered, owned or deleted: they ship in
//!   `crds/` and the chart ([`api::nv_ipam`]), so removing the section or the policy never
//!   deletes a pool;
//! - the webhook on Kubernetes without cert-manager's API is `notReady` with a message saying
//!   cert-manager is needed, and nothing is applied (the original failed with an opaque error
//!   creating the Issuer, after applying the rest);
//! - the state is ready only once the controller Deployment is Available too (the original only
//!   checked that it exists).
//!
//! As the original does, the controller releases the ConfigMap `nvidia-k8s-ipam-config` of
//! older releases once at start-up (the IPAM controller turns it into pools): it loses the state
//! label and the policy's owner reference, so it is never pruned nor garbage-collected.

use api::cert_manager::{Certificate, Issuer};
use api::policy::NvIpamSpec;
use api::state::names;
use api::{ImageSpec, NicClusterPolicy};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::core::DynamicObject;
use serde_json::json;
use state_core::leftovers::Leftover;
use state_core::objects::Kind;
use state_core::template::{Manifest, render_manifests};
use state_core::{RenderContext, RenderError, State};

/// The ConfigMap older releases configured the IPAM with; released at start-up, never pruned.
pub const OLD_CONFIG_MAP: &str = "nvidia-k8s-ipam-config";

/// The NVIDIA IPAM pool CRDs (shipped in `crds/`; the original operator rendered them).
pub const POOL_CRDS: [&str; 2] = ["ippools.nv-ipam.nvidia.com", "cidrpools.nv-ipam.nvidia.com"];
/// The Service in front of the IPAM controller's webhook.
pub const WEBHOOK_SERVICE: &str = "nv-ipam-webhook-service";
/// The Certificate cert-manager issues for the webhook.
pub const CERTIFICATE: &str = "nv-ipam-serving-cert";

const MANIFESTS: &[Manifest] = state_core::manifests!(
    "0010-service-account.yaml",
    "0020-cluster-role.yaml",
    "0030-cluster-role-binding.yaml",
    "0040-role.yaml",
    "0050-role-binding.yaml",
    "0060-cert-manager.yaml",
    "0070-webhook-service.yaml",
    "0080-webhook.yaml",
    "0090-controller.yaml",
    "0100-node.yaml",
);

/// The NVIDIA IPAM state.
pub struct NvIpam;

/// cert-manager's Issuer, an API the cluster may not have.
pub fn issuer_kind() -> Kind {
    Kind::namespaced::<Issuer>().optional()
}

/// cert-manager's Certificate, an API the cluster may not have.
pub fn certificate_kind() -> Kind {
    Kind::namespaced::<Certificate>().optional()
}

impl State for NvIpam {
    const NAME: &'static str = names::NV_IPAM;
    const COMPONENT: &'static str = "nv-ipam";
    const NEEDS_DRIVER: bool = false;
    type Spec = NvIpamSpec;

    fn spec(policy: &NicClusterPolicy) -> Option<&NvIpamSpec> {
        policy.spec.nv_ipam.as_ref()
    }

    fn image(spec: &NvIpamSpec) -> &ImageSpec {
        &spec.image
    }

    fn field_path() -> &'static str {
        "spec.nvIpam"
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::namespaced::<ServiceAccount>(),
            Kind::cluster::<ClusterRole>(),
            Kind::cluster::<ClusterRoleBinding>(),
            Kind::namespaced::<Role>(),
            Kind::namespaced::<RoleBinding>(),
            issuer_kind(),
            certificate_kind(),
            Kind::namespaced::<Service>(),
            Kind::cluster::<ValidatingWebhookConfiguration>(),
            Kind::namespaced::<Deployment>(),
            Kind::namespaced::<DaemonSet>(),
        ]
    }

    /// The ConfigMap of older releases, and the pool CRDs the original operator rendered
    /// (owned by the policy): released, so deleting the policy deletes no pool.
    fn released() -> Vec<Leftover> {
        let crds = POOL_CRDS.into_iter().map(Leftover::crd);
        std::iter::once(Leftover { kind: Kind::namespaced::<ConfigMap>(), name: OLD_CONFIG_MAP }).chain(crds).collect()
    }

    fn render(spec: &NvIpamSpec, ctx: &RenderContext<'_>) -> Result<Vec<DynamicObject>, RenderError> {
        let webhook = spec.enable_webhook.unwrap_or(false);
        if webhook && !ctx.openshift && !(ctx.serves(&issuer_kind()) && ctx.serves(&certificate_kind())) {
            return Err(RenderError::Waiting(format!(
                "{}.enableWebhook: the webhook's serving certificate needs cert-manager (cert-manager.io/v1 Issuer \
                 and Certificate), which this cluster does not serve; install cert-manager, or set enableWebhook \
                 to false",
                Self::field_path()
            )));
        }
        let namespace = ctx.namespace;
        let pool = |kind: &str, resource: &str| {
            json!({
                "name": format!("validate-{kind}.nv-ipam.nvidia.com"),
                "path": format!("/validate-nv-ipam-nvidia-com-v1alpha1-{kind}"),
                "resource": resource,
            })
        };
        let values = json!({
            "namespace": namespace,
            "openshift": ctx.openshift,
            "image": spec.image.reference(),
            "cni_bin_dir": ctx.cni_bin_dir(),
            "webhook": webhook,
            "dns_names": [
                format!("{WEBHOOK_SERVICE}.{namespace}.svc"),
                format!("{WEBHOOK_SERVICE}.{namespace}.svc.cluster.local"),
            ],
            "ca_from": format!("{namespace}/{CERTIFICATE}"),
            "pools": [pool("ippool", "ippools"), pool("cidrpool", "cidrpools")],
        });
        render_manifests(MANIFESTS, &values)
    }
}
