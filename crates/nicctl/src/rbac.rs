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
        ("nic-configuration", nic_configuration::rbac(&sample)),
        ("spectrum-x", state_rbac::<spectrum_x::SpectrumX>(&sample, &Observed::default())),
        ("network-nads", network_nads::rbac()),
    ])
}

/// Prints every controller's `files/rbac.yaml`, or writes `<dir>/<chart>/files/rbac.yaml`.
pub fn run(dir: Option<&Path>) -> anyhow::Result<()> {
    let mut stream = String::new();
    for (chart, rbac) in controllers()? {
        let yaml = rbac.to_yaml();
        match dir {
            Some(dir) => {
                let path = dir.join(chart).join("files/rbac.yaml");
                std::fs::write(&path, &yaml).with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {} ({} verb x resource grants)", path.display(), rbac.grants());
            }
            None => stream.push_str(&format!("--- # {chart}: {} verb x resource grants\n{yaml}", rbac.grants())),
        }
    }
    crate::emit(&stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_core::{RenderContext, render_state};

    fn controller(name: &str) -> ControllerRbac {
        controllers().unwrap().into_iter().find(|(chart, _)| *chart == name).unwrap().1
    }

    #[test]
    fn every_destructive_grant_on_objects_not_a_controllers_own_is_by_name_or_has_a_reason() {
        for (chart, rbac) in controllers().unwrap() {
            assert_eq!(rbac.unjustified(), Vec::<String>::new(), "{chart}: grants without a name or a reason");
        }
    }

    #[test]
    fn no_controller_may_touch_cluster_admin_another_products_webhook_kube_system_or_ip_pools() {
        let rbac_group = "rbac.authorization.k8s.io";
        for (chart, rbac) in controllers().unwrap() {
            let cluster = &rbac.cluster;
            for verb in ["update", "patch", "delete", "escalate", "bind"] {
                assert!(
                    !cluster.allows(rbac_group, "clusterroles", "cluster-admin", verb),
                    "{chart}: {verb} cluster-admin"
                );
            }
            for verb in ["create", "patch", "delete"] {
                assert!(!cluster.allows(rbac_group, "clusterrolebindings", "cluster-admin", verb), "{chart}: {verb}");
                assert!(!cluster.allows(rbac_group, "clusterrolebindings", "anything-else", verb), "{chart}: {verb}");
                let webhooks = "validatingwebhookconfigurations";
                assert!(!cluster.allows("admissionregistration.k8s.io", webhooks, "other-product", verb), "{chart}");
                assert!(!cluster.allows("", "configmaps", "extension-apiserver-authentication", verb), "{chart}");
                assert!(!cluster.allows("", "pods", "any-pod", verb), "{chart}: {verb} pods");
            }
            assert!(!cluster.allows("", "pods", "any-pod", "update"), "{chart}: update pods");
            for (group, pools) in [
                ("whereabouts.cni.cncf.io", "ippools"),
                ("nv-ipam.nvidia.com", "ippools"),
                ("nv-ipam.nvidia.com", "cidrpools"),
            ] {
                for verb in ["delete", "deletecollection", "patch", "update"] {
                    assert!(!cluster.allows(group, pools, "a-pool", verb), "{chart}: {verb} {group}/{pools}");
                    assert!(!rbac.operands.allows(group, pools, "a-pool", verb), "{chart}: {verb} {group}/{pools}");
                }
            }
        }
    }

    /// The names of the cluster-scoped objects `S` renders from `policy` that its controller's
    /// rules do not let it apply and prune.
    fn not_writable<S: State>(rbac: &ControllerRbac, policy: &api::NicClusterPolicy) -> Vec<String> {
        let observed = Observed::default().serving_all(&S::kinds());
        let mut missing = Vec::new();
        for openshift in [false, true] {
            let ctx = RenderContext { namespace: "ns", openshift, policy, observed: &observed };
            for object in render_state::<S>(&ctx).ok().flatten().unwrap_or_default() {
                let types = object.types.clone().unwrap_or_default();
                let Some(kind) = S::kinds().into_iter().find(|k| !k.namespaced && k.resource.kind == types.kind) else {
                    continue;
                };
                let name = object.metadata.name.clone().unwrap_or_default();
                let (group, plural) = (&kind.resource.group, &kind.resource.plural);
                if !["create", "patch", "delete"].iter().all(|verb| rbac.cluster.allows(group, plural, &name, verb)) {
                    missing.push(format!("{} {name}", types.kind));
                }
            }
        }
        missing
    }

    #[test]
    fn every_cluster_scoped_object_any_example_policy_renders_is_granted_by_its_name() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../example/crs");
        let mut policies = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for document in parse::parse_all(&text).unwrap() {
                let Document::Policy(policy) = document else { continue };
                policies += 1;
                let missing = [
                    not_writable::<multus::Multus>(&controller("multus"), &policy),
                    not_writable::<whereabouts::Whereabouts>(&controller("whereabouts"), &policy),
                    not_writable::<nv_ipam::NvIpam>(&controller("nv-ipam"), &policy),
                    not_writable::<ib_kubernetes::IbKubernetes>(&controller("ib-kubernetes"), &policy),
                    not_writable::<ipoib::IpoibCni>(&controller("ipoib"), &policy),
                    not_writable::<rdma_dp::RdmaDevicePlugin>(&controller("rdma-dp"), &policy),
                    not_writable::<sriov_dp::SriovDevicePlugin>(&controller("sriov-dp"), &policy),
                    not_writable::<cni_plugins::CniPlugins>(&controller("cni-plugins"), &policy),
                    not_writable::<doca_telemetry::DocaTelemetry>(&controller("doca-telemetry"), &policy),
                    not_writable::<nic_configuration::NicConfiguration>(&controller("nic-configuration"), &policy),
                    not_writable::<spectrum_x::SpectrumX>(&controller("spectrum-x"), &policy),
                    not_writable::<nic_feature_discovery::NicFeatureDiscovery>(
                        &controller("nic-feature-discovery"),
                        &policy,
                    ),
                ]
                .concat();
                assert!(missing.is_empty(), "{}: not granted by name: {missing:?}", path.display());
            }
        }
        assert!(policies >= 8, "only {policies} example policies found");
    }
}
