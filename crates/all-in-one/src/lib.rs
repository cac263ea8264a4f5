//! The single-process install (binary `network-operator`): every state controller, the
//! aggregator and network-nads side by side in one process, on one client, one metrics server
//! and one leader lease.
//!
//! The default install is one Deployment per controller (each with only its own RBAC, each
//! failing alone). This one trades that isolation for memory: the code and the runtime are
//! loaded once instead of thirteen times (see `docs/performance.md`). Each controller inside is
//! exactly the one its own binary runs; a section that is absent is reported `ignore` as usual.

use state_core::run::{Body, Process, body, run_together, state_body};

/// The name of the process (logs, default lease `network-operator-leader`). Every controller
/// inside keeps its own field manager, so moving between the two installs changes no owner.
pub const COMPONENT: &str = "network-operator";

/// Every controller of the workspace, by the name of its own binary.
pub fn controllers() -> Vec<(&'static str, Body)> {
    vec![
        ("aggregator", body(aggregator::controller::run)),
        ("network-nads-controller", body(network_nads::controller::run)),
        ("ofed-controller", body(ofed::controller::run)),
        ("rdma-dp-controller", body(state_body::<rdma_dp::RdmaDevicePlugin>)),
        ("sriov-dp-controller", body(state_body::<sriov_dp::SriovDevicePlugin>)),
        ("nic-feature-discovery-controller", body(state_body::<nic_feature_discovery::NicFeatureDiscovery>)),
        ("doca-telemetry-controller", body(state_body::<doca_telemetry::DocaTelemetry>)),
        ("ib-kubernetes-controller", body(state_body::<ib_kubernetes::IbKubernetes>)),
        ("multus-controller", body(state_body::<multus::Multus>)),
        ("cni-plugins-controller", body(state_body::<cni_plugins::CniPlugins>)),
        ("ipoib-controller", body(state_body::<ipoib::IpoibCni>)),
        ("whereabouts-controller", body(state_body::<whereabouts::Whereabouts>)),
        ("nv-ipam-state-controller", body(state_body::<nv_ipam::NvIpam>)),
        ("nic-configuration-controller", body(nic_configuration::controller)),
        ("spectrum-x-controller", body(state_body::<spectrum_x::SpectrumX>)),
    ]
}

/// The process's body: every controller until shutdown.
pub async fn run(process: Process) {
    let controllers = controllers();
    let names: Vec<&str> = controllers.iter().map(|(name, _)| *name).collect();
    tracing::info!(controllers = %names.join(","), "starting every controller in one process");
    run_together(process, controllers.into_iter().map(|(_, body)| body).collect()).await;
}
