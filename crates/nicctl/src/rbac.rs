//! `nicctl rbac`: the RBAC rules of every controller, generated from what each really touches.

use anyhow::Context;
use api::parse::{self, Document};
use state_core::rbac::{ControllerRbac, state_rbac};
use state_core::{Observed, State};
use std::path::Path;

/// A policy with every section: what the states render from it shows what their Roles grant.
const EVERY_SECTION: &str = include_str!("../../../example/crs/nicclusterpolicy_every-section.yaml");

/// Every controller by the name of its subchart, with its rules; last the `all-in-one`
/// subchart, whose one process runs them all and so gets the union of their rules.
pub fn controllers() -> anyhow::Result<Vec<(&'static str, ControllerRbac)>> {
    let mut controllers = one_per_controller()?;
    let all = ControllerRbac::union(controllers.iter().map(|(_, rbac)| rbac));
    controllers.push(("all-in-one", all));
    Ok(controllers)
}

fn one_per_controller() -> anyhow::Result<Vec<(&'static str, ControllerRbac)>> {
    let sample = match parse::parse_all(EVERY_SECTION).context("parsing the every-section example")?.remove(0) {
        Document::Policy(policy) => *policy,
        other => anyhow::bail!("the every-section example is not a policy: {other:?}"),
    };
    Ok(vec![
        ("aggregator", aggregator::rbac()),
        ("ofed", ofed::rbac(&sample)),
        ("rdma-dp", state_rbac::<rdma_dp::RdmaDevicePlugin>(&sample, &Observed::default())),
        ("sriov-dp", state_rbac::<sriov_dp::SriovDevicePlugin>(&sample, &Observed::default())),
        (
            "nic-feature-discovery",
            state_rbac::<nic_feature_discovery::NicFeatureDiscovery>(&sample, &Observed::default()),
        ),
        ("doca-telemetry", state_rbac::<doca_telemetry::DocaTelemetry>(&sample, &Observed::default())),
        ("ib-kubernetes", state_rbac::<ib_kubernetes::IbKubernetes>(&sample, &Observed::default())),
        ("multus", state_rbac::<multus::Multus>(&sample, &Observed::default())),
        ("cni-plugins", state_rbac::<cni_plugins::CniPlugins>(&sample, &Observed::default())),
        ("ipoib", state_rbac::<ipoib::IpoibCni>(&sample, &Observed::default())),
        ("whereabouts", state_rbac::<whereabouts::Whereabouts>(&sample, &Observed::default())),
        (
            "nv-ipam",
            state_rbac::<nv_ipam::NvIpam>(&sample, &Observed::default().serving_all(&nv_ipam::NvIpam::kinds())),
        ),
        ("network-nads", network_nads::rbac()),
    ])
}

/// Prints every controller's `files/rbac.yaml`, or writes `<dir>/<chart>/files/rbac.yaml`.
pub fn run(dir: Option<&Path>) -> anyhow::Result<()> {
    for (chart, rbac) in controllers()? {
        let yaml = rbac.to_yaml();
        match dir {
            Some(dir) => {
                let path = dir.join(chart).join("files/rbac.yaml");
                std::fs::write(&path, &yaml).with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {} ({} verb x resource grants)", path.display(), rbac.grants());
            }
            None => print!("--- # {chart}: {} verb x resource grants\n{yaml}", rbac.grants()),
        }
    }
    Ok(())
}
