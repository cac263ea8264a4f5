//! Every rule a NicClusterPolicy must follow that the CRD schema cannot express, found by the
//! same code the controllers run: `api::validate::policy` and each compiled-in state's render
//! (device-plugin configs, `containerResources`, ...), on a sample cluster (one NIC node with
//! the NFD labels, the ConfigMaps the policy names). A rule therefore exists once: the webhook
//! refuses at apply time exactly what a controller would report as `error`.

use crate::review::Cluster;
use api::node_policy::{self, NicNodePolicy};
use api::{FieldError, NicClusterPolicy};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::ResourceExt;
use state_core::{Observed, RenderContext, RenderError, State, render_state};
use std::sync::Arc;

/// Every finding of `policy`, each with its field path, without duplicates.
pub fn findings(policy: &NicClusterPolicy) -> Vec<FieldError> {
    let observed = sample_cluster(policy);
    let ctx = RenderContext { namespace: "nvidia-network-operator", openshift: false, policy, observed: &observed };
    let mut found = api::validate::policy(policy);
    found.extend(invalid::<ofed::OfedDriver>(&ctx));
    found.extend(invalid::<rdma_dp::RdmaDevicePlugin>(&ctx));
    found.extend(invalid::<sriov_dp::SriovDevicePlugin>(&ctx));
    found.extend(invalid::<ib_kubernetes::IbKubernetes>(&ctx));
    found.extend(invalid::<nic_feature_discovery::NicFeatureDiscovery>(&ctx));
    found.extend(invalid::<doca_telemetry::DocaTelemetry>(&ctx));
    found.extend(invalid::<multus::Multus>(&ctx));
    found.extend(invalid::<cni_plugins::CniPlugins>(&ctx));
    found.extend(invalid::<ipoib::IpoibCni>(&ctx));
    found.extend(invalid::<whereabouts::Whereabouts>(&ctx));
    found.extend(invalid::<nv_ipam::NvIpam>(&ctx));
    found.extend(invalid::<nic_configuration::NicConfiguration>(&ctx));
    found.extend(invalid::<spectrum_x::SpectrumX>(&ctx));
    let mut unique = Vec::with_capacity(found.len());
    for finding in found {
        if !unique.contains(&finding) {
            unique.push(finding);
        }
    }
    unique
}

/// A NicClusterPolicy's sections that NicNodePolicies of `cluster` already hold: a section
/// lives in one kind only.
pub fn shared_with_node_policies(policy: &NicClusterPolicy, cluster: &Cluster) -> Vec<FieldError> {
    cluster
        .node_policies
        .iter()
        .flat_map(|node_policy| {
            node_policy::section_conflicts(node_policy, Some(policy)).into_iter().map(|conflict| {
                FieldError::new(
                    conflict.path,
                    format!(
                        "also set in NicNodePolicy {}: a section lives in the NicClusterPolicy or in NicNodePolicies, not both",
                        node_policy.name_any()
                    ),
                )
            })
        })
        .collect()
}

/// Every finding of the NicNodePolicy `policy` in `cluster`: its own fields, a section the
/// NicClusterPolicy holds, nodes another NicNodePolicy selects, and what the states' renders
/// find (as the controllers render it).
pub fn node_policy_findings(policy: &NicNodePolicy, cluster: &Cluster) -> Vec<FieldError> {
    let mut found = node_policy::validate(policy);
    found.extend(node_policy::section_conflicts(policy, cluster.cluster_policy.as_deref()));
    let others = cluster.node_policies.iter().map(AsRef::as_ref);
    found.extend(node_policy::overlap_error(&node_policy::shared_nodes(policy, others, &cluster.nodes)));
    let view = policy.view(None);
    let observed = sample_cluster(&view);
    let ctx =
        RenderContext { namespace: "nvidia-network-operator", openshift: false, policy: &view, observed: &observed };
    let scope = state_core::scope::Scope::Node(policy);
    found.extend(invalid_in_scope::<ofed::OfedDriver>(&ctx, &scope));
    found.extend(invalid_in_scope::<rdma_dp::RdmaDevicePlugin>(&ctx, &scope));
    found.extend(invalid_in_scope::<sriov_dp::SriovDevicePlugin>(&ctx, &scope));
    found
}

/// What rendering state `S` for the NicNodePolicy of `scope` finds wrong with it.
fn invalid_in_scope<S: State>(ctx: &RenderContext<'_>, scope: &state_core::scope::Scope<'_>) -> Vec<FieldError> {
    match state_core::render::render_in_scope::<S>(ctx, scope) {
        Err(RenderError::Invalid(error)) => vec![error],
        _ => Vec::new(),
    }
}

/// What rendering state `S` finds wrong with the input (other outcomes, such as waiting for
/// the cluster, say nothing about the policy).
fn invalid<S: State>(ctx: &RenderContext<'_>) -> Vec<FieldError> {
    // The resource rules, one finding each (a render joins them into one, and stops at a
    // section's first problem).
    let mut found: Vec<FieldError> = match S::spec(ctx.policy) {
        Some(spec) => S::images(spec)
            .into_iter()
            .flat_map(|(field, image)| {
                api::validate::container_resources(&field, image.container_resources.as_deref().unwrap_or_default())
            })
            .collect(),
        None => Vec::new(),
    };
    if let Err(RenderError::Invalid(error)) = render_state::<S>(ctx)
        && FieldError::join(found.clone()).as_ref() != Some(&error)
    {
        found.push(error);
    }
    found
}

/// A cluster where every state can render: one Ubuntu NIC node with the NFD labels, and the
/// ConfigMaps the policy names (empty).
fn sample_cluster(policy: &NicClusterPolicy) -> Observed {
    let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "sample", "labels": {
        "feature.node.kubernetes.io/pci-15b3.present": "true",
        ofed::pools::OS_LABEL: "ubuntu", ofed::pools::OS_VERSION_LABEL: "22.04",
        ofed::pools::KERNEL_LABEL: "5.15.0-78-generic", ofed::pools::ARCH_LABEL: "amd64"}}}))
    .unwrap_or_default();
    let mut observed = Observed { nodes: vec![Arc::new(state_core::nodes::facts(node, None))], ..Default::default() };
    let mut names = Vec::new();
    if let Some(spec) = ofed::OfedDriver::spec(policy) {
        names.extend(ofed::OfedDriver::referenced_config_maps(spec));
    }
    if let Some(spec) = doca_telemetry::DocaTelemetry::spec(policy) {
        names.extend(doca_telemetry::DocaTelemetry::referenced_config_maps(spec));
    }
    for name in names {
        let config_map = ConfigMap {
            metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
            ..Default::default()
        };
        observed.config_maps.insert(name, config_map);
    }
    observed
}
